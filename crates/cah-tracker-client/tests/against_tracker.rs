//! Contract tests of the client against the real tracker-d, on SQLite and on PostgreSQL.
//!
//! Each scenario is an `async fn(Backend)` run twice, as `<scenario>::sqlite` and
//! `<scenario>::postgres`, each on a tracker of its own over a fresh database. The PostgreSQL
//! runs need `CAH_TEST_POSTGRES_URL` (`scripts/ci.sh` sets it).

/// Declares, for each scenario function in scope, a module of two tests, one per database.
macro_rules! on_both_databases {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use crate::against_tracker::support::Backend;

            #[tokio::test]
            async fn sqlite() {
                Box::pin(super::$scenario(Backend::Sqlite)).await;
            }

            #[tokio::test]
            async fn postgres() {
                Box::pin(super::$scenario(Backend::Postgres)).await;
            }
        }
    )+};
}

mod against_tracker {
    pub(crate) mod ext_jobs;
    pub(crate) mod legacy;
    pub(crate) mod reads;
    pub(crate) mod refusals;
    pub(crate) mod support;
}
