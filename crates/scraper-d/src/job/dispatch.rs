//! Which candidate of a half starts next: in the shuffled order, except that a host with
//! [`HOST_BACKLOG`] times its slots already started gets no more until it finishes some.
//!
//! A started download first waits for one of its host's `--per-host` slots (and for the host's
//! backoff), and that wait holds one of the half's `--concurrency` places. Started in plain
//! order, the downloads of a slow host that holds a share of the links pile up in those places:
//! with 100 of 2,100 links on a host answering in 500 ms, the other 2,000 were done only after
//! about 8.6 s instead of 2.5 s, two requests on the wire for much of it. Held back here
//! instead, they start once the host has room, or once nothing else is left to start.

use std::collections::{HashMap, VecDeque};

use url::Url;

use crate::Candidate;
use crate::politeness::host_key;

/// How many downloads of one host may be started at once, as a multiple of its slots: those
/// on the wire and as many waiting to follow them.
pub(super) const HOST_BACKLOG: usize = 2;

/// The candidates of a half not yet started, and how many of each host are.
#[derive(Debug)]
pub(super) struct Dispatch {
    pending: VecDeque<Candidate>,
    /// Held back because their host had its backlog started, by host, in arrival order.
    held: HashMap<String, VecDeque<Candidate>>,
    n_held: usize,
    /// Hosts with held candidates that had one of their downloads finish, once per download.
    ready: VecDeque<String>,
    started: HashMap<String, usize>,
    per_host_cap: usize,
}

/// A candidate to start and the host it counts against, if its URL names one.
pub(super) type Start = (Candidate, Option<String>);

impl Dispatch {
    /// `candidates` in their order, for hosts with `per_host` slots each.
    pub(super) fn new(candidates: Vec<Candidate>, per_host: usize) -> Self {
        Dispatch {
            pending: candidates.into(),
            held: HashMap::new(),
            n_held: 0,
            ready: VecDeque::new(),
            started: HashMap::new(),
            per_host_cap: per_host.max(1).saturating_mul(HOST_BACKLOG),
        }
    }

    /// The next candidate to start: a held one whose host made room since, else the first
    /// pending one whose host has room, else (none pending) any held one whose host has room.
    /// `None` when every candidate left is held for a host without room (one of its downloads
    /// must finish first) or none is left.
    pub(super) fn next(&mut self) -> Option<Start> {
        while let Some(key) = self.ready.pop_front() {
            if !self.is_full(&key)
                && let Some(start) = self.take_held(&key)
            {
                return Some(start);
            }
        }
        while let Some(candidate) = self.pending.pop_front() {
            let host = Url::parse(&candidate.url).ok().as_ref().and_then(host_key);
            match &host {
                Some(key) if self.is_full(key) => {
                    self.held
                        .entry(key.clone())
                        .or_default()
                        .push_back(candidate);
                    self.n_held += 1;
                }
                _ => return Some(self.start(candidate, host)),
            }
        }
        let key = self
            .held
            .keys()
            .find(|key| !self.is_full(key.as_str()))?
            .clone();
        self.take_held(&key)
    }

    /// Starts the first held candidate of `key`, if it has one.
    fn take_held(&mut self, key: &str) -> Option<Start> {
        let queue = self.held.get_mut(key)?;
        let candidate = queue.pop_front()?;
        if queue.is_empty() {
            self.held.remove(key);
        }
        self.n_held -= 1;
        Some(self.start(candidate, Some(key.to_owned())))
    }

    /// A started candidate of `host` finished.
    pub(super) fn finished(&mut self, host: Option<&str>) {
        if let Some(host) = host
            && let Some(count) = self.started.get_mut(host)
        {
            *count -= 1;
            if *count == 0 {
                self.started.remove(host);
            }
            if self.held.contains_key(host) {
                self.ready.push_back(host.to_owned());
            }
        }
    }

    /// Candidates not yet started.
    pub(super) fn left(&self) -> usize {
        self.pending.len() + self.n_held
    }

    fn is_full(&self, host: &str) -> bool {
        self.started.get(host).copied().unwrap_or(0) >= self.per_host_cap
    }

    fn start(&mut self, candidate: Candidate, host: Option<String>) -> Start {
        if let Some(key) = &host {
            *self.started.entry(key.clone()).or_default() += 1;
        }
        (candidate, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(url: &str) -> Candidate {
        Candidate {
            sample_id: 0,
            half: 0,
            url: url.to_owned(),
            alt: String::new(),
            page_url: String::new(),
            license: None,
            language: None,
            pair_hash: 0,
        }
    }

    fn urls(starts: &[Start]) -> Vec<&str> {
        starts
            .iter()
            .map(|(candidate, _)| candidate.url.as_str())
            .collect()
    }

    #[test]
    fn a_host_gets_at_most_its_backlog_while_other_hosts_wait() {
        let list = [
            "http://slow.test/1",
            "http://slow.test/2",
            "http://slow.test/3",
            "http://a.test/1",
            "http://slow.test/4",
            "http://slow.test/5",
            "http://b.test:8080/1",
            "not a url",
        ];
        let mut dispatch = Dispatch::new(list.iter().map(|url| candidate(url)).collect(), 1);
        let mut first = Vec::new();
        while let Some(start) = dispatch.next() {
            first.push(start);
        }
        // Two of slow.test (one slot, one waiting), then the others; three are held.
        assert_eq!(
            urls(&first),
            [
                "http://slow.test/1",
                "http://slow.test/2",
                "http://a.test/1",
                "http://b.test:8080/1",
                "not a url"
            ]
        );
        assert_eq!(first[3].1.as_deref(), Some("b.test:8080"));
        assert_eq!(first[4].1, None);
        assert_eq!(dispatch.left(), 3);
        // One of slow.test finishes: the next one of it starts, in order, before any other
        // pending candidate.
        dispatch.pending.push_back(candidate("http://c.test/1"));
        dispatch.finished(Some("slow.test:80"));
        let (next, host) = dispatch.next().expect("one has room");
        assert_eq!(
            (next.url.as_str(), host.as_deref()),
            ("http://slow.test/3", Some("slow.test:80"))
        );
        let (next, _) = dispatch.next().expect("c.test");
        assert_eq!(next.url, "http://c.test/1");
        assert!(dispatch.next().is_none(), "slow.test is full again");
        dispatch.finished(Some("slow.test:80"));
        dispatch.finished(Some("slow.test:80"));
        assert_eq!(
            urls(&[dispatch.next().expect("4"), dispatch.next().expect("5")]),
            ["http://slow.test/4", "http://slow.test/5"]
        );
        assert_eq!(dispatch.left(), 0);
        assert!(dispatch.next().is_none());
    }
}
