//! The URL scheme of the test web: what a path does, and what a client should end up with.
//!
//! The first path segment selects the behaviour; the rest of the path is the "inner" URL that a
//! behaviour wraps (`/redirect/2/ok/cat.jpg` redirects twice, then serves `/ok/cat.jpg`).
//! The image format is the extension of the last segment (`.jpg`, `.png`, `.webp`, `.gif`,
//! `.svg`; anything else is JPEG).

use std::time::Duration;

use crate::images::ImageKind;
use crate::names::{self, DnsBehaviour, RobotsPolicy};

/// The length of the path `/long-redirect/` points to (hyper reads headers up to about 400 KB).
pub const LONG_REDIRECT_BYTES: usize = 100_000;

/// The whole body `/stall/` promises: below scraper-d's 10 MiB body cap, so only a time limit
/// stops it.
pub const STALL_BODY_BYTES: usize = 9_500_000;

/// The bytes `/stall/` holds back at the end of its body: the rest is sent at once.
pub const STALL_HELD_BACK_BYTES: usize = 1_000;

const _: () = assert!(STALL_HELD_BACK_BYTES < STALL_BODY_BYTES);

/// How long `/stall/` keeps a connection open after its bytes before cutting it (a client that
/// goes away earlier ends it earlier).
pub const STALL_HOLD: Duration = Duration::from_secs(300);

/// What the server does for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/ok/...`: 200 with a picture of the path's format from the corpus's default mix.
    Image { kind: ImageKind },
    /// `/photo/{file}`: 200 with the corpus picture of that file name (the manifest's `file`),
    /// including those outside the default mix; 404 when the corpus has no such file. For
    /// benchmarks that choose their own mix of pictures (`scripts/bench_mix.py`).
    Named { name: String, kind: ImageKind },
    /// `/pixel/...`: 200 with a 1x1 GIF (a tracking-pixel placeholder).
    Pixel,
    /// `/status/{code}/...`: that status with a short HTML body (`/status/429/` has no Retry-After).
    Status { code: u16 },
    /// `/ratelimit/{seconds}/...`: 429 with `Retry-After: {seconds}`.
    RateLimited { retry_after: u32 },
    /// `/redirect/{n}/{inner}`: `n` redirects (301, 302, 307 in turn), then `{inner}`.
    Redirect { remaining: u32, inner: String },
    /// `/redirect-host/{host}/{inner}`: one 302 to `http://{host}:{port}/{inner}`.
    RedirectHost { host: String, inner: String },
    /// `/loop/...`: a 302 to itself.
    Loop,
    /// `/private-redirect/{target}/...`: a 302 to a private or metadata address (see [`private_location`]).
    PrivateRedirect { location: String },
    /// `/long-redirect/...`: a 302 to a picture's path of [`LONG_REDIRECT_BYTES`] bytes.
    LongRedirect,
    /// `/slow/{ms}/{inner}`: waits `ms` before answering as `{inner}`.
    SlowHeaders { delay: Duration, inner: String },
    /// `/drip/...`: a picture sent a few bytes at a time (minutes for the whole body).
    Drip { kind: ImageKind },
    /// `/endless/...`: `image/jpeg` without Content-Length that never ends.
    Endless,
    /// `/huge-length/...`: `Content-Length: 10000000000`, then an endless body.
    HugeLength,
    /// `/stall/...` (with `Content-Length: 9500000`) and `/stall-unsized/...` (without):
    /// a picture's first 8 bytes (its magic number) and noise, all of [`STALL_BODY_BYTES`] at once but the last
    /// [`STALL_HELD_BACK_BYTES`], then nothing for [`STALL_HOLD`] while the connection stays
    /// open. Many at once make a client hold many almost complete large bodies.
    Stall { kind: ImageKind, sized: bool },
    /// `/reset/...`: Content-Length of a full picture, half of it, then the connection is cut.
    Reset { kind: ImageKind },
    /// `/wrongtype/...`: a real picture labelled `text/html`.
    WrongType { kind: ImageKind },
    /// `/notimage/...`: an HTML page labelled `image/jpeg`.
    NotImage,
    /// `/empty/...`: 200 `image/jpeg` with an empty body.
    Empty,
    /// `/truncated/...`: the first half of a picture, with a matching Content-Length.
    Truncated { kind: ImageKind },
    /// `/corrupt/...`: the format's magic number followed by noise.
    Corrupt { kind: ImageKind },
    /// `/bomb/...`: a tiny file whose header claims 50000x50000 pixels.
    Bomb { kind: ImageKind },
    /// `/zipbomb/...`: a real 16384x16384 PNG of zeros (268 MB inflated from about 500 KB).
    ZipBomb,
    /// `/scanbomb/...`: a valid 4000x4000 progressive JPEG of 2,000 empty scans in 105 KB, each a
    /// pass over all 250,000 blocks for a decoder without a scan limit.
    ScanBomb,
    /// `/xrobots/{tag}/...`: a picture with `X-Robots-Tag: {tag}`.
    RobotsTag { tag: String, kind: ImageKind },
    /// `/tdm/{value}/...`: a picture with TDMRep's `tdm-reservation: {value}` (`1`: text and
    /// data mining rights reserved, with a `tdm-policy` URL; `0`: not reserved).
    Tdm { value: String, kind: ImageKind },
    /// `/private/...`: a picture, but robots.txt disallows `/private/` for every agent.
    RobotsPrivate { kind: ImageKind },
    /// `/robots.txt`.
    RobotsTxt,
    /// Anything else: 404.
    NotFound,
}

/// The outcome a correct client should reach for a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A decodable picture of this format (SVG included: rejecting it is the client's policy).
    Image { kind: ImageKind },
    /// A picture whose response carries `X-Robots-Tag: {tag}` (`noai`, `noimageai`, `noindex`, `noimageindex`, `none`).
    RobotsTag { tag: String, kind: ImageKind },
    /// A picture whose response reserves text and data mining rights (`tdm-reservation: 1`).
    TdmReserved { kind: ImageKind },
    /// An HTTP error status, with the Retry-After seconds when sent.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// `hops` redirects were followed before `then`.
    Redirected { hops: u32, then: Box<Expected> },
    /// A redirect that points back at itself.
    RedirectLoop,
    /// More redirects than the client allows (see [`Expected::after_redirects`]).
    TooManyRedirects,
    /// A redirect to a private, loopback-name or metadata address: never follow it.
    PrivateRedirect { location: String },
    /// A redirect to a URL of more than [`LONG_REDIRECT_BYTES`] bytes: a client that bounds the
    /// URLs it keeps (the final URL is stored with a sample) refuses it.
    OverlongRedirect,
    /// Headers arrive after `delay`, then `then`.
    SlowHeaders {
        delay: Duration,
        then: Box<Expected>,
    },
    /// The body arrives too slowly to finish within any sane timeout.
    SlowBody,
    /// Almost all of a large body at once, then silence: only a time limit ends it.
    StalledBody,
    /// A body without end and without Content-Length: a size cap must stop it.
    EndlessBody,
    /// A Content-Length far beyond any sane cap.
    HugeContentLength,
    /// The connection is cut mid-body.
    ConnectionReset,
    /// A real picture of `kind` labelled `text/html`.
    WrongContentType { kind: ImageKind },
    /// HTML labelled as an image.
    NotAnImage,
    /// A 200 with an empty body.
    EmptyBody,
    /// A picture cut in half.
    Truncated,
    /// Noise after a valid magic number.
    Corrupt,
    /// A header claiming 50000x50000 pixels.
    Bomb,
    /// A real decompression bomb (16384x16384).
    ZipBomb,
    /// A progressive JPEG of thousands of scans (a CPU bomb within any pixel cap).
    ScanBomb,
    /// A robots-respecting client never requests it.
    RobotsDisallowed,
    /// The host does not resolve to a usable (loopback) address.
    Dns(DnsBehaviour),
}

/// Reads the route of a path (query strings are ignored).
pub fn route(path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let trimmed = path.trim_start_matches('/');
    let (head, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let kind = ImageKind::from_path(path).unwrap_or(ImageKind::Jpeg);
    let (arg, after_arg) = rest.split_once('/').unwrap_or((rest, ""));
    match head {
        "ok" => Route::Image { kind },
        "photo" if !arg.is_empty() && after_arg.is_empty() => Route::Named {
            name: arg.to_owned(),
            kind,
        },
        "pixel" => Route::Pixel,
        "status" => match arg.parse::<u16>() {
            Ok(code) if (200..=599).contains(&code) => Route::Status { code },
            _ => Route::NotFound,
        },
        "ratelimit" => match arg.parse::<u32>() {
            Ok(retry_after) => Route::RateLimited { retry_after },
            Err(_) => Route::NotFound,
        },
        "redirect" => match arg.parse::<u32>() {
            Ok(remaining) => Route::Redirect {
                remaining: remaining.max(1),
                inner: format!("/{after_arg}"),
            },
            Err(_) => Route::NotFound,
        },
        "redirect-host" if !arg.is_empty() => Route::RedirectHost {
            host: names::normalize_host(arg),
            inner: format!("/{after_arg}"),
        },
        "loop" => Route::Loop,
        "long-redirect" => Route::LongRedirect,
        "private-redirect" => Route::PrivateRedirect {
            location: private_location(arg, after_arg),
        },
        "slow" => match arg.parse::<u64>() {
            Ok(ms) => Route::SlowHeaders {
                delay: Duration::from_millis(ms),
                inner: format!("/{after_arg}"),
            },
            Err(_) => Route::NotFound,
        },
        "drip" => Route::Drip { kind },
        "endless" => Route::Endless,
        "huge-length" => Route::HugeLength,
        "stall" => Route::Stall { kind, sized: true },
        "stall-unsized" => Route::Stall { kind, sized: false },
        "reset" => Route::Reset { kind },
        "wrongtype" => Route::WrongType { kind },
        "notimage" => Route::NotImage,
        "empty" => Route::Empty,
        "truncated" => Route::Truncated { kind },
        "corrupt" => Route::Corrupt { kind },
        "bomb" => Route::Bomb { kind },
        "zipbomb" => Route::ZipBomb,
        "scanbomb" => Route::ScanBomb,
        "xrobots" if !arg.is_empty() => Route::RobotsTag {
            tag: arg.to_ascii_lowercase(),
            kind,
        },
        "tdm" if !arg.is_empty() => Route::Tdm {
            value: arg.to_owned(),
            kind,
        },
        "private" => Route::RobotsPrivate { kind },
        "robots.txt" if rest.is_empty() => Route::RobotsTxt,
        _ => Route::NotFound,
    }
}

/// The Location of `/private-redirect/{target}/{rest}`.
///
/// Targets: `10` (10.0.0.1), `172` (172.16.0.1), `192` (192.168.1.1), `metadata`
/// (169.254.169.254/latest/meta-data/), `hetzner-metadata` (169.254.169.254/hetzner/v1/metadata),
/// `localhost` (`http://localhost/`), `zero` (`0.0.0.0`), `ipv6` (`[fd00::1]`); anything else is `10`.
pub fn private_location(target: &str, rest: &str) -> String {
    match target {
        "metadata" => "http://169.254.169.254/latest/meta-data/".to_owned(),
        "hetzner-metadata" => "http://169.254.169.254/hetzner/v1/metadata".to_owned(),
        "172" => format!("http://172.16.0.1/{rest}"),
        "192" => format!("http://192.168.1.1/{rest}"),
        "localhost" => format!("http://localhost/{rest}"),
        "zero" => format!("http://0.0.0.0/{rest}"),
        "ipv6" => format!("http://[fd00::1]/{rest}"),
        _ => format!("http://10.0.0.1/{rest}"),
    }
}

/// True when robots.txt of `host` disallows `path` for `User-agent: *`.
pub fn robots_disallows(host: &str, path: &str) -> bool {
    match names::host_profile(host).robots {
        RobotsPolicy::Missing => false,
        RobotsPolicy::DisallowAll | RobotsPolicy::ServerError => path != "/robots.txt",
        RobotsPolicy::Standard | RobotsPolicy::Endless => path.starts_with("/private/"),
    }
}

/// What a robots-respecting client reaches for `url` (`http://host:port/path`).
pub fn classify(url: &str) -> Expected {
    classify_with(url, true, 0)
}

/// What any client reaches for `url` when it ignores robots.txt (the 2021 scraper did).
pub fn classify_ignoring_robots(url: &str) -> Expected {
    classify_with(url, false, 0)
}

impl Expected {
    /// The outcome for a client that follows at most `max_redirects` redirects.
    pub fn after_redirects(&self, max_redirects: u32) -> Expected {
        match self {
            Expected::Redirected { hops, .. } if *hops > max_redirects => {
                Expected::TooManyRedirects
            }
            Expected::Redirected { then, .. } => then.after_redirects(max_redirects),
            other => other.clone(),
        }
    }

    /// True for outcomes that end with a usable picture in hand (tags included).
    pub fn is_image(&self) -> bool {
        match self {
            Expected::Image { .. } | Expected::RobotsTag { .. } | Expected::TdmReserved { .. } => {
                true
            }
            Expected::Redirected { then, .. } | Expected::SlowHeaders { then, .. } => {
                then.is_image()
            }
            _ => false,
        }
    }
}

const MAX_NESTING: u32 = 32;

fn classify_with(url: &str, respect_robots: bool, depth: u32) -> Expected {
    let Ok(parsed) = url::Url::parse(url) else {
        return Expected::Status {
            status: 404,
            retry_after: None,
        };
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let dns = names::dns_behaviour(&host);
    if !matches!(dns, DnsBehaviour::Loopback | DnsBehaviour::Slow) {
        return Expected::Dns(dns);
    }
    let path = parsed.path().to_owned();
    if respect_robots && robots_disallows(&host, &path) {
        return Expected::RobotsDisallowed;
    }
    if depth > MAX_NESTING {
        return Expected::RedirectLoop;
    }
    let host_tag = names::host_profile(&host).robots_tag;
    let image = |kind: ImageKind| match host_tag {
        Some(tag) => Expected::RobotsTag {
            tag: tag.to_owned(),
            kind,
        },
        None => Expected::Image { kind },
    };
    let inner_url = |inner: &str| format!("http://{host}:{port}{inner}");
    match route(&path) {
        // A named picture the corpus lacks is a 404 that the scheme alone cannot foresee.
        Route::Image { kind } | Route::Named { kind, .. } | Route::RobotsPrivate { kind } => {
            image(kind)
        }
        Route::Pixel => image(ImageKind::Gif),
        Route::Status { code } => Expected::Status {
            status: code,
            retry_after: None,
        },
        Route::RateLimited { retry_after } => Expected::Status {
            status: 429,
            retry_after: Some(retry_after),
        },
        Route::Redirect { remaining, inner } => {
            let then = classify_with(&inner_url(&inner), respect_robots, depth + 1);
            prepend_hops(remaining, then)
        }
        Route::RedirectHost {
            host: target,
            inner,
        } => {
            let then = classify_with(
                &format!("http://{target}:{port}{inner}"),
                respect_robots,
                depth + 1,
            );
            prepend_hops(1, then)
        }
        Route::Loop => Expected::RedirectLoop,
        Route::PrivateRedirect { location } => Expected::PrivateRedirect { location },
        Route::LongRedirect => Expected::OverlongRedirect,
        Route::SlowHeaders { delay, inner } => Expected::SlowHeaders {
            delay,
            then: Box::new(classify_with(&inner_url(&inner), respect_robots, depth + 1)),
        },
        Route::Drip { .. } => Expected::SlowBody,
        Route::Endless => Expected::EndlessBody,
        Route::HugeLength => Expected::HugeContentLength,
        Route::Stall { .. } => Expected::StalledBody,
        Route::Reset { .. } => Expected::ConnectionReset,
        Route::WrongType { kind } => Expected::WrongContentType { kind },
        Route::NotImage | Route::RobotsTxt => Expected::NotAnImage,
        Route::Empty => Expected::EmptyBody,
        Route::Truncated { .. } => Expected::Truncated,
        Route::Corrupt { .. } => Expected::Corrupt,
        Route::Bomb { .. } => Expected::Bomb,
        Route::ZipBomb => Expected::ZipBomb,
        Route::ScanBomb => Expected::ScanBomb,
        Route::RobotsTag { tag, kind } => Expected::RobotsTag { tag, kind },
        Route::Tdm { value, kind } if value == "1" => Expected::TdmReserved { kind },
        Route::Tdm { kind, .. } => image(kind),
        Route::NotFound => Expected::Status {
            status: 404,
            retry_after: None,
        },
    }
}

fn prepend_hops(hops: u32, then: Expected) -> Expected {
    match then {
        Expected::Redirected { hops: more, then } => Expected::Redirected {
            hops: hops + more,
            then,
        },
        other => Expected::Redirected {
            hops,
            then: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests;
