//! `scraper-d fetch`: downloads a URL list through the daemon's pipeline into one bundle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::Candidate;
use crate::cli::FetchArgs;
use crate::fetch::Fetcher;
use crate::job::Pipeline;
use crate::resolver::Resolver;
use crate::stats::{Outcome, ResolverStrain};
use crate::terminal::Progress;

/// What a fetch did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchSummary {
    pub urls: u64,
    pub stored: u64,
    pub seconds: f64,
    pub urls_per_second: f64,
    pub images_per_second: f64,
    pub outcomes: std::collections::BTreeMap<String, u64>,
}

impl FetchSummary {
    /// The summary as text lines.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "urls: {}\nstored: {}\nseconds: {:.3}\nurls/s: {:.1}\nimages/s: {:.1}\n",
            self.urls, self.stored, self.seconds, self.urls_per_second, self.images_per_second
        );
        for (outcome, count) in &self.outcomes {
            text.push_str(&format!("  {outcome}: {count}\n"));
        }
        text
    }
}

/// Runs a fetch to the end.
pub async fn run_fetch(args: &FetchArgs) -> anyhow::Result<FetchSummary> {
    let settings = args.download.settings()?;
    let list = std::fs::read(&args.urls)
        .with_context(|| format!("failed to read {}", args.urls.display()))?;
    // A line that is not UTF-8 is no URL: it stays in the list as an empty one, so it is
    // counted (`bad_url`) instead of failing the whole list.
    let candidates: Vec<Candidate> = list
        .split(|byte| *byte == b'\n')
        .map(|line| std::str::from_utf8(line).map(str::trim))
        .filter(|line| match line {
            Err(_) => true,
            Ok(line) => !line.is_empty() && !line.starts_with('#'),
        })
        .enumerate()
        .map(|(index, url)| Candidate {
            sample_id: index as u64,
            half: 0,
            url: url.unwrap_or_default().to_owned(),
            alt: String::new(),
            page_url: String::new(),
            license: None,
            language: None,
            pair_hash: 0,
        })
        .collect();
    let resolver = Resolver::new(&settings.resolver, settings.policy.clone())
        .context("failed to build the dns resolver")?;
    let pipeline = Pipeline {
        fetcher: Fetcher::new(settings.fetch.clone(), resolver)
            .context("failed to build the http client")?,
        validate: Arc::new(settings.validate.clone()),
        resize: Arc::new(settings.resize.clone()),
        cpu: Arc::new(tokio::sync::Semaphore::new(settings.decode_threads.max(1))),
        concurrency: settings.concurrency,
        tail: settings.tail,
    };
    let urls = candidates.len() as u64;
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::items("fetching", urls, "URLs");
    let bar = progress.handle();
    let done_seen = done.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tick.tick().await;
            bar.set_position(done_seen.load(Ordering::Relaxed));
        }
    });
    let half = pipeline.run_half(0, candidates, &args.output, done).await;
    ticker.abort();
    drop(progress);
    if half.is_err() && !crate::output::destination::is_special(&args.output) {
        // No half bundle left behind (a full disk fails here).
        let _ = std::fs::remove_file(crate::bundle::temp_path_of(&args.output));
    }
    let half = half.context("failed to write the bundle")?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(strain) = ResolverStrain::of(&half.outcomes) {
        strain.warn(None);
    }
    let stored = half.outcomes.get(Outcome::Ok);
    Ok(FetchSummary {
        urls,
        stored,
        seconds,
        urls_per_second: urls as f64 / seconds.max(1e-9),
        images_per_second: stored as f64 / seconds.max(1e-9),
        outcomes: half.stats.outcomes,
    })
}
