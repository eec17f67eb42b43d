//! The JSON envelope of a WAT `metadata` record: parsed into a DOM, then read along the paths we need.
//!
//! sonic-rs builds the whole DOM faster than a serde visitor that skips the fields we do not use
//! (measured on the benchmark WAT: 113 ms against 195 ms for 275 MB of envelopes), and reading
//! the few fields we need from it is cheap. Strings are unescaped into the DOM, so every `&str`
//! below borrows from the [`Document`]. Both header styles work: before `CC-MAIN-2024-51` every
//! header is a string, from it a repeated header is an array of strings (reference §3.3); a value
//! we read may be either, and the last one counts.
//!
//! Types are checked along the paths we read: an object, array or string where another kind of
//! value stands is `invalid_json`, as is damage anywhere in the text (the DOM validates all of
//! it). Of the `Links` entries, `path` is checked on all, `url` and `alt` on image links; other
//! fields of anchors are not read, nor `Head.Link` unless the record names
//! `creativecommons.org`. When an object repeats a key, the first one counts.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use crate::candidates::SkipReason;

mod nesting;

/// The parts of a `response` record's envelope that extraction uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// `WARC-Target-URI`.
    pub target_uri: &'a str,
    /// `Response-Message.Status`, if present.
    pub status: Option<&'a str>,
    /// `HTML-Metadata.Head.Base`.
    pub base: Option<&'a str>,
    /// `HTML-Metadata.Head.Link`, in page order.
    pub head_links: Vec<Link<'a>>,
    /// The `HTML-Metadata.Links` that matter, in page order: `IMG@/src` links and, when asked
    /// for, links whose URL mentions `creativecommons.org/` (licence candidates).
    pub links: Vec<Link<'a>>,
}

/// One entry of `Links` (or `Head.Link`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link<'a> {
    pub path: Option<&'a str>,
    pub url: Option<&'a str>,
    pub alt: Option<&'a str>,
}

/// What a record turned out to be.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A `response` with page metadata.
    Response(Page<'a>),
    /// A `request`, `metadata` or other record: nothing to extract.
    NotResponse,
}

/// A record body parsed as JSON.
pub struct Document {
    root: Value,
}

/// The `path` of an image link.
const IMAGE_PATH: &str = "IMG@/src";

/// What marks a licence candidate: searched in a whole record first (by the extractor, to decide
/// whether licences are looked for at all), then in each link's URL. No slash after the host:
/// JSON may write it as `\/`.
pub(crate) static LICENSE_URL: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"creativecommons.org"));

impl Document {
    /// Parses a record body: `invalid_utf8`, or `invalid_json` for damage anywhere in it and for
    /// nesting deeper than [`nesting::MAX_DEPTH`] (the parser recurses; a hostile record must
    /// not overflow the stack).
    pub fn parse(body: &[u8]) -> Result<Self, SkipReason> {
        // simdutf8 checks a record about four times as fast as `std::str::from_utf8`.
        let text = simdutf8::basic::from_utf8(body).map_err(|_| SkipReason::InvalidUtf8)?;
        if !nesting::within(body, nesting::MAX_DEPTH) {
            return Err(SkipReason::InvalidJson);
        }
        let root = sonic_rs::from_str(text).map_err(|_| SkipReason::InvalidJson)?;
        Ok(Self { root })
    }

    /// Reads the envelope. `with_licenses` also keeps the links whose URL names
    /// `creativecommons.org/`; without it only image links are kept.
    pub fn page(&self, with_licenses: bool) -> Result<Parsed<'_>, SkipReason> {
        if !self.root.is_object() {
            return Err(SkipReason::InvalidJson);
        }
        let envelope = object(&self.root, "Envelope")?.ok_or(SkipReason::MissingKeys)?;
        let warc = object(envelope, "WARC-Header-Metadata")?.ok_or(SkipReason::MissingKeys)?;
        if one_or_many(warc, "WARC-Type")? != Some("response") {
            return Ok(Parsed::NotResponse);
        }
        let target_uri = one_or_many(warc, "WARC-Target-URI")?.ok_or(SkipReason::MissingKeys)?;
        let response = match object(envelope, "Payload-Metadata")? {
            Some(payload) => object(payload, "HTTP-Response-Metadata")?,
            None => None,
        }
        .ok_or(SkipReason::MissingKeys)?;
        let status = match object(response, "Response-Message")? {
            Some(message) => string(message, "Status")?,
            None => None,
        };
        let mut page = Page {
            target_uri,
            status,
            base: None,
            head_links: Vec::new(),
            links: Vec::new(),
        };
        let Some(html) = object(response, "HTML-Metadata")? else {
            return Ok(Parsed::Response(page));
        };
        if let Some(head) = object(html, "Head")? {
            page.base = string(head, "Base")?;
            // Head links only ever name a licence; without one on the page they are not read.
            if with_licenses {
                page.head_links = array(head, "Link")?
                    .iter()
                    .map(link)
                    .collect::<Result<_, _>>()?;
            }
        }
        for entry in array(html, "Links")? {
            if !entry.is_object() {
                return Err(SkipReason::InvalidJson);
            }
            let path = string(entry, "path")?;
            if path == Some(IMAGE_PATH) {
                page.links.push(link(entry)?);
            } else if with_licenses
                && let Some(url) = entry.get("url").and_then(|url| url.as_str())
                && LICENSE_URL.find(url.as_bytes()).is_some()
            {
                page.links.push(Link {
                    path,
                    url: Some(url),
                    alt: None,
                });
            }
        }
        Ok(Parsed::Response(page))
    }
}

/// A link object of `Links` or `Head.Link`, its three fields checked.
fn link(entry: &Value) -> Result<Link<'_>, SkipReason> {
    if !entry.is_object() {
        return Err(SkipReason::InvalidJson);
    }
    Ok(Link {
        path: string(entry, "path")?,
        url: string(entry, "url")?,
        alt: string(entry, "alt")?,
    })
}

/// `parent[key]` when it is an object; `None` when absent or `null`.
fn object<'v>(parent: &'v Value, key: &str) -> Result<Option<&'v Value>, SkipReason> {
    match parent.get(key) {
        Some(value) if value.is_object() => Ok(Some(value)),
        Some(value) if !value.is_null() => Err(SkipReason::InvalidJson),
        _ => Ok(None),
    }
}

/// `parent[key]` when it is a string; `None` when absent or `null`.
fn string<'v>(parent: &'v Value, key: &str) -> Result<Option<&'v str>, SkipReason> {
    match parent.get(key) {
        Some(value) if value.is_null() => Ok(None),
        Some(value) => value.as_str().map(Some).ok_or(SkipReason::InvalidJson),
        None => Ok(None),
    }
}

/// `parent[key]` when it is an array (the elements unchecked); empty when absent.
fn array<'v>(parent: &'v Value, key: &str) -> Result<&'v [Value], SkipReason> {
    match parent.get(key) {
        Some(value) => value
            .as_array()
            .map(|array| &array[..])
            .ok_or(SkipReason::InvalidJson),
        None => Ok(&[]),
    }
}

/// A header value: a string, or (from `CC-MAIN-2024-51`) an array of strings, of which the last
/// counts (what the legacy style kept); an empty array reads as `""`.
fn one_or_many<'v>(parent: &'v Value, key: &str) -> Result<Option<&'v str>, SkipReason> {
    let Some(value) = parent.get(key) else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    if let Some(text) = value.as_str() {
        return Ok(Some(text));
    }
    let values = value.as_array().ok_or(SkipReason::InvalidJson)?;
    let mut last = "";
    for value in values.iter() {
        last = value.as_str().ok_or(SkipReason::InvalidJson)?;
    }
    Ok(Some(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skip reason of a body, or `None` when it reads (as a response or not).
    fn reason(body: &[u8], with_licenses: bool) -> Option<SkipReason> {
        Document::parse(body)
            .and_then(|document| document.page(with_licenses).map(|_| ()))
            .err()
    }

    /// The links kept from a response body.
    fn links(body: &str, with_licenses: bool) -> Vec<(Option<String>, Option<String>)> {
        let document = Document::parse(body.as_bytes()).expect("parses");
        let Ok(Parsed::Response(page)) = document.page(with_licenses) else {
            panic!("a response: {body}");
        };
        page.links
            .iter()
            .map(|link| (link.url.map(str::to_owned), link.alt.map(str::to_owned)))
            .collect()
    }

    fn with_links(links: &str) -> String {
        format!(
            r#"{{"Envelope":{{"WARC-Header-Metadata":{{"WARC-Type":"response","WARC-Target-URI":"http://a.test/"}},"Payload-Metadata":{{"HTTP-Response-Metadata":{{"HTML-Metadata":{{"Links":{links}}}}}}}}}}}"#
        )
    }

    #[test]
    fn envelope_table() {
        let legacy = r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response","WARC-Target-URI":"http://a.test/x","WARC-Protocol":"tcp"},
            "Payload-Metadata":{"HTTP-Response-Metadata":{"Response-Message":{"Status":"200"},"Headers":{"Set-Cookie":"b=2"},
            "HTML-Metadata":{"Head":{"Base":"/b/","Link":[{"path":"LINK@/href","url":"https://creativecommons.org/licenses/by/4.0/","rel":"license"}]},
            "Links":[{"path":"IMG@/src","url":"p.jpg","alt":"caf\u00e9 \"x\""}]}}}}}"#;
        let arrays = legacy.replace(
            r#""WARC-Protocol":"tcp""#,
            r#""WARC-Protocol":["http/1.1","tcp"]"#,
        );
        let arrays = arrays.replace(r#""Set-Cookie":"b=2""#, r#""Set-Cookie":["a=1","b=2"]"#);
        let arrays = arrays.replace(
            r#""WARC-Target-URI":"http://a.test/x""#,
            r#""WARC-Target-URI":["http://old.test/","http://a.test/x"]"#,
        );
        for json in [legacy, &arrays] {
            let document = Document::parse(json.as_bytes()).expect("parses");
            let Ok(Parsed::Response(page)) = document.page(true) else {
                panic!("a response");
            };
            assert_eq!(page.target_uri, "http://a.test/x");
            assert_eq!(page.status, Some("200"));
            assert_eq!(page.base, Some("/b/"));
            assert_eq!(page.head_links.len(), 1);
            assert_eq!(page.head_links[0].path, Some("LINK@/href"));
            assert_eq!(page.links.len(), 1);
            assert_eq!(page.links[0].url, Some("p.jpg"));
            assert_eq!(page.links[0].alt, Some("café \"x\""));
            // Without licences to look for, the head links are not read at all.
            let Ok(Parsed::Response(page)) = document.page(false) else {
                panic!("a response");
            };
            assert!(page.head_links.is_empty());
            assert_eq!(page.links.len(), 1);
        }
        let cases: &[(&[u8], SkipReason)] = &[
            (b"{\"Envelope\":", SkipReason::InvalidJson),
            (b"\xff\xfe", SkipReason::InvalidUtf8),
            (b"[1]", SkipReason::InvalidJson),
            (b"{}", SkipReason::MissingKeys),
            (b"{\"Envelope\":{}}", SkipReason::MissingKeys),
            (b"{\"Envelope\":null}", SkipReason::MissingKeys),
            (b"{\"Envelope\":7}", SkipReason::InvalidJson),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response"}}}"#,
                SkipReason::MissingKeys,
            ),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":["response"],"WARC-Target-URI":"http://a.test/"}}}"#,
                SkipReason::MissingKeys,
            ),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":["request",7]}}}"#,
                SkipReason::InvalidJson,
            ),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response","WARC-Target-URI":"http://a.test/"},
                "Payload-Metadata":{"HTTP-Response-Metadata":{"Response-Message":{"Status":200}}}}}"#,
                SkipReason::InvalidJson,
            ),
        ];
        for (input, reason) in cases {
            for with_licenses in [true, false] {
                assert_eq!(
                    super::tests::reason(input, with_licenses),
                    Some(*reason),
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // Damage anywhere in `Links`, even in an anchor that is not read, spoils the record, as do
        // wrong types along the paths that are read.
        let damaged = [
            r#"[{"path":"A@/href","url":}]"#,
            r#"[{"path":"A@/href","url":"x"},"#,
            r#"[{"path":"A@/href" "url":"x"}]"#,
            r#"[{"path":"A@/href","text":"a" "b"}]"#,
            r#"["IMG@/src"]"#,
            r#"[7]"#,
            r#"{"path":"IMG@/src"}"#,
            r#"null"#,
            r#"[{"path":7}]"#,
            r#"[{"path":"IMG@/src","url":7}]"#,
            r#"[{"path":"IMG@/src","url":"a.jpg","alt":["x"]}]"#,
        ];
        for damaged in damaged {
            let json = with_links(damaged);
            for with_licenses in [true, false] {
                assert_eq!(
                    reason(json.as_bytes(), with_licenses),
                    Some(SkipReason::InvalidJson),
                    "{damaged}"
                );
            }
        }
        let fine = with_links(
            r#"[{"path":"A@/href","url":7},{"path":"IMG@/src","url":"y.jpg","alt":null}]"#,
        );
        assert_eq!(links(&fine, false), vec![(Some("y.jpg".to_owned()), None)]);
        assert_eq!(links(&fine, true), vec![(Some("y.jpg".to_owned()), None)]);
        let request = br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"request"}}}"#;
        for with_licenses in [true, false] {
            let document = Document::parse(request).expect("parses");
            assert!(matches!(
                document.page(with_licenses),
                Ok(Parsed::NotResponse)
            ));
        }
    }

    #[test]
    fn links_are_kept_by_kind_whatever_the_key_order() {
        let json = r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response","WARC-Target-URI":"http://a.test/"},
            "Payload-Metadata":{"HTTP-Response-Metadata":{"HTML-Metadata":{"Links":[
            {"path":"A@/href","url":"https://creativecommons.org/licenses/by/4.0/","text":"CC"},
            {"url":"first.jpg","path":"IMG@/src","alt":"url before path"},
            {"path":"A@/href","url":"/plain","text":"anchor"},
            {"alt":"alt first","path":"IMG@/src","title":{"nested":[1,"x"]},"url":"second.jpg"},
            {"path":"IMG@\/src","url":"escaped-path.png","alt":"a \u0063at"},
            {"path":"A@/href","url":"https:\/\/creativecommons.org\/licenses\/by\/4.0\/"},
            {"path":"IMG@/src","url":"no-alt.png"}]}}}}}"#;
        for with_licenses in [true, false] {
            let kept = links(json, with_licenses);
            let urls: Vec<_> = kept.iter().map(|(url, _)| url.as_deref()).collect();
            let license = Some("https://creativecommons.org/licenses/by/4.0/");
            let expected = if with_licenses {
                vec![
                    license,
                    Some("first.jpg"),
                    Some("second.jpg"),
                    Some("escaped-path.png"),
                    license,
                    Some("no-alt.png"),
                ]
            } else {
                vec![
                    Some("first.jpg"),
                    Some("second.jpg"),
                    Some("escaped-path.png"),
                    Some("no-alt.png"),
                ]
            };
            assert_eq!(urls, expected);
            let alts: Vec<_> = kept.iter().map(|(_, alt)| alt.as_deref()).collect();
            assert!(
                alts.contains(&Some("a cat")),
                "escapes are decoded: {alts:?}"
            );
            assert!(alts.contains(&Some("url before path")), "{alts:?}");
            assert!(alts.ends_with(&[None]));
        }
    }

    #[test]
    fn hostile_nesting_is_invalid_json_not_a_stack_overflow() {
        for depth in [100_000, 1_000_000] {
            let arrays = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            let unclosed = "[".repeat(depth);
            for deep in [arrays, objects, unclosed] {
                let json = with_links(&format!(
                    r#"[{{"path":"IMG@/src","url":"a.jpg","alt":"deep","x":{deep}}}]"#
                ));
                for with_licenses in [true, false] {
                    assert_eq!(
                        reason(json.as_bytes(), with_licenses),
                        Some(SkipReason::InvalidJson)
                    );
                }
            }
        }
        // Nesting a parser handles easily still reads, brackets inside strings do not count, and
        // so does a page with more links than the quick bound lets through.
        // The deepest nesting allowed parses on a thread with 2 MiB of stack (this test's, and a
        // blocking worker's in the daemon): the envelope and a link make 7 levels.
        let nested_link = |depth: usize| {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            with_links(&format!(
                r#"[{{"path":"IMG@/src","url":"a.jpg","alt":"[[[{{{{{{\"","x":{nested}}}]"#
            ))
        };
        for depth in [64, nesting::MAX_DEPTH - 7] {
            assert_eq!(links(&nested_link(depth), false).len(), 1, "{depth}");
        }
        assert_eq!(
            reason(nested_link(nesting::MAX_DEPTH - 6).as_bytes(), false),
            Some(SkipReason::InvalidJson)
        );
        let many = format!(
            "[{}]",
            vec![r#"{"path":"IMG@/src","url":"a.jpg","alt":"{[{["}"#; 3 * nesting::MAX_DEPTH]
                .join(",")
        );
        assert_eq!(
            links(&with_links(&many), true).len(),
            3 * nesting::MAX_DEPTH
        );
    }
}
