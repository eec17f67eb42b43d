//! The stop signal: SIGTERM or SIGINT for the binary, any future for tests, fanned out on a
//! `watch` channel.

use std::future::Future;

use tokio::sync::watch;

/// Resolves on SIGTERM or SIGINT and logs which arrived.
pub async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("received sigterm, starting shutdown"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received sigint, starting shutdown"),
    }
}

/// A cloneable view of the stop signal.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Spawns a task that flips the flag when `shutdown` resolves.
    pub fn spawn(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let (sender, receiver) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => {
                    let _ = sender.send(true);
                }
                _ = sender.closed() => {}
            }
        });
        Stop(receiver)
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is asked for.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// Aborts a background task when dropped, so a cancelled run leaves no task behind.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
