//! Logging setup: `RUST_LOG`-filtered lines on stderr, as text or JSON; no timestamps under journald.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // journald stamps every line itself; systemd sets JOURNAL_STREAM for services it logs.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: escape codes in a file or journald (which
        // shows such lines as `[N blob data]`) make the logs unreadable.
        .with_ansi(std::io::stderr().is_terminal() && !under_journald)
        .with_target(false);
    let result = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    if result.is_err() {
        tracing::debug!("a global subscriber was already installed");
    }
}
