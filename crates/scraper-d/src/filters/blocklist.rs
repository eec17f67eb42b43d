//! A blocklist of URLs, domains and hashes, loaded from a text file.
//!
//! One entry per line; blank lines and lines starting with `#` are ignored. An entry may carry a
//! prefix (`url:`, `domain:`, `sha256:`, `md5:`, `pair:`); without one its shape decides:
//! `http://`/`https://` is a URL (matched exactly, fragment dropped); 64 hex digits the SHA-256 of
//! a URL and 32 hex digits its MD5 (the forms of Re-LAION-style hash lists); 16 hex digits a
//! [`crate::dedup::pair_hash`]; anything else a domain, which also blocks its subdomains. A
//! domain in Unicode (`bücher.example`) is stored in punycode, the form URL hosts take.

use std::collections::HashSet;
use std::path::Path;

use md5::Digest;
use url::{Host, Url};

use crate::error::ScraperError;

/// Loaded blocklist entries.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    urls: HashSet<String>,
    domains: HashSet<String>,
    sha256: HashSet<[u8; 32]>,
    md5: HashSet<[u8; 16]>,
    pairs: HashSet<u64>,
}

impl Blocklist {
    /// Reads a blocklist file.
    pub fn load(path: &Path) -> Result<Self, ScraperError> {
        let text = std::fs::read_to_string(path).map_err(ScraperError::file(path))?;
        Self::parse(&text).map_err(|(line, detail)| ScraperError::Blocklist {
            path: path.to_path_buf(),
            line,
            detail,
        })
    }

    /// Parses blocklist text; `Err((line, detail))` names the first bad line (1-based).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut list = Self::default();
        for (index, line) in text.lines().enumerate() {
            let entry = line.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            list.add(entry).map_err(|detail| (index + 1, detail))?;
        }
        Ok(list)
    }

    fn add(&mut self, entry: &str) -> Result<(), String> {
        let (kind, value) = match entry.split_once(':') {
            Some((kind @ ("url" | "domain" | "sha256" | "md5" | "pair"), value)) => {
                (kind, value.trim())
            }
            _ if entry.starts_with("http://") || entry.starts_with("https://") => ("url", entry),
            _ if entry.len() == 64 && is_hex(entry) => ("sha256", entry),
            _ if entry.len() == 32 && is_hex(entry) => ("md5", entry),
            _ if entry.len() == 16 && is_hex(entry) => ("pair", entry),
            _ => ("domain", entry),
        };
        match kind {
            "url" => {
                let mut url = Url::parse(value).map_err(|error| format!("bad url: {error}"))?;
                url.set_fragment(None);
                self.urls.insert(url.into());
            }
            "sha256" => {
                self.sha256.insert(hex_array(value)?);
            }
            "md5" => {
                self.md5.insert(hex_array(value)?);
            }
            "pair" => {
                let bytes: [u8; 8] = hex_array(value)?;
                self.pairs.insert(u64::from_be_bytes(bytes));
            }
            _ => {
                let domain = value.trim_end_matches('.');
                if domain.is_empty() || domain.contains(['/', ' ']) {
                    return Err(format!("not a url, domain or hash: {value}"));
                }
                let domain = if domain.is_ascii() {
                    domain.to_ascii_lowercase()
                } else {
                    // URLs carry IDNs in punycode (`xn--bcher-kva.example`): so must the entry.
                    Host::parse(domain)
                        .map_err(|error| format!("bad domain {value}: {error}"))?
                        .to_string()
                };
                self.domains.insert(domain);
            }
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.urls.len() + self.domains.len() + self.sha256.len() + self.md5.len() + self.pairs.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the URL, its host or a parent domain, its hashes or the pair hash is listed.
    pub fn blocks(&self, url: &Url, url_text: &str, pair_hash: u64) -> bool {
        self.pairs.contains(&pair_hash) || self.blocks_url(url, url_text)
    }

    /// True when the URL, its host or a parent domain, or its hashes are listed (a redirect
    /// target, which has no alt text of its own).
    pub fn blocks_url(&self, url: &Url, url_text: &str) -> bool {
        if self.urls.contains(url_text) {
            return true;
        }
        if !self.domains.is_empty()
            && let Some(host) = url.host_str()
        {
            let mut domain = host.trim_end_matches('.');
            loop {
                if self.domains.contains(domain) {
                    return true;
                }
                match domain.split_once('.') {
                    Some((_, parent)) => domain = parent,
                    None => break,
                }
            }
        }
        if !self.sha256.is_empty()
            && self
                .sha256
                .contains(&<[u8; 32]>::from(sha2::Sha256::digest(url_text)))
        {
            return true;
        }
        !self.md5.is_empty()
            && self
                .md5
                .contains(&<[u8; 16]>::from(md5::Md5::digest(url_text)))
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn hex_array<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if text.len() != 2 * N || !is_hex(text) {
        return Err(format!("expected {} hex digits: {text}", 2 * N));
    }
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16)
            .map_err(|error| format!("bad hex: {error}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_table() {
        let sha = hex(&sha2::Sha256::digest("http://h.test/s.jpg"));
        let md5 = hex(&md5::Md5::digest("http://h.test/m.jpg"));
        let text = format!(
            "# comment\n\nhttp://u.test/a.jpg#frag\nbad.test\ndomain:Other.TEST\n{sha}\nmd5:{md5}\npair:00000000000000ff\nbücher.example\ndomain:MÜNCHEN.test.\n東京.example\n"
        );
        let list = Blocklist::parse(&text).expect("parses");
        assert_eq!(list.len(), 9);
        let cases: &[(&str, u64, bool)] = &[
            ("http://u.test/a.jpg", 0, true),
            ("http://u.test/b.jpg", 0, false),
            ("http://bad.test/x.jpg", 0, true),
            ("http://img.cdn.bad.test/x.jpg", 0, true),
            ("http://notbad.test/x.jpg", 0, false),
            ("http://other.test/x.jpg", 0, true),
            ("http://h.test/s.jpg", 0, true),
            ("http://h.test/m.jpg", 0, true),
            ("http://h.test/p.jpg", 255, true),
            // Domain entries in Unicode match the punycode hosts URLs carry.
            ("http://bücher.example/a.jpg", 0, true),
            ("http://xn--bcher-kva.example/a.jpg", 0, true),
            ("http://img.BÜCHER.example/a.jpg", 0, true),
            ("http://buecher.example/a.jpg", 0, false),
            ("http://münchen.test/a.jpg", 0, true),
            ("http://cdn.東京.example/a.jpg", 0, true),
            ("http://京.example/a.jpg", 0, false),
        ];
        for (text, pair, expected) in cases {
            let url = Url::parse(text).expect("url");
            assert_eq!(list.blocks(&url, url.as_str(), *pair), *expected, "{text}");
        }
        assert_eq!(
            Blocklist::parse("ok.test\nhttp://[bad\n")
                .err()
                .map(|e| e.0),
            Some(2)
        );
        assert_eq!(
            Blocklist::parse("ok.test\nbü|cher.example\n")
                .err()
                .map(|e| e.0),
            Some(2)
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}
