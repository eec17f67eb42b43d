//! The task behind each fake HTTP server: stopped gracefully on `shutdown`, aborted on drop.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A spawned server task and the token that asks it to stop.
#[derive(Debug)]
pub(crate) struct Serving {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// Spawns `serve(shutdown)`; an error it ends with is logged as `what` stopping.
    pub(crate) fn spawn<F, Fut, E>(what: &'static str, serve: F) -> Serving
    where
        F: FnOnce(WaitForCancellationFutureOwned) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let running = serve(cancel.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(error) = running.await {
                tracing::warn!(error = %error, server = what, "test server stopped with an error");
            }
        });
        Serving {
            cancel,
            task: Some(task),
        }
    }

    /// Stops serving; waits up to 2 s for in-flight responses (endless bodies never end), then aborts.
    pub(crate) async fn shutdown(&mut self) {
        self.cancel.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
