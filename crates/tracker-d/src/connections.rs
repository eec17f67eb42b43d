//! The accept loop: HTTP/1 connections with a header read timeout, request bodies that must keep
//! moving, a cap on open connections, and graceful shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fired: idle and
//! slowloris sockets stayed open for ever, and 20,000 of them exhausted the file descriptors.
//! Here a connection must deliver a request head within `header_timeout` of opening or of its
//! last response (hyper starts the timer whenever it waits for a head, so an idle keep-alive
//! connection is closed too); a request body must deliver a byte at least every `body_timeout`;
//! a response must be read on by the client at least every `response_timeout`; and at most `max_connections` are open at once: at the cap the loop stops accepting, and
//! newcomers wait in the kernel's backlog until a connection closes. A failed accept (no file
//! descriptor left) is logged and retried after a pause; a connection that failed while queued
//! (reset) is skipped at once. Neither ends the loop.

mod write_stall;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::{TimeoutBody, TimeoutError};

/// How long the loop waits after a failed accept before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// File descriptors kept for what is not a connection: the database, blob files, logs.
const RESERVED_FDS: u64 = 256;

/// Bounds on the connections the tracker keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request head (from the connection's start or its last response).
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    pub body_timeout: Duration,
    /// Longest a response may wait on a client that reads none of it.
    pub response_timeout: Duration,
}

/// The connections being served, and how to stop them.
#[derive(Debug)]
pub struct Connections {
    tasks: TaskTracker,
    kill: CancellationToken,
}

/// Accepts and serves connections until `stop` is cancelled; then every connection finishes the
/// request it is on and closes (see [`Connections::drain`]).
pub async fn accept(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> Connections {
    let connections = Connections {
        tasks: TaskTracker::new(),
        kill: CancellationToken::new(),
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            // One connection's trouble (reset while it waited in the backlog): the next one
            // is there to take at once.
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(error = %error, "a queued connection failed");
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %error, retry_in = ?ACCEPT_RETRY, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        connections.tasks.spawn(serve_connection(
            stream,
            remote,
            app.clone(),
            limits,
            (stop.clone(), connections.kill.clone()),
            permit,
        ));
    }
    connections.tasks.close();
    connections
}

impl Connections {
    /// Waits up to `grace` for the connections to finish their requests, then drops the rest;
    /// returns whether they all finished in time.
    pub async fn drain(self, grace: Duration) -> bool {
        let finished = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        self.kill.cancel();
        self.tasks.wait().await;
        finished
    }
}

/// The default cap on connections: half of the open-file limit left after [`RESERVED_FDS`]
/// (each connection may hold a socket and a blob file), at least 16.
pub fn default_max_connections() -> usize {
    let soft_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    max_connections_for(soft_limit)
}

fn max_connections_for(open_file_limit: u64) -> usize {
    let connections = open_file_limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(connections.clamp(16, 1 << 20)).unwrap_or(1 << 20)
}

/// Whether an accept error concerns only the connection being accepted, not the listener
/// (which a lack of file descriptors or memory does); accept(2) says to retry those at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::NetworkDown
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::HostUnreachable
    ) || error.raw_os_error() == Some(rustix::io::Errno::PROTO.raw_os_error())
}

/// Whether a request body failed because it stalled past the body timeout.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |error| error.source())
        .any(|error| error.is::<TimeoutError>())
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    (stop, kill): (CancellationToken, CancellationToken),
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(remote));
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let stream = write_stall::WriteStall::new(stream, limits.response_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                () = kill.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%remote, error = %error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_listener_failures_pause_the_accept_loop() {
        use std::io::{Error, ErrorKind};
        assert!(super::is_connection_error(&Error::from(
            ErrorKind::ConnectionAborted
        )));
        assert!(!super::is_connection_error(&Error::from_raw_os_error(24))); // EMFILE
    }

    #[test]
    fn the_default_cap_leaves_room_for_files() {
        assert_eq!(super::max_connections_for(1024), 384);
        assert_eq!(super::max_connections_for(100), 16);
        assert_eq!(super::max_connections_for(u64::MAX), 1 << 20);
    }
}
