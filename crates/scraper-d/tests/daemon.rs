//! Integration tests of `scraper-d run`'s pieces and the whole daemon against cah-testkit's web,
//! DNS and Common Crawl servers and a real tracker-d (SQLite), all on loopback.

mod daemon {
    mod bad_wat;
    mod binary;
    mod broken_node;
    mod cross_job_dedup;
    mod dns_stub;
    mod fake_tracker;
    mod faults;
    mod full_job;
    mod hostile_http;
    mod large_bodies;
    mod lifecycle;
    mod lost_lease;
    mod odd_tracker;
    mod refusals;
    mod resolver;
    mod support;
    mod tail;
}
