//! `swarm-ctl`: operator CLI for Crawling@Home scraper swarms on Hetzner Cloud.

use std::io::Write;
use std::process::ExitCode;

/// EX_USAGE: a bad flag or environment value (clap's errors and [`swarm_ctl::config::UsageError`]),
/// as the daemons exit for theirs.
const EX_USAGE: u8 = 64;

/// EX_CONFIG: the accounts file cannot be read or is invalid
/// ([`swarm_ctl::config::AccountsFileError`]).
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    // --help and --version exit 0; every other clap error is a usage error.
    let args = match <swarm_ctl::Args as clap::Parser>::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
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
    // Installed before the run starts: SIGTERM or SIGHUP would otherwise kill it silently.
    let signals = {
        let _entered = runtime.enter();
        swarm_ctl::shutdown::signals()
    };
    let signals = match signals {
        Ok(signals) => signals,
        Err(error) => {
            say(&format!(
                "error: cannot install the SIGINT, SIGTERM and SIGHUP handlers: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(swarm_ctl::run(args, &env, &mut stdout, signals));
    if let Some(interrupted) = result
        .as_ref()
        .err()
        .and_then(|error| error.downcast_ref::<swarm_ctl::Interrupted>())
    {
        say(&interrupted.message);
        // 128 + the signal, as a shell reports a command the signal stopped.
        return ExitCode::from(interrupted.signal.exit_code());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
        Err(error) if error.is::<swarm_ctl::config::UsageError>() => {
            say(&format!("error: {error:#}"));
            ExitCode::from(EX_USAGE)
        }
        Err(error) if error.is::<swarm_ctl::config::AccountsFileError>() => {
            say(&format!("error: {error:#}"));
            ExitCode::from(EX_CONFIG)
        }
        Err(error) => {
            say(&format!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// One line on stderr, which is the user's terminal here, so a plain line reads better than a
/// log record. A failed write is ignored: after SIGHUP the terminal may be gone, and
/// `eprintln!` would panic (abort, in a release build) instead of exiting with our status.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "swarm-ctl: {line}");
}
