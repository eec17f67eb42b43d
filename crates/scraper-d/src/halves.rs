//! Halves of a WAT and their sample-ID ranges.
//!
//! **The sample-ID rule.** A tracker job is half of a WAT: record `i` of the file (0-based, the
//! `warcinfo` record is 0, a damaged member counts as one record) belongs to half `i mod 2`. Each
//! half owns the ID range `[start_id, end_id)` of its job. Candidates take IDs in file order from
//! their half's range, one each, starting at `start_id`; an ID is never reused, also not when a
//! later step (cross-job dedup, download) drops the candidate. When a range is used up, further
//! candidates of that half are skipped and counted as `ids_exhausted`.

use cah_protocol::ext::Job;

use crate::error::ScraperError;

/// Half-open range of sample IDs `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u64,
    pub end: u64,
}

/// One half to extract, with its IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfJob {
    /// 0 or 1.
    pub half: u8,
    pub ids: IdRange,
}

impl HalfJob {
    /// A checked half: `half` is 0 or 1 and the range is not reversed.
    pub fn new(half: u8, ids: IdRange) -> Result<Self, ScraperError> {
        if half > 1 {
            return Err(ScraperError::Config(format!(
                "half must be 0 or 1, not {half}"
            )));
        }
        if ids.end < ids.start {
            return Err(ScraperError::Config(format!(
                "id range {}..{} is reversed",
                ids.start, ids.end
            )));
        }
        Ok(Self { half, ids })
    }

    /// The half and range of a claimed tracker job.
    pub fn from_job(job: &Job) -> Result<Self, ScraperError> {
        Self::new(
            job.shard,
            IdRange {
                start: job.start_id,
                end: job.end_id,
            },
        )
    }
}

/// The ID allocator of one half.
#[derive(Debug)]
pub(crate) struct IdAllocator {
    next: u64,
    end: u64,
}

impl IdAllocator {
    pub(crate) fn new(ids: IdRange) -> Self {
        Self {
            next: ids.start,
            end: ids.end,
        }
    }

    /// Whether the range is used up.
    pub(crate) fn exhausted(&self) -> bool {
        self.next >= self.end
    }

    /// The next unused ID, or `None` once the range is used up.
    pub(crate) fn next_id(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            let id = self.next;
            self.next += 1;
            id
        })
    }
}

impl std::str::FromStr for IdRange {
    type Err = String;

    /// `START..END`, e.g. `1000..2000`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text
            .split_once("..")
            .ok_or_else(|| format!("expected START..END, got {text:?}"))?;
        let parse = |value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|error| format!("bad id {value:?}: {error}"))
        };
        Ok(Self {
            start: parse(start)?,
            end: parse(end)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_never_reuses() {
        let mut ids = IdAllocator::new(IdRange { start: 10, end: 13 });
        let got: Vec<Option<u64>> = (0..5).map(|_| ids.next_id()).collect();
        assert_eq!(got, vec![Some(10), Some(11), Some(12), None, None]);
        assert_eq!("5..9".parse::<IdRange>(), Ok(IdRange { start: 5, end: 9 }));
        assert!("5-9".parse::<IdRange>().is_err());
        assert!(HalfJob::new(2, IdRange { start: 0, end: 1 }).is_err());
        assert!(HalfJob::new(0, IdRange { start: 2, end: 1 }).is_err());
    }
}
