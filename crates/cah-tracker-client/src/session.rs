//! [`Session`]: a registered client's token, and the 2021 calls that carry it.
//!
//! The extension calls (`/api/ext/...`) are in `jobs.rs`, `dedup.rs` and `upload.rs`.

use std::collections::BTreeMap;

use cah_protocol::ClientType;
use cah_protocol::legacy::{
    CustomResponse, JobResponse, LookupWatRequest, MarkAsDoneCpuRequest, MarkAsDoneRequest,
    NewResponse, ShardInfo, TokenRequest, UpdateProgressRequest,
};

use crate::client::TrackerClient;
use crate::completion::{Completion, JobOutput};
use crate::endpoint::{self, Endpoint};
use crate::error::TrackerError;
use crate::transport::{Reply, decode_json, decode_text};

/// A registered client: its token, display name and type, over a [`TrackerClient`].
///
/// Every call that returns [`TrackerError::TimedOut`] means the tracker forgot the token (it
/// idled out, or the tracker lost its state): call [`reregister`](Self::reregister), as the
/// 2021 library's `recreate()` did, and claim anew. Jobs held under the old token are lost.
#[derive(Clone)]
pub struct Session {
    client: TrackerClient,
    nickname: String,
    client_type: ClientType,
    token: String,
    display_name: String,
    upload_address: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("base_url", &self.client.base_url().as_str())
            .field("nickname", &self.nickname)
            .field("client_type", &self.client_type)
            .field("token", &"***")
            .field("display_name", &self.display_name)
            .finish()
    }
}

impl Session {
    pub(crate) fn from_registration(
        client: TrackerClient,
        nickname: String,
        client_type: ClientType,
        registration: NewResponse,
    ) -> Self {
        Session {
            client,
            nickname,
            client_type,
            token: registration.token,
            display_name: registration.display_name,
            upload_address: registration.upload_address,
        }
    }

    /// Continues a session registered earlier (2021's `load()`), for example by another
    /// process. The upload address is unknown and left empty.
    pub fn resume(
        client: TrackerClient,
        nickname: String,
        client_type: ClientType,
        token: String,
        display_name: String,
    ) -> Self {
        Session {
            client,
            nickname,
            client_type,
            token,
            display_name,
            upload_address: String::new(),
        }
    }

    /// The client this session talks through, for the calls that need no token.
    pub fn client(&self) -> &TrackerClient {
        &self.client
    }

    /// The secret token; keep it out of logs.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The name the tracker shows on its dashboard.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The leaderboard name this session registered with.
    pub fn nickname(&self) -> &str {
        &self.nickname
    }

    /// The role this session registered as.
    pub fn client_type(&self) -> ClientType {
        self.client_type
    }

    /// The 2021 upload address given at registration (empty for a resumed session).
    pub fn registered_upload_address(&self) -> &str {
        &self.upload_address
    }

    /// Registers again with the same nickname and type and takes the new token (2021's
    /// `recreate()`). Jobs held under the old token are not carried over.
    pub async fn reregister(&mut self) -> Result<(), TrackerError> {
        let registration = self
            .client
            .register_raw(&self.nickname, self.client_type)
            .await?;
        tracing::info!(
            nickname = %self.nickname,
            old_display_name = %self.display_name,
            display_name = %registration.display_name,
            "registered with the tracker again"
        );
        self.token = registration.token;
        self.display_name = registration.display_name;
        self.upload_address = registration.upload_address;
        Ok(())
    }

    fn token_request(&self) -> TokenRequest {
        TokenRequest {
            token: self.token.clone(),
            client_type: self.client_type,
        }
    }

    async fn post_token_request(&self, endpoint: &Endpoint) -> Result<Reply, TrackerError> {
        self.client.post(endpoint, &self.token_request()).await
    }

    /// `POST /api/validateWorker`: whether the tracker still knows this token.
    pub async fn validate(&self) -> Result<bool, TrackerError> {
        let reply = self.post_token_request(&endpoint::VALIDATE_WORKER).await?;
        let text = decode_text(&endpoint::VALIDATE_WORKER, &reply.into_body())?;
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(TrackerError::Decode {
                call: endpoint::VALIDATE_WORKER.name,
                detail: format!("{text:?} is neither True nor False"),
            }),
        }
    }

    /// `POST /api/newJob`: claims one job, releasing the job this client held before.
    ///
    /// [`TrackerError::NoJobs`] when none is open (403).
    pub async fn new_job(&self) -> Result<JobResponse, TrackerError> {
        self.client
            .post_json(&endpoint::NEW_JOB, &self.token_request())
            .await
    }

    /// `POST /api/updateProgress`: the 2021 heartbeat, with a phase string for the dashboard.
    pub async fn update_progress(&self, progress: &str) -> Result<(), TrackerError> {
        let request = UpdateProgressRequest {
            token: self.token.clone(),
            progress: progress.to_owned(),
            client_type: self.client_type,
        };
        self.client
            .post(&endpoint::UPDATE_PROGRESS, &request)
            .await
            .map(drop)
    }

    /// `POST /api/markAsDone`: completes the job this client holds.
    ///
    /// [`TrackerError::Conflict`] when the client holds no job or it is already closed (403);
    /// see [`Completion`] for a conflict that answers a retry.
    pub async fn mark_as_done(&self, output: JobOutput) -> Result<Completion, TrackerError> {
        let (count, url) = match output {
            JobOutput::Pairs(count) => (Some(count), None),
            JobOutput::Bundle(url) => (None, Some(url)),
        };
        let request = MarkAsDoneRequest {
            token: self.token.clone(),
            client_type: self.client_type,
            count,
            url,
            start_id: None,
            end_id: None,
            shard: None,
        };
        let reply = self.client.post(&endpoint::MARK_AS_DONE, &request).await?;
        Ok(completion(reply))
    }

    /// `POST /api/gpuInvalidDownload`: the bundle of this GPU client's job is unusable; the
    /// job goes back to the CPU queue.
    pub async fn gpu_invalid_download(&self) -> Result<(), TrackerError> {
        self.post_token_request(&endpoint::GPU_INVALID_DOWNLOAD)
            .await
            .map(drop)
    }

    /// `POST /api/bye`: releases this client's job and makes the tracker forget the token.
    ///
    /// A [`TrackerError::TimedOut`] answer counts as success: the token is already forgotten.
    pub async fn bye(&self) -> Result<(), TrackerError> {
        match self.post_token_request(&endpoint::BYE).await {
            Ok(_) | Err(TrackerError::TimedOut) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `GET /api/getUploadAddress` for this session's type.
    pub async fn upload_address(&self) -> Result<String, TrackerError> {
        self.client.upload_address(self.client_type).await
    }

    /// `POST /custom/lookup-wat`: reserves the open halves of a WAT from
    /// [`TrackerClient::get_cpu_wat`] for this client and lists them as `(number, shard)`.
    ///
    /// A `failed` answer (another worker took a half first) is [`TrackerError::Conflict`].
    pub async fn lookup_wat(&self, wat_url: &str) -> Result<Vec<(u64, ShardInfo)>, TrackerError> {
        let request = LookupWatRequest {
            url: wat_url.to_owned(),
            token: Some(self.token.clone()),
        };
        let response = self.custom(&endpoint::CUSTOM_LOOKUP_WAT, &request).await?;
        Ok(response.shards.unwrap_or_default())
    }

    /// `POST /custom/markasdone-cpu`: hands off the bundles of full-WAT CPU work, one handoff
    /// string per job number; returns how many jobs the tracker completed.
    ///
    /// The tracker completes only jobs still open, so a retried call completes nothing twice.
    pub async fn mark_as_done_cpu(
        &self,
        handoffs: &BTreeMap<u64, String>,
    ) -> Result<u64, TrackerError> {
        let request = MarkAsDoneCpuRequest {
            shards: handoffs.keys().copied().collect(),
            urls: handoffs
                .iter()
                .map(|(number, handoff)| (number.to_string(), handoff.clone()))
                .collect(),
            nickname: self.nickname.clone(),
            token: Some(self.token.clone()),
        };
        let response = self
            .custom(&endpoint::CUSTOM_MARK_AS_DONE_CPU, &request)
            .await?;
        Ok(response.completed.unwrap_or(0))
    }

    async fn custom<Req: serde::Serialize>(
        &self,
        endpoint: &Endpoint,
        request: &Req,
    ) -> Result<CustomResponse, TrackerError> {
        let reply = self.client.post(endpoint, request).await?;
        let response: CustomResponse = decode_json(endpoint, &reply.into_body())?;
        if response.status == "success" {
            return Ok(response);
        }
        Err(TrackerError::Conflict(
            response.detail.unwrap_or(response.status),
        ))
    }
}

/// The outcome of a completion call that did not fail.
pub(crate) fn completion(reply: Reply) -> Completion {
    match reply {
        Reply::Body(_) => Completion::Accepted,
        Reply::AlreadyApplied(detail) => Completion::AcceptedOrLost { detail },
    }
}
