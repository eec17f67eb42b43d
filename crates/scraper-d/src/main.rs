//! `scraper-d`: `extract` streams Common Crawl WAT files into image–text candidates; `run` is
//! the worker daemon (systemd service).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scraper_d::cli::{Args, Command, ExtractCommand, FetchArgs, RunArgs};
use scraper_d::config::RunConfig;

fn main() -> ExitCode {
    // A bad flag or environment value exits 64 (EX_USAGE) like every other configuration
    // error, so that the unit's RestartPreventExitStatus=64 stops a restart loop; --help and
    // --version exit 0.
    let args = match Args::try_parse() {
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
    scraper_d::telemetry::init(args.log_format);
    match args.command {
        Command::Extract(extract_args) => extract_main(*extract_args),
        Command::Run(run_args) => run_main(*run_args),
        Command::Fetch(fetch_args) => fetch_main(&fetch_args),
    }
}

fn extract_main(extract_args: scraper_d::cli::ExtractArgs) -> ExitCode {
    let command = match ExtractCommand::try_from(extract_args) {
        Ok(command) => command,
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            return ExitCode::from(64); // EX_USAGE, as linkerd does.
        }
    };
    match extract(&command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "extraction failed");
            ExitCode::FAILURE
        }
    }
}

fn run_main(run_args: RunArgs) -> ExitCode {
    let config = match RunConfig::try_from(run_args) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            return ExitCode::from(64);
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), tracker = %config.tracker, node = %config.node_name, "scraper-d starting");
    let result = runtime().and_then(|runtime| {
        runtime.block_on(scraper_d::daemon::run(
            config,
            scraper_d::shutdown::signal(),
        ))
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "scraper-d failed");
            ExitCode::FAILURE
        }
    }
}

fn fetch_main(fetch_args: &FetchArgs) -> ExitCode {
    if let Err(error) = fetch_args.download.settings() {
        tracing::error!(error = %error, "invalid configuration");
        return ExitCode::from(64);
    }
    let result = runtime().and_then(|runtime| {
        let summary = runtime.block_on(scraper_d::command::fetch::run_fetch(fetch_args))?;
        let text = if fetch_args.summary_json {
            serde_json::to_string(&summary).context("failed to encode the summary")? + "\n"
        } else {
            summary.to_text()
        };
        std::io::stderr()
            .write_all(text.as_bytes())
            .context("failed to write the summary")
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "fetch failed");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")
}

fn extract(command: &ExtractCommand) -> anyhow::Result<()> {
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
