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
//!
//! A resolver that answers, but lies, is the second rule: one that says NXDOMAIN for every
//! name (a filtering resolver blocking everything, a split-horizon server that does not
//! recurse) or sinkholes every name to `0.0.0.0` or a private address gives `dns_failure` and
//! `private_address` for every link. Those are also what dead domains give, so this rule asks
//! for many more hosts: nothing stored, at least nine in ten attempts failed as either kind
//! or as the first rule's, and those failures on at least [`MIN_LYING_RESOLVER_HOSTS`] distinct
//! hosts. Real halves hold links to hundreds of hosts, most of them alive.
//!
//! A network that answers every name with one page is the third rule: a captive portal (a
//! hotel's or a café's Wi-Fi, where volunteers run nodes too), a filtering proxy, or a resolver
//! that sinkholes every name to a public block page. Its page is refused (`too_small`,
//! `bad_format`) like any dead link's, but the same body never comes from many hosts on the
//! real web: nothing stored, at least nine in ten attempts got that one body, and it came from
//! at least [`MIN_SAME_ANSWER_HOSTS`] distinct hosts. A proxy that refuses every request with
//! an error status counts the same way: its answers share the status and the page's length,
//! type and server (`Skipped::answered`), while real servers' error pages differ in them.

use crate::job::FailedHosts;
use crate::stats::{Outcome, OutcomeCounts};

/// Attempts a half needs before its outcomes say anything about the node: a handful of links
/// to one dead host must not stop a healthy node.
pub(crate) const MIN_ATTEMPTS: u64 = 20;

/// Distinct hosts the node-local failures must span before they are the node's.
pub(crate) const MIN_NODE_LOCAL_HOSTS: usize = 5;

/// Distinct hosts the failures of the second rule (a lying resolver) must span.
pub(crate) const MIN_LYING_RESOLVER_HOSTS: usize = 20;

/// Distinct hosts that must have answered with the same refused body (the third rule).
pub(crate) const MIN_SAME_ANSWER_HOSTS: usize = 20;

/// The share of node-local failures, in tenths, from which the node is taken for broken.
const NODE_LOCAL_TENTHS: u64 = 9;

/// Why a half's downloads point at the node itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job {job}: no image stored in {attempts} attempts, {resolver_error} resolver errors, \
     {connect_failure} connect failures, {timeout} timeouts, {dns_failure} names without an \
     address, {private_address} private addresses, {same_answer} times the same refused page \
     from {same_answer_hosts} hosts"
)]
pub(crate) struct BrokenNode {
    pub(crate) job: u64,
    /// Outcomes other than `circuit_open`.
    pub(crate) attempts: u64,
    pub(crate) resolver_error: u64,
    pub(crate) connect_failure: u64,
    pub(crate) timeout: u64,
    /// NXDOMAIN answers (`dns_failure`).
    pub(crate) dns_failure: u64,
    pub(crate) private_address: u64,
    /// Attempts answered with the refused body that came from the most hosts.
    pub(crate) same_answer: u64,
    pub(crate) same_answer_hosts: usize,
}

impl BrokenNode {
    /// The verdict on job `job`'s outcomes, whose failures fell on `hosts`: `Some` when they
    /// show a broken node.
    pub(crate) fn diagnose(
        job: u64,
        outcomes: &OutcomeCounts,
        hosts: FailedHosts,
    ) -> Option<BrokenNode> {
        let attempts = outcomes.total() - outcomes.get(Outcome::CircuitOpen);
        let sum = |kind: fn(Outcome) -> bool| -> u64 {
            Outcome::ALL
                .iter()
                .filter(|outcome| kind(**outcome))
                .map(|outcome| outcomes.get(*outcome))
                .sum()
        };
        let node_local = sum(Outcome::is_node_local);
        let lies = sum(Outcome::may_be_resolver_lie);
        let mostly = |failures: u64| failures * 10 >= attempts * NODE_LOCAL_TENTHS;
        let no_network = mostly(node_local) && hosts.node_local >= MIN_NODE_LOCAL_HOSTS;
        let lying_resolver =
            mostly(node_local + lies) && hosts.node_local_or_lie >= MIN_LYING_RESOLVER_HOSTS;
        let one_page_for_all =
            mostly(hosts.same_answer.attempts) && hosts.same_answer.hosts >= MIN_SAME_ANSWER_HOSTS;
        let broken = attempts >= MIN_ATTEMPTS
            && outcomes.get(Outcome::Ok) == 0
            && (no_network || lying_resolver || one_page_for_all);
        broken.then(|| BrokenNode {
            job,
            attempts,
            resolver_error: outcomes.get(Outcome::ResolverError),
            connect_failure: outcomes.get(Outcome::ConnectFailure),
            timeout: outcomes.get(Outcome::Timeout),
            dns_failure: outcomes.get(Outcome::DnsFailure),
            private_address: outcomes.get(Outcome::PrivateAddress),
            same_answer: hosts.same_answer.attempts,
            same_answer_hosts: hosts.same_answer.hosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::SameAnswer;

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
            // NXDOMAIN and private addresses for links on 40 hosts: a lying resolver.
            (&[(DnsFailure, 117)], true),
            (&[(PrivateAddress, 117)], true),
            (&[(ResolverError, 50), (DnsFailure, 50)], true),
            // ... but not when web servers answered the rest.
            (&[(DnsFailure, 50), (Http4xx, 50)], false),
            (&[(DnsFailure, 117), (Outcome::Ok, 1)], false),
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
            let hosts = FailedHosts {
                node_local: 40,
                node_local_or_lie: 40,
                same_answer: SameAnswer::default(),
            };
            let verdict = BrokenNode::diagnose(7, &OutcomeCounts::of(outcomes), hosts);
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
        for (outcomes, node_local, broken) in cases {
            let hosts = FailedHosts {
                node_local: *node_local,
                node_local_or_lie: *node_local,
                same_answer: SameAnswer::default(),
            };
            let verdict = BrokenNode::diagnose(7, &OutcomeCounts::of(outcomes), hosts);
            assert_eq!(
                verdict.is_some(),
                *broken,
                "{outcomes:?} on {hosts:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn names_without_addresses_must_span_many_hosts_to_blame_the_resolver() {
        use Outcome::*;
        /// Outcomes, distinct hosts with node-local failures and with those or lies, broken.
        type Case = (&'static [(Outcome, u64)], usize, usize, bool);
        let cases: &[Case] = &[
            // Dead domains of an old crawl: NXDOMAIN on a few hosts is theirs.
            (&[(DnsFailure, 117)], 0, 19, false),
            (&[(DnsFailure, 117)], 0, 20, true),
            (&[(PrivateAddress, 30), (CircuitOpen, 90)], 0, 19, false),
            (&[(PrivateAddress, 30), (CircuitOpen, 90)], 0, 20, true),
            // Mixed with the first rule's failures: the lie's host bar, not the first rule's.
            (&[(ResolverError, 60), (DnsFailure, 60)], 5, 19, false),
            (&[(ResolverError, 60), (DnsFailure, 60)], 5, 20, true),
            // The first rule alone needs no lie and no more than its five hosts.
            (&[(ResolverError, 120)], 5, 5, true),
        ];
        for (outcomes, node_local, node_local_or_lie, broken) in cases {
            let hosts = FailedHosts {
                node_local: *node_local,
                node_local_or_lie: *node_local_or_lie,
                same_answer: SameAnswer::default(),
            };
            let verdict = BrokenNode::diagnose(7, &OutcomeCounts::of(outcomes), hosts);
            assert_eq!(
                verdict.is_some(),
                *broken,
                "{outcomes:?} on {hosts:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn the_verdict_names_the_counts() {
        let verdict = BrokenNode::diagnose(
            7,
            &OutcomeCounts::of(&[
                (Outcome::ResolverError, 20),
                (Outcome::Timeout, 2),
                (Outcome::CircuitOpen, 3),
            ]),
            FailedHosts {
                node_local: 5,
                node_local_or_lie: 5,
                same_answer: SameAnswer::default(),
            },
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
                dns_failure: 0,
                private_address: 0,
                same_answer: 0,
                same_answer_hosts: 0,
            }
        );
    }

    #[test]
    fn one_refused_page_from_many_hosts_is_a_portal_or_a_sinkhole() {
        use Outcome::*;
        /// Outcomes, the most common refused body's attempts and hosts, broken.
        type Case = (&'static [(Outcome, u64)], u64, usize, bool);
        let cases: &[Case] = &[
            // A captive portal's page for every link, on 30 hosts.
            (&[(TooSmall, 120)], 120, 30, true),
            (&[(BadFormat, 100), (TooSmall, 20)], 120, 30, true),
            // A site's own placeholder: the same body, but from a few hosts.
            (&[(TooSmall, 120)], 120, 19, false),
            (&[(TooSmall, 120)], 120, 20, true),
            // Many hosts, but most refused bodies differ: dead links of a real crawl.
            (&[(BadFormat, 120)], 100, 30, false),
            (&[(BadFormat, 120)], 108, 30, true),
            // One stored picture: the network reaches the web.
            (&[(TooSmall, 120), (Outcome::Ok, 1)], 120, 30, false),
            // Too few attempts to tell.
            (&[(TooSmall, 19)], 19, 19, false),
        ];
        for (outcomes, attempts, hosts, broken) in cases {
            let failed = FailedHosts {
                node_local: 0,
                node_local_or_lie: 0,
                same_answer: SameAnswer {
                    attempts: *attempts,
                    hosts: *hosts,
                },
            };
            let verdict = BrokenNode::diagnose(7, &OutcomeCounts::of(outcomes), failed);
            assert_eq!(
                verdict.is_some(),
                *broken,
                "{outcomes:?}, same answer {attempts} times from {hosts} hosts: {verdict:?}"
            );
            if let Some(verdict) = verdict {
                assert_eq!(
                    (verdict.same_answer, verdict.same_answer_hosts),
                    (*attempts, *hosts)
                );
            }
        }
    }
}
