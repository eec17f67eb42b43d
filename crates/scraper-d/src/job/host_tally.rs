//! How a half's failures spread over hosts: the distinct hosts of the failures that may be the
//! node's, and the refused answer most hosts gave alike (a captive portal or a sinkhole serves
//! one page for every name, a filtering proxy one error page).

use std::collections::{HashMap, HashSet};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, SERVER};
use sha2::{Digest, Sha256};
use url::Url;

use crate::stats::Outcome;

/// Where the counts of hosts with failures stop (they only have to tell "a few").
pub const MAX_COUNTED_HOSTS: usize = 64;

/// Distinct refused bodies followed per half: a portal's page is among the first, and a
/// half of hostile bodies cannot grow the table past this.
const MAX_ANSWERS: usize = 256;

/// The bytes of a refused body that its fingerprint covers, after its length.
const FINGERPRINT_PREFIX: usize = 64 * 1024;

/// Why a candidate was not stored, and what the server sent when a body was read and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub outcome: Outcome,
    /// The refused body's fingerprint (`too_small`, `bad_format`, `decode_error`), or the
    /// refusing answer's (an HTTP error status: its status and headers).
    pub answer: Option<Answer>,
}

impl Skipped {
    /// `outcome` for a body that was read and refused; it keeps the body's fingerprint when the
    /// outcome judges the body itself (`too_small`, `bad_format`, `decode_error`).
    pub fn refused(outcome: Outcome, body: &[u8]) -> Skipped {
        let answer = matches!(
            outcome,
            Outcome::TooSmall | Outcome::BadFormat | Outcome::DecodeError
        )
        .then(|| Answer::of(body));
        Skipped { outcome, answer }
    }

    /// `outcome` for an HTTP error status, whose body is never read: fingerprinted by what
    /// every answer of one proxy or filter shares, the status and the length, type and server
    /// of its page (see `daemon::broken_node`, third rule).
    pub fn answered(outcome: Outcome, response: &reqwest::Response) -> Skipped {
        let mut parts = format!("status {}\n", response.status().as_u16()).into_bytes();
        for name in [CONTENT_LENGTH, CONTENT_TYPE, SERVER] {
            if let Some(value) = response.headers().get(name) {
                parts.extend_from_slice(value.as_bytes());
            }
            parts.push(b'\n');
        }
        Skipped {
            outcome,
            answer: Some(Answer::of(&parts)),
        }
    }
}

impl From<Outcome> for Skipped {
    fn from(outcome: Outcome) -> Skipped {
        Skipped {
            outcome,
            answer: None,
        }
    }
}

/// A body's length and the SHA-256 of its first 64 KiB, cut to 64 bits: equal for the same
/// page, whichever host sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Answer(u64);

impl Answer {
    pub fn of(body: &[u8]) -> Answer {
        let mut hash = Sha256::new();
        hash.update((body.len() as u64).to_le_bytes());
        hash.update(&body[..body.len().min(FINGERPRINT_PREFIX)]);
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Answer(u64::from_le_bytes(first))
    }
}

/// Distinct hosts of a half's failures, each count stopping at [`MAX_COUNTED_HOSTS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailedHosts {
    /// Hosts with a node-local failure ([`Outcome::is_node_local`]).
    pub node_local: usize,
    /// Hosts with a node-local failure or an answer a lying resolver gives for every name
    /// ([`Outcome::may_be_resolver_lie`]).
    pub node_local_or_lie: usize,
    /// The refused body that came from the most distinct hosts.
    pub same_answer: SameAnswer,
}

/// How often one refused body came, and from how many distinct hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SameAnswer {
    pub attempts: u64,
    pub hosts: usize,
}

/// Collects [`FailedHosts`] while a half's results come in.
#[derive(Debug, Default)]
pub(crate) struct HostTally {
    node_local: HashSet<String>,
    node_local_or_lie: HashSet<String>,
    answers: HashMap<Answer, (u64, HashSet<String>)>,
}

impl HostTally {
    /// Counts one candidate of `url` that was skipped.
    pub(crate) fn record(&mut self, url: &str, skipped: &Skipped) {
        let outcome = skipped.outcome;
        let lie = outcome.is_node_local() || outcome.may_be_resolver_lie();
        if !lie && skipped.answer.is_none() {
            return;
        }
        let Some(host) = Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
        else {
            return;
        };
        if lie && self.node_local_or_lie.len() < MAX_COUNTED_HOSTS {
            if outcome.is_node_local() && self.node_local.len() < MAX_COUNTED_HOSTS {
                self.node_local.insert(host.clone());
            }
            self.node_local_or_lie.insert(host.clone());
        }
        if let Some(answer) = skipped.answer {
            if !self.answers.contains_key(&answer) && self.answers.len() >= MAX_ANSWERS {
                return;
            }
            let (attempts, hosts) = self.answers.entry(answer).or_default();
            *attempts += 1;
            if hosts.len() < MAX_COUNTED_HOSTS {
                hosts.insert(host);
            }
        }
    }

    pub(crate) fn finish(&self) -> FailedHosts {
        let same_answer = self
            .answers
            .values()
            .map(|(attempts, hosts)| SameAnswer {
                attempts: *attempts,
                hosts: hosts.len(),
            })
            .max_by_key(|answer| (answer.hosts, answer.attempts))
            .unwrap_or_default();
        FailedHosts {
            node_local: self.node_local.len(),
            node_local_or_lie: self.node_local_or_lie.len(),
            same_answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(outcome: Outcome, body: Option<&[u8]>) -> Skipped {
        Skipped {
            outcome,
            answer: body.map(Answer::of),
        }
    }

    #[test]
    fn the_same_page_from_many_hosts_is_counted_once_per_host() {
        let page = b"<html>blocked by your network administrator</html>";
        let mut tally = HostTally::default();
        for host in 0..30 {
            for image in 0..2 {
                let url = format!("http://img-{host}.example/{image}.jpg");
                tally.record(&url, &skipped(Outcome::TooSmall, Some(page)));
            }
        }
        tally.record(
            "http://other.example/a.jpg",
            &skipped(Outcome::BadFormat, Some(b"<html>another page</html>")),
        );
        let hosts = tally.finish();
        assert_eq!(
            hosts.same_answer,
            SameAnswer {
                attempts: 60,
                hosts: 30
            }
        );
        assert_eq!((hosts.node_local, hosts.node_local_or_lie), (0, 0));
    }

    #[test]
    fn bodies_differ_by_length_and_content() {
        let long = vec![b'x'; FINGERPRINT_PREFIX + 1];
        let longer = vec![b'x'; FINGERPRINT_PREFIX + 2];
        assert_ne!(Answer::of(&long), Answer::of(&longer));
        assert_ne!(Answer::of(b"a"), Answer::of(b"b"));
        assert_eq!(Answer::of(b"same"), Answer::of(b"same"));
    }

    #[test]
    fn node_local_failures_and_lies_count_their_hosts_up_to_the_cap() {
        let mut tally = HostTally::default();
        for host in 0..100 {
            let url = format!("http://h{host}.example/x.jpg");
            let outcome = if host % 2 == 0 {
                Outcome::Timeout
            } else {
                Outcome::DnsFailure
            };
            tally.record(&url, &skipped(outcome, None));
            tally.record(&url, &skipped(Outcome::Http4xx, None));
        }
        let hosts = tally.finish();
        assert_eq!(hosts.node_local_or_lie, MAX_COUNTED_HOSTS);
        assert_eq!(hosts.node_local, MAX_COUNTED_HOSTS / 2);
        assert_eq!(hosts.same_answer, SameAnswer::default());
    }

    #[test]
    fn hostile_bodies_cannot_grow_the_table_past_its_bound() {
        let mut tally = HostTally::default();
        for n in 0..10_000u32 {
            let body = n.to_le_bytes();
            tally.record(
                &format!("http://h{n}.example/"),
                &skipped(Outcome::BadFormat, Some(&body)),
            );
        }
        assert_eq!(tally.answers.len(), MAX_ANSWERS);
        assert_eq!(tally.finish().same_answer.hosts, 1);
    }
}
