//! The statements any registered client can make the tracker run use the index they are written for, with or without statistics.

use super::support;

use cah_protocol::ClientType;
use sqlx::Row;
use sqlx::pool::PoolConnection;
use support::{BACKENDS, Backend, fresh_database};
use tracker_d::clients;
use tracker_d::db::{Db, Dialect, now_ms};
use tracker_d::testing::{QueryArg, hot_queries, import_urls};

#[tokio::test]
async fn hot_statements_use_their_indexes() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        let urls: Vec<String> = (0..500)
            .map(|i| format!("http://cc.test/wat/{i}.warc.wat.gz"))
            .collect();
        import_urls(&database_url, &urls).await;
        let db = Db::connect(&database_url, 2).await.expect("db");
        for index in 0..300 {
            let client_type = [ClientType::Cpu, ClientType::Gpu, ClientType::Hybrid][index % 3];
            let address = format!("127.0.{}.{}", index / 100, index % 100);
            let client = clients::register(&db, "swarm", client_type, &address, now_ms())
                .await
                .expect("register");
            if index % 10 == 0 {
                let stage = tracker_d::jobs::Stage::Cpu;
                tracker_d::jobs::claim(&db, &client.token, stage, 2, now_ms() + 60_000)
                    .await
                    .expect("claim");
            }
        }
        let mut connection = db.pool().acquire().await.expect("connection");
        match backend {
            Backend::Sqlite => {
                check_plans(&mut connection, db.dialect(), "no statistics").await;
                sqlx::query("ANALYZE")
                    .execute(&mut *connection)
                    .await
                    .expect("analyze");
                check_plans(&mut connection, db.dialect(), "ANALYZE's statistics").await;
            }
            Backend::Postgres => {
                // What autovacuum does for the clients table in production; `import` does it
                // for the jobs. Tables this small are read whole unless sequential scans are
                // off, which leaves the choice between indexes to the statistics.
                for statement in ["ANALYZE clients", "SET enable_seqscan = off"] {
                    sqlx::query(statement)
                        .execute(&mut *connection)
                        .await
                        .expect(statement);
                }
                check_plans(&mut connection, db.dialect(), "import's statistics").await;
            }
        }
        drop(connection);
        db.close().await;
    }
}

async fn check_plans(connection: &mut PoolConnection<sqlx::Any>, dialect: Dialect, when: &str) {
    for hot in hot_queries(dialect) {
        let explain = match dialect {
            Dialect::Sqlite => format!("EXPLAIN QUERY PLAN {}", hot.sql),
            Dialect::Postgres => format!("EXPLAIN {}", hot.sql),
        };
        let mut query = sqlx::query(&explain);
        for arg in &hot.args {
            query = match *arg {
                QueryArg::Text(text) => query.bind(text),
                QueryArg::Int(number) => query.bind(number),
            };
        }
        let rows = query.fetch_all(&mut **connection).await.expect(hot.name);
        let column = match dialect {
            Dialect::Sqlite => "detail",
            Dialect::Postgres => "QUERY PLAN",
        };
        let plan: Vec<String> = rows
            .iter()
            .map(|row| row.try_get::<String, _>(column).expect("plan line"))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains(hot.index),
            "{dialect:?} with {when}: {} should use {}:\n{plan}",
            hot.name,
            hot.index
        );
    }
}
