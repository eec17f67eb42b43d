//! Progress bars of the operator commands (`extract`, `fetch`) on a terminal, and the log writer
//! that prints log lines above a bar instead of through it.
//!
//! A bar draws only when stderr is a terminal; under systemd, in pipes and in tests it is hidden
//! and an update costs next to nothing. One bar is active at a time.

use std::io::Write;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar log lines must be printed above, while one is shown.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Redraws per second.
const REFRESH_HZ: u8 = 4;

// `wide_bar` takes the width the text leaves; decimal units, as the summaries print.
const BYTES_KNOWN: &str = "{msg} {wide_bar} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta} {prefix}";
const BYTES_UNKNOWN: &str = "{msg} {spinner} {decimal_bytes} {decimal_bytes_per_sec} {prefix}";
const ITEMS: &str = "{msg} {wide_bar} {pos}/{len} {prefix} {rate}/s eta {eta}";

/// A progress bar on stderr for as long as it lives (cleared when dropped).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Counts bytes read from a source of `total` bytes, when that is known (it can be given
    /// later with [`Progress::set_total`]).
    pub fn bytes(message: &'static str, total: Option<u64>) -> Self {
        Self::bytes_to(
            ProgressDrawTarget::stderr_with_hz(REFRESH_HZ),
            message,
            total,
        )
    }

    /// Counts `unit`s (`URLs`) done out of `total`.
    pub fn items(message: &'static str, total: u64, unit: &'static str) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            ProgressDrawTarget::stderr_with_hz(REFRESH_HZ),
        )
        .with_style(style(ITEMS))
        .with_message(message)
        .with_prefix(unit);
        Self::activate(bar)
    }

    fn bytes_to(target: ProgressDrawTarget, message: &'static str, total: Option<u64>) -> Self {
        let bar = ProgressBar::with_draw_target(total, target).with_message(message);
        let bar = match total {
            Some(_) => bar.with_style(style(BYTES_KNOWN)),
            None => bar.with_style(style(BYTES_UNKNOWN)),
        };
        Self::activate(bar)
    }

    fn activate(bar: ProgressBar) -> Self {
        if !bar.is_hidden() {
            *ACTIVE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(bar.clone());
        }
        Self { bar }
    }

    /// Gives the total once it is known (a download's `Content-Length`); a bar without one
    /// shows a spinner.
    pub fn set_total(&self, total: u64) {
        if self.bar.length() != Some(total) {
            self.bar.set_length(total);
            self.bar.set_style(style(BYTES_KNOWN));
        }
    }

    /// Moves the bar to `position` (bytes or items done).
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// The text after the counts (`69259 candidates`).
    pub fn set_detail(&self, detail: String) {
        self.bar.set_prefix(detail);
    }

    /// A handle for a task that moves the bar.
    pub fn handle(&self) -> ProgressBar {
        self.bar.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_hidden() {
            *ACTIVE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
        self.bar.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants checked by the tests below.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0}", state.per_sec());
            },
        )
}

/// The log subscriber's writer: stderr, with each log line printed above the active bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One log event, written out when the subscriber is done with it.
pub struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let write = || {
            // Nowhere to report a failed log write to.
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        let active = ACTIVE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match active.as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for template in [BYTES_KNOWN, BYTES_UNKNOWN, ITEMS] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_total_given_later_turns_the_spinner_into_a_bar() {
        let progress = Progress::bytes_to(ProgressDrawTarget::hidden(), "extracting", None);
        assert_eq!(progress.handle().length(), None);
        progress.set_total(1_000);
        progress.set_position(250);
        assert_eq!(progress.handle().length(), Some(1_000));
        assert_eq!(progress.handle().position(), 250);
    }

    #[test]
    fn a_hidden_bar_is_not_where_log_lines_go() {
        let progress = Progress::bytes_to(ProgressDrawTarget::hidden(), "extracting", Some(10));
        assert!(progress.handle().is_hidden());
        assert!(
            ACTIVE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_none()
        );
    }
}
