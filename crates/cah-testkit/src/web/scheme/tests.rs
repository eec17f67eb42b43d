//! Table tests of the URL scheme.

use super::*;

fn image(kind: ImageKind) -> Expected {
    Expected::Image { kind }
}

#[test]
fn classify_table() {
    let base = "http://img-0001.photos.test:8080";
    let redirected = |hops, then| Expected::Redirected {
        hops,
        then: Box::new(then),
    };
    let cases = [
        ("/ok/a.jpg", image(ImageKind::Jpeg)),
        ("/ok/a.PNG", image(ImageKind::Png)),
        ("/ok/a", image(ImageKind::Jpeg)),
        ("/ok/x/y.webp?size=2", image(ImageKind::Webp)),
        ("/pixel/p.gif", image(ImageKind::Gif)),
        (
            "/status/404/a.jpg",
            Expected::Status {
                status: 404,
                retry_after: None,
            },
        ),
        (
            "/status/429/a.jpg",
            Expected::Status {
                status: 429,
                retry_after: None,
            },
        ),
        (
            "/status/999/a.jpg",
            Expected::Status {
                status: 404,
                retry_after: None,
            },
        ),
        (
            "/ratelimit/7/a.jpg",
            Expected::Status {
                status: 429,
                retry_after: Some(7),
            },
        ),
        ("/redirect/3/ok/a.gif", redirected(3, image(ImageKind::Gif))),
        (
            "/redirect/2/redirect/2/status/410/a",
            redirected(
                4,
                Expected::Status {
                    status: 410,
                    retry_after: None,
                },
            ),
        ),
        (
            "/redirect-host/dead-x.cdn.test/ok/a.jpg",
            redirected(1, Expected::Dns(DnsBehaviour::NxDomain)),
        ),
        ("/loop/a.jpg", Expected::RedirectLoop),
        (
            "/private-redirect/metadata/a.jpg",
            Expected::PrivateRedirect {
                location: "http://169.254.169.254/latest/meta-data/".into(),
            },
        ),
        (
            "/private-redirect/10/a.jpg",
            Expected::PrivateRedirect {
                location: "http://10.0.0.1/a.jpg".into(),
            },
        ),
        (
            "/slow/50/ok/a.jpg",
            Expected::SlowHeaders {
                delay: Duration::from_millis(50),
                then: Box::new(image(ImageKind::Jpeg)),
            },
        ),
        ("/drip/a.jpg", Expected::SlowBody),
        ("/endless/a.jpg", Expected::EndlessBody),
        ("/huge-length/a.jpg", Expected::HugeContentLength),
        ("/stall/a.jpg", Expected::StalledBody),
        ("/stall-unsized/a.png", Expected::StalledBody),
        ("/reset/a.jpg", Expected::ConnectionReset),
        (
            "/wrongtype/a.png",
            Expected::WrongContentType {
                kind: ImageKind::Png,
            },
        ),
        ("/notimage/a.jpg", Expected::NotAnImage),
        ("/empty/a.jpg", Expected::EmptyBody),
        ("/truncated/a.jpg", Expected::Truncated),
        ("/corrupt/a.jpg", Expected::Corrupt),
        ("/bomb/a.png", Expected::Bomb),
        ("/zipbomb/a.png", Expected::ZipBomb),
        ("/scanbomb/a.jpg", Expected::ScanBomb),
        ("/long-redirect/a.jpg", Expected::OverlongRedirect),
        (
            "/xrobots/noai/a.jpg",
            Expected::RobotsTag {
                tag: "noai".into(),
                kind: ImageKind::Jpeg,
            },
        ),
        (
            "/tdm/1/a.webp",
            Expected::TdmReserved {
                kind: ImageKind::Webp,
            },
        ),
        (
            "/tdm/0/a.jpg",
            Expected::Image {
                kind: ImageKind::Jpeg,
            },
        ),
        ("/private/a.jpg", Expected::RobotsDisallowed),
        (
            "/redirect/1/private/a.jpg",
            redirected(1, Expected::RobotsDisallowed),
        ),
        (
            "/nothing/here.jpg",
            Expected::Status {
                status: 404,
                retry_after: None,
            },
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(classify(&format!("{base}{path}")), expected, "{path}");
    }
}

#[test]
fn hosts_change_the_outcome() {
    assert_eq!(
        classify("http://dead-a.photos.test/ok/a.jpg"),
        Expected::Dns(DnsBehaviour::NxDomain)
    );
    assert_eq!(
        classify("http://nobots-a.photos.test/ok/a.jpg"),
        Expected::RobotsDisallowed
    );
    assert_eq!(
        classify_ignoring_robots("http://nobots-a.photos.test/ok/a.jpg"),
        image(ImageKind::Jpeg)
    );
    assert_eq!(
        classify("http://robotserror-a.photos.test/ok/a.jpg"),
        Expected::RobotsDisallowed
    );
    assert_eq!(
        classify("http://norobots-a.photos.test/private/a.jpg"),
        image(ImageKind::Jpeg)
    );
    assert_eq!(
        classify("http://slow-a.photos.test/ok/a.jpg"),
        image(ImageKind::Jpeg)
    );
    assert_eq!(
        classify("http://noimageai-a.photos.test/ok/a.png"),
        Expected::RobotsTag {
            tag: "noimageai".into(),
            kind: ImageKind::Png
        }
    );
    assert_eq!(
        classify("http://example.com/ok/a.jpg"),
        Expected::Dns(DnsBehaviour::Refused)
    );
}

#[test]
fn photo_routes_name_one_file() {
    assert_eq!(
        route("/photo/coffee-0.04mp-base.webp?copy=17"),
        Route::Named {
            name: "coffee-0.04mp-base.webp".to_owned(),
            kind: ImageKind::Webp
        }
    );
    assert_eq!(route("/photo/"), Route::NotFound);
    assert_eq!(route("/photo/a/b.jpg"), Route::NotFound, "one segment only");
    assert_eq!(
        classify("http://img-0001.photos.test/photo/logo-0.10mp-base.png"),
        image(ImageKind::Png)
    );
}

#[test]
fn stall_routes_name_their_format_and_whether_they_are_sized() {
    assert_eq!(
        route("/stall/x/a.webp"),
        Route::Stall {
            kind: ImageKind::Webp,
            sized: true
        }
    );
    assert_eq!(
        route("/stall-unsized/a"),
        Route::Stall {
            kind: ImageKind::Jpeg,
            sized: false
        }
    );
    assert_eq!(
        classify("http://img-0001.photos.test/redirect/1/stall/a.jpg"),
        Expected::Redirected {
            hops: 1,
            then: Box::new(Expected::StalledBody)
        }
    );
    assert!(!Expected::StalledBody.is_image());
}

#[test]
fn redirect_limits() {
    let expected = classify("http://a.photos.test/redirect/5/ok/a.jpg");
    assert_eq!(expected.after_redirects(10), image(ImageKind::Jpeg));
    assert_eq!(expected.after_redirects(4), Expected::TooManyRedirects);
    assert!(expected.is_image());
    let many = classify("http://a.photos.test/redirect/40/ok/a.jpg");
    assert_eq!(many.after_redirects(10), Expected::TooManyRedirects);
    assert_eq!(many.after_redirects(40), image(ImageKind::Jpeg));
}
