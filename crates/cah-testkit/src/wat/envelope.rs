//! The JSON envelope of WAT records (reference §3.3): `Container` + `Envelope`, all scalars strings.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::record::WatWriter;
use super::{HeaderStyle, Html, Link, Page};

pub(super) struct CaptureIds<'a> {
    pub(super) request: &'a str,
    pub(super) response: &'a str,
    pub(super) metadata: &'a str,
}

/// The JSON body of the WAT record describing the `warc_type` record (`request`, `response`,
/// `metadata`) of one capture.
pub(super) fn capture_json<W: Write>(
    writer: &mut WatWriter<W>,
    page: &Page,
    warc_type: &str,
    ids: &CaptureIds<'_>,
) -> String {
    let style = writer.style;
    let date = humantime::format_rfc3339_seconds(writer.clock).to_string();
    let content_length = 1_000 + writer.rng.below(60_000);
    writer.warc_offset += 200 + writer.rng.below(30_000);
    let container = json!({
        "Filename": writer.warc_filename,
        "Compressed": "true",
        "Offset": writer.warc_offset.to_string(),
        "Gzip-Metadata": {
            "Footer-Length": "8",
            "Deflate-Length": (content_length / 4).to_string(),
            "Header-Length": "10",
            "Inflated-CRC": (writer.rng.next_u64() as u32 as i32).to_string(),
            "Inflated-Length": content_length.to_string(),
        },
    });
    let mut warc_headers: Vec<(String, String)> = vec![
        ("WARC-Type".into(), warc_type.into()),
        ("WARC-Date".into(), date),
    ];
    let path_and_query = page
        .url
        .splitn(4, '/')
        .nth(3)
        .map(|rest| format!("/{rest}"))
        .unwrap_or_else(|| "/".into());
    let payload = match warc_type {
        "request" => {
            warc_headers.extend([
                ("WARC-Record-ID".into(), ids.request.into()),
                ("Content-Length".into(), content_length.to_string()),
                (
                    "Content-Type".into(),
                    "application/http; msgtype=request".into(),
                ),
                ("WARC-Warcinfo-ID".into(), writer.warcinfo_id.clone()),
                ("WARC-IP-Address".into(), "192.0.2.10".into()),
                ("WARC-Target-URI".into(), page.url.clone()),
                ("WARC-Block-Digest".into(), digest(writer)),
            ]);
            let host = url::Url::parse(&page.url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .unwrap_or_default();
            let request_headers = vec![
                ("Host".to_owned(), host),
                (
                    "Accept".into(),
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into(),
                ),
                ("Accept-Language".into(), "en-US,en;q=0.5".into()),
                (
                    "User-Agent".into(),
                    "CCBot/2.0 (https://commoncrawl.org/faq/)".into(),
                ),
                ("Accept-Encoding".into(), "br,gzip".into()),
                ("Connection".into(), "Keep-Alive".into()),
            ];
            json!({
                "Actual-Content-Type": "application/http; msgtype=request",
                "HTTP-Request-Metadata": {
                    "Request-Message": { "Method": "GET", "Path": path_and_query, "Version": "HTTP/1.1" },
                    "Headers": header_map(style, &request_headers),
                    "Headers-Length": "286",
                    "Entity-Length": "0",
                    "Entity-Trailing-Slop-Length": "0",
                },
            })
        }
        "response" => {
            warc_headers.extend([
                ("WARC-Record-ID".into(), ids.response.into()),
                ("Content-Length".into(), content_length.to_string()),
                (
                    "Content-Type".into(),
                    "application/http; msgtype=response".into(),
                ),
                ("WARC-Warcinfo-ID".into(), writer.warcinfo_id.clone()),
                ("WARC-Concurrent-To".into(), ids.request.into()),
                ("WARC-IP-Address".into(), "192.0.2.10".into()),
                ("WARC-Target-URI".into(), page.url.clone()),
                ("WARC-Protocol".into(), "http/1.1".into()),
                ("WARC-Protocol".into(), "tcp".into()),
                ("WARC-Payload-Digest".into(), digest(writer)),
                ("WARC-Block-Digest".into(), digest(writer)),
            ]);
            let payload_type = if page.html.is_some() {
                "text/html"
            } else {
                "application/pdf"
            };
            warc_headers.push(("WARC-Identified-Payload-Type".into(), payload_type.into()));
            let mut response = Map::new();
            response.insert(
                "Response-Message".into(),
                json!({ "Version": "HTTP/1.1", "Status": page.status.to_string(), "Reason": reason(page.status) }),
            );
            response.insert("Headers".into(), header_map(style, &page.headers));
            response.insert(
                "Headers-Length".into(),
                Value::String((400 + writer.rng.below(600)).to_string()),
            );
            response.insert(
                "Entity-Metadata".into(),
                json!({
                    "Actual-Content-Type": payload_type,
                    "Actual-Content-Length": (content_length - 500).to_string(),
                    "Trailing-Slop-Length": "0",
                    "Entity-Digest": digest(writer),
                }),
            );
            if let Some(html) = &page.html {
                response.insert("HTML-Metadata".into(), html_metadata(html));
            }
            response.insert(
                "Entity-Trailing-Slop-Length".into(),
                Value::String("0".into()),
            );
            json!({
                "Actual-Content-Type": "application/http; msgtype=response",
                "HTTP-Response-Metadata": Value::Object(response),
            })
        }
        _ => {
            warc_headers.extend([
                ("WARC-Record-ID".into(), ids.metadata.into()),
                ("Content-Length".into(), "1234".into()),
                ("Content-Type".into(), "application/warc-fields".into()),
                ("WARC-Warcinfo-ID".into(), writer.warcinfo_id.clone()),
                ("WARC-Concurrent-To".into(), ids.response.into()),
                ("WARC-Target-URI".into(), page.url.clone()),
            ]);
            let fetch_ms = (50 + writer.rng.below(3000)).to_string();
            json!({
                "Actual-Content-Type": "application/metadata-fields",
                "WARC-Metadata-Metadata": {
                    "Metadata-Records": [
                        { "Name": "fetchTimeMs", "Value": fetch_ms },
                        { "Name": "charset-detected", "Value": "UTF-8" },
                        { "Name": "languages-cld2", "Value": "{\"reliable\":true,\"text-bytes\":4123,\"languages\":[{\"code\":\"en\",\"code-iso-639-3\":\"eng\",\"text-covered\":0.98,\"score\":1021.0,\"name\":\"ENGLISH\"}]}" },
                    ],
                },
            })
        }
    };
    let envelope = json!({
        "Format": "WARC",
        "WARC-Header-Length": (400 + warc_headers.len() * 40).to_string(),
        "Actual-Content-Length": content_length.to_string(),
        "Block-Digest": digest(writer),
        "WARC-Header-Metadata": header_map(style, &warc_headers),
        "Payload-Metadata": payload,
    });
    let record = json!({ "Container": container, "Envelope": envelope });
    serde_json::to_string(&record).expect("a json value always serializes")
}

/// Headers as a JSON object: strings, or (new style) arrays for repeated names.
pub(super) fn header_map(style: HeaderStyle, headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = Value::String(value.clone());
        match (style, map.get_mut(name)) {
            (HeaderStyle::Arrays, Some(Value::Array(values))) => values.push(value),
            (HeaderStyle::Arrays, Some(existing)) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            _ => {
                map.insert(name.clone(), value);
            }
        }
    }
    Value::Object(map)
}

fn html_metadata(html: &Html) -> Value {
    let mut head = Map::new();
    if let Some(title) = &html.title {
        head.insert("Title".into(), Value::String(title.clone()));
    }
    if let Some(base) = &html.base {
        head.insert("Base".into(), Value::String(base.clone()));
    }
    let metas: Vec<Value> = html
        .metas
        .iter()
        .map(|(name, content)| json!({ "name": name, "content": content }))
        .collect();
    head.insert("Metas".into(), Value::Array(metas));
    head.insert(
        "Link".into(),
        json!([{ "path": "LINK@/href", "url": "/static/site.css", "rel": "stylesheet", "type": "text/css" }]),
    );
    head.insert(
        "Scripts".into(),
        json!([{ "path": "SCRIPT@/src", "url": "/static/app.js", "type": "text/javascript" }]),
    );
    let links: Vec<Value> = html.links.iter().map(link_json).collect();
    json!({ "Head": Value::Object(head), "Links": links })
}

fn link_json(link: &Link) -> Value {
    let mut map = Map::new();
    map.insert("path".into(), Value::String(link.path.clone()));
    map.insert("url".into(), Value::String(link.url.clone()));
    for (key, value) in [
        ("alt", &link.alt),
        ("title", &link.title),
        ("text", &link.text),
        ("rel", &link.rel),
    ] {
        if let Some(value) = value {
            map.insert(key.into(), Value::String(value.clone()));
        }
    }
    Value::Object(map)
}

fn digest<W: Write>(writer: &mut WatWriter<W>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::from("sha1:");
    for _ in 0..32 {
        out.push(char::from(ALPHABET[writer.rng.index(ALPHABET.len())]));
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_styles() {
        let headers: Vec<(String, String)> = [
            ("Set-Cookie", "a=1"),
            ("Server", "nginx"),
            ("Set-Cookie", "b=2"),
            ("Set-Cookie", "c=3"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        assert_eq!(
            header_map(HeaderStyle::Legacy, &headers),
            json!({ "Set-Cookie": "c=3", "Server": "nginx" })
        );
        assert_eq!(
            header_map(HeaderStyle::Arrays, &headers),
            json!({ "Set-Cookie": ["a=1", "b=2", "c=3"], "Server": "nginx" })
        );
    }
}
