//! `clip-gpu-d`: thin binary over the library (house style B4).

use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory;
use clip_gpu_d::embed::{Args, Command};
use clip_gpu_d::flags::UsageError;

/// EX_USAGE: a configuration error, which the unit's RestartPreventExitStatus=64 does not
/// restart (linkerd exits the same way).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    // A bad flag or environment value exits 64 like every other configuration error, so that
    // the unit's RestartPreventExitStatus=64 stops a restart loop; --help and --version exit 0.
    let args = match <Args as clap::Parser>::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let command = Args::command();
            let subcommand = std::env::args_os()
                .skip(1)
                .find(|arg| command.find_subcommand(arg).is_some());
            let error =
                clip_gpu_d::flags::with_env_tip(error, &command, subcommand.as_deref(), |name| {
                    std::env::var_os(name)
                });
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
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
                    return ExitCode::from(EX_USAGE);
                }
            };
            match tokio::runtime::Runtime::new() {
                Ok(runtime) => {
                    let result = runtime.block_on(async {
                        // Before anything slow, so that a stop during the model load is clean.
                        let stops = clip_gpu_d::shutdown::listen();
                        clip_gpu_d::daemon::run_until_stopped(config, stops).await
                    });
                    // A model load that a stop cut short cannot be interrupted: no waiting for
                    // it (every task whose work matters was awaited by `run`).
                    runtime.shutdown_timeout(Duration::from_secs(2));
                    result
                }
                Err(error) => Err(anyhow::Error::new(error).context("failed to start tokio")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.chain().any(|cause| cause.is::<UsageError>()) => {
            tracing::error!(error = %format!("{error:#}"), "invalid configuration");
            ExitCode::from(EX_USAGE)
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "clip-gpu-d failed");
            ExitCode::FAILURE
        }
    }
}
