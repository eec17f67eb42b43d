//! The tail of a job half: images queued behind one slow host are abandoned once the rest is
//! done and the tail's time has run out, instead of keeping the half open.

use std::time::Duration;

use scraper_d::Candidate;
use scraper_d::job::TailPolicy;
use scraper_d::stats::Outcome;

use super::support::{self, candidate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_queued_behind_a_slow_host_are_abandoned_when_the_tail_runs_out() {
    let test_web = support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    // 200 pictures on 200 hosts, and 12 on one host that answers each after 600 ms, one at a
    // time: 7 s of work for that host alone.
    let mut urls: Vec<String> = (0..200)
        .map(|index| {
            test_web
                .web
                .url(&format!("img-{index:04}.photos.test"), "/ok/a.jpg")
        })
        .collect();
    urls.extend((0..12).map(|index| {
        test_web
            .web
            .url("img-slow.photos.test", &format!("/slow/600/ok/{index}.jpg"))
    }));
    let candidates: Vec<Candidate> = urls
        .into_iter()
        .enumerate()
        .map(|(index, url)| candidate(index, url))
        .collect();

    for (tail, cut) in [
        (
            TailPolicy {
                percent: 10,
                floor: Duration::from_millis(700),
            },
            true,
        ),
        (TailPolicy::unlimited(), false),
    ] {
        let mut config =
            support::run_config("http://127.0.0.1:9/", test_web.dns.addr(), work.path());
        config.fetch.politeness.per_host = 1;
        config.tail = tail;
        let pipeline = support::pipeline(&config);
        let path = work.path().join(format!("cut-{cut}.tar"));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let half = pipeline
            .run_half(1, candidates.clone(), &path, done.clone())
            .await
            .expect("bundle written");
        let ok = half.outcomes.get(Outcome::Ok);
        let abandoned = half.outcomes.get(Outcome::Abandoned);
        assert_eq!(ok + abandoned, 212, "{:?}", half.stats.outcomes);
        assert!(ok >= 200, "every fast host's picture is stored: {ok}");
        if cut {
            // The tail begins when 202 of 212 are done, and lasts 700 ms: about one more of
            // the slow host's pictures, of the 10 or so left.
            assert!(abandoned >= 3, "{:?}", half.stats.outcomes);
            assert_eq!(half.stats.outcomes["abandoned"], abandoned);
        } else {
            assert_eq!(abandoned, 0, "{:?}", half.stats.outcomes);
        }
        assert_eq!(half.stats.stored, ok);
        assert_eq!(
            done.load(std::sync::atomic::Ordering::Relaxed),
            212,
            "progress counts the abandoned too"
        );
    }
}
