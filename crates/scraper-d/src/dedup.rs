//! Dedup: the stable pair hash, the per-job seen sets, and cross-job dedup through the tracker.
//!
//! **The pair hash** is the first 8 bytes of `SHA-256(url + "\n" + alt)`, read as a
//! little-endian `u64`, where `url` is the resolved URL and `alt` the cleaned alt text, both
//! UTF-8. The newline cannot occur in either (URLs have none after parsing, cleanup turns
//! newlines into spaces), so distinct pairs never share an input. It is what the tracker's
//! dedup sets store and what `pair:` blocklist entries name.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use cah_protocol::ext::DedupSet;
use cah_tracker_client::Session;
use sha2::{Digest, Sha256};

use crate::candidates::{Candidate, Counts, SkipReason};
use crate::error::ScraperError;

/// Hashes per dedup request to the tracker.
pub const DEDUP_BATCH: usize = 10_000;

/// The stable 64-bit hash of a pair: first 8 bytes of `SHA-256(url + "\n" + alt)`, little-endian.
pub fn pair_hash(url: &str, alt: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(url.as_bytes());
    hasher.update(b"\n");
    hasher.update(alt.as_bytes());
    first_u64(&hasher.finalize())
}

/// The 64-bit hash of a URL alone (first 8 bytes of `SHA-256(url)`, little-endian).
pub fn url_hash(url: &str) -> u64 {
    first_u64(&Sha256::digest(url.as_bytes()))
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// What one job has already emitted.
#[derive(Debug, Default)]
pub struct SeenInJob {
    urls: HashSet<u64, DigestKeys>,
    pairs: HashSet<u64, DigestKeys>,
}

/// Keys that are already the leading bytes of a SHA-256 digest are spread evenly, and nobody can
/// choose them, so the sets use them as their own hash instead of running SipHash over them
/// (the sets cost 4 % of extraction with SipHash).
type DigestKeys = BuildHasherDefault<DigestKeyHasher>;

/// The hasher of [`DigestKeys`]: a `u64` key is its own hash.
#[derive(Debug, Default)]
struct DigestKeyHasher(u64);

impl Hasher for DigestKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the sets; anything else still hashes every byte.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

impl SeenInJob {
    /// Records the pair; `Err` names the duplicate kind. With `by_url` a URL repeats are dropped
    /// even with another alt text (as 2021 did from July on).
    pub fn insert(&mut self, url: &str, pair_hash: u64, by_url: bool) -> Result<(), SkipReason> {
        if self.pairs.contains(&pair_hash) {
            return Err(SkipReason::DuplicatePair);
        }
        if by_url && !self.urls.insert(url_hash(url)) {
            return Err(SkipReason::DuplicateUrl);
        }
        self.pairs.insert(pair_hash);
        Ok(())
    }
}

/// Drops the candidates whose pair the tracker's `parsed` set already holds, and adds the rest to
/// it (atomically with the check), in batches of [`DEDUP_BATCH`]. Dropped candidates leave gaps
/// in the sample IDs; IDs are never reused.
pub async fn dedup_with_tracker(
    session: &Session,
    candidates: Vec<Candidate>,
    counts: &mut Counts,
) -> Result<Vec<Candidate>, ScraperError> {
    let mut kept = Vec::with_capacity(candidates.len());
    for batch in candidates.chunks(DEDUP_BATCH) {
        let hashes: Vec<u64> = batch.iter().map(|candidate| candidate.pair_hash).collect();
        let new = session.dedup(DedupSet::Parsed, &hashes, true).await?;
        for (candidate, is_new) in batch.iter().zip(new) {
            if is_new {
                kept.push(candidate.clone());
            } else {
                counts.skip(SkipReason::SeenByTracker);
                counts.candidates = counts.candidates.saturating_sub(1);
            }
        }
    }
    tracing::debug!(n_kept = kept.len(), "tracker dedup done");
    Ok(kept)
}

/// Which of `hashes` the tracker's `parsed` set does not hold yet, without adding anything:
/// the daemon adds a job's pairs with [`record_with_tracker`] only once the job is completed, so
/// a job that crashed and is handed out again does not find its own pairs there and lose them.
/// Two jobs scraped at the same time may both keep a pair they share; clip-gpu-d's `main` set
/// drops the second copy.
pub async fn unseen_by_tracker(
    session: &Session,
    hashes: &[u64],
) -> Result<Vec<bool>, ScraperError> {
    let mut unseen = Vec::with_capacity(hashes.len());
    for batch in hashes.chunks(DEDUP_BATCH) {
        unseen.extend(session.dedup(DedupSet::Parsed, batch, false).await?);
    }
    Ok(unseen)
}

/// Adds a completed job's pair hashes to the tracker's `parsed` set, in batches.
pub async fn record_with_tracker(session: &Session, hashes: &[u64]) -> Result<(), ScraperError> {
    for batch in hashes.chunks(DEDUP_BATCH) {
        session.dedup(DedupSet::Parsed, batch, true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_hash_is_pinned() {
        // python3 -c "import hashlib; d = hashlib.sha256(b'http://a.test/x.jpg\\na cat').digest();
        // print(hex(int.from_bytes(d[:8], 'little')))"
        assert_eq!(
            pair_hash("http://a.test/x.jpg", "a cat"),
            0x328e_0952_43f7_2415
        );
        assert_ne!(
            pair_hash("http://a.test/x.jpg", "a cat"),
            pair_hash("http://a.test/x.jpg", "a dog")
        );
    }

    #[test]
    fn seen_in_job_table() {
        let mut seen = SeenInJob::default();
        let cases: &[(&str, &str, bool, Result<(), SkipReason>)] = &[
            ("http://a.test/1.jpg", "one", true, Ok(())),
            (
                "http://a.test/1.jpg",
                "one",
                true,
                Err(SkipReason::DuplicatePair),
            ),
            (
                "http://a.test/1.jpg",
                "other",
                true,
                Err(SkipReason::DuplicateUrl),
            ),
            ("http://a.test/2.jpg", "two", false, Ok(())),
            ("http://a.test/2.jpg", "other two", false, Ok(())),
            (
                "http://a.test/2.jpg",
                "two",
                false,
                Err(SkipReason::DuplicatePair),
            ),
        ];
        for (url, alt, by_url, expected) in cases {
            assert_eq!(
                seen.insert(url, pair_hash(url, alt), *by_url),
                *expected,
                "{url} {alt}"
            );
        }
    }
}
