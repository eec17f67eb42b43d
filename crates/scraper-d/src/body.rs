//! Image bodies in memory: a buffer that never grows past its body's limit, and a few permits
//! that every body past 1 MiB holds until it is dropped after decoding.
//!
//! Without them, `--concurrency` (64) downloads that each stall just short of the 10 MiB body
//! cap, or wait for one of the few decode threads, held 64 bodies of up to 16 MiB of capacity
//! at once on a 2 GB node whose unit allows 1600 MB: `scripts/bench-stall.sh` (256 bodies
//! stalled 1,000 bytes short of 9.5 MB) peaked at 905–1001 MB RSS; with the 16 permits,
//! 188–210 MB.
//!
//! Deadlock: a task waits for a large-body permit only inside `Fetcher::request`, within its
//! time budget, so that wait ends at the latest when its budget does. A holder of a permit waits
//! only for the network (inside the same budget) and then, in `Pipeline::process`, for a decode
//! permit (`Pipeline::cpu`), outside any budget. Decode permits are held only by
//! `spawn_blocking` closures that decode and resize synchronously and wait for nothing, large-body
//! permits included, so every decode permit comes back and no cycle of waits can form.
//! Redirect responses never read a body and robots.txt reads at most 512 KiB, so neither takes a
//! permit; a permit is never taken twice by one image.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most of a body allocated before its bytes arrive while it holds no large-body permit (a
/// `Content-Length` is the server's claim, and a hostile one can claim anything up to the body
/// cap), and the size past which a body needs a permit. Honest pictures are nearly all below it
/// and never touch the permits.
pub const MAX_PREALLOCATION: u64 = 1024 * 1024;

/// The capacity given to a body without a `Content-Length` before its first bytes.
const UNSIZED_PREALLOCATION: u64 = 64 * 1024;

/// The most a body holding a large-body permit is given at once (above the default 10 MiB
/// cap); past it, a body under a larger `--max-body-bytes` goes on doubling, so a
/// `Content-Length` of 100 GB under a cap that allows it allocates nothing ahead of its bytes.
const MAX_UPFRONT: usize = 16 * 1024 * 1024;

/// The permits of bodies past [`MAX_PREALLOCATION`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct LargeBodies {
    permits: Arc<Semaphore>,
    gauge: Arc<LargeBodyGauge>,
}

/// How many large bodies are held now, and the most held at once since the start.
#[derive(Debug, Default)]
pub struct LargeBodyGauge {
    held: AtomicU64,
    peak: AtomicU64,
}

/// One large body's permit; dropping it (with the body) lets the next large body in.
#[derive(Debug)]
pub struct LargeBodyPermit {
    _permit: OwnedSemaphorePermit,
    gauge: Arc<LargeBodyGauge>,
}

/// A body being read: its bytes, and its permit once it is large.
#[derive(Debug)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    /// The capacity the buffer never grows past: the declared length, else the body cap.
    limit: usize,
    large: Option<LargeBodyPermit>,
}

impl LargeBodies {
    /// `permits` large bodies at once (at least one).
    pub fn new(permits: usize) -> Self {
        LargeBodies {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            gauge: Arc::new(LargeBodyGauge::default()),
        }
    }

    pub fn gauge(&self) -> Arc<LargeBodyGauge> {
        self.gauge.clone()
    }

    /// Waits for a permit (fair: first come, first served).
    pub async fn acquire(&self) -> LargeBodyPermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the large-body semaphore is never closed");
        let held = self.gauge.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.gauge.peak.fetch_max(held, Ordering::Relaxed);
        LargeBodyPermit {
            _permit: permit,
            gauge: self.gauge.clone(),
        }
    }
}

impl LargeBodyGauge {
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for LargeBodyPermit {
    fn drop(&mut self) {
        self.gauge.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BodyBuffer {
    /// An empty buffer for a body of `declared` bytes (if the server said) under `max_body_bytes`
    /// (the caller has refused a larger `declared`); at most [`MAX_PREALLOCATION`] is allocated.
    pub fn new(declared: Option<u64>, max_body_bytes: u64) -> Self {
        let limit = declared.unwrap_or(max_body_bytes).min(max_body_bytes);
        let capacity = declared
            .unwrap_or(UNSIZED_PREALLOCATION)
            .min(limit)
            .min(MAX_PREALLOCATION);
        BodyBuffer {
            bytes: Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            large: None,
        }
    }

    /// Whether the body needs a permit before `additional` more bytes are added.
    pub fn needs_permit(&self, additional: u64) -> bool {
        self.large.is_none() && self.bytes.len() as u64 + additional > MAX_PREALLOCATION
    }

    /// Keeps `permit` with the body, which then gets its whole limit (the declared length, else
    /// the body cap; at most [`MAX_UPFRONT`]) at once: the permit already counts that much, and
    /// one allocation replaces a chain of doublings (1, 2, 4, 8 MiB, then the rest) whose freed
    /// steps glibc keeps in its arenas once its mmap threshold has risen. Measured with
    /// `scripts/bench-stall.sh` (256 stalled 9.5 MB bodies, 16 permits): peak RSS 210 MB
    /// instead of 288 MB with a declared length, 273 MB instead of 309 MB without. The unwritten
    /// pages of a fresh mapping cost no memory.
    pub fn hold(&mut self, permit: LargeBodyPermit) {
        self.large = Some(permit);
        let upfront = self.limit.min(MAX_UPFRONT);
        self.bytes
            .reserve_exact(upfront.saturating_sub(self.bytes.len()));
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends `chunk`, growing by doubling as `Vec` does but never past the limit (unless the
    /// chunk itself needs more), so a 9.5 MB body ends at 9.5 MB of capacity, not 16 MiB.
    pub fn push(&mut self, chunk: &[u8]) {
        let needed = self.bytes.len() + chunk.len();
        if needed > self.bytes.capacity() {
            let grown = self
                .bytes
                .capacity()
                .saturating_mul(2)
                .min(self.limit)
                .max(needed);
            self.bytes.reserve_exact(grown - self.bytes.len());
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The bytes and the permit, which the caller keeps until the bytes are dropped.
    pub fn finish(self) -> (Vec<u8>, Option<LargeBodyPermit>) {
        (self.bytes, self.large)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;
    const CAP: u64 = 10 * MIB as u64;

    /// Pushes `total` bytes in `chunk`-byte pieces, returning the largest capacity seen.
    fn fill(buffer: &mut BodyBuffer, total: usize, chunk: usize) -> usize {
        let piece = vec![7u8; chunk];
        let mut max_capacity = buffer.bytes.capacity();
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk);
            buffer.push(&piece[..n]);
            max_capacity = max_capacity.max(buffer.bytes.capacity());
            left -= n;
        }
        max_capacity
    }

    #[test]
    fn a_body_never_gets_capacity_past_its_declared_length_or_the_cap() {
        // A 9.5 MB body with its length declared: 1, 2, 4, 8 MiB, then exactly 9.5 MB; a plain
        // `Vec` doubled to 16 MiB.
        let mut declared = BodyBuffer::new(Some(9_500_000), CAP);
        assert_eq!(declared.bytes.capacity(), MIB);
        assert_eq!(fill(&mut declared, 9_500_000, 16 * 1024), 9_500_000);
        assert_eq!(declared.len(), 9_500_000);
        // Without a length: 64 KiB first, then doubling up to the 10 MiB cap at most.
        let mut unsized_body = BodyBuffer::new(None, CAP);
        assert_eq!(unsized_body.bytes.capacity(), 64 * 1024);
        let max_capacity = fill(&mut unsized_body, 9_500_000, 16 * 1024);
        assert!(max_capacity <= CAP as usize, "{max_capacity}");
        assert!(max_capacity >= 9_500_000);
        let mut full = BodyBuffer::new(None, CAP);
        assert_eq!(fill(&mut full, CAP as usize, 100_000), CAP as usize);
        // A chunk larger than twice the capacity is taken whole.
        let mut small = BodyBuffer::new(Some(100), CAP);
        small.push(&[1u8; 5_000]);
        assert_eq!(small.finish().0.len(), 5_000);
    }

    #[tokio::test]
    async fn a_large_body_gets_its_whole_limit_once_it_holds_a_permit() {
        let large = LargeBodies::new(3);
        let mut declared = BodyBuffer::new(Some(9_500_000), CAP);
        declared.hold(large.acquire().await);
        assert_eq!(declared.bytes.capacity(), 9_500_000);
        assert_eq!(fill(&mut declared, 9_500_000, 16 * 1024), 9_500_000);
        let mut unsized_body = BodyBuffer::new(None, CAP);
        fill(&mut unsized_body, MIB, 16 * 1024);
        assert!(unsized_body.needs_permit(1));
        unsized_body.hold(large.acquire().await);
        assert_eq!(unsized_body.bytes.capacity(), CAP as usize);
        assert_eq!(fill(&mut unsized_body, 2 * MIB, 16 * 1024), CAP as usize);
        assert!(!unsized_body.needs_permit(1), "one permit per body");
        // A length the cap allows but no sane picture has is not allocated ahead.
        let mut absurd = BodyBuffer::new(Some(99_999_999_999), u64::MAX);
        absurd.hold(large.acquire().await);
        assert_eq!(absurd.bytes.capacity(), MAX_UPFRONT);
        absurd.push(&vec![0u8; MAX_UPFRONT + 1]);
        assert_eq!(absurd.bytes.capacity(), 2 * MAX_UPFRONT);
    }

    #[test]
    fn small_bodies_need_no_permit_and_large_ones_one() {
        let mut body = BodyBuffer::new(None, CAP);
        fill(&mut body, MIB - 10, 4096);
        assert!(!body.needs_permit(10), "exactly 1 MiB is still small");
        assert!(body.needs_permit(11));
        let empty = BodyBuffer::new(Some(9_500_000), CAP);
        assert!(empty.is_empty());
        // The caller asks before any byte when the declared length is large.
        assert!(empty.needs_permit(9_500_000));
    }

    #[tokio::test]
    async fn permits_are_counted_until_their_body_is_dropped() {
        let large = LargeBodies::new(2);
        let gauge = large.gauge();
        let mut first = BodyBuffer::new(None, CAP);
        first.hold(large.acquire().await);
        let second = large.acquire().await;
        assert_eq!((gauge.held(), gauge.peak()), (2, 2));
        // A third waits until a body is dropped.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), large.acquire());
        assert!(third.await.is_err(), "a third permit while two are held");
        let (bytes, permit) = first.finish();
        assert!(permit.is_some());
        drop((bytes, permit));
        assert_eq!(gauge.held(), 1);
        let third = large.acquire().await;
        assert_eq!((gauge.held(), gauge.peak()), (2, 2));
        drop((second, third));
        assert_eq!((gauge.held(), gauge.peak()), (0, 2));
    }
}
