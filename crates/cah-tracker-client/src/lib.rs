//! Typed async client of the Crawling@Home tracker (`tracker-d`, or a 2021 v3 server).
//!
//! Layout:
//! - `client.rs`: [`TrackerClient`] and [`ClientConfig`]; registration and the calls without a token.
//! - `session.rs`: [`Session`], a registered client; the 2021 calls that carry the token.
//! - `jobs.rs`, `dedup.rs`, `upload.rs`: the extension calls under `/api/ext/` on [`Session`].
//! - `completion.rs`: [`JobOutput`] and [`Completion`], what a completion sends and means.
//! - `error.rs`: [`TrackerError`] and its mapping from HTTP statuses.
//! - `retry.rs`: [`RetryPolicy`], bounded exponential backoff with full jitter.
//! - `endpoint.rs`: every endpoint's method, path and retry rules in one table.
//! - `transport.rs`: one HTTP exchange: send, check status, read a bounded body, decode.
//!
//! ```no_run
//! # async fn example() -> Result<(), cah_tracker_client::TrackerError> {
//! use cah_tracker_client::{JobOutput, TrackerClient};
//! let url = url::Url::parse("http://127.0.0.1:8080/").expect("valid url");
//! let session = TrackerClient::with_defaults(url)?
//!     .register("alice", cah_protocol::ClientType::Hybrid)
//!     .await?;
//! for job in session.claim(1, false).await? {
//!     session.heartbeat("working").await?;
//!     session.complete(job.number, JobOutput::Pairs(42)).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod completion;
mod dedup;
mod endpoint;
mod error;
mod jobs;
mod retry;
mod session;
mod transport;
mod upload;

pub use client::{ClientConfig, MAX_LISTED_CLIENTS, TrackerClient};
pub use completion::{Completion, JobOutput};
pub use error::{TrackerError, with_causes};
pub use retry::RetryPolicy;
pub use session::Session;
pub use upload::BundleBody;

/// Parses an `http://` or `https://` URL given on the command line, with a message that says
/// what to write when the scheme is missing (for clap's `value_parser`).
pub fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let example = "http://127.0.0.1:8080/ or https://tracker.example.org/";
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(url) => Err(format!(
            "{} is not an http(s) scheme: write the URL as {example}",
            url.scheme()
        )),
        Err(url::ParseError::RelativeUrlWithoutBase) => Err(format!(
            "no scheme: write http:// or https:// in front, as in {example}"
        )),
        Err(error) => Err(format!("{error}: write the URL as {example}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_on_the_command_line_need_an_http_scheme() {
        let url = super::parse_http_url("http://127.0.0.1:8080/").expect("a url");
        assert_eq!(url.port(), Some(8080));
        let missing = super::parse_http_url("127.0.0.1:8080").expect_err("no scheme");
        assert!(
            missing.contains("write http:// or https:// in front"),
            "{missing}"
        );
        let bare = super::parse_http_url("tracker.example.org").expect_err("no scheme");
        assert!(bare.contains("no scheme"), "{bare}");
        let ftp = super::parse_http_url("ftp://files.test/").expect_err("ftp");
        assert!(ftp.starts_with("ftp is not an http(s) scheme"), "{ftp}");
    }
}
