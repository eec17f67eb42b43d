//! A bundle rejected with a reason that quotes a hostile entry name is still reported invalid:
//! the reason is capped, so the tracker takes the report and the job goes to be scraped again.

use cah_protocol::ClientType;

use crate::support::{
    RealTracker, daemon_config, daemon_with_metrics, eventually, hand_in, metric, scrape,
};

/// A pax-format bundle whose one entry is named by a pax `path` record of `name_len` bytes.
fn pax_bundle_with_long_name(name_len: usize) -> Vec<u8> {
    let value = format!("a/{}.jpg", "x".repeat(name_len));
    let record_len = |digits: usize| digits + " path=".len() + value.len() + 1;
    let mut digits = 1;
    while record_len(digits).to_string().len() != digits {
        digits += 1;
    }
    let record = format!("{} path={value}\n", record_len(digits));
    let mut builder = tar::Builder::new(Vec::new());
    let mut pax = tar::Header::new_ustar();
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_path("PaxHeader").expect("pax path");
    pax.set_size(record.len() as u64);
    pax.set_mode(0o644);
    pax.set_cksum();
    builder.append(&pax, record.as_bytes()).expect("pax header");
    let mut header = tar::Header::new_ustar();
    header.set_path("1.jpg").expect("path");
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, &b"abc"[..]).expect("entry");
    builder.into_inner().expect("tar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_quoting_a_9_mib_entry_name_is_reported() {
    let tracker = RealTracker::start(&[]).await;
    tracker.import(1).await;
    let cpu = tracker.register("cpu", ClientType::Cpu).await;
    let jobs = cpu.claim(1, false).await.expect("claim");
    hand_in(&cpu, jobs[0].number, pax_bundle_with_long_name(9 << 20)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = daemon_config(&tracker.base_url, &dir.path().join("dataset"), &[]);
    let (daemon, metrics_url, stop) = daemon_with_metrics(config).await;
    let driver = async {
        // Sent back to be scraped again: the CPU queue has the job once more.
        eventually("the job back in the cpu queue", || async {
            let cpu_jobs = cpu.claim(8, false).await.ok()?;
            cpu_jobs
                .iter()
                .any(|job| job.number == jobs[0].number)
                .then_some(())
        })
        .await;
        let text = scrape(&metrics_url).await.expect("metrics");
        assert_eq!(
            metric(&text, "clip_jobs_invalid_total"),
            Some(1.0),
            "{text}"
        );
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.expect("daemon ran");
    tracker.stop().await;
}
