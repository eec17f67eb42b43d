//! `clip-gpu-d`: thin binary over the library (house style B4).

use std::process::ExitCode;

use clip_gpu_d::embed::{Args, Command};

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    clip_gpu_d::telemetry::init(args.log_format);
    let result: anyhow::Result<()> = match args.command {
        Command::Embed(embed) => clip_gpu_d::embed::run_embed(&embed).map(|_| ()),
        Command::Bench(bench) => clip_gpu_d::embed::bench::run_bench(&bench),
        Command::Run(run) => {
            let config = match clip_gpu_d::daemon::Config::try_from(*run) {
                Ok(config) => config,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "invalid configuration");
                    return ExitCode::from(64); // EX_USAGE, as linkerd does.
                }
            };
            match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime.block_on(clip_gpu_d::daemon::run(
                    config,
                    clip_gpu_d::shutdown::signal(),
                )),
                Err(error) => Err(anyhow::Error::new(error).context("failed to start tokio")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "clip-gpu-d failed");
            ExitCode::FAILURE
        }
    }
}
