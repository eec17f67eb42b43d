//! The synthetic pages of generated WAT files: links, alt texts, licences and image URLs.

use super::generate::{FaultMix, WatConfig};
use super::{Html, Link, Page};
use crate::names;
use crate::rng::SplitMix64;

const ADJECTIVES: &[&str] = &[
    "red", "old", "tiny", "golden", "misty", "wooden", "bright", "quiet", "snowy", "striped",
];
const NOUNS: &[&str] = &[
    "bicycle",
    "lighthouse",
    "cat",
    "teapot",
    "mountain",
    "harbour",
    "violin",
    "garden",
    "train",
    "bridge",
];
const SCENES: &[&str] = &[
    "at sunset",
    "in the rain",
    "on a wooden table",
    "near the river",
    "from above",
    "in winter",
];
const FOREIGN_ALTS: &[&str] = &[
    "Café au lait sur la terrasse",
    "東京の夜景と高層ビル",
    "Ölgemälde einer Berglandschaft",
    "Пейзаж с рекой и лесом",
    "Sunrise 🌅 over the bay",
    "Fish &amp; chips on a plate",
];
const FAST_FAULTS: &[&str] = &[
    "status/404",
    "status/403",
    "status/410",
    "status/500",
    "status/503",
    "status/429",
    "ratelimit/30",
    "redirect/1/ok",
    "redirect/3/ok",
    "redirect/12/ok",
    "loop",
    "private-redirect/10",
    "private-redirect/metadata",
    "truncated",
    "corrupt",
    "bomb",
    "wrongtype",
    "notimage",
    "empty",
    "xrobots/noai",
    "xrobots/noimageai",
    "xrobots/noindex",
    "xrobots/noimageindex",
    "private",
    "pixel",
    "nothing",
];
const SLOW_FAULTS: &[&str] = &[
    "drip",
    "endless",
    "huge-length",
    "reset",
    "slow/1500/ok",
    "zipbomb",
];

/// The page at `index` of the file described by `config` (deterministic).
pub fn page_for(config: &WatConfig, index: u64, image_hosts: &[String]) -> Page {
    let mut rng = SplitMix64::new(
        config.seed
            ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(config.file_index) << 48,
    );
    let port = config.web_port;
    let site = format!("site-{:04}.{}", rng.below(500), rng.pick(names::PAGE_ZONES));
    let query = if rng.percent(10) { "?page=2" } else { "" };
    let url = format!(
        "http://{site}:{port}/post-{}-{index}.html{query}",
        config.file_index
    );
    let status = if config.faults == FaultMix::None {
        200
    } else {
        *rng.pick(&[
            200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 404,
            301, 500, 403,
        ])
    };
    let mut headers: Vec<(String, String)> = vec![
        (
            "Date".into(),
            httpdate::fmt_http_date(config.capture_start()),
        ),
        ("Server".into(), "nginx/1.26.2".into()),
        ("Content-Type".into(), "text/html; charset=UTF-8".into()),
    ];
    if rng.percent(50) {
        headers.push((
            "Set-Cookie".into(),
            format!("session={:x}; Path=/; HttpOnly", rng.next_u64()),
        ));
        headers.push(("Set-Cookie".into(), "consent=0; Path=/".into()));
    }
    if rng.percent(30) {
        headers.push(("Vary".into(), "Accept-Encoding".into()));
        headers.push(("Vary".into(), "Cookie".into()));
    }
    headers.push((
        "X-Crawler-Content-Length".into(),
        (2_000 + rng.below(90_000)).to_string(),
    ));
    if rng.percent(3) {
        if let Some(content_type) = headers.iter_mut().find(|(name, _)| name == "Content-Type") {
            content_type.1 = "application/pdf".into();
        }
        return Page {
            url,
            status,
            headers,
            html: None,
        };
    }

    let base = match rng.below(100) {
        0..=7 => Some("/".to_owned()),
        8..=12 => Some(format!("http://cdn-{:04}.cdn.test:{port}/", rng.below(50))),
        _ => None,
    };
    let mut links = Vec::new();
    // Navigation, archives and related posts: real pages carry dozens of anchors, which is most
    // of a WAT record's size.
    for _ in 0..30 + rng.below(120) {
        let (adjective, noun) = (rng.pick(ADJECTIVES), rng.pick(NOUNS));
        links.push(Link::anchor(
            format!(
                "/category/{noun}/{adjective}-{noun}-{:08x}.html",
                rng.next_u64() as u32
            ),
            format!(
                "Read more about the {adjective} {noun} {}",
                rng.pick(SCENES)
            ),
        ));
    }
    let license_url = format!(
        "https://creativecommons.org/licenses/{}/4.0/",
        rng.pick(&["by", "by-sa", "by-nc", "by-nd"])
    );
    let license_position = match rng.below(100) {
        0..=11 => Some(0),
        12..=14 => Some(1),
        _ => None,
    };
    let n_images = rng.below(13);
    for image_index in 0..n_images {
        if license_position == Some(image_index) {
            links.push(Link::license(license_url.clone()));
        }
        links.push(image_link(
            config,
            &mut rng,
            index,
            image_index,
            image_hosts,
        ));
        if rng.percent(30) {
            links.push(Link::anchor(
                format!("/tag/{}", rng.pick(NOUNS)),
                rng.pick(NOUNS).to_string(),
            ));
        }
    }
    if rng.percent(5) {
        links.push(Link {
            path: "SOURCE@/src".into(),
            ..Link::anchor(format!("/ok/source-{index}.webp"), "")
        });
    }
    let title = format!(
        "The {} {} {}",
        rng.pick(ADJECTIVES),
        rng.pick(NOUNS),
        rng.pick(SCENES)
    );
    let metas = vec![
        (
            "viewport".to_owned(),
            "width=device-width, initial-scale=1".to_owned(),
        ),
        (
            "description".to_owned(),
            format!("A post about {}", rng.pick(NOUNS)),
        ),
    ];
    Page {
        url,
        status,
        headers,
        html: Some(Html {
            title: Some(title),
            base,
            metas,
            links,
        }),
    }
}

fn image_link(
    config: &WatConfig,
    rng: &mut SplitMix64,
    page_index: u64,
    image_index: u64,
    hosts: &[String],
) -> Link {
    let port = config.web_port;
    let extension = match rng.below(100) {
        0..=69 => "jpg",
        70..=83 => "png",
        84..=90 => "webp",
        91..=96 => "gif",
        _ => "svg",
    };
    let behaviour = match config.faults {
        FaultMix::None => "ok",
        FaultMix::Fast if rng.percent(25) => rng.pick(FAST_FAULTS),
        FaultMix::Full if rng.percent(25) => {
            if rng.percent(15) {
                rng.pick(SLOW_FAULTS)
            } else {
                rng.pick(FAST_FAULTS)
            }
        }
        _ => "ok",
    };
    let file = format!(
        "f{}-p{page_index}-i{image_index}.{extension}",
        config.file_index
    );
    let route = format!("{behaviour}/{file}");
    let mut url = match rng.below(100) {
        0..=14 => format!("/{route}"),
        15..=24 => route,
        25..=34 => format!("//{}:{port}/{route}", rng.pick(hosts)),
        35..=37 => format!("data:image/gif;base64,R0lGODlhAQABAAAAACw{page_index}"),
        _ => format!("http://{}:{port}/{route}", rng.pick(hosts)),
    };
    if rng.percent(3) {
        url = format!("  {url}\n");
    }
    if rng.percent(2) {
        url.push_str("#main");
    }
    let alt = match rng.below(100) {
        0..=71 => Some(format!(
            "A {} {} {}",
            rng.pick(ADJECTIVES),
            rng.pick(NOUNS),
            rng.pick(SCENES)
        )),
        72..=81 => None,
        82..=89 => Some(String::new()),
        90..=92 => Some("   ".into()),
        _ => Some(rng.pick(FOREIGN_ALTS).to_string()),
    };
    let mut link = Link::image(url, alt.as_deref());
    if rng.percent(10) {
        link.title = Some(format!("Photo of a {}", rng.pick(NOUNS)));
    }
    link
}
