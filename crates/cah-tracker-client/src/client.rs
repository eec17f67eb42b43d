//! [`TrackerClient`]: the connection settings, registration, and the calls that need no token.

use std::sync::Arc;
use std::time::Duration;

use cah_protocol::ClientType;
use cah_protocol::ext::{ClientInfo, InfoResponse};
use cah_protocol::legacy::{DataResponse, IsCompletedRequest, NewResponse};
use url::Url;

use crate::endpoint;
use crate::error::TrackerError;
use crate::retry::RetryPolicy;
use crate::session::Session;
use crate::transport::decode_text;

/// The most clients [`TrackerClient::clients`] asks for: tracker-d's cap on one listing.
pub const MAX_LISTED_CLIENTS: u32 = 10_000;

/// Settings of a [`TrackerClient`]. [`ClientConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The tracker's base URL, `http` or `https`; a path prefix (`https://host/tracker/`) is kept.
    pub base_url: Url,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Limit of one attempt of an ordinary call, from sending to the last body byte (30 s).
    pub request_timeout: Duration,
    /// Limit of one attempt of a bundle upload, which can be hundreds of megabytes (10 min).
    pub upload_timeout: Duration,
    /// Limit of establishing a connection (10 s).
    pub connect_timeout: Duration,
    /// Largest response body accepted (64 MiB); the client list of a big swarm is the largest.
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// The defaults: [`RetryPolicy::default`], 30 s requests, 10 min uploads, 10 s connects.
    pub fn new(base_url: Url) -> Self {
        ClientConfig {
            base_url,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A typed client of one tracker. Cheap to clone; clones share one connection pool.
///
/// [`register`](Self::register) gives a [`Session`], which carries the token for the calls
/// that need one. The methods here need no token.
#[derive(Debug, Clone)]
pub struct TrackerClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
}

impl TrackerClient {
    /// Builds a client; fails if the base URL is not `http(s)` or TLS cannot be set up.
    pub fn new(config: ClientConfig) -> Result<Self, TrackerError> {
        let scheme = config.base_url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(TrackerError::Config(format!(
                "tracker url {} is not http or https",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("cah-tracker-client/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(TrackerError::Transport)?;
        Ok(TrackerClient {
            inner: Arc::new(Inner { http, config }),
        })
    }

    /// A client with the default settings of [`ClientConfig::new`].
    pub fn with_defaults(base_url: Url) -> Result<Self, TrackerError> {
        TrackerClient::new(ClientConfig::new(base_url))
    }

    /// The tracker's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.config.base_url
    }

    /// The retry policy every call uses.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.config.retry
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn upload_timeout(&self) -> Duration {
        self.inner.config.upload_timeout
    }

    pub(crate) fn max_response_bytes(&self) -> usize {
        self.inner.config.max_response_bytes
    }

    /// `GET /api/new`: registers a client and returns its session.
    ///
    /// Retried like a read: a repeat after a lost answer leaves an extra registration that holds
    /// no job, and the tracker reaps it when it idles out.
    pub async fn register(
        &self,
        nickname: &str,
        client_type: ClientType,
    ) -> Result<Session, TrackerError> {
        let registration = self.register_raw(nickname, client_type).await?;
        tracing::info!(nickname, r#type = %client_type, display_name = %registration.display_name, "registered with the tracker");
        Ok(Session::from_registration(
            self.clone(),
            nickname.to_owned(),
            client_type,
            registration,
        ))
    }

    pub(crate) async fn register_raw(
        &self,
        nickname: &str,
        client_type: ClientType,
    ) -> Result<NewResponse, TrackerError> {
        let query = [("nickname", nickname), ("type", client_type.as_str())];
        self.get_json(&endpoint::NEW, &query).await
    }

    /// `GET /api/jobCount`: open jobs for `client_type` (GPU jobs for GPU, CPU jobs otherwise).
    pub async fn job_count(&self, client_type: ClientType) -> Result<u64, TrackerError> {
        let body = self
            .get(&endpoint::JOB_COUNT, &[("type", client_type.as_str())])
            .await?;
        let text = decode_text(&endpoint::JOB_COUNT, &body)?;
        text.parse().map_err(|_| TrackerError::Decode {
            call: endpoint::JOB_COUNT.name,
            detail: format!("{text:?} is not a job count"),
        })
    }

    /// `GET /api/getUploadAddress`: a 2021-style upload address for `client_type`.
    pub async fn upload_address(&self, client_type: ClientType) -> Result<String, TrackerError> {
        let body = self
            .get(
                &endpoint::GET_UPLOAD_ADDRESS,
                &[("type", client_type.as_str())],
            )
            .await?;
        decode_text(&endpoint::GET_UPLOAD_ADDRESS, &body)
    }

    /// `POST /api/isCompleted`: those of `addresses` whose job is closed or no longer exists.
    pub async fn is_completed(&self, addresses: &[String]) -> Result<Vec<String>, TrackerError> {
        let request = IsCompletedRequest {
            addresses: addresses.to_vec(),
        };
        self.post_json(&endpoint::IS_COMPLETED, &request).await
    }

    /// `GET /custom/get-cpu-wat`: the URL of a WAT whose halves are both open (not reserved).
    ///
    /// [`TrackerError::NoJobs`] when the tracker answers 403.
    pub async fn get_cpu_wat(&self) -> Result<String, TrackerError> {
        let body = self.get(&endpoint::CUSTOM_GET_CPU_WAT, &[]).await?;
        decode_text(&endpoint::CUSTOM_GET_CPU_WAT, &body)
    }

    /// `GET /data`: the progress summary.
    pub async fn data(&self) -> Result<DataResponse, TrackerError> {
        self.get_json(&endpoint::DATA, &[]).await
    }

    /// `GET /api/ext/info`: extension API version, lease length and bundle size limit.
    pub async fn info(&self) -> Result<InfoResponse, TrackerError> {
        self.get_json(&endpoint::EXT_INFO, &[]).await
    }

    /// `GET /api/ext/clients`: the registered clients, the [`MAX_LISTED_CLIENTS`] most recently
    /// seen (tracker-d lists 1,000 unless asked for more; a tracker without the parameter
    /// ignores it).
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, TrackerError> {
        let limit = MAX_LISTED_CLIENTS.to_string();
        self.get_json(&endpoint::EXT_CLIENTS, &[("limit", limit.as_str())])
            .await
    }
}
