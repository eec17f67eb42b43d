//! The S3 output: complete shards are uploaded from the spool folder in their visibility order
//! (`shard::shard_files`: embeddings, parquet, tar, tfrecord, `NNNNN_stats.json` last), so a
//! shard is complete in the bucket exactly when its stats object exists, as it is locally
//! when its stats file exists.
//!
//! The tar and the tfrecord go through multipart uploads, which become visible only when
//! completed; the smaller files are single PUTs. Once the stats object is stored, the spool
//! copies are deleted, the stats file first: a shard with its stats file in the spool is one
//! still to upload (again, after a crash; uploads overwrite), and one without it is in the
//! bucket. The pending marker stays in the spool until the tracker knows the shard.
//!
//! The credentials are fetched once at start ([`credentials`]), so that missing ones stop the
//! daemon with what to set rather than look like a store outage. One daemon writes a prefix
//! ([`writer`]).

mod credentials;
mod writer;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;
use tracing::debug;

use self::credentials::CredentialSource;
use super::{S3Location, S3Settings};
use crate::shard::{self, ShardError};

pub use self::writer::{WRITER_RENEW_EVERY, Writer, WriterState};

/// Multipart part size: S3 wants at least 5 MiB for every part but the last, and allows
/// 10,000 parts, so objects up to 80 GiB.
const PART_SIZE: usize = 8 << 20;
/// Parts of one object in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// A bucket prefix that receives shards. Clones share the writer claim.
#[derive(Debug, Clone)]
pub struct ShardBucket {
    store: AmazonS3,
    prefix: ObjectPath,
    location: S3Location,
    credentials: CredentialSource,
    /// Who this daemon is to other daemons on the prefix.
    writer: Writer,
    /// Whether [`ShardBucket::claim_writer`] took the prefix.
    writer_claimed: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 configuration for s3://{bucket}")]
    Config {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "the S3 endpoint {0:?} (--s3-endpoint, CLIP_S3_ENDPOINT, AWS_ENDPOINT_URL or \
         AWS_ENDPOINT_URL_S3) is not an http:// or https:// URL"
    )]
    Endpoint(String),
    /// No credentials set, or their source (the instance metadata service...) gave none.
    #[error("no usable S3 credentials for s3://{bucket}: {tried}")]
    Credentials {
        bucket: String,
        tried: String,
        #[source]
        source: Option<object_store::Error>,
    },
    #[error("failed to list {url}")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to upload {path} to {url}")]
    Upload {
        path: PathBuf,
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] ShardError),
    /// Another daemon's writer object is fresh: retried at start until it is not.
    #[error(
        "another clip-gpu-d ({holder}) writes {url}, last {age_s} s ago: give each daemon its own \
         prefix (--output s3://bucket/run/gpu-1, s3://bucket/run/gpu-2); this start waits, and goes \
         on by itself at the latest {free_in_s} s after that daemon stops"
    )]
    PrefixBusy {
        url: String,
        holder: String,
        age_s: u64,
        free_in_s: u64,
    },
    #[error(
        "another clip-gpu-d ({holder}) took over {url} while this one did not write to it; this \
         one uploads nothing more: give each daemon its own prefix"
    )]
    PrefixTaken { url: String, holder: String },
    #[error("failed to read or write {url}")]
    Writer {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

impl S3Error {
    /// Whether the same request can succeed later (the store unreachable, overloaded or
    /// failing), as opposed to a refusal that needs the operator: credentials, permissions,
    /// a missing bucket, the configuration.
    pub fn is_transient(&self) -> bool {
        use object_store::Error as Store;
        match self {
            S3Error::List { source, .. }
            | S3Error::Upload { source, .. }
            | S3Error::Writer { source, .. } => !matches!(
                source,
                Store::NotFound { .. }
                    | Store::PermissionDenied { .. }
                    | Store::Unauthenticated { .. }
                    | Store::UnknownConfigurationKey { .. }
                    | Store::NotSupported { .. }
                    | Store::NotImplemented { .. }
                    | Store::InvalidPath { .. }
            ),
            S3Error::PrefixBusy { .. } => true,
            S3Error::Config { .. }
            | S3Error::PrefixTaken { .. }
            | S3Error::Endpoint(_)
            | S3Error::Credentials { .. }
            | S3Error::Read { .. }
            | S3Error::Spool(_) => false,
        }
    }
}

/// The longest a single request may take: an 8 MiB part at 16 KB/s.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);
/// How long a transfer may go without a byte.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Retries of one request: 1 s doubling to 60 s, for up to 4 minutes (object_store advises under
/// 5, as a signed request is not renewed between tries).
fn upload_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(60),
            base: 2.0,
        },
        max_retries: 12,
        retry_timeout: std::time::Duration::from_secs(240),
    }
}

impl ShardBucket {
    /// Builds the client: `AWS_*` variables first, then the settings from the flags. Refuses an
    /// endpoint that is not http(s), and missing credentials when the instance metadata service
    /// is turned off (`AWS_EC2_METADATA_DISABLED`); [`ShardBucket::check_credentials`] does the
    /// rest. `writer` is who this daemon is to other daemons on the prefix.
    pub fn connect(
        location: &S3Location,
        settings: &S3Settings,
        writer: Writer,
    ) -> Result<Self, S3Error> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(access_key_id) = &settings.access_key_id {
            builder = builder.with_access_key_id(access_key_id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        if let Some(endpoint) = &settings.endpoint {
            // Both keys: object_store prefers AWS_ENDPOINT_URL_S3 to the plain endpoint, and the
            // flag must win over the environment.
            builder = builder
                .with_endpoint(endpoint.as_str())
                .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint.as_str());
        }
        // A custom endpoint (flag, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3) gets path-style
        // requests, and plain http when it says http; any other scheme is refused.
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        if let Some(endpoint) = endpoint {
            let scheme = endpoint
                .split_once("://")
                .map(|(scheme, _)| scheme.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                return Err(S3Error::Endpoint(endpoint));
            }
            builder = builder
                .with_virtual_hosted_style_request(false)
                .with_allow_http(scheme.as_deref() == Some("http"));
        }
        let credentials = CredentialSource::of(&builder);
        credentials::refuse_disabled_metadata(credentials, &location.bucket, |name| {
            std::env::var(name).ok()
        })?;
        // object_store's defaults give up after about 2 s of retries (10 tries from 100 ms) and
        // cut any request at 30 s, so an S3 "SlowDown" burst or a slow uplink failed whole
        // shards: retries span minutes, and a stalled transfer is cut by a read timeout instead.
        builder = builder
            .with_retry(upload_retries())
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", REQUEST_TIMEOUT.as_secs()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ReadTimeout),
                format!("{}s", READ_TIMEOUT.as_secs()),
            );
        let store = builder.build().map_err(|source| S3Error::Config {
            bucket: location.bucket.clone(),
            source,
        })?;
        Ok(Self {
            store,
            prefix: location
                .prefix
                .split('/')
                .filter(|part| !part.is_empty())
                .fold(ObjectPath::default(), |path, part| path.join(part)),
            location: location.clone(),
            credentials,
            writer,
            writer_claimed: Arc::default(),
        })
    }

    /// Fetches the credentials once, where that takes a request (the instance metadata
    /// service, a web identity token, a container endpoint), so that none at all is an error
    /// that says what to set ([`S3Error::Credentials`], not transient) rather than a listing
    /// that fails for ever.
    pub async fn check_credentials(&self) -> Result<(), S3Error> {
        credentials::check(&self.store, self.credentials, &self.location.bucket).await
    }

    /// The numbers of the shards complete in the bucket (those whose stats object exists).
    pub async fn published(&self) -> Result<BTreeSet<u32>, S3Error> {
        let prefix = (!self.location.prefix.is_empty()).then_some(&self.prefix);
        let listing = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|source| S3Error::List {
                url: self.url(""),
                source,
            })?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|object| object.location.filename())
            .filter_map(|name| shard::shard_number(name, "_stats.json"))
            .collect())
    }

    /// Uploads shard `number` if it is complete in `spool`, stats object last, then deletes its
    /// spool files; returns whether it uploaded anything. A shard not complete in the spool is
    /// already in the bucket (a crash came after its upload): its leftovers are deleted. Nothing
    /// is uploaded once another daemon took the prefix over ([`S3Error::PrefixTaken`]).
    pub async fn publish(&self, spool: &Path, number: u32) -> Result<bool, S3Error> {
        self.confirm_writer().await?;
        let names = shard::shard_files(number);
        let stats = spool.join(&names[names.len() - 1]);
        if !exists(&stats).await? {
            remove_spool_files(spool, number).await?;
            return Ok(false);
        }
        for name in &names {
            let path = spool.join(name);
            let is_tfrecord = name.ends_with(".tfrecord");
            if is_tfrecord && !exists(&path).await? {
                continue;
            }
            if is_tfrecord || name.ends_with(".tar") {
                self.put_multipart(&path, name).await?;
            } else {
                self.put_whole(&path, name).await?;
            }
            debug!(shard = number, object = %self.url(name), "uploaded");
        }
        remove_spool_files(spool, number).await?;
        Ok(true)
    }

    /// `s3://bucket/prefix/name`.
    pub fn url(&self, name: &str) -> String {
        let mut url = format!("s3://{}/", self.location.bucket);
        for part in [self.location.prefix.as_str(), name] {
            if !part.is_empty() {
                url.push_str(part);
                url.push('/');
            }
        }
        url.pop();
        url
    }

    fn key(&self, name: &str) -> ObjectPath {
        name.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    async fn put_whole(&self, path: &Path, name: &str) -> Result<(), S3Error> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| S3Error::Read {
                path: path.to_owned(),
                source,
            })?;
        self.store
            .put(&self.key(name), bytes.into())
            .await
            .map_err(|source| self.upload_error(path, name, source))?;
        Ok(())
    }

    async fn put_multipart(&self, path: &Path, name: &str) -> Result<(), S3Error> {
        let upload = self
            .store
            .put_multipart(&self.key(name))
            .await
            .map_err(|source| self.upload_error(path, name, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let written = async {
            let read_error = |source| S3Error::Read {
                path: path.to_owned(),
                source,
            };
            let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
            let mut buffer = vec![0; PART_SIZE];
            loop {
                let n_read = file.read(&mut buffer).await.map_err(read_error)?;
                if n_read == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|source| self.upload_error(path, name, source))?;
                writer.write(&buffer[..n_read]);
            }
        }
        .await;
        match written {
            // `finish` aborts the upload itself when a part or the completion fails (object_store
            // 0.14 `WriteMultipart::finish`), so its parts are not left behind either.
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|source| self.upload_error(path, name, source))?;
                Ok(())
            }
            Err(error) => {
                // Parts already sent would otherwise be kept (and billed) by S3.
                let _ = writer.abort().await;
                Err(error)
            }
        }
    }

    fn upload_error(&self, path: &Path, name: &str, source: object_store::Error) -> S3Error {
        S3Error::Upload {
            path: path.to_owned(),
            url: self.url(name),
            source,
        }
    }
}

/// Whether `path` exists; an error (not "not found") is an error, never "absent", since an
/// absent stats file means the shard's spool files can go.
async fn exists(path: &Path) -> Result<bool, S3Error> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|source| S3Error::Read {
            path: path.to_owned(),
            source,
        })
}

async fn remove_spool_files(spool: &Path, number: u32) -> Result<(), ShardError> {
    let spool = spool.to_owned();
    tokio::task::spawn_blocking(move || shard::remove_shard_files(&spool, number))
        .await
        .map_err(|error| ShardError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(error),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(prefix: &str) -> ShardBucket {
        let location = S3Location {
            bucket: "laion".to_owned(),
            prefix: prefix.to_owned(),
        };
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9/".parse().expect("url")),
            region: Some("us-east-1".to_owned()),
            access_key_id: Some("key".to_owned()),
            secret_access_key: Some("secret".parse().expect("secret")),
        };
        ShardBucket::connect(
            &location,
            &settings,
            Writer::this_process(Path::new("spool")),
        )
        .expect("client")
    }

    #[test]
    fn keys_and_urls_sit_under_the_prefix() {
        let nested = bucket("runs/2021");
        assert_eq!(
            nested.key("img_emb/img_emb_00003.npy").as_ref(),
            "runs/2021/img_emb/img_emb_00003.npy"
        );
        assert_eq!(nested.url("00003.tar"), "s3://laion/runs/2021/00003.tar");
        let root = bucket("");
        assert_eq!(root.key("00003.tar").as_ref(), "00003.tar");
        assert_eq!(root.url("00003.tar"), "s3://laion/00003.tar");
        assert_eq!(root.url(""), "s3://laion");
    }
}
