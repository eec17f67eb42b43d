//! The JSON envelope of a WAT `metadata` record, deserialized only along the paths we need.
//!
//! Everything borrows from the record body (`Cow` only allocates for strings with escapes: serde's
//! own `Cow` impl always allocates, so string fields go through [`borrowed`]), and
//! every other key, `Headers` included, is skipped without being built. That makes both header
//! styles work: before `CC-MAIN-2024-51` every header is a string, from it a repeated header is
//! an array of strings (reference §3.3); a value we do read may be either.

use std::borrow::Cow;

use serde::Deserialize;

use crate::candidates::SkipReason;

/// The parts of a `response` record's envelope that extraction uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// `WARC-Target-URI`.
    pub target_uri: Cow<'a, str>,
    /// `Response-Message.Status`, if present.
    pub status: Option<Cow<'a, str>>,
    /// `HTML-Metadata.Head.Base`.
    pub base: Option<Cow<'a, str>>,
    /// `HTML-Metadata.Head.Link`, in page order.
    pub head_links: Vec<Link<'a>>,
    /// The `HTML-Metadata.Links` that matter, in page order: `IMG@/src` links and links whose
    /// URL mentions `creativecommons.org/` (licence candidates). Anchors are dropped while
    /// parsing, which saves most allocations.
    pub links: Vec<Link<'a>>,
}

/// One entry of `Links` (or `Head.Link`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Link<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub path: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub alt: Option<Cow<'a, str>>,
}

/// What a record turned out to be.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A `response` with page metadata.
    Response(Page<'a>),
    /// A `request`, `metadata` or other record: nothing to extract.
    NotResponse,
}

/// Parses a record body; `Err` carries the counted reason.
///
/// `with_licenses` keeps the links whose URL names `creativecommons.org/`. Without it only
/// image links are kept, and the URLs of all other links are skipped unread (most of a page's
/// links are anchors, so this is most of the parsing saved).
pub fn parse(body: &[u8], with_licenses: bool) -> Result<Parsed<'_>, SkipReason> {
    let text = std::str::from_utf8(body).map_err(|_| SkipReason::InvalidUtf8)?;
    if with_licenses {
        envelope::<true>(text)
    } else {
        envelope::<false>(text)
    }
}

fn envelope<const LICENSES: bool>(text: &str) -> Result<Parsed<'_>, SkipReason> {
    let record: Record<'_, LICENSES> =
        sonic_rs::from_str(text).map_err(|_| SkipReason::InvalidJson)?;
    let envelope = record.envelope.ok_or(SkipReason::MissingKeys)?;
    let warc = envelope.warc_header.ok_or(SkipReason::MissingKeys)?;
    if warc.warc_type.map(OneOrMany::into_last).as_deref() != Some("response") {
        return Ok(Parsed::NotResponse);
    }
    let target_uri = warc
        .target_uri
        .map(OneOrMany::into_last)
        .ok_or(SkipReason::MissingKeys)?;
    let response = envelope
        .payload
        .and_then(|payload| payload.http_response)
        .ok_or(SkipReason::MissingKeys)?;
    let status = response.message.and_then(|message| message.status);
    let (base, head_links, links) = match response.html {
        Some(html) => {
            let (base, head_links) = match html.head {
                Some(head) => (head.base, head.link),
                None => (None, Vec::new()),
            };
            (base, head_links, html.links.0)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    Ok(Parsed::Response(Page {
        target_uri,
        status,
        base,
        head_links,
        links,
    }))
}

// The structs below carry `LICENSES` (see [`parse`]) down to the `Links` array.
#[derive(Deserialize)]
struct Record<'a, const LICENSES: bool> {
    #[serde(rename = "Envelope", borrow)]
    envelope: Option<Envelope<'a, LICENSES>>,
}

#[derive(Deserialize)]
struct Envelope<'a, const LICENSES: bool> {
    #[serde(rename = "WARC-Header-Metadata", borrow)]
    warc_header: Option<WarcHeader<'a>>,
    #[serde(rename = "Payload-Metadata", borrow)]
    payload: Option<Payload<'a, LICENSES>>,
}

#[derive(Deserialize)]
struct WarcHeader<'a> {
    #[serde(rename = "WARC-Type", borrow)]
    warc_type: Option<OneOrMany<'a>>,
    #[serde(rename = "WARC-Target-URI", borrow)]
    target_uri: Option<OneOrMany<'a>>,
}

#[derive(Deserialize)]
struct Payload<'a, const LICENSES: bool> {
    #[serde(rename = "HTTP-Response-Metadata", borrow)]
    http_response: Option<HttpResponse<'a, LICENSES>>,
}

#[derive(Deserialize)]
struct HttpResponse<'a, const LICENSES: bool> {
    #[serde(rename = "Response-Message", borrow)]
    message: Option<ResponseMessage<'a>>,
    #[serde(rename = "HTML-Metadata", borrow)]
    html: Option<HtmlMetadata<'a, LICENSES>>,
}

#[derive(Deserialize)]
struct ResponseMessage<'a> {
    #[serde(rename = "Status", borrow, default, deserialize_with = "borrowed")]
    status: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HtmlMetadata<'a, const LICENSES: bool> {
    #[serde(rename = "Head", borrow)]
    head: Option<Head<'a>>,
    #[serde(rename = "Links", borrow, default)]
    links: RelevantLinks<'a, LICENSES>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "Base", borrow, default, deserialize_with = "borrowed")]
    base: Option<Cow<'a, str>>,
    #[serde(rename = "Link", borrow, default)]
    link: Vec<Link<'a>>,
}

/// `Links` filtered while parsing; see [`Page::links`].
#[derive(Default)]
struct RelevantLinks<'a, const LICENSES: bool>(Vec<Link<'a>>);

impl<'de: 'a, 'a, const LICENSES: bool> Deserialize<'de> for RelevantLinks<'a, LICENSES> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<const LICENSES: bool>;
        impl<'de, const LICENSES: bool> serde::de::Visitor<'de> for Visitor<LICENSES> {
            type Value = RelevantLinks<'de, LICENSES>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an array of links")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut links = Vec::new();
                while let Some(LinkEntry(link)) = seq.next_element::<LinkEntry<'de, LICENSES>>()? {
                    let is_image = link.path.as_deref() == Some(IMAGE_PATH);
                    let is_license = LICENSES
                        && link.url.as_deref().is_some_and(|url| {
                            memchr::memmem::find(url.as_bytes(), b"creativecommons.org/").is_some()
                        });
                    if is_image || is_license {
                        links.push(link);
                    }
                }
                Ok(RelevantLinks(links))
            }
        }
        deserializer.deserialize_seq(Visitor::<LICENSES>)
    }
}

/// The `path` of an image link.
const IMAGE_PATH: &str = "IMG@/src";

/// One entry of `Links`. Without `LICENSES`, the `url` of a link already known not to be an
/// image (its `path` came first, as Common Crawl writes it) is skipped without being read.
struct LinkEntry<'a, const LICENSES: bool>(Link<'a>);

impl<'de: 'a, 'a, const LICENSES: bool> Deserialize<'de> for LinkEntry<'a, LICENSES> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<const LICENSES: bool>;
        impl<'de, const LICENSES: bool> serde::de::Visitor<'de> for Visitor<LICENSES> {
            type Value = LinkEntry<'de, LICENSES>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a link object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut link = Link::default();
                let mut not_image = false;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let field = match key.as_ref() {
                        "path" => &mut link.path,
                        "url" if LICENSES || !not_image => &mut link.url,
                        "alt" => &mut link.alt,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map
                        .next_value::<Option<Text<'de>>>()?
                        .map(|Text(text)| text);
                    not_image = link.path.as_deref().is_some_and(|path| path != IMAGE_PATH);
                }
                Ok(LinkEntry(link))
            }
        }
        deserializer.deserialize_map(Visitor::<LICENSES>)
    }
}

/// A header value: a string, or (from `CC-MAIN-2024-51`) an array of strings.
struct OneOrMany<'a>(Option<Cow<'a, str>>);

impl<'a> OneOrMany<'a> {
    /// The value, or the last one of an array (what the legacy style kept).
    fn into_last(self) -> Cow<'a, str> {
        self.0.unwrap_or_default()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for OneOrMany<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrMany(Some(Cow::Borrowed(value))))
            }
            fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(Some(Cow::Owned(value.to_owned()))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut last = None;
                while let Some(Text(value)) = seq.next_element::<Text<'de>>()? {
                    last = Some(value);
                }
                Ok(OneOrMany(last))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A string that borrows from the input unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// `deserialize_with` for optional string fields: `null` is `None`, a string borrows.
fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|Text(text)| text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Result<Page<'_>, SkipReason> {
        match parse(json.as_bytes(), true)? {
            Parsed::Response(page) => Ok(page),
            Parsed::NotResponse => Err(SkipReason::MissingKeys),
        }
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
        for json in [legacy, &arrays] {
            let page = page(json).expect("parses");
            assert_eq!(page.target_uri, "http://a.test/x");
            assert_eq!(page.status.as_deref(), Some("200"));
            assert_eq!(page.base.as_deref(), Some("/b/"));
            assert_eq!(page.head_links.len(), 1);
            assert_eq!(page.links[0].alt.as_deref(), Some("café \"x\""));
            // Strings without escapes borrow from the record (no allocation per link).
            assert!(matches!(page.links[0].url, Some(Cow::Borrowed("p.jpg"))));
            assert!(matches!(page.links[0].path, Some(Cow::Borrowed(_))));
            assert!(matches!(page.target_uri, Cow::Borrowed(_)));
        }
        let cases: &[(&[u8], SkipReason)] = &[
            (b"{\"Envelope\":", SkipReason::InvalidJson),
            (b"\xff\xfe", SkipReason::InvalidUtf8),
            (b"{}", SkipReason::MissingKeys),
            (b"{\"Envelope\":{}}", SkipReason::MissingKeys),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response"}}}"#,
                SkipReason::MissingKeys,
            ),
            (
                br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":["response"],"WARC-Target-URI":"http://a.test/"}}}"#,
                SkipReason::MissingKeys,
            ),
        ];
        // Damage inside `Links`, even in an anchor whose URL is skipped, spoils the record.
        let links = |links: &str| {
            format!(
                r#"{{"Envelope":{{"WARC-Header-Metadata":{{"WARC-Type":"response","WARC-Target-URI":"http://a.test/"}},"Payload-Metadata":{{"HTTP-Response-Metadata":{{"HTML-Metadata":{{"Links":{links}}}}}}}}}}}"#
            )
        };
        let damaged = [
            r#"[{"path":"A@/href","url":}]"#,
            r#"[{"path":"A@/href","url":"x"},"#,
            r#"[{"path":"A@/href" "url":"x"}]"#,
            r#"["IMG@/src"]"#,
            r#"[7]"#,
            r#"{"path":"IMG@/src"}"#,
            r#"[{"path":"IMG@/src","url":7}]"#,
        ];
        for damaged in damaged {
            let json = links(damaged);
            for with_licenses in [true, false] {
                assert_eq!(
                    parse(json.as_bytes(), with_licenses).err(),
                    Some(SkipReason::InvalidJson),
                    "{damaged}"
                );
            }
        }
        let fine = links(r#"[{"path":"A@/href","url":"x"},{"path":"IMG@/src","url":"y.jpg"}]"#);
        assert!(
            matches!(parse(fine.as_bytes(), false), Ok(Parsed::Response(page)) if page.links.len() == 1)
        );
        for (input, reason) in cases {
            assert_eq!(parse(input, true).err(), Some(*reason), "{input:?}");
        }
        let request = br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"request"}}}"#;
        assert!(matches!(parse(request, false), Ok(Parsed::NotResponse)));
        assert!(matches!(parse(request, true), Ok(Parsed::NotResponse)));
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
            let Ok(Parsed::Response(page)) = parse(json.as_bytes(), with_licenses) else {
                panic!("parses");
            };
            let urls: Vec<_> = page.links.iter().map(|link| link.url.as_deref()).collect();
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
            let alts: Vec<_> = page.links.iter().map(|link| link.alt.as_deref()).collect();
            assert!(
                alts.contains(&Some("a cat")),
                "escapes are decoded: {alts:?}"
            );
            assert!(alts.ends_with(&[None]));
        }
    }
}
