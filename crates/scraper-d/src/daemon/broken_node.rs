//! A job half whose downloads say that the node, not the web, is broken: a dead resolver
//! (`--nameserver 127.0.0.1:9`), no route out, a firewall dropping everything.
//!
//! Completed, such a job went to the GPU stage with an empty bundle and its pairs into the
//! tracker's `parsed` set, so no scraper would ever try them again: a broken node threw WATs
//! away as fast as it could claim them. Instead its claim fails: the unfinished jobs are
//! released (another node gets them, pairs untouched), an ERROR tells the operator what to
//! check, and the daemon waits `--idle-wait` before the next claim.
//!
//! The rule, per half, after its downloads: at least [`MIN_ATTEMPTS`] attempts, none stored,
//! and at least nine in ten of them failed in a way that needs nothing from the host
//! (`resolver_error`, `connect_failure`, `timeout`: see [`Outcome::is_node_local`]).
//! Those failures must also span at least [`MIN_NODE_LOCAL_HOSTS`] distinct hosts: a half whose
//! links all sit on one or a few hosts with broken DNS or a dead server fails the same way on
//! every node, and released it would go back to its place in the claim order and be fetched
//! again by every node, forever; such a half is completed, its failures the hosts'.
//! `circuit_open` counts on neither side: no request was made, its host had already failed.
//! A job of a normal WAT stores something, and its dead links end as `dns_failure` (NXDOMAIN,
//! an answer), 4xx, 5xx and the like, which a node without a resolver or a network never
//! gets.

use crate::stats::{Outcome, OutcomeCounts};

/// Attempts a half needs before its outcomes say anything about the node: a handful of links
/// to one dead host must not stop a healthy node.
pub(crate) const MIN_ATTEMPTS: u64 = 20;

/// Distinct hosts the node-local failures must span before they are the node's.
pub(crate) const MIN_NODE_LOCAL_HOSTS: usize = 5;

/// The share of node-local failures, in tenths, from which the node is taken for broken.
const NODE_LOCAL_TENTHS: u64 = 9;

/// Why a half's downloads point at the node itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job {job}: no image stored in {attempts} attempts, {resolver_error} resolver errors, \
     {connect_failure} connect failures, {timeout} timeouts"
)]
pub(crate) struct BrokenNode {
    pub(crate) job: u64,
    /// Outcomes other than `circuit_open`.
    pub(crate) attempts: u64,
    pub(crate) resolver_error: u64,
    pub(crate) connect_failure: u64,
    pub(crate) timeout: u64,
}

impl BrokenNode {
    /// The verdict on job `job`'s outcomes, whose node-local failures fell on
    /// `node_local_hosts` distinct hosts: `Some` when they show a broken node.
    pub(crate) fn diagnose(
        job: u64,
        outcomes: &OutcomeCounts,
        node_local_hosts: usize,
    ) -> Option<BrokenNode> {
        let attempts = outcomes.total() - outcomes.get(Outcome::CircuitOpen);
        let node_local: u64 = Outcome::ALL
            .iter()
            .filter(|outcome| outcome.is_node_local())
            .map(|outcome| outcomes.get(*outcome))
            .sum();
        let broken = attempts >= MIN_ATTEMPTS
            && outcomes.get(Outcome::Ok) == 0
            && node_local * 10 >= attempts * NODE_LOCAL_TENTHS
            && node_local_hosts >= MIN_NODE_LOCAL_HOSTS;
        broken.then(|| BrokenNode {
            job,
            attempts,
            resolver_error: outcomes.get(Outcome::ResolverError),
            connect_failure: outcomes.get(Outcome::ConnectFailure),
            timeout: outcomes.get(Outcome::Timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(outcomes: &[(Outcome, u64)]) -> OutcomeCounts {
        let mut counts = OutcomeCounts::default();
        for (outcome, n) in outcomes {
            for _ in 0..*n {
                counts.add(*outcome);
            }
        }
        counts
    }

    #[test]
    fn only_many_node_local_failures_and_nothing_stored_make_a_broken_node() {
        use Outcome::*;
        let cases: &[(&[(Outcome, u64)], bool)] = &[
            // The audit's node: a dead resolver.
            (&[(ResolverError, 117)], true),
            (&[(ConnectFailure, 30)], true),
            (
                &[(Timeout, 10), (ConnectFailure, 5), (ResolverError, 5)],
                true,
            ),
            // Too few attempts to tell.
            (&[(ResolverError, 19)], false),
            // One stored picture: the node works.
            (&[(ResolverError, 117), (Outcome::Ok, 1)], false),
            // NXDOMAIN is an answer: a WAT of dead links on a healthy node.
            (&[(DnsFailure, 117)], false),
            (&[(ResolverError, 50), (DnsFailure, 50)], false),
            // Web servers answered.
            (&[(ConnectFailure, 20), (Http4xx, 20)], false),
            // Nine in ten is enough: a few links the client refuses on its own.
            (&[(ResolverError, 90), (BadUrl, 10)], true),
            (&[(ResolverError, 89), (BadUrl, 11)], false),
            // Open breakers repeat their hosts' failures and count on neither side.
            (&[(ConnectFailure, 20), (CircuitOpen, 500)], true),
            (&[(ConnectFailure, 19), (CircuitOpen, 500)], false),
            (&[], false),
        ];
        for (outcomes, broken) in cases {
            let verdict = BrokenNode::diagnose(7, &counts(outcomes), 40);
            assert_eq!(verdict.is_some(), *broken, "{outcomes:?}: {verdict:?}");
        }
    }

    #[test]
    fn failures_on_a_few_hosts_are_the_hosts_not_the_nodes() {
        use Outcome::*;
        /// Outcomes, distinct hosts with node-local failures, broken.
        type Case = (&'static [(Outcome, u64)], usize, bool);
        let cases: &[Case] = &[
            // A half whose every link is on one host with broken DNS, or a dead server.
            (&[(ResolverError, 117)], 1, false),
            (&[(ConnectFailure, 30), (CircuitOpen, 900)], 1, false),
            (&[(Timeout, 10), (ResolverError, 20)], 4, false),
            // Five hosts or more failing alike: the node.
            (&[(Timeout, 10), (ResolverError, 20)], 5, true),
            (&[(ResolverError, 117)], 64, true),
        ];
        for (outcomes, hosts, broken) in cases {
            let verdict = BrokenNode::diagnose(7, &counts(outcomes), *hosts);
            assert_eq!(
                verdict.is_some(),
                *broken,
                "{outcomes:?} on {hosts}: {verdict:?}"
            );
        }
    }

    #[test]
    fn the_verdict_names_the_counts() {
        let verdict = BrokenNode::diagnose(
            7,
            &counts(&[
                (Outcome::ResolverError, 20),
                (Outcome::Timeout, 2),
                (Outcome::CircuitOpen, 3),
            ]),
            5,
        )
        .expect("broken");
        assert_eq!(
            verdict,
            BrokenNode {
                job: 7,
                attempts: 22,
                resolver_error: 20,
                connect_failure: 0,
                timeout: 2,
            }
        );
    }
}
