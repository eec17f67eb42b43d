//! `cah-testkit`: starts the test world on loopback for manual runs and demos.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use cah_testkit::cli::{Args, Command, ServeArgs, WatArgs};
use cah_testkit::commoncrawl;
use cah_testkit::photos::PhotoCorpus;
use cah_testkit::world::TestWorld;

fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    init_logging(&args.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format_args!("{error:#}"), "cah-testkit failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Serve(serve) => run_serve(serve).await,
        Command::Wat(wat) => run_wat(wat).await,
    }
}

async fn run_serve(serve: ServeArgs) -> anyhow::Result<()> {
    let config = serve.to_config().context("invalid configuration")?;
    let corpus = match &serve.photos_dir {
        Some(dir) => PhotoCorpus::load(dir)
            .with_context(|| format!("failed to load photos from {}", dir.display()))?,
        None => PhotoCorpus::discover().context("failed to build the picture corpus")?,
    };
    let world = TestWorld::start(config, Arc::new(corpus))
        .await
        .context("failed to start the test world")?;
    print_lines(&world.describe())?;
    cah_testkit::cli::shutdown_signal().await;
    Ok(())
}

async fn run_wat(wat: WatArgs) -> anyhow::Result<()> {
    let config = wat.to_config().context("invalid configuration")?;
    let out_dir = wat.out_dir.clone();
    let started = std::time::Instant::now();
    tracing::info!(out_dir = %out_dir.display(), target_mb = wat.target_mb, "writing wat file");
    let (path, summary) = tokio::task::spawn_blocking(move || {
        let (path, summary) = commoncrawl::cached_wat_file(&out_dir, &config)?;
        let listing = out_dir.join(format!("crawl-data/{}/wat.paths.gz", config.crawl));
        std::fs::write(
            &listing,
            commoncrawl::wat_paths_gz(&[summary.relative_path.as_str()]),
        )
        .map_err(|source| cah_testkit::TestkitError::File {
            path: listing,
            source,
        })?;
        Ok::<_, cah_testkit::TestkitError>((path, summary))
    })
    .await
    .context("wat writer panicked")?
    .context("failed to write the wat file")?;
    print_lines(&[
        format!("path={}", path.display()),
        format!("relative_path={}", summary.relative_path),
        format!("bytes={}", summary.n_bytes),
        format!("pages={}", summary.n_pages),
        format!("records={}", summary.n_records),
        format!("candidates={}", summary.n_candidates),
        format!("seconds={:.1}", started.elapsed().as_secs_f64()),
    ])
}

fn print_lines(lines: &[String]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        writeln!(stdout, "{line}").context("failed to write to stdout")?;
    }
    stdout.flush().context("failed to write to stdout")
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
