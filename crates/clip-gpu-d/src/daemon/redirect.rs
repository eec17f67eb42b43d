//! Which redirects a bundle download follows: a few, never from https down to http, and never
//! to a link-local or cloud metadata address (a hostile bundle URL must not make the GPU host
//! fetch its own instance credentials).

use url::Url;

use super::forbidden_address;

/// Most redirects one bundle download follows.
pub(super) const MAX_REDIRECTS: usize = 5;

/// The redirect policy of the bundle download client.
pub(super) fn policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let refusal = refusal(attempt.previous(), attempt.url());
        match refusal {
            Some(reason) => attempt.error(reason),
            None => attempt.follow(),
        }
    })
}

/// Why the redirect to `next`, after the URLs `previous` (the first request's included), is
/// refused; `None` when it may be followed.
pub(super) fn refusal(previous: &[Url], next: &Url) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("too many redirects");
    }
    if previous.last().is_some_and(|last| last.scheme() == "https") && next.scheme() != "https" {
        return Some("redirect from https to http refused");
    }
    forbidden_address::is_forbidden_literal(next)
        .then_some("redirect to a link-local or metadata address refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn hostile_redirects_are_refused() {
        let start = [url("http://store.test/b.tar")];
        let secure = [url("https://store.test/b.tar")];
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/latest/",
            "http://[::ffff:169.254.169.254]/x",
        ] {
            assert!(refusal(&start, &url(target)).is_some(), "{target}");
        }
        assert!(refusal(&secure, &url("http://store.test/b.tar")).is_some());
        assert!(refusal(&secure, &url("https://cdn.test/b.tar")).is_none());
        assert!(refusal(&start, &url("http://10.0.0.5/b.tar")).is_none());
        assert!(refusal(&start, &url("http://cdn.test/b.tar")).is_none());
        let five: Vec<Url> = (0..=MAX_REDIRECTS)
            .map(|hop| url(&format!("http://store.test/{hop}")))
            .collect();
        assert!(refusal(&five[..MAX_REDIRECTS], &url("http://store.test/x")).is_none());
        assert!(refusal(&five, &url("http://store.test/x")).is_some());
    }
}
