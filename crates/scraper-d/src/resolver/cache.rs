//! The resolver's own answer cache: a bounded number of names, a few addresses each, and
//! failures as well as answers, each kept for its TTL (clamped by the caller).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::ResolveError;

/// What one lookup of a name gave: its permitted addresses (at most the per-name cap), or why
/// there are none.
pub(super) type Answer = Result<Arc<[IpAddr]>, ResolveError>;

struct Entry {
    answer: Answer,
    expires: Instant,
    /// Position in [`Cache::order`].
    seq: u64,
}

/// Names to answers, oldest evicted first once `capacity` names are kept.
///
/// Memory: each entry holds its name (at most 253 bytes, shared by the map and the order), at
/// most the per-name cap of addresses (17 bytes each) or an error of two short strings, and
/// about 100 bytes of map overhead: with the defaults (100,000 names, 8 addresses, error
/// details cut to [`MAX_DETAIL_BYTES`]) at most about 100,000 × 1 KiB = 100 MB, and about 20 MB
/// for ordinary names of some 30 bytes with one or two addresses.
pub(super) struct Cache {
    capacity: usize,
    entries: HashMap<Arc<str>, Entry>,
    order: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
}

/// The longest error detail kept (a nameserver's words may be long).
pub(super) const MAX_DETAIL_BYTES: usize = 160;

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The answer kept for `name`, unless it expired by `now` (then it is dropped).
    pub(super) fn get(&mut self, name: &str, now: Instant) -> Option<Answer> {
        let entry = self.entries.get(name)?;
        if entry.expires > now {
            return Some(entry.answer.clone());
        }
        let seq = entry.seq;
        self.entries.remove(name);
        self.order.remove(&seq);
        None
    }

    /// Keeps `answer` for `name` until `expires`, evicting the oldest names past capacity.
    pub(super) fn insert(&mut self, name: &str, answer: Answer, expires: Instant) {
        if self.capacity == 0 {
            return;
        }
        if let Some(old) = self.entries.remove(name) {
            self.order.remove(&old.seq);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let name: Arc<str> = Arc::from(name);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, Arc::clone(&name));
        self.entries.insert(
            name,
            Entry {
                answer,
                expires,
                seq,
            },
        );
    }

    /// Names kept (expired ones included until looked up or evicted).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `detail` cut to at most [`MAX_DETAIL_BYTES`] on a character boundary.
pub(super) fn short_detail(detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answer(last: u8) -> Answer {
        Ok(Arc::from(vec![IpAddr::from([192, 0, 2, last])]))
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut cache = Cache::new(3);
        for (index, name) in ["a.test", "b.test", "c.test", "d.test", "e.test"]
            .iter()
            .enumerate()
        {
            cache.insert(name, answer(index as u8), later);
            assert!(cache.len() <= 3, "{} names kept", cache.len());
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get("a.test", now).is_none());
        assert!(cache.get("b.test", now).is_none());
        assert_eq!(cache.get("e.test", now), Some(answer(4)));
        // A name stored again moves to the back and is kept once.
        cache.insert("c.test", answer(9), later);
        cache.insert("f.test", answer(5), later);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("c.test", now), Some(answer(9)));
        assert!(cache.get("d.test", now).is_none());
        assert_eq!(cache.order.len(), cache.entries.len());
    }

    #[test]
    fn answers_expire() {
        let now = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert("a.test", answer(1), now + Duration::from_secs(30));
        assert!(cache.get("a.test", now + Duration::from_secs(29)).is_some());
        assert!(cache.get("a.test", now + Duration::from_secs(30)).is_none());
        assert_eq!(cache.len(), 0);
        assert!(cache.order.is_empty());
    }

    #[test]
    fn details_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let short = short_detail(long);
        assert!(short.len() <= MAX_DETAIL_BYTES);
        assert!(short.starts_with('é'));
    }
}
