//! Prometheus metrics in the text exposition format, served by a minimal HTTP/1.1 responder on
//! `--metrics-listen` (any path answers the metrics).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::body::LargeBodyGauge;
use crate::stats::{Outcome, OutcomeCounts};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub jobs_completed: Counter,
    /// Candidates skipped because the tracker's `parsed` set held their pair.
    pub seen_by_tracker: Counter,
    outcomes: [Counter; Outcome::ALL.len()],
    /// Image bodies over 1 MiB held now and at most (the fetcher's, see [`Metrics::new`]).
    large_bodies: Arc<LargeBodyGauge>,
}

impl Metrics {
    /// Counters at zero, reporting the fetcher's large-body gauge.
    pub fn new(large_bodies: Arc<LargeBodyGauge>) -> Self {
        Metrics {
            large_bodies,
            ..Metrics::default()
        }
    }

    /// Adds one half's outcome counts.
    pub fn record_half(&self, counts: &OutcomeCounts) {
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            self.outcomes[index].add(counts.get(*outcome));
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str(
            "# HELP scraper_jobs_completed_total Jobs whose bundle was uploaded and accepted.\n",
        );
        text.push_str("# TYPE scraper_jobs_completed_total counter\n");
        text.push_str(&format!(
            "scraper_jobs_completed_total {}\n",
            self.jobs_completed.get()
        ));
        text.push_str("# HELP scraper_seen_by_tracker_total Candidates skipped because another job had scraped their pair.\n");
        text.push_str("# TYPE scraper_seen_by_tracker_total counter\n");
        text.push_str(&format!(
            "scraper_seen_by_tracker_total {}\n",
            self.seen_by_tracker.get()
        ));
        text.push_str("# HELP scraper_large_bodies_held Image bodies over 1 MiB in memory now (--max-large-bodies at most).\n");
        text.push_str("# TYPE scraper_large_bodies_held gauge\n");
        text.push_str(&format!(
            "scraper_large_bodies_held {}\n",
            self.large_bodies.held()
        ));
        text.push_str("# HELP scraper_large_bodies_held_peak The most image bodies over 1 MiB in memory at once since the start.\n");
        text.push_str("# TYPE scraper_large_bodies_held_peak gauge\n");
        text.push_str(&format!(
            "scraper_large_bodies_held_peak {}\n",
            self.large_bodies.peak()
        ));
        text.push_str("# HELP scraper_images_total Candidate images by outcome.\n");
        text.push_str("# TYPE scraper_images_total counter\n");
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            text.push_str(&format!(
                "scraper_images_total{{outcome=\"{}\"}} {}\n",
                outcome.as_str(),
                self.outcomes[index].get()
            ));
        }
        text
    }
}

/// Binds `address` and serves `metrics` on a background task.
pub async fn serve(address: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut request),
                )
                .await;
                if !matches!(read, Ok(Ok(n)) if n > 0) {
                    return;
                }
                let body = metrics.render();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let large_bodies = crate::body::LargeBodies::new(4);
        let held = large_bodies.acquire().await;
        drop(large_bodies.acquire().await);
        let metrics = Arc::new(Metrics::new(large_bodies.gauge()));
        let mut counts = OutcomeCounts::default();
        counts.add(Outcome::Ok);
        counts.add(Outcome::Ok);
        counts.add(Outcome::Robots);
        metrics.record_half(&counts);
        metrics.jobs_completed.inc();
        let address = serve("127.0.0.1:0".parse().expect("addr"), metrics)
            .await
            .expect("bind");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("scraper_jobs_completed_total 1\n"));
        assert!(response.contains("scraper_images_total{outcome=\"ok\"} 2\n"));
        assert!(response.contains("scraper_images_total{outcome=\"robots\"} 1\n"));
        assert!(
            response.contains("scraper_large_bodies_held 1\n"),
            "{response}"
        );
        assert!(response.contains("scraper_large_bodies_held_peak 2\n"));
        drop(held);
    }
}
