//! `clip-gpu-d`: thin binary over the library (house style B4).

use std::process::ExitCode;

use clip_gpu_d::embed::{Args, Command};

fn main() -> ExitCode {
    // A bad flag or environment value exits 64 (EX_USAGE) like every other configuration
    // error, so that the unit's RestartPreventExitStatus=64 stops a restart loop; --help and
    // --version exit 0.
    let args = match <Args as clap::Parser>::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
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
