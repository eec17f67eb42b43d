//! `scraper-d`: streams Common Crawl WAT files into image–text candidates.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scraper_d::cli::{Args, Command, ExtractCommand};

fn main() -> ExitCode {
    let args = Args::parse();
    scraper_d::telemetry::init(args.log_format);
    let Command::Extract(extract_args) = args.command;
    let command = match ExtractCommand::try_from(extract_args) {
        Ok(command) => command,
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            return ExitCode::from(64); // EX_USAGE, as linkerd does.
        }
    };
    match run(&command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "extraction failed");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &ExtractCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let summary = scraper_d::command::run_extract(command, runtime.handle())
        .context("failed to extract candidates")?;
    let text = if command.summary_json {
        serde_json::to_string(&summary).context("failed to encode the summary")? + "\n"
    } else {
        summary.to_text()
    };
    std::io::stderr()
        .write_all(text.as_bytes())
        .context("failed to write the summary")?;
    Ok(())
}
