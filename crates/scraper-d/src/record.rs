//! The JSON envelope of a WAT `metadata` record, deserialized only along the paths we need.
//!
//! Everything borrows from the record body (`Cow` only allocates for strings with escapes), and
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
    #[serde(borrow, default)]
    pub path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
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
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, SkipReason> {
    let text = std::str::from_utf8(body).map_err(|_| SkipReason::InvalidUtf8)?;
    let record: Record<'_> = serde_json::from_str(text).map_err(|_| SkipReason::InvalidJson)?;
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

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "Envelope", borrow)]
    envelope: Option<Envelope<'a>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "WARC-Header-Metadata", borrow)]
    warc_header: Option<WarcHeader<'a>>,
    #[serde(rename = "Payload-Metadata", borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
struct WarcHeader<'a> {
    #[serde(rename = "WARC-Type", borrow)]
    warc_type: Option<OneOrMany<'a>>,
    #[serde(rename = "WARC-Target-URI", borrow)]
    target_uri: Option<OneOrMany<'a>>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "HTTP-Response-Metadata", borrow)]
    http_response: Option<HttpResponse<'a>>,
}

#[derive(Deserialize)]
struct HttpResponse<'a> {
    #[serde(rename = "Response-Message", borrow)]
    message: Option<ResponseMessage<'a>>,
    #[serde(rename = "HTML-Metadata", borrow)]
    html: Option<HtmlMetadata<'a>>,
}

#[derive(Deserialize)]
struct ResponseMessage<'a> {
    #[serde(rename = "Status", borrow)]
    status: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HtmlMetadata<'a> {
    #[serde(rename = "Head", borrow)]
    head: Option<Head<'a>>,
    #[serde(rename = "Links", borrow, default)]
    links: RelevantLinks<'a>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "Base", borrow)]
    base: Option<Cow<'a, str>>,
    #[serde(rename = "Link", borrow, default)]
    link: Vec<Link<'a>>,
}

/// `Links` filtered while parsing; see [`Page::links`].
#[derive(Default)]
struct RelevantLinks<'a>(Vec<Link<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for RelevantLinks<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RelevantLinks<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an array of links")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut links = Vec::new();
                while let Some(link) = seq.next_element::<Link<'de>>()? {
                    let is_image = link.path.as_deref() == Some("IMG@/src");
                    let is_license = link.url.as_deref().is_some_and(|url| {
                        memchr::memmem::find(url.as_bytes(), b"creativecommons.org/").is_some()
                    });
                    if is_image || is_license {
                        links.push(link);
                    }
                }
                Ok(RelevantLinks(links))
            }
        }
        deserializer.deserialize_seq(Visitor)
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
                while let Some(value) = seq.next_element::<Cow<'de, str>>()? {
                    last = Some(value);
                }
                Ok(OneOrMany(last))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Result<Page<'_>, SkipReason> {
        match parse(json.as_bytes())? {
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
        for (input, reason) in cases {
            assert_eq!(parse(input).err(), Some(*reason), "{input:?}");
        }
        let request = br#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"request"}}}"#;
        assert!(matches!(parse(request), Ok(Parsed::NotResponse)));
    }
}
