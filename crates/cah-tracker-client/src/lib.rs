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

pub use client::{ClientConfig, TrackerClient};
pub use completion::{Completion, JobOutput};
pub use error::TrackerError;
pub use retry::RetryPolicy;
pub use session::Session;
pub use upload::BundleBody;
