//! A TCP relay between a daemon and its tracker that the test can cut and heal: a network
//! partition on loopback (cutting refuses new connections and closes open ones).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Relays 127.0.0.1:`addr` to an upstream address until dropped.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    /// Cancelled while the relay is cut; replaced by a live token when it heals.
    link: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
    /// Connections closed on arrival because the link was cut.
    refused: Arc<AtomicUsize>,
}

impl Relay {
    pub(crate) async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let link = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let refused = Arc::new(AtomicUsize::new(0));
        let (accepting, stopping, refusing) =
            (Arc::clone(&link), stop.clone(), Arc::clone(&refused));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopping.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let link = accepting.lock().expect("link").clone();
                if link.is_cancelled() {
                    refusing.fetch_add(1, Ordering::Relaxed);
                    continue; // dropped: the connection closes at once
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = link.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Relay {
            addr,
            link,
            stop,
            refused,
        }
    }

    /// Connections refused so far while cut.
    pub(crate) fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Cuts the link: open connections close, new ones are closed on arrival.
    pub(crate) fn cut(&self) {
        self.link.lock().expect("link").cancel();
    }

    /// Heals the link.
    pub(crate) fn heal(&self) {
        *self.link.lock().expect("link") = CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}
