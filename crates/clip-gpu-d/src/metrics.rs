//! Prometheus metrics of the daemon on `--metrics-listen` (`GET /metrics`, text format 0.0.4).
//!
//! Counters, not rates, with bounded labels: Prometheus derives pairs per second
//! (`rate(clip_pairs_scored_total[1m])`), the kept fraction
//! (`rate(clip_pairs_kept_total[5m]) / rate(clip_pairs_scored_total[5m])`), the GPU busy
//! fraction (`rate(clip_backend_busy_seconds_total[1m])` per device thread) and per-stage
//! latency (`rate(clip_stage_seconds_total[5m]) / rate(clip_stage_calls_total[5m])`).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

/// Pipeline stages with a latency.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Download,
    Preprocess,
    Embed,
    Write,
    /// A shard's upload to S3.
    Upload,
}

const STAGES: [(Stage, &str); 5] = [
    (Stage::Download, "download"),
    (Stage::Preprocess, "preprocess"),
    (Stage::Embed, "embed"),
    (Stage::Write, "write"),
    (Stage::Upload, "upload"),
];

/// The daemon's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    pub jobs_claimed: AtomicU64,
    pub jobs_completed: AtomicU64,
    pub jobs_invalid: AtomicU64,
    /// Jobs the tracker took back (an expired lease, or a token it forgot) before completion.
    pub jobs_lost: AtomicU64,
    /// Jobs given back at the drain deadline.
    pub jobs_released: AtomicU64,
    /// Registrations after the tracker forgot this daemon's token.
    pub reregistrations: AtomicU64,
    pub pairs_scored: AtomicU64,
    pub pairs_kept: AtomicU64,
    pub pairs_duplicate: AtomicU64,
    /// Pairs taken back out of the open shard because the tracker took their job back.
    pub pairs_taken_out: AtomicU64,
    /// Shard uploads to S3 that failed and are tried again.
    pub upload_failures: AtomicU64,
    pub shards_written: AtomicU64,
    pub backend_busy_micros: AtomicU64,
    /// Samples waiting for the model.
    pub queued_samples: AtomicI64,
    /// Jobs held (claimed, not yet completed or reported).
    pub held_jobs: AtomicI64,
    stage_micros: [AtomicU64; 5],
    stage_calls: [AtomicU64; 5],
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        let index = stage as usize;
        self.stage_micros[index].fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.stage_calls[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "clip_jobs_claimed_total",
                "GPU jobs claimed.",
                &self.jobs_claimed,
            ),
            (
                "clip_jobs_completed_total",
                "GPU jobs completed to the tracker.",
                &self.jobs_completed,
            ),
            (
                "clip_jobs_invalid_total",
                "GPU jobs whose bundle was reported invalid.",
                &self.jobs_invalid,
            ),
            (
                "clip_jobs_lost_total",
                "GPU jobs the tracker took back before they were completed.",
                &self.jobs_lost,
            ),
            (
                "clip_jobs_released_total",
                "GPU jobs released at the drain deadline or after a failed download.",
                &self.jobs_released,
            ),
            (
                "clip_tracker_reregistrations_total",
                "Registrations again after the tracker forgot this daemon.",
                &self.reregistrations,
            ),
            (
                "clip_pairs_scored_total",
                "Pairs scored by CLIP.",
                &self.pairs_scored,
            ),
            (
                "clip_pairs_kept_total",
                "Pairs written to shards.",
                &self.pairs_kept,
            ),
            (
                "clip_pairs_duplicate_total",
                "Kept pairs dropped as duplicates.",
                &self.pairs_duplicate,
            ),
            (
                "clip_pairs_taken_out_total",
                "Pairs taken back out of the open shard: the tracker took their job back.",
                &self.pairs_taken_out,
            ),
            (
                "clip_upload_failures_total",
                "Shard uploads to S3 that failed (each is tried again).",
                &self.upload_failures,
            ),
            (
                "clip_shards_written_total",
                "Shards made visible.",
                &self.shards_written,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let seconds = |micros: &AtomicU64| micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP clip_backend_busy_seconds_total Seconds the model threads spent in forward passes.\n# TYPE clip_backend_busy_seconds_total counter\nclip_backend_busy_seconds_total {}",
            seconds(&self.backend_busy_micros)
        );
        for (name, help, value) in [
            (
                "clip_queued_samples",
                "Samples waiting for the model.",
                &self.queued_samples,
            ),
            (
                "clip_held_jobs",
                "Jobs held by this daemon.",
                &self.held_jobs,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP clip_stage_seconds_total Seconds spent per pipeline stage.\n# TYPE clip_stage_seconds_total counter"
        );
        for (stage, label) in STAGES {
            let _ = writeln!(
                out,
                "clip_stage_seconds_total{{stage=\"{label}\"}} {}",
                seconds(&self.stage_micros[stage as usize])
            );
        }
        let _ = writeln!(
            out,
            "# HELP clip_stage_calls_total Calls per pipeline stage.\n# TYPE clip_stage_calls_total counter"
        );
        for (stage, label) in STAGES {
            let _ = writeln!(
                out,
                "clip_stage_calls_total{{stage=\"{label}\"}} {}",
                self.stage_calls[stage as usize].load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_stages() {
        let metrics = Metrics::new();
        Metrics::add(&metrics.pairs_scored, 3);
        metrics.observe(Stage::Embed, Duration::from_millis(1500));
        let text = metrics.render();
        assert!(text.contains("clip_pairs_scored_total 3\n"), "{text}");
        assert!(
            text.contains("clip_stage_seconds_total{stage=\"embed\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("clip_stage_calls_total{stage=\"embed\"} 1\n"),
            "{text}"
        );
    }
}
