//! One HTTP exchange with the tracker: send, check the status, read a bounded body, decode.

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::client::TrackerClient;
use crate::endpoint::Endpoint;
use crate::error::{TrackerError, parse_retry_after};
use crate::retry::{Attempt, with_retries};

/// Most of an error body kept in [`TrackerError`]; the tracker's details are one line.
const MAX_ERROR_TEXT: usize = 4 * 1024;

/// A success answer.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The body of a 2xx response.
    Body(Bytes),
    /// A conflict answered a retry that followed an attempt with an unknown outcome, on a call
    /// whose repeat the tracker detects: the earlier attempt was probably applied.
    AlreadyApplied(String),
}

impl Reply {
    /// The body, treating "already applied" as an empty success.
    pub(crate) fn into_body(self) -> Bytes {
        match self {
            Reply::Body(body) => body,
            Reply::AlreadyApplied(_) => Bytes::new(),
        }
    }
}

impl TrackerClient {
    /// The URL of `path` below the base URL, keeping a base path prefix such as `/tracker`.
    pub(crate) fn endpoint_url(&self, path: &str) -> Url {
        let mut url = self.base_url().clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.set_query(None);
        url
    }

    /// Sends a bodiless request, or one with a JSON body encoded once, with retries.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        url: Url,
        json: Option<Bytes>,
    ) -> Result<Reply, TrackerError> {
        with_retries(self.retry_policy(), endpoint, |attempt| {
            let mut request = self.http().request(endpoint.method.clone(), url.clone());
            if let Some(json) = &json {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(json.clone());
            }
            self.exchange(endpoint, attempt, request)
        })
        .await
    }

    /// Sends one attempt and maps its answer.
    pub(crate) async fn exchange(
        &self,
        endpoint: &Endpoint,
        attempt: Attempt,
        request: RequestBuilder,
    ) -> Result<Reply, TrackerError> {
        let response = request.send().await.map_err(TrackerError::Transport)?;
        let status = response.status();
        tracing::trace!(
            call = endpoint.name,
            attempt = attempt.number,
            status = status.as_u16(),
            "tracker answered"
        );
        if status.is_success() {
            let body = read_body(response, self.max_response_bytes(), endpoint.name).await?;
            return Ok(Reply::Body(body));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let text = read_error_text(response).await;
        let error = TrackerError::from_status(endpoint, status, retry_after, text);
        match error {
            TrackerError::Conflict(detail)
                if attempt.after_uncertain && endpoint.conflict_after_uncertain_is_done =>
            {
                tracing::debug!(call = endpoint.name, %detail, "conflict after an uncertain attempt, treating it as applied");
                Ok(Reply::AlreadyApplied(detail))
            }
            error => Err(error),
        }
    }

    /// `POST`s `body` as JSON and returns the raw reply.
    pub(crate) async fn post<Req: Serialize + ?Sized>(
        &self,
        endpoint: &Endpoint,
        body: &Req,
    ) -> Result<Reply, TrackerError> {
        let json = encode(endpoint, body)?;
        let url = self.endpoint_url(endpoint.path);
        self.send(endpoint, url, Some(json)).await
    }

    /// `POST`s `body` as JSON and decodes a JSON answer.
    pub(crate) async fn post_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        body: &Req,
    ) -> Result<Resp, TrackerError> {
        let reply = self.post(endpoint, body).await?;
        decode_json(endpoint, &reply.into_body())
    }

    /// `GET`s with the given query and returns the body.
    pub(crate) async fn get(
        &self,
        endpoint: &Endpoint,
        query: &[(&str, &str)],
    ) -> Result<Bytes, TrackerError> {
        let mut url = self.endpoint_url(endpoint.path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(self.send(endpoint, url, None).await?.into_body())
    }

    /// `GET`s with the given query and decodes a JSON answer.
    pub(crate) async fn get_json<Resp: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        query: &[(&str, &str)],
    ) -> Result<Resp, TrackerError> {
        let body = self.get(endpoint, query).await?;
        decode_json(endpoint, &body)
    }
}

fn encode<Req: Serialize + ?Sized>(endpoint: &Endpoint, body: &Req) -> Result<Bytes, TrackerError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|error| {
        TrackerError::Invalid(format!("cannot encode {} request: {error}", endpoint.name))
    })
}

/// Decodes a JSON body.
pub(crate) fn decode_json<Resp: DeserializeOwned>(
    endpoint: &Endpoint,
    body: &[u8],
) -> Result<Resp, TrackerError> {
    serde_json::from_slice(body).map_err(|error| TrackerError::Decode {
        call: endpoint.name,
        detail: error.to_string(),
    })
}

/// Decodes a `text/plain` body, trimmed; tolerates a JSON-quoted string.
pub(crate) fn decode_text(endpoint: &Endpoint, body: &[u8]) -> Result<String, TrackerError> {
    let text = std::str::from_utf8(body).map_err(|error| TrackerError::Decode {
        call: endpoint.name,
        detail: format!("response is not utf-8: {error}"),
    })?;
    let text = text.trim();
    let unquoted = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    Ok(unquoted.to_owned())
}

/// Reads a success body, refusing one larger than `limit` bytes.
async fn read_body(
    mut response: Response,
    limit: usize,
    call: &'static str,
) -> Result<Bytes, TrackerError> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(TrackerError::Decode {
            call,
            detail: format!("response of {length} bytes exceeds the limit of {limit}"),
        });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(TrackerError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(TrackerError::Decode {
                call,
                detail: format!("response exceeds the limit of {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads the detail text of an error response, at most [`MAX_ERROR_TEXT`] bytes of it.
async fn read_error_text(mut response: Response) -> String {
    let mut text = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_TEXT - text.len();
                text.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if text.len() >= MAX_ERROR_TEXT {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(error = %error, "failed to read the tracker's error text");
                break;
            }
        }
    }
    String::from_utf8_lossy(&text).trim().to_owned()
}
