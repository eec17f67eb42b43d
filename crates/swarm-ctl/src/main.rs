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
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: never interrupt.
            std::future::pending::<()>().await;
        }
    };
    match runtime.block_on(swarm_ctl::run(args, &env, &mut stdout, ctrl_c)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<swarm_ctl::Interrupted>() => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("swarm-ctl: {error}");
            }
            // 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
            ExitCode::from(130)
        }
        // `swarm-ctl status | head -1`: the reader has what it wanted.
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
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
