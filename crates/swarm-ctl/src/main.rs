//! `swarm-ctl`: operator CLI for Crawling@Home scraper swarms on Hetzner Cloud.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <swarm_ctl::Args as clap::Parser>::parse();
    swarm_ctl::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut stdout = std::io::stdout();
    match runtime.block_on(swarm_ctl::run(args, &env, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Stderr is the user's terminal here, so a plain line reads better than a log record.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("swarm-ctl: error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
