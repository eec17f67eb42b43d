//! `tracker-d`: hands out Common Crawl jobs with leases and keeps the swarm's books.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracker_d::cli::{Cli, Command, ImportArgs};
use tracker_d::{ServeConfig, import, shutdown, telemetry};

fn main() -> ExitCode {
    // A bad flag or environment value exits 64 (EX_USAGE) like every other configuration
    // error, so that the unit's RestartPreventExitStatus=64 stops a restart loop; --help and
    // --version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match ServeConfig::try_from(*args) {
            Ok(config) => runtime.block_on(tracker_d::run(config, shutdown::signal())),
            Err(error) => {
                tracing::error!(error = %error, "cannot start");
                return ExitCode::from(64);
            }
        },
        Command::Import(args) => runtime.block_on(run_import(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "tracker-d failed");
            ExitCode::FAILURE
        }
    }
}

async fn run_import(args: ImportArgs) -> anyhow::Result<()> {
    let options = import::ImportOptions {
        base_url: args.base_url,
        limit: args.limit,
        shuffle: args.shuffle,
    };
    let urls = import::read_source(&args.source, &options)
        .await
        .with_context(|| format!("failed to read the WAT list {}", args.source))?;
    let db = tracker_d::db::Db::connect(&args.database_url, 4)
        .await
        .context("failed to open the tracker database")?;
    let bar = indicatif::ProgressBar::new(urls.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} WATs ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("importing");
    let summary = import::import(&db, &urls, options.shuffle, |done| bar.set_position(done))
        .await
        .context("failed to store the jobs")?;
    bar.finish_and_clear();
    db.close().await;
    tracing::info!(
        wats_read = summary.wats_read,
        jobs_created = summary.jobs_created,
        wats_skipped = summary.wats_skipped,
        "import finished"
    );
    Ok(())
}
