//! The image hosts over real HTTP: formats, counters, redirects, robots rules, tags, and the
//! slow, endless and broken bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cah_testkit::images::{self, ImageKind};
use cah_testkit::photos::PhotoCorpus;
use cah_testkit::web::{Expected, STALL_BODY_BYTES, STALL_HELD_BACK_BYTES, classify};

use super::web_harness;

use web_harness::{Harness, harness};

#[tokio::test]
async fn pictures_come_in_every_format_and_requests_are_counted() {
    let harness = harness().await;
    let host = "img-0001.photos.test";
    for kind in ImageKind::ALL {
        let path = format!("/ok/picture.{}", kind.extension());
        let url = harness.web.url(host, &path);
        assert_eq!(classify(&url), Expected::Image { kind });
        let response = harness.client.get(&url).send().await.expect("get");
        assert_eq!(response.headers()["content-type"], kind.mime());
        let bytes = response.bytes().await.expect("body");
        let photo = harness.web.expected_photo(&url).expect("photo");
        assert_eq!(bytes.as_ref(), photo.bytes.as_ref(), "{kind:?}");
        if kind != ImageKind::Svg {
            let (_, width, height) = images::sniff(&bytes).expect("sniff");
            assert_eq!((width, height), (photo.width, photo.height));
        }
        assert_eq!(harness.web.stats().count(host, &path), 1);
    }
    let head = harness
        .client
        .head(harness.web.url(host, "/ok/picture.jpg"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        harness
            .web
            .stats()
            .count_url(&harness.web.url(host, "/ok/picture.jpg?x=1")),
        2
    );
    assert_eq!(harness.web.stats().count_host(host), 6);
    assert_eq!(harness.web.stats().total(), 6);
    assert!(
        harness.dns.stats().queries_for(host) >= 1,
        "the client resolved through the test dns"
    );
}

#[tokio::test]
async fn every_corpus_picture_is_served_by_its_name() {
    let harness = harness().await;
    let host = "img-0001.photos.test";
    let corpus = harness.web.corpus();
    assert!(corpus.len() >= 6, "{} pictures", corpus.len());
    for photo in corpus.photos() {
        let url = harness
            .web
            .url(host, &format!("/photo/{}?copy=3", photo.name));
        assert_eq!(classify(&url), Expected::Image { kind: photo.kind });
        let response = harness.client.get(&url).send().await.expect("get");
        assert_eq!(response.status(), 200, "{}", photo.name);
        assert_eq!(response.headers()["content-type"], photo.kind.mime());
        let bytes = response.bytes().await.expect("body");
        assert_eq!(bytes.as_ref(), photo.bytes.as_ref(), "{}", photo.name);
        let expected = harness.web.expected_photo(&url).expect("named photo");
        assert_eq!(expected.name, photo.name);
    }
    let missing = harness.web.url(host, "/photo/no-such-picture.jpg");
    let response = harness.client.get(&missing).send().await.expect("get");
    assert_eq!(response.status(), 404);
    assert!(harness.web.expected_photo(&missing).is_none());
}

#[tokio::test]
async fn redirects_robots_and_tags() {
    let harness = harness().await;
    let get = |url: String| harness.client.get(url).send();
    let chain = get(harness.web.url("a.photos.test", "/redirect/3/ok/a.jpg"))
        .await
        .expect("get");
    assert_eq!(chain.status(), 301);
    assert_eq!(chain.headers()["location"], "/redirect/2/ok/a.jpg");
    let second = get(harness.web.url("a.photos.test", "/redirect/2/ok/a.jpg"))
        .await
        .expect("get");
    assert_eq!(second.status(), 307);
    let last = get(harness.web.url("a.photos.test", "/redirect/1/ok/a.jpg"))
        .await
        .expect("get");
    assert_eq!(
        (
            last.status().as_u16(),
            last.headers()["location"].to_str().expect("ascii")
        ),
        (302, "/ok/a.jpg")
    );
    let hop = get(harness
        .web
        .url("a.photos.test", "/redirect-host/b.cdn.test/ok/a.jpg"))
    .await
    .expect("get");
    assert_eq!(
        hop.headers()["location"].to_str().expect("ascii"),
        harness.web.url("b.cdn.test", "/ok/a.jpg")
    );
    let looping = get(harness.web.url("a.photos.test", "/loop/a.jpg"))
        .await
        .expect("get");
    assert_eq!(looping.headers()["location"], "/loop/a.jpg");
    let long = get(harness.web.url("a.photos.test", "/long-redirect/a.jpg"))
        .await
        .expect("get");
    let location = long.headers()["location"].to_str().expect("ascii");
    assert_eq!(location.len(), cah_testkit::web::LONG_REDIRECT_BYTES);
    assert!(location.starts_with("/ok/aaa") && location.ends_with("a.jpg"));
    let metadata = get(harness
        .web
        .url("a.photos.test", "/private-redirect/metadata/a.jpg"))
    .await
    .expect("get");
    assert_eq!(
        metadata.headers()["location"],
        "http://169.254.169.254/latest/meta-data/"
    );

    let robots = |host: &str| get(harness.web.url(host, "/robots.txt"));
    let standard = robots("a.photos.test")
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(standard.contains("Disallow: /private/"), "{standard}");
    let disallow_all = robots("nobots-a.photos.test")
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(disallow_all, "User-agent: *\nDisallow: /\n");
    assert_eq!(
        robots("norobots-a.photos.test")
            .await
            .expect("get")
            .status(),
        404
    );
    assert_eq!(
        robots("robotserror-a.photos.test")
            .await
            .expect("get")
            .status(),
        503
    );

    let tagged = get(harness.web.url("a.photos.test", "/xrobots/noimageai/a.png"))
        .await
        .expect("get");
    assert_eq!(tagged.headers()["x-robots-tag"], "noimageai");
    let reserved = get(harness.web.url("a.photos.test", "/tdm/1/a.png"))
        .await
        .expect("get");
    assert_eq!(reserved.headers()["tdm-reservation"], "1");
    assert!(reserved.headers().contains_key("tdm-policy"));
    let expected = harness
        .web
        .expected_photo(&harness.web.url("a.photos.test", "/tdm/1/a.png"))
        .expect("a picture");
    assert_eq!(reserved.bytes().await.expect("body"), expected.bytes);
    let host_tagged = get(harness.web.url("noindex-a.photos.test", "/ok/a.png"))
        .await
        .expect("get");
    assert_eq!(host_tagged.headers()["x-robots-tag"], "noindex");
    let limited = get(harness.web.url("a.photos.test", "/ratelimit/42/a.png"))
        .await
        .expect("get");
    assert_eq!(
        (
            limited.status().as_u16(),
            limited.headers()["retry-after"].to_str().expect("ascii")
        ),
        (429, "42")
    );
    let plain_429 = get(harness.web.url("a.photos.test", "/status/429/a.png"))
        .await
        .expect("get");
    assert!(plain_429.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn slow_endless_and_broken_bodies() {
    let harness = harness().await;
    let url = |path: &str| harness.web.url("img-0001.photos.test", path);

    let started = Instant::now();
    let slow = harness
        .client
        .get(url("/slow/300/ok/a.jpg"))
        .send()
        .await
        .expect("get");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status(), 200);

    let mut drip = harness
        .client
        .get(url("/drip/a.jpg"))
        .send()
        .await
        .expect("get");
    let declared: u64 = drip.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let first = drip.chunk().await.expect("chunk").expect("some bytes");
    assert_eq!(first.len(), 16);
    let rest = tokio::time::timeout(Duration::from_millis(350), async {
        let mut n = first.len() as u64;
        while let Ok(Some(chunk)) = drip.chunk().await {
            n += chunk.len() as u64;
        }
        n
    })
    .await;
    assert!(
        rest.is_err(),
        "a {declared}-byte drip body must not finish in 350 ms"
    );

    let mut endless = harness
        .client
        .get(url("/endless/a.jpg"))
        .send()
        .await
        .expect("get");
    assert!(endless.headers().get("content-length").is_none());
    let mut n_bytes = 0usize;
    while n_bytes < 3 * 1024 * 1024 {
        n_bytes += endless
            .chunk()
            .await
            .expect("chunk")
            .expect("endless bodies never end")
            .len();
    }
    drop(endless);

    let huge = harness
        .client
        .get(url("/huge-length/a.jpg"))
        .send()
        .await
        .expect("get");
    assert_eq!(huge.content_length(), Some(10_000_000_000));
    drop(huge);

    for (path, declared) in [
        ("/stall/a.png", Some(STALL_BODY_BYTES as u64)),
        ("/stall-unsized/a.jpg", None),
    ] {
        let mut stalled = harness.client.get(url(path)).send().await.expect("get");
        assert_eq!(stalled.status(), 200, "{path}");
        assert_eq!(stalled.content_length(), declared, "{path}");
        let mut body = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while body.len() < STALL_BODY_BYTES - STALL_HELD_BACK_BYTES {
                let chunk = stalled.chunk().await.expect("chunk").expect("more bytes");
                body.extend_from_slice(&chunk);
            }
        })
        .await
        .expect("all but the held-back bytes come at once");
        assert_eq!(
            body.len(),
            STALL_BODY_BYTES - STALL_HELD_BACK_BYTES,
            "{path}"
        );
        let magic: &[u8] = match ImageKind::from_path(path) {
            Some(ImageKind::Png) => b"\x89PNG",
            _ => &[0xff, 0xd8, 0xff],
        };
        assert!(body.starts_with(magic), "{path}: {:?}", &body[..8]);
        let more = tokio::time::timeout(Duration::from_millis(300), stalled.chunk()).await;
        assert!(more.is_err(), "{path}: the last bytes never come");
    }

    let reset = harness
        .client
        .get(url("/reset/a.jpg"))
        .send()
        .await
        .expect("headers arrive");
    let declared = reset.content_length().expect("declared length");
    let error = reset.bytes().await.expect_err("the body is cut");
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?} after less than {declared} bytes"
    );

    for (path, check) in [
        ("/truncated/a.png", "truncated"),
        ("/corrupt/a.png", "corrupt"),
        ("/bomb/a.jpg", "bomb"),
        ("/zipbomb/a.png", "zipbomb"),
        ("/scanbomb/a.jpg", "scanbomb"),
    ] {
        let bytes = harness
            .client
            .get(url(path))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        match check {
            "bomb" => assert_eq!(
                images::sniff(&bytes).map(|(_, w, h)| (w, h)),
                Some((50_000, 50_000))
            ),
            "zipbomb" => {
                assert_eq!(
                    images::sniff(&bytes).map(|(_, w, h)| (w, h)),
                    Some((16_384, 16_384))
                );
                assert!(bytes.len() < 1_000_000, "{}", bytes.len());
            }
            "scanbomb" => {
                assert_eq!(
                    images::sniff(&bytes).map(|(_, w, h)| (w, h)),
                    Some((4_000, 4_000))
                );
                let scans = bytes
                    .windows(2)
                    .filter(|pair| pair == &[0xff, 0xda])
                    .count();
                assert_eq!(scans, images::SCAN_BOMB_SCANS + 1);
            }
            _ => assert!(image::load_from_memory(&bytes).is_err(), "{path} decoded"),
        }
    }
    let wrong = harness
        .client
        .get(url("/wrongtype/a.gif"))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.headers()["content-type"], "text/html; charset=utf-8");
    let bytes = wrong.bytes().await.expect("body");
    assert_eq!(
        images::sniff(&bytes).map(|(format, _, _)| format),
        Some(image::ImageFormat::Gif)
    );
    let not_image = harness
        .client
        .get(url("/notimage/a.jpg"))
        .send()
        .await
        .expect("get");
    assert_eq!(not_image.headers()["content-type"], "image/jpeg");
    assert!(
        not_image
            .text()
            .await
            .expect("text")
            .starts_with("<!doctype html>")
    );

    // The server outlives aborted bodies and shuts down even with drips in flight.
    let _pending = harness
        .client
        .get(url("/drip/b.jpg"))
        .send()
        .await
        .expect("get");
    let Harness { web, .. } = harness;
    tokio::time::timeout(Duration::from_secs(5), web.shutdown())
        .await
        .expect("shutdown is bounded");
}

#[test]
fn corpus_is_the_prepared_one_when_present() {
    let corpus = Arc::clone(&PhotoCorpus::shared().expect("corpus"));
    let manifest = cah_testkit::photos::default_photo_dir().join("manifest.json");
    let required = std::env::var_os("CAH_TESTKIT_REQUIRE_PHOTOS").is_some_and(|value| value == "1");
    if std::env::var_os(cah_testkit::photos::PHOTOS_ENV).is_none() && manifest.is_file() || required
    {
        assert!(
            corpus.is_prepared(),
            "real photos expected, got {:?}",
            corpus.source()
        );
        let n_jpeg = corpus
            .photos()
            .filter(|photo| photo.kind == ImageKind::Jpeg)
            .count();
        assert!(
            n_jpeg * 2 > corpus.len(),
            "mostly JPEG: {n_jpeg} of {}",
            corpus.len()
        );
        let megapixels: Vec<f64> = corpus
            .photos()
            .map(|photo| f64::from(photo.width * photo.height) / 1e6)
            .collect();
        assert!(
            megapixels.iter().any(|mp| *mp < 0.1) && megapixels.iter().any(|mp| *mp > 2.0),
            "{megapixels:?}"
        );
        for photo in corpus.photos().filter(|photo| photo.kind != ImageKind::Svg) {
            let (_, width, height) = images::sniff(&photo.bytes).expect("sniff");
            assert_eq!(
                (width, height),
                (photo.width, photo.height),
                "{}",
                photo.name
            );
        }
    } else {
        assert!(!corpus.is_prepared());
        assert!(
            format!("{:?}", corpus.source()).contains("prepare-photos.sh"),
            "{:?}",
            corpus.source()
        );
    }
}
