//! One daemon per prefix: the writer object `_clip-gpu-d-writer.json` names the daemon that
//! writes the prefix, and its age says whether that daemon is still there.
//!
//! Shard numbers come from the listing at start, so a second daemon on the same prefix would
//! overwrite the first one's shards. At start a daemon reads the writer object. Absent, its own
//! holder's (the same host and spool folder: its previous run), or not written for
//! [`WRITER_FRESH_FOR`] (a daemon that stopped without a clean exit): the daemon writes its own,
//! then reads it back a moment later. Another holder's fresh object: the start waits for it,
//! with a warning that says what to do ([`S3Error::PrefixBusy`], retried).
//! The daemon writes it again every [`WRITER_RENEW_EVERY`] and reads it before every shard
//! upload: found taken over (this daemon was silent past the freshness window and another one
//! started), it uploads nothing more and stops ([`S3Error::PrefixTaken`]). A clean stop deletes
//! it, so the prefix can move to another machine at once.
//!
//! Every write is conditional on what was read (S3's conditional writes: `If-None-Match: *`
//! when the object was absent, `If-Match` with the ETag read otherwise), so of two daemons that
//! read the same state only one writes; the other is refused and waits. That makes the object
//! a lock on the stores that honour these headers (AWS S3 since 2024, MinIO, Cloudflare R2,
//! s3s-fs). A store that ignores them overwrites instead, and the read-back a moment after the
//! start's write still tells the later of two writers from the earlier; a store that refuses
//! them needs `AWS_CONDITIONAL_PUT=disabled`, and then writes are plain.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{S3Error, ShardBucket};

/// The writer object's name in the prefix (no shard's name matches it).
const WRITER_OBJECT: &str = "_clip-gpu-d-writer.json";
/// How long a writer object keeps the prefix for its daemon after it was last written.
const WRITER_FRESH_FOR: Duration = Duration::from_secs(300);
/// How often a running daemon writes its object again.
pub const WRITER_RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long a start waits before reading its object back.
const CONFIRM_AFTER: Duration = Duration::from_millis(500);

/// Who writes a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    /// Host name and spool folder: the same for every run of one daemon.
    pub holder: String,
    /// Different for every run of the process.
    pub instance: String,
}

impl Writer {
    /// This process, writing from `spool` on this host.
    pub fn this_process(spool: &std::path::Path) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            holder: format!("{host}:{}", spool.display()),
            instance: format!("{}-{nanos:x}", std::process::id()),
        }
    }
}

/// The writer object as read.
enum Seen {
    Absent,
    Found {
        writer: Writer,
        age: Duration,
        /// What a write conditional on this state sends in `If-Match`.
        e_tag: Option<String>,
    },
}

impl Seen {
    /// The write that applies only while the object is still as it was read.
    fn unchanged(&self) -> PutMode {
        match self {
            Seen::Absent => PutMode::Create,
            Seen::Found {
                e_tag: Some(e_tag), ..
            } => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag.clone()),
                version: None,
            }),
            // A store that gives no ETag cannot take a conditional write either.
            Seen::Found { e_tag: None, .. } => PutMode::Overwrite,
        }
    }
}

/// The writer object as a start read it, for [`ShardBucket::take_writer`].
pub struct WriterState(Seen);

impl ShardBucket {
    /// Takes the prefix for this daemon at start, or says who holds it ([`S3Error::PrefixBusy`]):
    /// [`ShardBucket::read_writer_state`], then [`ShardBucket::take_writer`].
    pub async fn claim_writer(&self) -> Result<(), S3Error> {
        let state = self.read_writer_state().await?;
        self.take_writer(state).await
    }

    /// Reads the writer object: the first half of [`ShardBucket::claim_writer`] (public so that
    /// a test can start another daemon between the read and the write).
    pub async fn read_writer_state(&self) -> Result<WriterState, S3Error> {
        Ok(WriterState(self.read_writer().await?))
    }

    /// Takes the prefix if `state` lets this daemon have it and the object is still as read
    /// then; another daemon's fresh object, or one written since, is [`S3Error::PrefixBusy`].
    pub async fn take_writer(&self, state: WriterState) -> Result<(), S3Error> {
        let me = &self.writer;
        let WriterState(seen) = state;
        if let Seen::Found { writer, age, .. } = &seen {
            let ours = writer.holder == me.holder || writer.instance == me.instance;
            if !ours {
                if *age < WRITER_FRESH_FOR {
                    return Err(self.busy(writer, *age));
                }
                warn!(
                    url = %self.url(WRITER_OBJECT),
                    holder = %writer.holder,
                    silent_s = age.as_secs(),
                    "taking over an S3 prefix whose last daemon stopped writing it"
                );
            }
        }
        if !self.write_writer(seen.unchanged()).await? {
            // Another daemon wrote it since it was read: it starts, this one waits. (Our own
            // object: a write that applied but whose answer was lost and retried.)
            match self.read_writer().await? {
                Seen::Found { writer, .. } if writer.instance == me.instance => {}
                Seen::Found { writer, age, .. } => return Err(self.busy(&writer, age)),
                Seen::Absent => return Err(self.busy(&someone_else(), Duration::ZERO)),
            }
        }
        tokio::time::sleep(CONFIRM_AFTER).await;
        match self.read_writer().await? {
            Seen::Found { writer, age, .. } if writer.instance != me.instance => {
                Err(self.busy(&writer, age))
            }
            _ => {
                self.writer_claimed.store(true, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Writes the object again, unless another daemon took the prefix over
    /// ([`S3Error::PrefixTaken`], also when that happens between the read and the write).
    pub async fn renew_writer(&self) -> Result<(), S3Error> {
        if !self.writer_claimed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let seen = self.read_writer().await?;
        if let Seen::Found { writer, .. } = &seen
            && writer.instance != self.writer.instance
        {
            return Err(self.taken(writer));
        }
        // Absent: nobody but this daemon deletes it; written again here.
        if self.write_writer(seen.unchanged()).await? {
            return Ok(());
        }
        match self.read_writer().await? {
            Seen::Found { writer, .. } if writer.instance == self.writer.instance => Ok(()),
            Seen::Found { writer, .. } => Err(self.taken(&writer)),
            Seen::Absent => Err(self.taken(&someone_else())),
        }
    }

    /// Checks, before an upload, that the prefix is still this daemon's; a no-op when it was
    /// never claimed.
    pub(super) async fn confirm_writer(&self) -> Result<(), S3Error> {
        if !self.writer_claimed.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.read_writer().await? {
            Seen::Found { writer, .. } if writer.instance != self.writer.instance => {
                Err(self.taken(&writer))
            }
            // Absent: nobody but this daemon deletes it; written again by the next renewal.
            _ => Ok(()),
        }
    }

    /// Deletes the object at a clean stop, if it is still this daemon's.
    pub async fn release_writer(&self) -> Result<(), S3Error> {
        if !self.writer_claimed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Seen::Found { writer, .. } = self.read_writer().await?
            && writer.instance == self.writer.instance
        {
            self.store
                .delete(&self.key(WRITER_OBJECT))
                .await
                .map_err(|source| self.writer_error(source))?;
        }
        Ok(())
    }

    async fn read_writer(&self) -> Result<Seen, S3Error> {
        let result = match self.store.get(&self.key(WRITER_OBJECT)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(Seen::Absent),
            Err(source) => return Err(self.writer_error(source)),
        };
        let written = SystemTime::from(result.meta.last_modified);
        let e_tag = result.meta.e_tag.clone();
        let bytes = result
            .bytes()
            .await
            .map_err(|source| self.writer_error(source))?;
        let age = SystemTime::now()
            .duration_since(written)
            .unwrap_or_default();
        // Unreadable (written by hand, cut short): whoever wrote it is unknown, and it counts
        // as someone else's until it is old.
        let writer = serde_json::from_slice(&bytes).unwrap_or_else(|_| Writer {
            holder: "an unreadable writer object".to_owned(),
            instance: String::new(),
        });
        Ok(Seen::Found { writer, age, e_tag })
    }

    /// Writes this daemon's object with `mode`; `false` when the store refused it because the
    /// object changed since it was read.
    async fn write_writer(&self, mode: PutMode) -> Result<bool, S3Error> {
        let body = PutPayload::from(serde_json::to_vec(&self.writer).expect("a writer serializes"));
        let key = self.key(WRITER_OBJECT);
        match self
            .store
            .put_opts(&key, body.clone(), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            // Conditional writes turned off (`AWS_CONDITIONAL_PUT=disabled`): a plain write.
            Err(object_store::Error::NotImplemented { .. }) => {
                self.store
                    .put(&key, body)
                    .await
                    .map_err(|source| self.writer_error(source))?;
                Ok(true)
            }
            Err(source) => Err(self.writer_error(source)),
        }
    }

    fn taken(&self, writer: &Writer) -> S3Error {
        S3Error::PrefixTaken {
            url: self.url(""),
            holder: writer.holder.clone(),
        }
    }

    fn busy(&self, writer: &Writer, age: Duration) -> S3Error {
        S3Error::PrefixBusy {
            url: self.url(""),
            holder: writer.holder.clone(),
            age_s: age.as_secs(),
            free_in_s: WRITER_FRESH_FOR.saturating_sub(age).as_secs(),
        }
    }

    fn writer_error(&self, source: object_store::Error) -> S3Error {
        S3Error::Writer {
            url: self.url(WRITER_OBJECT),
            source,
        }
    }
}

/// The holder named when a conditional write was refused and the object is gone again by the
/// time it is read (another daemon wrote it and stopped at once).
fn someone_else() -> Writer {
    Writer {
        holder: "another clip-gpu-d".to_owned(),
        instance: String::new(),
    }
}
