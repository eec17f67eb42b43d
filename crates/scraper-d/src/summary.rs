//! The end-of-extraction summary: counts, throughput, and skips by reason, as text or JSON.

use std::fmt::Write as _;

use crate::candidates::Counts;

/// Counts plus timing of one extraction.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Where the WAT came from.
    pub source: String,
    pub elapsed_s: f64,
    /// Compressed megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub records_per_s: f64,
    #[serde(flatten)]
    pub counts: Counts,
}

impl Summary {
    pub fn new(source: String, counts: Counts, elapsed: std::time::Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            source,
            elapsed_s: seconds,
            mb_per_s: counts.bytes_compressed as f64 / 1e6 / seconds,
            records_per_s: counts.records as f64 / seconds,
            counts,
        }
    }

    /// A few human-readable lines.
    pub fn to_text(&self) -> String {
        let counts = &self.counts;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "extracted {} candidates from {} records of {} in {:.2} s ({:.1} MB/s compressed, {:.0} records/s)",
            counts.candidates,
            counts.records,
            self.source,
            self.elapsed_s,
            self.mb_per_s,
            self.records_per_s
        );
        let _ = writeln!(
            text,
            "bytes: {} compressed, {} inflated; responses parsed: {}; image links: {}; records of the other half: {}; records without images: {}; resumes: {}",
            counts.bytes_compressed,
            counts.bytes_decompressed,
            counts.responses,
            counts.image_links,
            counts.records_other_half,
            counts.records_without_images,
            counts.resumes
        );
        if counts.skipped.is_empty() {
            text.push_str("skipped: nothing\n");
        } else {
            text.push_str("skipped:\n");
            for (reason, n) in &counts.skipped {
                let _ = writeln!(text, "  {reason:<20} {n}");
            }
        }
        text
    }
}
