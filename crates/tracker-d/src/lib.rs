//! `tracker-d`: the Crawling@Home tracker, as a library so tests start it in-process.
//!
//! Layout: [`cli`] and [`config`] turn flags into a validated [`ServeConfig`]; [`db`] owns the
//! pool and schema; [`jobs`], [`clients`], [`dedup`] and [`staging`] are the stores;
//! [`tracker`] is the service every endpoint calls; [`http`] is the axum surface.

pub mod cached;
pub mod cli;
pub mod client_cache;
pub mod clients;
pub mod config;
pub mod connections;
pub mod db;
pub mod dedup;
pub mod http;
pub mod import;
pub mod jobs;
pub mod keyed_locks;
pub mod metrics;
pub mod names;
pub mod rate_limit;
pub mod shutdown;
pub mod staging;
pub mod stats;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tracker;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServeConfig;

use crate::db::Db;
use crate::staging::Staging;
use crate::tracker::Tracker;

/// Validated config in, bound listener out: binds `config.listen` and serves until `shutdown`.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = Db::connect(config.database_url.expose(), config.db_connections)
        .await
        .context("failed to open the tracker database")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {}: is another process using the port? pick another --listen (TRACKER_LISTEN)",
                config.listen
            )
        })?;
    serve(listener, db, config, shutdown).await
}

/// Serves on an already bound listener until `shutdown` resolves, then drains for the grace period.
pub async fn serve(
    listener: TcpListener,
    db: Db,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => url::Url::parse(&format!("http://{addr}")).context("bound address is not a url")?,
    };
    let signing_key = match &config.signing_key {
        Some(key) => key.expose().as_bytes().to_vec(),
        None => stored_signing_key(&db).await?,
    };
    let staging = Staging::open(
        config.blob_dir.clone(),
        signing_key,
        config.settings.url_ttl,
        config.max_bundle_bytes,
    )
    .await
    .with_context(|| {
        format!(
            "failed to open the staging blob store {}: --blob-dir (TRACKER_BLOB_DIR) must be a folder this user can write, or a path where one can be made",
            config.blob_dir.display()
        )
    })?;
    let tracker = Arc::new(Tracker::new(
        db.clone(),
        staging,
        config.settings.clone(),
        public_url.clone(),
    ));
    // Two stops: accepting ends at the shutdown signal, the reaper only once the connections
    // have drained, so its last flush writes the touches of requests served during the grace.
    let token = CancellationToken::new();
    let reaper_token = CancellationToken::new();
    let reaper = tokio::spawn(reap_forever(
        Arc::clone(&tracker),
        config.reap_interval,
        reaper_token.clone(),
    ));
    // Whatever way this function returns, the reaper stops with it.
    let _stop_reaper = reaper_token.clone().drop_guard();
    let app = http::router(Arc::clone(&tracker), config.json_bodies);
    let limits = config.connections;
    tracing::info!(%addr, %public_url, database = ?db.dialect(), max_connections = limits.max_connections, "listening");
    let accepting = tokio::spawn(connections::accept(listener, app, limits, token.clone()));
    shutdown.await;
    token.cancel();
    let connections = accepting.await.context("accept loop panicked")?;
    let grace = config.shutdown_grace;
    if !connections.drain(grace).await {
        tracing::warn!(
            ?grace,
            "requests still in flight after the shutdown grace, stopping anyway"
        );
    }
    reaper_token.cancel();
    let _ = reaper.await;
    db.close().await;
    tracing::info!("tracker stopped");
    Ok(())
}

/// Writes client touches every second and runs the reaper every `interval`, until cancelled;
/// a last flush on the way out keeps "last seen" and progress current across restarts.
async fn reap_forever(
    tracker: Arc<Tracker>,
    interval: std::time::Duration,
    token: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.min(TOUCH_FLUSH_INTERVAL));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reap = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = token.cancelled() => break,
        }
        if last_reap.elapsed() >= interval {
            last_reap = tokio::time::Instant::now();
            tracker.reap().await;
        } else if let Err(error) = tracker.flush_touches().await {
            tracing::warn!(error = %error, "could not write client touches, retrying next tick");
        }
    }
    if let Err(error) = tracker.flush_touches().await {
        tracing::warn!(error = %error, "could not write the last client touches");
    }
}

/// How often client touches (last seen, progress) are written.
const TOUCH_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The URL-signing key kept in the database, created on first start, so signed URLs survive restarts.
async fn stored_signing_key(db: &Db) -> anyhow::Result<Vec<u8>> {
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('signing_key', $1) ON CONFLICT (key) DO NOTHING",
    )
    .bind(&fresh)
    .execute(db.pool())
    .await
    .context("failed to store the signing key")?;
    let key: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'signing_key'")
        .fetch_one(db.pool())
        .await
        .context("failed to read the signing key")?;
    Ok(key.into_bytes())
}
