//! The tracker service: every operation the HTTP layer offers, over the database and staging store.

mod full_wat;
mod invalid;
mod labels;
mod public_reads;
mod upload;
mod work;

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use cah_protocol::ClientType;
use cah_protocol::ext::{BundleLocation, DedupSet};
use cah_protocol::legacy::NewResponse;
use url::Url;

use crate::client_cache::ClientCache;
use crate::clients;
use crate::config::Settings;
use crate::db::{Db, DbError, now_ms};
use crate::dedup::{self, quota};
use crate::keyed_locks::KeyedLocks;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::staging::{Staging, StagingError};

pub use full_wat::MAX_SHARDS_PER_MARK;
use labels::clean_label;
pub use public_reads::{ClientListing, MAX_LISTED_CLIENTS};
pub use work::MAX_HANDOFF_BYTES;

/// Why a tracker operation failed; the HTTP layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The token is unknown or its client was reaped: register again (404).
    #[error("worker not found or timed out: register again with /api/new")]
    UnknownToken,
    /// Nothing to hand out right now (403 in the 2021 API).
    #[error("no jobs available, retry later")]
    NoJobs,
    /// The client does not hold that job (its lease expired, or it was completed) (409).
    #[error("{0}")]
    NotHeld(String),
    /// The request is malformed or inconsistent (400).
    #[error("{0}")]
    Invalid(String),
    /// The client may not do this (403): add to a dedup set of another role, or beyond its
    /// quota.
    #[error("{0}")]
    Forbidden(String),
    /// Too many registrations from this address (429).
    #[error("too many registrations from this address, retry in {} s", .0.as_secs_f64().ceil().max(1.0))]
    RateLimited(Duration),
    /// As many clients are registered as `--max-clients` allows (503).
    #[error("the tracker is full: it has the {max} registered clients it takes; retry in {} s", FULL_RETRY_AFTER.as_secs())]
    Full { max: u64 },
    /// Missing or wrong admin secret (401).
    #[error("missing or wrong admin secret in the x-cah-admin-secret header")]
    Unauthorized,
    /// Staging store refusal or failure.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// The database failed (503).
    #[error("database unavailable: {0}")]
    Db(#[from] DbError),
}

/// Shared state of a running tracker.
#[derive(Debug)]
pub struct Tracker {
    db: Db,
    staging: Staging,
    settings: Settings,
    public_url: Url,
    metrics: Metrics,
    limiter: RateLimiter,
    clients: ClientCache,
    /// One claim at a time per client, so the cap on held jobs is exact.
    claim_locks: KeyedLocks<String>,
    /// The answers of the tokenless reads.
    public_reads: public_reads::PublicReads,
    /// Registered clients as last counted, for `--max-clients` (-1 until first counted).
    registered: AtomicI64,
}

/// How long a registration refused for `--max-clients` waits: clients leave by bye or after
/// `--client-timeout`, which the reaper checks every `--reap-interval`.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Tracker {
    /// Assembles a tracker over an open database and staging store.
    pub fn new(db: Db, staging: Staging, settings: Settings, public_url: Url) -> Tracker {
        let limiter = RateLimiter::new(settings.register_per_minute, settings.register_burst);
        let dedup_limits = quota::Limits {
            per_job: settings.dedup_per_job,
            start: settings.dedup_start,
            held_jobs: settings.dedup_held_jobs,
        };
        let public_reads = public_reads::PublicReads::new(settings.read_cache_ttl);
        Tracker {
            db,
            staging,
            settings,
            public_url,
            metrics: Metrics::default(),
            limiter,
            clients: ClientCache::new(dedup_limits),
            claim_locks: KeyedLocks::default(),
            public_reads,
            registered: AtomicI64::new(-1),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The staging store.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The URL clients reach this tracker at.
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// `/api/new`: registers a client, rate-limited per address.
    pub async fn register(
        &self,
        nickname: &str,
        client_type: ClientType,
        address: IpAddr,
    ) -> Result<NewResponse, TrackerError> {
        if let Err(wait) = self.limiter.check(address, Instant::now()) {
            self.metrics.inc(&self.metrics.registrations_limited);
            return Err(TrackerError::RateLimited(wait));
        }
        self.admit_registration().await?;
        let nickname = clean_label(nickname, 64);
        let nickname = if nickname.is_empty() {
            "anonymous".to_owned()
        } else {
            nickname
        };
        let client = clients::register(
            &self.db,
            &nickname,
            client_type,
            &address.to_string(),
            now_ms(),
        )
        .await
        .inspect_err(|_| {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        })?;
        self.clients.insert(client.clone(), 0, None, now_ms());
        self.metrics.inc(&self.metrics.registrations);
        tracing::info!(display_name = %client.display_name, %nickname, client_type = %client_type, %address, "client registered");
        Ok(NewResponse {
            token: client.token,
            display_name: client.display_name,
            upload_address: self.upload_address(),
        })
    }

    /// Counts the registration about to be made against `--max-clients`, or refuses it. The
    /// count is read from the database once, kept here as clients come and go, and read again
    /// by every reaper round, so it cannot drift for long.
    async fn admit_registration(&self) -> Result<(), TrackerError> {
        if self.registered.load(Ordering::Relaxed) < 0 {
            let counted = clients::count(&self.db).await?;
            let _ =
                self.registered
                    .compare_exchange(-1, counted, Ordering::Relaxed, Ordering::Relaxed);
        }
        let max = self.settings.max_clients;
        let before = self.registered.fetch_add(1, Ordering::Relaxed);
        if u64::try_from(before).unwrap_or(0) >= max {
            self.registered.fetch_sub(1, Ordering::Relaxed);
            self.metrics.inc(&self.metrics.registrations_refused_full);
            tracing::warn!(
                max_clients = max,
                "registration refused: the tracker has --max-clients registered clients"
            );
            return Err(TrackerError::Full { max });
        }
        Ok(())
    }

    /// The legacy upload address: the configured rsync-style target, else our upload-URL endpoint.
    pub fn upload_address(&self) -> String {
        self.settings.upload_address.clone().unwrap_or_else(|| {
            let base = self.public_url.as_str().trim_end_matches('/');
            format!("{base}{}", cah_protocol::paths::EXT_UPLOAD_URL)
        })
    }

    /// Touches the client behind `token` (and its progress), or fails with `UnknownToken`.
    pub(crate) async fn client(
        &self,
        token: &str,
        progress: Option<&str>,
    ) -> Result<clients::Client, TrackerError> {
        let progress = progress.map(|progress| clean_label(progress, 255));
        let now = now_ms();
        if let Some(client) = self.clients.touch(token, progress.as_deref(), now) {
            return Ok(client);
        }
        let (client, jobs_completed) = clients::lookup(&self.db, token)
            .await?
            .ok_or(TrackerError::UnknownToken)?;
        self.clients
            .insert(client.clone(), jobs_completed, progress.as_deref(), now);
        Ok(client)
    }

    /// Writes the touches collected since the last flush, renewing the leases of every client
    /// that called (any call renews, as in 2021; heartbeats renew at once as well).
    pub async fn flush_touches(&self) -> Result<(), TrackerError> {
        let touches = self.clients.take_touches();
        if touches.is_empty() {
            return Ok(());
        }
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 2);
        if let Err(error) = clients::flush(&self.db, &touches, lease_ms).await {
            self.clients.restore(touches);
            return Err(error.into());
        }
        Ok(())
    }

    /// `/api/validateWorker`.
    pub async fn validate(&self, token: &str) -> Result<bool, TrackerError> {
        match self.client(token, None).await {
            Ok(_) => Ok(true),
            Err(TrackerError::UnknownToken) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `/api/bye`: releases the client's jobs and forgets it.
    pub async fn bye(&self, token: &str) -> Result<(), TrackerError> {
        let client = self.client(token, None).await?;
        crate::jobs::release(&self.db, &client.token, None).await?;
        if clients::remove(&self.db, &client.token).await? {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        }
        self.clients.remove(&client.token);
        tracing::info!(display_name = %client.display_name, "client said bye");
        Ok(())
    }

    /// `/api/ext/dedup`. Adding is limited by client type and by a quota (see [`quota`]).
    pub async fn dedup(
        &self,
        token: &str,
        set: DedupSet,
        hashes: &[u64],
        add: bool,
    ) -> Result<Vec<bool>, TrackerError> {
        let client = self.client(token, None).await?;
        if hashes.len() > dedup::MAX_HASHES_PER_REQUEST {
            return Err(TrackerError::Invalid(format!(
                "at most {} hashes per request",
                dedup::MAX_HASHES_PER_REQUEST
            )));
        }
        let n_hashes = hashes.len() as u64;
        if add {
            self.reserve_dedup(&client, set, n_hashes).await?;
        }
        let new = match dedup::check(&self.db, set, hashes, add).await {
            Ok(new) => new,
            Err(error) => {
                if add {
                    self.clients.refund_dedup(&client.token, set, n_hashes);
                }
                return Err(error.into());
            }
        };
        let n_new = new.iter().filter(|is_new| **is_new).count() as u64;
        if add {
            self.clients
                .refund_dedup(&client.token, set, n_hashes - n_new);
        }
        self.metrics.add(&self.metrics.dedup_checked, n_hashes);
        self.metrics.add(&self.metrics.dedup_new, n_new);
        Ok(new)
    }

    /// Takes `n_hashes` from `client`'s quota for `set`, or refuses the addition.
    async fn reserve_dedup(
        &self,
        client: &clients::Client,
        set: DedupSet,
        n_hashes: u64,
    ) -> Result<(), TrackerError> {
        if !quota::may_add(client.client_type, set) {
            self.metrics.inc(&self.metrics.dedup_refused);
            return Err(TrackerError::Forbidden(format!(
                "{} clients may not add to the {} set",
                client.client_type,
                set.as_str()
            )));
        }
        let n_held = crate::jobs::held(&self.db, &client.token).await?.len() as u64;
        match self
            .clients
            .reserve_dedup(&client.token, set, n_hashes, n_held)
        {
            Ok(true) => Ok(()),
            // Forgotten since the lookup (reaped, or said bye).
            Ok(false) => Err(TrackerError::UnknownToken),
            Err(over) => {
                self.metrics.inc(&self.metrics.dedup_refused);
                tracing::debug!(display_name = %client.display_name, set = set.as_str(), n_hashes, added = over.added, earned = over.earned, owed = over.owed, credit = over.credit, "dedup addition over quota");
                let settings = &self.settings;
                Err(TrackerError::Forbidden(format!(
                    "dedup quota reached: {n_hashes} more hashes asked for the {set} set; this \
                     client added {added} and its completed jobs earned {earned} ({per_job} per \
                     job); the clients of its address owe {owed} beyond their earnings and may \
                     owe {credit} ({start} to start with, plus {per_job} for each job the asking \
                     client holds, up to {held_jobs} jobs) until they complete jobs",
                    set = set.as_str(),
                    added = over.added,
                    earned = over.earned,
                    owed = over.owed,
                    credit = over.credit,
                    per_job = settings.dedup_per_job,
                    start = settings.dedup_start,
                    held_jobs = settings.dedup_held_jobs,
                )))
            }
        }
    }

    /// Where a GPU client finds the bundle of a job handed off as `gpu_url`.
    pub(crate) async fn bundle_location(
        &self,
        gpu_url: &str,
    ) -> Result<BundleLocation, TrackerError> {
        match gpu_url.strip_prefix("blob:") {
            Some(key) => {
                let described = self.staging.describe(&self.db, key).await?;
                Ok(BundleLocation {
                    url: self.staging.get_url(&self.public_url, key),
                    sha256: described.as_ref().map(|(_, sha256)| sha256.clone()),
                    size: described.map(|(size, _)| size),
                })
            }
            None => Ok(BundleLocation {
                url: gpu_url.to_owned(),
                sha256: None,
                size: None,
            }),
        }
    }

    /// Checks the admin secret from the request header, in constant time.
    pub fn check_admin(&self, given: Option<&str>) -> Result<(), TrackerError> {
        let (Some(expected), Some(given)) = (self.settings.admin_secret.as_ref(), given) else {
            return Err(TrackerError::Unauthorized);
        };
        let expected = expected.expose().as_bytes();
        let given = given.as_bytes();
        let same = expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(TrackerError::Unauthorized)
        }
    }

    /// Runs one round of the reaper: expired leases, idle clients, staged blobs; logs what failed
    /// and leaves it for the next round.
    ///
    /// Leases and idleness are judged on what the database knows, so the touches are written
    /// first; when they cannot be (a database that cannot write, a full disk), neither is judged
    /// this round, since clients that called would look idle. Staged blobs are collected either
    /// way: that needs no touch, and on a full disk it is what frees space.
    pub async fn reap(&self) {
        // Jobs may have been opened by another process (`tracker-d import`): claims scan from
        // the bottom once per round.
        self.db.open_floor().reset();
        let (expired, reaped) = match self.flush_touches().await {
            Ok(()) => self.return_work().await.unwrap_or_else(|error| {
                tracing::warn!(error = %error, "reaper could not return expired leases or idle clients' jobs, retrying next round");
                (0, 0)
            }),
            Err(error) => {
                tracing::warn!(error = %error, "could not write client touches, so leases and idle clients wait for the next round");
                (0, 0)
            }
        };
        self.stop_orphaned_uploads().await;
        let collected = self
            .staging
            .collect_garbage(&self.db, self.settings.blob_grace)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = %error, "could not collect staged blobs, retrying next round");
                0
            });
        self.metrics.add(&self.metrics.blobs_collected, collected);
        if expired > 0 || reaped > 0 || collected > 0 {
            tracing::info!(expired, reaped, collected, "reaper returned work");
        }
    }

    /// Stops the uploads in flight that can no longer be stored: their job's lease expired, its
    /// client was forgotten, or an operator reset it. Their part files go at once instead of
    /// when the client gives up.
    async fn stop_orphaned_uploads(&self) {
        for (number, key) in self.staging.uploads_in_flight() {
            match self.storable(number, &key).await {
                Ok(()) => {}
                Err(TrackerError::Staging(StagingError::Conflict(_))) => {
                    tracing::info!(number, %key, "upload stopped: its job is no longer held");
                    self.staging.cancel_upload(number, &key);
                }
                Err(error) => {
                    tracing::warn!(number, error = %error, "could not check an upload in flight, retrying next round");
                }
            }
        }
    }

    /// Expires leases and forgets idle clients, releasing their jobs; returns how many of each.
    async fn return_work(&self) -> Result<(u64, u64), TrackerError> {
        let now = now_ms();
        let expired = crate::jobs::expire_leases(&self.db, now).await?;
        self.metrics.add(&self.metrics.leases_expired, expired);
        let idle_cutoff =
            now - i64::try_from(self.settings.client_timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let reaped_tokens = clients::reap_idle(&self.db, idle_cutoff).await?;
        for token in &reaped_tokens {
            self.clients.remove(token);
        }
        let reaped = reaped_tokens.len() as u64;
        self.metrics.add(&self.metrics.clients_reaped, reaped);
        self.registered
            .store(clients::count(&self.db).await?, Ordering::Relaxed);
        Ok((expired, reaped))
    }
}
