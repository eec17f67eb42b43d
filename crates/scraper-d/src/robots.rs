//! robots.txt rules (the group for our agent token, else `*`; longest match wins, `Allow`
//! on a tie; `*` and `$` wildcards; RFC 9309), the `X-Robots-Tag` opt-outs, as img2dataset
//! reads them, and TDMRep's `tdm-reservation` header.

use crate::stats::Outcome;

/// Most rules kept for one host: later ones are ignored, as Google ignores a robots.txt past
/// 500 KiB. A real file has a few hundred; the cap bounds the memory and the matching time of a
/// hostile one (the body is read to 512 KiB, which is room for about 100,000 short rules).
pub const MAX_RULES: usize = 10_000;

/// The rules of one host for our user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotsRules {
    /// Everything allowed (a 4xx robots.txt, or no group applies).
    AllowAll,
    /// Everything disallowed (a 5xx or 429 robots.txt).
    DisallowAll,
    /// The host did not answer for its robots.txt (no connection, or no answer within the
    /// deadline): nothing is fetched, and each image gets this outcome (`connect_failure`,
    /// `timeout`), which also counts against the host's circuit breaker.
    Unreachable(Outcome),
    /// `(allow, pattern)` rules of the group that applies.
    Rules(Vec<(bool, String)>),
}

impl RobotsRules {
    /// Parses a robots.txt body for `agent` (a product token such as `scraper-d`).
    pub fn parse(body: &str, agent: &str) -> Self {
        let agent = agent
            .split('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let mut specific: Option<Vec<(bool, String)>> = None;
        let mut star: Option<Vec<(bool, String)>> = None;
        // The agents of the group being read, and whether its rules started.
        let mut group_agents: Vec<String> = Vec::new();
        let mut group_rules: Vec<(bool, String)> = Vec::new();
        let mut in_rules = false;
        // A group's rules go to each kind of agent once, however many of its `User-agent` lines
        // name it: a file of thousands of `User-agent: *` lines above thousands of rules must
        // not multiply them.
        let mut finish = |agents: &[String], rules: &[(bool, String)]| {
            let for_star = agents.iter().any(|name| name == "*");
            // The whole product token, case-insensitively (RFC 9309 §2.2.1), a `/version`
            // ignored: `User-agent: a` is not a group for `scraper-d`.
            let for_us = agents.iter().any(|name| {
                let token = name.split('/').next().unwrap_or_default().trim();
                token == agent
            });
            for (applies, kept) in [(for_star, &mut star), (for_us, &mut specific)] {
                if applies {
                    let kept = kept.get_or_insert_with(Vec::new);
                    let room = MAX_RULES.saturating_sub(kept.len());
                    kept.extend(rules.iter().take(room).cloned());
                }
            }
        };
        // A byte order mark is no part of the first line, and a lone CR ends a line too
        // (RFC 9309's EOL): a file of CR-only lines is not one long comment-free line.
        let body = body.strip_prefix('\u{feff}').unwrap_or(body);
        for raw_line in body.split(['\n', '\r']) {
            let line = raw_line.split('#').next().unwrap_or_default().trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        finish(&group_agents, &group_rules);
                        group_agents.clear();
                        group_rules.clear();
                        in_rules = false;
                    }
                    group_agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if !value.is_empty() && group_rules.len() < MAX_RULES {
                        group_rules.push((key == "allow", value.to_owned()));
                    }
                }
                _ => {}
            }
        }
        finish(&group_agents, &group_rules);
        match specific.or(star) {
            Some(rules) if !rules.is_empty() => RobotsRules::Rules(rules),
            _ => RobotsRules::AllowAll,
        }
    }

    /// Whether `path` (path and query) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        match self {
            RobotsRules::AllowAll => true,
            RobotsRules::DisallowAll | RobotsRules::Unreachable(_) => false,
            RobotsRules::Rules(rules) => {
                let mut best: Option<(usize, bool)> = None;
                for (allow, pattern) in rules {
                    if pattern_matches(pattern, path) {
                        let better = match best {
                            None => true,
                            Some((length, best_allow)) => {
                                pattern.len() > length
                                    || (pattern.len() == length && *allow && !best_allow)
                            }
                        };
                        if better {
                            best = Some((pattern.len(), *allow));
                        }
                    }
                }
                best.is_none_or(|(_, allow)| allow)
            }
        }
    }
}

/// A robots.txt pattern: a prefix with `*` for any run and a final `$` for the end.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(stripped) => (stripped, true),
        None => (pattern, false),
    };
    let mut pieces = pattern.split('*');
    let Some(first) = pieces.next() else {
        return true;
    };
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        if last && anchored {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    !anchored || rest.is_empty() || (pieces.is_empty() && rest.is_empty())
}

/// The `X-Robots-Tag` directives that opt an image out (img2dataset's default list).
pub const OPT_OUT_DIRECTIVES: [&str; 4] = ["noai", "noimageai", "noindex", "noimageindex"];

/// Whether one `X-Robots-Tag` header value opts out for `agent`, as img2dataset decides:
/// directives are comma-separated; a leading `name:` limits the value to that user agent.
pub fn x_robots_opts_out(value: &str, agent: &str) -> bool {
    let agent = agent.to_ascii_lowercase();
    let value = value.trim().to_ascii_lowercase();
    let directives = match value.split_once(':') {
        Some((name, rest)) if !OPT_OUT_DIRECTIVES.iter().any(|d| name.contains(d)) => {
            let name = name.trim();
            if name != "*" && !agent.contains(name) {
                return false;
            }
            rest.to_owned()
        }
        _ => value,
    };
    directives
        .split(',')
        .map(str::trim)
        .any(|directive| OPT_OUT_DIRECTIVES.contains(&directive))
}

/// Whether a TDMRep `tdm-reservation` header value reserves text and data mining rights (W3C
/// TDM Reservation Protocol, the machine-readable opt-out of the EU's DSM directive, article 4):
/// `1` reserves them, `0` does not, and any other value is not valid and is ignored.
pub fn tdm_reserved(value: &str) -> bool {
    value.trim() == "1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_longest_match() {
        let body = "User-agent: BadBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\nAllow: /private/ok$\n";
        let rules = RobotsRules::parse(body, "scraper-d");
        assert!(rules.allows("/ok/a.jpg"));
        assert!(!rules.allows("/private/a.jpg"));
        assert!(rules.allows("/private/ok"));
        assert!(!rules.allows("/private/ok/x"));
        let bad = RobotsRules::parse(body, "badbot/1.0");
        assert!(!bad.allows("/ok/a.jpg"));
        let all = RobotsRules::parse("User-agent: *\nDisallow: /\n", "scraper-d");
        assert!(!all.allows("/x"));
        let empty = RobotsRules::parse("User-agent: *\nDisallow:\n", "scraper-d");
        assert_eq!(empty, RobotsRules::AllowAll);
        let wildcard = RobotsRules::parse("User-agent: *\nDisallow: /*.png$\n", "x");
        assert!(!wildcard.allows("/a/b.png"));
        assert!(wildcard.allows("/a/b.png?x=1"));
    }

    #[test]
    fn groups_match_the_whole_token_and_lines_end_at_any_eol() {
        // `a` is a substring of `scraper-d`, not its product token.
        let body = "User-agent: *\nDisallow: /\n\nUser-agent: a\nAllow: /\n";
        assert!(!RobotsRules::parse(body, "scraper-d").allows("/x.jpg"));
        let ours = "User-agent: *\nDisallow: /\n\nUser-agent: Scraper-D/2.0\nAllow: /\n";
        assert!(RobotsRules::parse(ours, "scraper-d").allows("/x.jpg"));
        for body in [
            "\u{feff}User-agent: *\nDisallow: /\n",
            "User-agent: *\rDisallow: /\r",
            "User-agent: *\r\nDisallow: /\r\n",
        ] {
            assert!(
                !RobotsRules::parse(body, "scraper-d").allows("/x.jpg"),
                "{body:?}"
            );
        }
    }

    fn rule_count(rules: &RobotsRules) -> usize {
        match rules {
            RobotsRules::Rules(rules) => rules.len(),
            _ => 0,
        }
    }

    #[test]
    fn repeated_agent_lines_do_not_multiply_the_rules() {
        let body = "User-agent: *\nUser-agent: *\nUser-agent: scraper-d\nUser-agent: scraper\nDisallow: /a\nAllow: /a/b\n";
        assert_eq!(rule_count(&RobotsRules::parse(body, "scraper-d")), 2);
        assert_eq!(rule_count(&RobotsRules::parse(body, "other")), 2);
        // 20,000 agent lines above 30,000 rules (under 512 KiB): once copied per agent line,
        // that was 600 million rules.
        let mut bomb = "User-agent: *\n".repeat(20_000);
        bomb.push_str(&"Allow:a\n".repeat(30_000));
        bomb.push_str("Disallow: /\n");
        let rules = RobotsRules::parse(&bomb, "scraper-d");
        assert_eq!(rule_count(&rules), MAX_RULES);
        // Rules past the cap are ignored, like a robots.txt cut at its size limit.
        assert!(rules.allows("/x"));
    }

    #[test]
    fn x_robots_tag_directives() {
        for value in [
            "noai",
            "noimageai",
            "NoIndex",
            "noimageindex",
            "nofollow, noai",
        ] {
            assert!(x_robots_opts_out(value, "scraper-d"), "{value}");
        }
        for value in ["none", "nofollow", "otherbot: noai", ""] {
            assert!(!x_robots_opts_out(value, "scraper-d"), "{value}");
        }
        assert!(x_robots_opts_out("scraper-d: noimageai", "scraper-d/0.1"));
    }

    #[test]
    fn only_a_tdm_reservation_of_1_reserves() {
        assert!(tdm_reserved("1"));
        assert!(tdm_reserved(" 1 "));
        for value in ["0", "", "true", "yes", "11", "1, 0"] {
            assert!(!tdm_reserved(value), "{value:?}");
        }
    }
}
