//! [`HcloudError`] and the API's error codes ([`ErrorCode`]): what callers match on.

use std::time::Duration;

use serde_json::Value;

use super::DEFAULT_API_URL;

/// An error of the Hetzner Cloud API or of reaching it.
#[derive(Debug, thiserror::Error)]
pub enum HcloudError {
    /// The API answered with `{"error": {code, message, details}}`.
    #[error("hetzner api refused {call}: {code} (http {status}): {message}")]
    Api {
        call: String,
        status: u16,
        code: ErrorCode,
        message: String,
        details: Value,
    },
    /// No answer (connection refused, timeout, TLS).
    #[error("could not reach the hetzner api for {call}")]
    Transport {
        call: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer no Hetzner API gives: a refusal without its error JSON, or a body that is not
    /// JSON at all. The base URL points somewhere else.
    #[error(
        "{base_url} answered {call} with http {status} and {what}: it does not look like the Hetzner Cloud API; \
         check --api-url (HCLOUD_API_URL), which is {DEFAULT_API_URL} unless set"
    )]
    NotTheApi {
        call: String,
        base_url: String,
        status: u16,
        what: String,
    },
    /// An answer that is not the JSON we expect.
    #[error("unexpected answer from the hetzner api for {call}: {detail}")]
    Decode { call: String, detail: String },
    /// An action finished with `status: error`.
    #[error("hetzner action {id} ({command}) failed: {code}: {message}")]
    ActionFailed {
        id: i64,
        command: String,
        code: String,
        message: String,
    },
    /// Waiting took longer than allowed.
    #[error("gave up after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// The client could not be built.
    #[error("invalid hetzner api settings: {0}")]
    Config(String),
}

/// The API's error codes (reference §1.9); callers match on these, never on HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    InvalidInput,
    JsonError,
    Locked,
    NotFound,
    RateLimitExceeded,
    ResourceLimitExceeded,
    ResourceUnavailable,
    PlacementError,
    UniquenessError,
    Protected,
    Conflict,
    Timeout,
    ServerError,
    ServiceError,
    Unavailable,
    Maintenance,
    TokenReadonly,
    /// A code this client does not know, or none (a proxy's error page).
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "unauthorized" => Self::Unauthorized,
            "forbidden" => Self::Forbidden,
            "invalid_input" => Self::InvalidInput,
            "json_error" => Self::JsonError,
            "locked" => Self::Locked,
            "not_found" => Self::NotFound,
            "rate_limit_exceeded" => Self::RateLimitExceeded,
            "resource_limit_exceeded" => Self::ResourceLimitExceeded,
            "resource_unavailable" => Self::ResourceUnavailable,
            "placement_error" => Self::PlacementError,
            "uniqueness_error" => Self::UniquenessError,
            "protected" => Self::Protected,
            "conflict" => Self::Conflict,
            "timeout" => Self::Timeout,
            "server_error" => Self::ServerError,
            "service_error" => Self::ServiceError,
            "unavailable" => Self::Unavailable,
            "maintenance" => Self::Maintenance,
            "token_readonly" => Self::TokenReadonly,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidInput => "invalid_input",
            Self::JsonError => "json_error",
            Self::Locked => "locked",
            Self::NotFound => "not_found",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::ResourceLimitExceeded => "resource_limit_exceeded",
            Self::ResourceUnavailable => "resource_unavailable",
            Self::PlacementError => "placement_error",
            Self::UniquenessError => "uniqueness_error",
            Self::Protected => "protected",
            Self::Conflict => "conflict",
            Self::Timeout => "timeout",
            Self::ServerError => "server_error",
            Self::ServiceError => "service_error",
            Self::Unavailable => "unavailable",
            Self::Maintenance => "maintenance",
            Self::TokenReadonly => "token_readonly",
            Self::Other(code) => code,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl HcloudError {
    /// The API error code, when the API answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth retrying as is: the hcloud-go set (conflict, rate limits, timeouts, 502/503/504, no answer).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { code, status, .. } => {
                matches!(
                    code,
                    ErrorCode::RateLimitExceeded | ErrorCode::Conflict | ErrorCode::Timeout
                ) || matches!(status, 502..=504)
            }
            Self::Transport { source, .. } => source.is_connect() || source.is_timeout(),
            _ => false,
        }
    }

    /// The connection broke after the request went out (reset, closed mid-answer): the call may
    /// or may not have been done, so only a call that is safe to repeat is retried.
    pub(super) fn is_lost_answer(&self) -> bool {
        matches!(self, Self::Transport { source, .. }
            if source.is_request() || source.is_body() || source.is_decode())
    }
}
