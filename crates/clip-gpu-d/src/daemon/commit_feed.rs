//! The committer's own loop, fed by the scorer over a bounded channel: dedup calls, shard
//! writes, uploads and completions run while the model threads embed the next batches, instead
//! of holding the scorer (and so the GPU) for each of them.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commit::{Committer, JobResult};

/// Messages from the scorer that the committer may queue. Each job keeps its `--max-jobs`
/// permit while it waits here, so what the channel holds stays bounded however deep it is.
pub(super) const FEED_DEPTH: usize = 16;

/// What the scorer hands the committer.
pub(super) enum ToCommit {
    /// A job whose every sample was scored.
    Job(JobResult),
    /// No new pair arrived for `--flush-interval`: close the open shard.
    Flush,
}

/// Commits what arrives until the scorer drops its sender, then closes the open shard; at the
/// drain deadline (`abandon`), discards the open shard instead. A commit in progress is
/// finished first; jobs still queued are not added (the daemon releases them).
pub(super) async fn serve(
    mut committer: Committer,
    mut feed: mpsc::Receiver<ToCommit>,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let next = tokio::select! {
            biased;
            () = abandon.cancelled() => return committer.discard().await,
            next = feed.recv() => next,
        };
        match next {
            Some(ToCommit::Job(result)) => committer.add_job(result).await?,
            Some(ToCommit::Flush) => committer.flush().await?,
            None => break,
        }
    }
    if abandon.is_cancelled() {
        return committer.discard().await;
    }
    committer.flush().await
}
