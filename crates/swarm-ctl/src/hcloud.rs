//! A small hand-written Hetzner Cloud API client (reference §1.11): typed errors keyed on the
//! API's error `code`, pagination, `RateLimit-*` pacing, 429 retries with backoff, action polling.
//!
//! Layout: `hcloud/types.rs` holds the serde shapes, `hcloud/endpoints.rs` one method per call,
//! `hcloud/error.rs` the typed errors, `hcloud/rate.rs` the retry policy and the rate-limit
//! bookkeeping.

mod endpoints;
mod error;
mod rate;
mod types;

use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use error::{ErrorCode, HcloudError};
pub use rate::{RateLimit, RetryPolicy};
pub use types::*;

use crate::secret::Secret;

/// The real API; tests and compatible clouds pass another base URL.
pub const DEFAULT_API_URL: &str = "https://api.hetzner.cloud/v1";

/// Largest `per_page` the API accepts.
const PER_PAGE: u32 = 50;

/// Most pages one listing may take (50,000 items), whatever the answers' `last_page` says.
const MAX_PAGES: u64 = 1_000;

/// A client of one project (one token).
#[derive(Debug)]
pub struct Hcloud {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    /// Whose token and from where, for the error of a refused one.
    token_origin: Option<String>,
    retry: RetryPolicy,
    rate: Mutex<Option<RateLimit>>,
}

/// Whether `method path` may be sent again after an answer was lost: GET and DELETE (a repeated
/// DELETE answers `locked` or `not_found`, never deletes twice), and `POST /servers`, whose
/// repeat answers `uniqueness_error` and is adopted by the creator as our own server.
fn repeatable(method: &Method, path: &str) -> bool {
    *method == Method::GET
        || *method == Method::DELETE
        || (*method == Method::POST && path == "/servers")
}

impl Hcloud {
    /// A client for the project behind `token`.
    pub fn new(base_url: &Url, token: Secret, retry: RetryPolicy) -> Result<Self, HcloudError> {
        if base_url.scheme() != "http" && base_url.scheme() != "https" {
            return Err(HcloudError::Config(format!(
                "api url {base_url} is not http or https"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("swarm-ctl/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| HcloudError::Config(format!("http client: {error}")))?;
        Ok(Hcloud {
            http,
            base_url: base_url.as_str().trim_end_matches('/').to_owned(),
            token,
            token_origin: None,
            retry,
            rate: Mutex::new(None),
        })
    }

    /// Says whose token this client uses and where it came from (`"account main's token, from
    /// the environment variable HCLOUD_TOKEN_MAIN"`), for the error of a refused token.
    pub fn with_token_origin(mut self, origin: String) -> Self {
        self.token_origin = Some(origin);
        self
    }

    /// The last `RateLimit-*` headers seen.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        *self
            .rate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One call with retries of transient failures; the body decoded as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, HcloudError> {
        let call = format!("{method} {path}");
        let mut attempt = 0u32;
        loop {
            if let Some(pause) = self
                .rate_limit()
                .and_then(|rate| rate.pause_before_request())
                .map(|pause| pause.min(self.retry.cap))
            {
                tracing::debug!(pause = ?pause, "rate limit nearly used up, pacing requests");
                tokio::time::sleep(pause).await;
            }
            let result = self.send_once(&method, path, query, body, &call).await;
            match result {
                Ok(value) => {
                    return serde_json::from_value(value).map_err(|error| HcloudError::Decode {
                        call,
                        detail: error.to_string(),
                    });
                }
                Err(error)
                    if (error.is_retryable()
                        || (error.is_lost_answer() && repeatable(&method, path)))
                        && attempt < self.retry.max_retries =>
                {
                    let floor = match error.code() {
                        Some(ErrorCode::RateLimitExceeded) => {
                            self.rate_limit().map(|rate| rate.refill_interval())
                        }
                        _ => None,
                    };
                    let delay = self.retry.delay(attempt, floor);
                    tracing::warn!(%call, attempt, delay = ?delay, error = %cah_tracker_client::with_causes(&error), "hetzner api call failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(self.with_hint(error)),
            }
        }
    }

    /// The final error of a call, told with what to do: for a `rate_limit_exceeded` that
    /// outlived the retries, when the project's request budget comes back (from the last
    /// `RateLimit-*` headers); for a refused or read-only token, whose token it is and where it
    /// came from.
    fn with_hint(&self, error: HcloudError) -> HcloudError {
        let HcloudError::Api {
            call,
            status,
            code,
            message,
            details,
        } = error
        else {
            return error;
        };
        let token = self.token_origin.as_deref().unwrap_or("the token");
        let hint = match code {
            ErrorCode::RateLimitExceeded => match self.rate_limit() {
                Some(rate) => rate.wait_hint(std::time::SystemTime::now()),
                None => "the api did not say when its request budget comes back; \
                         wait a few minutes and run the command again"
                    .to_owned(),
            },
            ErrorCode::Unauthorized => format!(
                "the api refused {token}: check it (Hetzner Console, the project, Security, API tokens), \
                 it may be mistyped, revoked, or belong to another project"
            ),
            ErrorCode::TokenReadonly => format!(
                "{token} is read-only: create a Read & Write token in the Hetzner Console (the project, Security, API tokens)"
            ),
            _ => String::new(),
        };
        let message = if hint.is_empty() {
            message
        } else {
            format!("{message}; {hint}")
        };
        HcloudError::Api {
            call,
            status,
            code,
            message,
            details,
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        call: &str,
    ) -> Result<Value, HcloudError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .bearer_auth(self.token.expose())
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| HcloudError::Transport {
            call: call.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        if let Some(rate) = RateLimit::from_headers(response.headers()) {
            *self
                .rate
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(rate);
        }
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        let not_the_api = |what: &str| HcloudError::NotTheApi {
            call: call.to_owned(),
            base_url: self.base_url.clone(),
            status,
            what: what.to_owned(),
        };
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(_) if status >= 400 => Value::Null,
                Err(_) => return Err(not_the_api("a body that is not JSON")),
            }
        };
        if status < 400 {
            return Ok(value);
        }
        let error = &value["error"];
        // The API answers every refusal with its error JSON; a 4xx without one (a 404 page of
        // whatever the URL points at) means the URL is wrong. 429 and 5xx stay API errors: a
        // proxy in front of the API may send them bare, and they are worth retrying.
        if error["code"].as_str().is_none() && (400..500).contains(&status) && status != 429 {
            return Err(not_the_api("no Hetzner API error in it"));
        }
        Err(HcloudError::Api {
            call: call.to_owned(),
            status,
            code: ErrorCode::parse(error["code"].as_str().unwrap_or("")),
            message: error["message"]
                .as_str()
                .map_or_else(|| format!("http status {status}"), str::to_owned),
            details: error["details"].clone(),
        })
    }

    /// Every item of a paginated list, following `meta.pagination.next_page`.
    ///
    /// A listing that cannot be complete is an error, never a shorter list: a `next_page` that
    /// is not the page after this one, an empty page that names a next one, or more pages than
    /// the page's own `last_page` says there are (or than [`MAX_PAGES`]).
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        root: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, HcloudError> {
        let mut items = Vec::new();
        let mut page = 1u64;
        let mut last_page = MAX_PAGES;
        loop {
            let mut paged: Vec<(&str, String)> = query.to_vec();
            paged.push(("page", page.to_string()));
            paged.push(("per_page", PER_PAGE.to_string()));
            let mut body: Value = self.call(Method::GET, path, &paged, None).await?;
            let batch: Vec<T> =
                serde_json::from_value(body[root].take()).map_err(|error| HcloudError::Decode {
                    call: format!("GET {path}"),
                    detail: format!("{root}: {error}"),
                })?;
            let empty = batch.is_empty();
            items.extend(batch);
            let pagination = &body["meta"]["pagination"];
            // Each page's own: a list that grows while it is read raises it.
            if let Some(last) = pagination["last_page"].as_u64() {
                last_page = last.min(MAX_PAGES);
            }
            let Some(next) = pagination["next_page"].as_u64() else {
                return Ok(items);
            };
            let refuse = |detail: String| HcloudError::Decode {
                call: format!("GET {path}"),
                detail: format!("{detail}; the listing would be incomplete, not trusting it"),
            };
            if next != page + 1 {
                return Err(refuse(format!(
                    "page {page} names next_page {next}, not page {}",
                    page + 1
                )));
            }
            if empty {
                return Err(refuse(format!(
                    "page {page} holds no {root} but names next_page {next}"
                )));
            }
            if next > last_page {
                return Err(refuse(format!(
                    "page {page} names next_page {next}, past the last page {last_page}"
                )));
            }
            page = next;
        }
    }
}

#[cfg(test)]
mod tests;
