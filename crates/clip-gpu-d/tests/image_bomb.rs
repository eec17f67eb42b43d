//! A bundle image whose PNG colour profile (`iCCP`) inflates to hundreds of megabytes costs no
//! memory: the decode may allocate only what the picture's pixels need, plus a little. Its own
//! test binary, so that the process's peak resident set is this test's alone.

#[test]
fn a_png_profile_that_inflates_to_300_mb_costs_no_memory() {
    let bytes = cah_testkit::images::iccp_bomb_png(300 << 20).expect("bomb");
    let before = cah_testkit::images::peak_rss_kib();
    let pixels = clip_gpu_d::preprocess::preprocess(&bytes, 224).expect("decodes");
    assert_eq!(pixels.len(), 224 * 224 * 3);
    let grown_mib = (cah_testkit::images::peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "the decode took {grown_mib} MiB more");
}
