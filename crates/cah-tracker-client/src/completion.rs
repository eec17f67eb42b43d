//! What a worker reports when it finishes a job, and what the tracker made of it.

/// The result a worker hands in with a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutput {
    /// CPU: where the bundle is, `blob:<key>` from an upload URL or a legacy handoff string.
    Bundle(String),
    /// HYBRID and GPU: pairs kept; zero is accepted.
    Pairs(u64),
}

/// The outcome of a completion that did not fail.
///
/// Completions are retried, because the tracker detects a repeat: a second completion of a
/// job answers 409 (legacy `markAsDone`: 403). So when an attempt fails in a way that may have
/// been applied (a 5xx, or a connection lost after sending) and a retry then gets that
/// conflict, the client cannot tell "my first attempt went through" from "my lease expired
/// and the job moved on". It reports [`Completion::AcceptedOrLost`] instead of an error.
/// Either way the job is no longer this worker's: it must not redo it or complete it again.
/// A conflict on a first attempt, or after attempts that certainly were not applied, is
/// still [`crate::TrackerError::Conflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The tracker answered success to this call.
    Accepted,
    /// An earlier attempt's outcome was unknown and a retry got a conflict: that attempt was
    /// probably applied, or the job was lost in the meantime.
    AcceptedOrLost {
        /// The tracker's detail text of the conflict.
        detail: String,
    },
}

impl Completion {
    /// Whether the tracker certainly accepted this completion.
    pub fn is_certain(&self) -> bool {
        matches!(self, Completion::Accepted)
    }
}
