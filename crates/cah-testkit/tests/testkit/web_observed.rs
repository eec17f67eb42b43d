//! Every candidate of a faulty WAT file fetched by an independent client (DNS, robots.txt,
//! redirects, body checks), compared with what `classify` predicted for it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use cah_testkit::images::{self, ImageKind};
use cah_testkit::names::DnsBehaviour;
use cah_testkit::wat::{FaultMix, WatConfig, generate_to_vec};
use cah_testkit::web::Expected;
use futures_util::StreamExt;
use hickory_proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;

use super::web_harness;

use web_harness::{Harness, harness};

#[tokio::test]
async fn every_candidate_of_a_faulty_wat_behaves_as_predicted() {
    let harness = harness().await;
    let mut candidates = Vec::new();
    for seed in [11, 12, 13] {
        let config = WatConfig {
            n_pages: 40,
            n_image_hosts: 80,
            faults: FaultMix::Fast,
            ..WatConfig::small(harness.web.port(), seed)
        };
        let (_, file_candidates, summary) = generate_to_vec(&config).expect("wat");
        assert_eq!(summary.n_candidates, file_candidates.len() as u64);
        candidates.extend(file_candidates);
    }
    assert!(candidates.len() > 300, "{}", candidates.len());
    let observer = Observer::new(&harness);
    let observed: Vec<(String, Expected)> = futures_util::stream::iter(candidates.iter())
        .map(|candidate| async {
            (
                candidate.url.clone(),
                observer.observe(&candidate.url).await,
            )
        })
        .buffered(8)
        .collect()
        .await;
    let mut n_kinds = std::collections::BTreeSet::new();
    for (candidate, (url, seen)) in candidates.iter().zip(observed) {
        assert_eq!(candidate.url, url);
        assert_eq!(
            normalized(seen.clone()),
            normalized(candidate.outcome.clone()),
            "{url}"
        );
        n_kinds.insert(format!("{:?}", std::mem::discriminant(&seen)));
    }
    assert!(
        n_kinds.len() >= 10,
        "the fault mix should exercise many outcomes, got {n_kinds:?}"
    );
}

/// An independent client: resolves, honours robots.txt, follows redirects, and names what it saw.
struct Observer<'a> {
    harness: &'a Harness,
    resolver: hickory_resolver::TokioResolver,
    robots: Mutex<HashMap<String, Vec<String>>>,
}

impl<'a> Observer<'a> {
    fn new(harness: &'a Harness) -> Self {
        Self {
            harness,
            resolver: harness.dns.resolver(Duration::from_secs(1)),
            robots: Mutex::new(HashMap::new()),
        }
    }

    async fn observe(&self, start_url: &str) -> Expected {
        let mut url = url::Url::parse(start_url).expect("candidate urls parse");
        let mut hops = 0;
        loop {
            let outcome = self.observe_one(&url).await;
            match outcome {
                Step::Done(expected) if hops == 0 => return expected,
                Step::Done(expected) => {
                    return Expected::Redirected {
                        hops,
                        then: Box::new(expected),
                    };
                }
                Step::Redirect(next) => {
                    hops += 1;
                    url = next;
                }
            }
            assert!(hops < 64, "runaway redirects from {start_url}");
        }
    }

    async fn observe_one(&self, url: &url::Url) -> Step {
        let host = url.host_str().expect("host").to_owned();
        match self.resolver.ipv4_lookup(format!("{host}.")).await {
            Ok(lookup) => match lookup.iter().next().map(|a| IpAddr::V4(a.0)) {
                Some(IpAddr::V4(ip)) if ip == Ipv4Addr::LOCALHOST => {}
                Some(IpAddr::V4(ip)) if ip.is_private() => {
                    return Step::Done(Expected::Dns(DnsBehaviour::Private));
                }
                Some(_) => return Step::Done(Expected::Dns(DnsBehaviour::Metadata)),
                None => return Step::Done(Expected::Dns(DnsBehaviour::NoData)),
            },
            Err(error) => {
                let behaviour = match error.proto().map(|proto| proto.kind()) {
                    Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
                        match *response_code {
                            ResponseCode::NXDomain => DnsBehaviour::NxDomain,
                            ResponseCode::ServFail => DnsBehaviour::ServFail,
                            ResponseCode::Refused => DnsBehaviour::Refused,
                            _ => DnsBehaviour::NoData,
                        }
                    }
                    _ => DnsBehaviour::Drop,
                };
                return Step::Done(Expected::Dns(behaviour));
            }
        }
        if self.disallowed(url).await {
            return Step::Done(Expected::RobotsDisallowed);
        }
        let response = self
            .harness
            .client
            .get(url.as_str())
            .send()
            .await
            .expect("the test web answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        if (300..400).contains(&status) {
            let location = header("location").expect("redirects carry a location");
            let next = url.join(&location).expect("location parses");
            let is_test_host = next.host_str().is_some_and(|host| host.ends_with(".test"));
            if !is_test_host {
                return Step::Done(Expected::PrivateRedirect { location });
            }
            if next == *url {
                return Step::Done(Expected::RedirectLoop);
            }
            return Step::Redirect(next);
        }
        if status != 200 {
            let retry_after =
                header("retry-after").map(|value| value.parse().expect("numeric retry-after"));
            return Step::Done(Expected::Status {
                status,
                retry_after,
            });
        }
        let content_type = header("content-type").unwrap_or_default();
        let robots_tag = header("x-robots-tag");
        let bytes = response
            .bytes()
            .await
            .expect("bounded bodies of the fast fault mix");
        Step::Done(self.judge_body(url, &content_type, robots_tag, &bytes))
    }

    fn judge_body(
        &self,
        url: &url::Url,
        content_type: &str,
        robots_tag: Option<String>,
        bytes: &[u8],
    ) -> Expected {
        if bytes.is_empty() {
            return Expected::EmptyBody;
        }
        let is_svg = bytes.starts_with(b"<?xml") && bytes.windows(4).any(|w| w == b"<svg");
        let sniffed = images::sniff(bytes);
        if content_type.starts_with("text/html") {
            return match (is_svg, sniffed) {
                (true, _) => Expected::WrongContentType {
                    kind: ImageKind::Svg,
                },
                (false, Some((format, _, _))) => Expected::WrongContentType {
                    kind: kind_of(format),
                },
                (false, None) => Expected::NotAnImage,
            };
        }
        if bytes.starts_with(b"<!doctype") {
            return Expected::NotAnImage;
        }
        let kind = if content_type == "image/svg+xml" {
            let text = String::from_utf8_lossy(bytes);
            if text.contains("width=\"50000\"") {
                return Expected::Bomb;
            }
            if !text.ends_with("</svg>\n") {
                return Expected::Truncated;
            }
            ImageKind::Svg
        } else {
            match sniffed {
                None => return Expected::Corrupt,
                Some((_, 50_000, 50_000)) => return Expected::Bomb,
                Some((_, 16_384, 16_384)) => return Expected::ZipBomb,
                Some((_, 4_000, 4_000)) => return Expected::ScanBomb,
                Some((format, _, _)) => kind_of(format),
            }
        };
        // A header that parses but bytes that differ from the served picture: a damaged file.
        let Some(expected_photo) = self.harness.web.expected_photo(url.as_str()) else {
            return Expected::Truncated;
        };
        if expected_photo.bytes.as_ref() != bytes {
            return Expected::Truncated;
        }
        assert_eq!(
            expected_photo.kind, kind,
            "{url}: format of the served picture"
        );
        match robots_tag {
            Some(tag) => Expected::RobotsTag { tag, kind },
            None => Expected::Image { kind },
        }
    }

    async fn disallowed(&self, url: &url::Url) -> bool {
        let host = url.host_str().expect("host").to_owned();
        let cached = self.robots.lock().expect("lock").get(&host).cloned();
        let rules = match cached {
            Some(rules) => rules,
            None => {
                let robots_url = format!("http://{host}:{}/robots.txt", url.port().expect("port"));
                let response = self
                    .harness
                    .client
                    .get(robots_url)
                    .send()
                    .await
                    .expect("robots.txt answers");
                let rules = match response.status().as_u16() {
                    200 => star_disallows(&response.text().await.expect("robots body")),
                    400..=499 => Vec::new(),
                    _ => vec!["/".to_owned()],
                };
                self.robots
                    .lock()
                    .expect("lock")
                    .insert(host, rules.clone());
                rules
            }
        };
        rules
            .iter()
            .any(|prefix| url.path().starts_with(prefix.as_str()))
    }
}

enum Step {
    Done(Expected),
    Redirect(url::Url),
}

/// `Disallow` lines of the `User-agent: *` group.
fn star_disallows(robots_txt: &str) -> Vec<String> {
    let mut in_star_group = false;
    let mut rules = Vec::new();
    for line in robots_txt.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "user-agent" => in_star_group = value.trim() == "*",
            "disallow" if in_star_group && !value.trim().is_empty() => {
                rules.push(value.trim().to_owned())
            }
            _ => {}
        }
    }
    rules
}

fn kind_of(format: image::ImageFormat) -> ImageKind {
    match format {
        image::ImageFormat::Jpeg => ImageKind::Jpeg,
        image::ImageFormat::Png => ImageKind::Png,
        image::ImageFormat::WebP => ImageKind::Webp,
        image::ImageFormat::Gif => ImageKind::Gif,
        other => panic!("unexpected format {other:?}"),
    }
}

/// Truncated and corrupt files are both "undecodable" to a client.
fn normalized(expected: Expected) -> Expected {
    match expected {
        Expected::Corrupt => Expected::Truncated,
        Expected::Redirected { hops, then } => Expected::Redirected {
            hops,
            then: Box::new(normalized(*then)),
        },
        other => other,
    }
}
