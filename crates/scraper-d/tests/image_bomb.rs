//! A PNG whose colour profile (`iCCP`) inflates to hundreds of megabytes costs no memory: the
//! profile is dropped before the decoder sees it. Its own test binary, so that the process's
//! peak resident set is this test's alone.

use scraper_d::validate::{ValidateConfig, decode};

#[test]
fn a_png_profile_that_inflates_to_300_mb_costs_no_memory() {
    let bytes = cah_testkit::images::iccp_bomb_png(300 << 20).expect("bomb");
    assert!(bytes.len() < 1_000_000, "{}", bytes.len());
    let before = cah_testkit::images::peak_rss_kib();
    let decoded = decode(&bytes, &ValidateConfig::standard(), None).expect("decodes");
    assert_eq!(
        decoded.image.to_rgb8(),
        cah_testkit::images::photo_like(200, 150, 7)
    );
    let grown_mib = (cah_testkit::images::peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "the decode took {grown_mib} MiB more");
}
