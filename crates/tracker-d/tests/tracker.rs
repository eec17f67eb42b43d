//! Integration tests of tracker-d over real HTTP on loopback, against SQLite and (when
//! `CAH_TEST_POSTGRES_URL` is set) PostgreSQL; one test binary so the suite links once.

mod tracker {
    mod auth;
    mod broken_wat;
    mod claim_order;
    mod clients;
    mod concurrency;
    mod connections;
    mod crash;
    mod dedup;
    mod failed_write;
    mod full_disk;
    mod full_wat;
    mod handoff;
    mod import;
    mod json_bodies;
    mod leases;
    mod lifecycle;
    mod limits;
    mod public_reads;
    mod query_plans;
    mod staging;
    mod support;
    mod whole_wat;
}
