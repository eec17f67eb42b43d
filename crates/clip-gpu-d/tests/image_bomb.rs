//! A bundle image whose PNG colour profile (`iCCP`) inflates to hundreds of megabytes costs no
//! memory: the decode may allocate only what the picture's pixels need, plus a little. Its own
//! test binary, so that the process's peak resident set is this test's alone.

/// Peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_png_profile_that_inflates_to_300_mb_costs_no_memory() {
    let bytes = cah_testkit::images::iccp_bomb_png(300 << 20).expect("bomb");
    let before = peak_rss_kib();
    let pixels = clip_gpu_d::preprocess::preprocess(&bytes, 224).expect("decodes");
    assert_eq!(pixels.len(), 224 * 224 * 3);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "the decode took {grown_mib} MiB more");
}
