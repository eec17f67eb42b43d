//! Hetzner label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; comma = AND.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parses a selector; `Err` names the first bad term.
pub fn parse(selector: &str) -> Result<Vec<Requirement>, String> {
    split_terms(selector)?
        .into_iter()
        .map(|term| parse_term(term.trim()))
        .collect()
}

/// True when `labels` satisfy every requirement.
pub fn matches(requirements: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    requirements.iter().all(|requirement| match requirement {
        Requirement::Equals(key, value) => labels.get(key) == Some(value),
        Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
        Requirement::Exists(key) => labels.contains_key(key),
        Requirement::NotExists(key) => !labels.contains_key(key),
        Requirement::In(key, values) => labels.get(key).is_some_and(|value| values.contains(value)),
        Requirement::NotIn(key, values) => {
            labels.get(key).is_none_or(|value| !values.contains(value))
        }
    })
}

/// Checks a label key or value against the documented charset (at most 63 characters, alphanumeric at
/// both ends, `-_.` inside; keys may carry a `prefix/`).
pub fn valid_label(key: &str, value: &str) -> bool {
    let name = key.rsplit_once('/').map_or(
        key,
        |(prefix, name)| if prefix.is_empty() { "" } else { name },
    );
    let part_ok = |text: &str, may_be_empty: bool| {
        if text.is_empty() {
            return may_be_empty;
        }
        let bytes = text.as_bytes();
        text.len() <= 63
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    !key.starts_with("hetzner.cloud/") && part_ok(name, false) && part_ok(value, true)
}

fn split_terms(selector: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in {selector:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {selector:?}"));
    }
    terms.push(&selector[start..]);
    Ok(terms)
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    let key_ok = |key: &str| valid_label(key, "");
    let checked = |key: &str, requirement: Requirement| {
        if key_ok(key) {
            Ok(requirement)
        } else {
            Err(format!("invalid label key in {term:?}"))
        }
    };
    if let Some((key, value)) = term.split_once("!=") {
        let key = key.trim();
        return checked(key, Requirement::NotEquals(key.into(), value.trim().into()));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        let key = key.trim();
        return checked(key, Requirement::Equals(key.into(), value.trim().into()));
    }
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return checked(key, Requirement::NotExists(key.into()));
    }
    for (keyword, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, list)) = term.split_once(keyword) {
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|list| list.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised list in {term:?}"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|value| value.trim().to_owned())
                .collect();
            let key = key.trim();
            let requirement = if negated {
                Requirement::NotIn(key.into(), values)
            } else {
                Requirement::In(key.into(), values)
            };
            return checked(key, requirement);
        }
    }
    checked(term, Requirement::Exists(term.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_table() {
        let labels: BTreeMap<String, String> = [
            ("managed-by", "ccswarm"),
            ("ccswarm/swarm", "blue"),
            ("ccswarm/role", "scraper"),
            ("empty", ""),
        ]
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
        let cases = [
            ("managed-by=ccswarm", true),
            ("managed-by==ccswarm", true),
            ("managed-by=other", false),
            ("managed-by!=other", true),
            ("missing!=x", true),
            ("managed-by", true),
            ("missing", false),
            ("!missing", true),
            ("!managed-by", false),
            ("managed-by=ccswarm,ccswarm/swarm=blue", true),
            ("managed-by=ccswarm,ccswarm/swarm=green", false),
            ("ccswarm/role in (scraper,gpu)", true),
            ("ccswarm/role in (gpu)", false),
            ("ccswarm/role notin (gpu, web)", true),
            ("missing notin (a)", true),
            (
                "managed-by=ccswarm, ccswarm/role in (gpu,scraper), !missing",
                true,
            ),
            ("empty=", true),
        ];
        for (selector, expected) in cases {
            let requirements =
                parse(selector).unwrap_or_else(|error| panic!("{selector}: {error}"));
            assert_eq!(matches(&requirements, &labels), expected, "{selector}");
        }
        for bad in ["a in (b", "a in b", "-bad-=x", "k=v)", ""] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn label_charset() {
        assert!(valid_label("ccswarm/swarm", "blue-1"));
        assert!(valid_label("k", ""));
        assert!(!valid_label("hetzner.cloud/x", "y"));
        assert!(!valid_label("k", "-bad"));
        assert!(!valid_label("", "v"));
        assert!(!valid_label(&"k".repeat(64), "v"));
    }
}
