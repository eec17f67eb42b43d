//! Turns a request for the test web into the response its URL scheme promises.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::WebState;
use super::scheme::{
    self, LONG_REDIRECT_BYTES, Route, STALL_BODY_BYTES, STALL_HELD_BACK_BYTES, STALL_HOLD,
};
use crate::images::{self, ImageKind};
use crate::names::{self, RobotsPolicy};

/// The single handler behind every host and path.
pub(crate) async fn handle(State(state): State<Arc<WebState>>, request: Request) -> Response {
    let host = request_host(&request);
    let path = request.uri().path().to_owned();
    state.stats.record(&host, &path);
    tracing::debug!(%host, %path, method = %request.method(), "web request");
    let mut response = respond(&state, &host, &path, 0).await;
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("cah-testkit"));
    if let Some(tag) = names::host_profile(&host).robots_tag {
        headers
            .entry("x-robots-tag")
            .or_insert(HeaderValue::from_static(tag));
    }
    response
}

fn request_host(request: &Request) -> String {
    let from_header = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let host = from_header
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    names::normalize_host(host)
}

async fn respond(state: &WebState, host: &str, path: &str, depth: u32) -> Response {
    let key = super::photo_key(host, path);
    match scheme::route(path) {
        Route::Image { kind } | Route::RobotsPrivate { kind } => {
            image_response(state.photo(kind, key), kind)
        }
        Route::Named { name, .. } => match state.corpus.named(&name) {
            Some(photo) => image_response(photo.bytes.clone(), photo.kind),
            None => status_page(404),
        },
        Route::Pixel => image_response(state.assets.pixel.clone(), ImageKind::Gif),
        Route::Status { code } => status_page(code),
        Route::RateLimited { retry_after } => {
            let mut response = status_page(429);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Route::Redirect { remaining, inner } => {
            let location = if remaining > 1 {
                format!("/redirect/{}{inner}", remaining - 1)
            } else {
                inner
            };
            let status = match remaining % 3 {
                0 => StatusCode::MOVED_PERMANENTLY,
                1 => StatusCode::FOUND,
                _ => StatusCode::TEMPORARY_REDIRECT,
            };
            redirect(status, &location)
        }
        Route::RedirectHost {
            host: target,
            inner,
        } => redirect(
            StatusCode::FOUND,
            &format!("http://{target}:{}{inner}", state.port),
        ),
        Route::Loop => redirect(StatusCode::FOUND, path),
        Route::PrivateRedirect { location } => redirect(StatusCode::FOUND, &location),
        Route::LongRedirect => {
            let name = "a".repeat(LONG_REDIRECT_BYTES - "/ok/.jpg".len());
            redirect(StatusCode::FOUND, &format!("/ok/{name}.jpg"))
        }
        Route::SlowHeaders { delay, inner } => {
            tokio::time::sleep(delay).await;
            if depth > 8 {
                return status_page(508);
            }
            Box::pin(respond(state, host, &inner, depth + 1)).await
        }
        Route::Drip { kind } => drip(
            state.photo(kind, key),
            kind,
            state.config.drip_chunk,
            state.config.drip_interval,
        ),
        Route::Endless => endless(None),
        Route::HugeLength => endless(Some(10_000_000_000)),
        Route::Stall { kind, sized } => stall(
            &state.photo(kind, key),
            kind,
            sized,
            state.assets.stall_noise(),
        ),
        Route::Reset { kind } => reset_midway(state.photo(kind, key), kind),
        Route::WrongType { kind } => {
            let mut response = image_response(state.photo(kind, key), kind);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Route::NotImage => {
            let body = "<!doctype html><html><head><title>Not found</title></head><body>moved</body></html>";
            ([(header::CONTENT_TYPE, "image/jpeg")], body).into_response()
        }
        Route::Empty => ([(header::CONTENT_TYPE, "image/jpeg")], Bytes::new()).into_response(),
        Route::Truncated { kind } => image_response(
            Bytes::from(images::truncated(&state.photo(kind, key))),
            kind,
        ),
        Route::Corrupt { kind } => image_response(
            Bytes::from(images::corrupt(&state.photo(kind, key), key)),
            kind,
        ),
        Route::Bomb { kind } => image_response(state.assets.bomb(kind), kind),
        Route::ZipBomb => image_response(state.assets.zip_bomb.clone(), ImageKind::Png),
        Route::ScanBomb => image_response(state.assets.scan_bomb.clone(), ImageKind::Jpeg),
        Route::RobotsTag { tag, kind } => {
            let mut response = image_response(state.photo(kind, key), kind);
            if let Ok(value) = HeaderValue::from_str(&tag) {
                response.headers_mut().insert("x-robots-tag", value);
            }
            response
        }
        Route::Tdm { value, kind } => {
            let mut response = image_response(state.photo(kind, key), kind);
            if let Ok(value) = HeaderValue::from_str(&value) {
                let headers = response.headers_mut();
                headers.insert("tdm-reservation", value);
                headers.insert(
                    "tdm-policy",
                    HeaderValue::from_static("https://rights.example/tdm-policy.json"),
                );
            }
            response
        }
        Route::RobotsTxt => robots_txt(names::host_profile(host).robots),
        Route::NotFound => status_page(404),
    }
}

fn image_response(bytes: Bytes, kind: ImageKind) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind.mime()));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    (StatusCode::OK, headers, bytes).into_response()
}

fn status_page(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::NOT_FOUND);
    let body = format!("<!doctype html><title>{status}</title><h1>{status}</h1>\n");
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (status, [(header::LOCATION, value)], "").into_response(),
        Err(_) => status_page(500),
    }
}

/// The rules of [`RobotsPolicy::Standard`].
const STANDARD_ROBOTS: &str =
    "User-agent: BadBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n";

fn robots_txt(policy: RobotsPolicy) -> Response {
    let body = match policy {
        RobotsPolicy::Standard => STANDARD_ROBOTS,
        RobotsPolicy::Endless => return endless_robots_txt(),
        RobotsPolicy::DisallowAll => "User-agent: *\nDisallow: /\n",
        RobotsPolicy::Missing => return status_page(404),
        RobotsPolicy::ServerError => return status_page(503),
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The standard rules, then comment lines in 8 KiB chunks for as long as the client reads.
fn endless_robots_txt() -> Response {
    let comments = Bytes::from("# still more robots.txt\n".repeat(8192 / 24));
    let chunks = stream::once(async { Ok::<Bytes, std::io::Error>(Bytes::from(STANDARD_ROBOTS)) })
        .chain(stream::repeat_with(move || Ok(comments.clone())));
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn drip(bytes: Bytes, kind: ImageKind, chunk: usize, interval: Duration) -> Response {
    let total = bytes.len();
    let chunks = stream::unfold((bytes, true), move |(rest, first)| async move {
        if rest.is_empty() {
            return None;
        }
        if !first {
            tokio::time::sleep(interval).await;
        }
        let mut rest = rest;
        let piece = rest.split_to(chunk.max(1).min(rest.len()));
        Some((Ok::<Bytes, std::io::Error>(piece), (rest, false)))
    });
    streamed(kind.mime(), Some(total as u64), Body::from_stream(chunks))
}

fn endless(content_length: Option<u64>) -> Response {
    let mut block = vec![0u8; 64 * 1024];
    crate::rng::SplitMix64::new(42).fill(&mut block);
    block[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    let first = Bytes::from(block);
    let mut rest = first.to_vec();
    rest[..4].copy_from_slice(&[0, 0, 0, 0]);
    let rest = Bytes::from(rest);
    let chunks = stream::iter(
        std::iter::once(first)
            .chain(std::iter::repeat(rest))
            .map(Ok::<Bytes, std::io::Error>),
    );
    streamed("image/jpeg", content_length, Body::from_stream(chunks))
}

/// The photo's magic number, then noise up to all but the last [`STALL_HELD_BACK_BYTES`] of
/// [`STALL_BODY_BYTES`] at once, then silence on an open connection for [`STALL_HOLD`]; hyper
/// drops the stream (and its timer) as soon as the client goes away.
fn stall(photo: &Bytes, kind: ImageKind, sized: bool, noise: Bytes) -> Response {
    let magic = photo.slice(..8.min(photo.len()));
    let rest = noise.slice(magic.len()..STALL_BODY_BYTES - STALL_HELD_BACK_BYTES);
    let chunks =
        stream::iter([Ok::<Bytes, std::io::Error>(magic), Ok(rest)]).chain(stream::once(async {
            tokio::time::sleep(STALL_HOLD).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "testkit gives up on a stalled body",
            ))
        }));
    let length = sized.then_some(STALL_BODY_BYTES as u64);
    streamed(kind.mime(), length, Body::from_stream(chunks))
}

fn reset_midway(bytes: Bytes, kind: ImageKind) -> Response {
    let total = bytes.len() as u64;
    let half = bytes.slice(..bytes.len() / 2);
    // The pause lets hyper flush the headers and the first half before the error aborts the
    // connection; without it the client may see no response at all.
    let chunks = stream::once(async move { Ok(half) }).chain(stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "testkit cuts the connection mid-body",
        ))
    }));
    streamed(kind.mime(), Some(total), Body::from_stream(chunks))
}

fn streamed(mime: &'static str, content_length: Option<u64>, body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Some(length) = content_length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}
