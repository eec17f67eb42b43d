//! The image hosts: one axum server answering for every test host by its `Host` header.
//!
//! Behaviour comes from the URL ([`scheme`]) and the host name ([`crate::names`]), so a test knows
//! the outcome of every URL up front: [`scheme::classify`] says what a client should reach and
//! [`WebServer::expected_photo`] which bytes it should get.

pub mod scheme;
pub mod stats;

mod handler;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::error::TestkitError;
use crate::images::{self, ImageKind};
use crate::photos::{Photo, PhotoCorpus};
use crate::rng::stable_hash;
use crate::serving::Serving;
use scheme::Route;
pub use scheme::{
    Expected, LONG_REDIRECT_BYTES, STALL_BODY_BYTES, STALL_HELD_BACK_BYTES, STALL_HOLD, classify,
    classify_ignoring_robots,
};
pub use stats::WebStats;

/// Knobs of the image hosts.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Bytes per chunk of a `/drip/` body.
    pub drip_chunk: usize,
    /// Pause between two chunks of a `/drip/` body.
    pub drip_interval: Duration,
}

impl WebConfig {
    /// `/drip/` sends 16 bytes every 250 ms (a 100 KB picture takes about 26 minutes).
    pub fn standard() -> Self {
        Self {
            drip_chunk: 16,
            drip_interval: Duration::from_millis(250),
        }
    }
}

/// Shared state of the handler.
pub struct WebState {
    config: WebConfig,
    corpus: Arc<PhotoCorpus>,
    stats: WebStats,
    assets: Assets,
    port: u16,
}

struct Assets {
    pixel: Bytes,
    bombs: Vec<(ImageKind, Bytes)>,
    zip_bomb: Bytes,
    scan_bomb: Bytes,
    /// The noise of `/stall/` bodies, made on the first request (most tests never ask).
    stall_noise: std::sync::OnceLock<Bytes>,
}

/// A running web server; dropping it stops it.
pub struct WebServer {
    addr: SocketAddr,
    state: Arc<WebState>,
    serving: Serving,
}

impl WebState {
    pub fn new(
        config: WebConfig,
        corpus: Arc<PhotoCorpus>,
        port: u16,
    ) -> Result<Self, TestkitError> {
        let pixel = images::encode(
            &image::RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255])),
            ImageKind::Gif,
        )?;
        let mut bombs = Vec::new();
        for kind in ImageKind::ALL {
            bombs.push((kind, Bytes::from(images::lying_bomb(kind)?)));
        }
        let assets = Assets {
            pixel: Bytes::from(pixel),
            bombs,
            zip_bomb: Bytes::from(images::zip_bomb_png(16_384)),
            scan_bomb: Bytes::from(images::scan_bomb_jpeg(
                images::SCAN_BOMB_SIDE,
                images::SCAN_BOMB_SCANS,
            )),
            stall_noise: std::sync::OnceLock::new(),
        };
        Ok(Self {
            config,
            corpus,
            stats: WebStats::default(),
            assets,
            port,
        })
    }

    pub fn stats(&self) -> &WebStats {
        &self.stats
    }

    fn photo(&self, kind: ImageKind, key: u64) -> Bytes {
        self.corpus.pick(kind, key).bytes.clone()
    }
}

impl Assets {
    fn bomb(&self, kind: ImageKind) -> Bytes {
        self.bombs
            .iter()
            .find(|(bomb_kind, _)| *bomb_kind == kind)
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_default()
    }

    /// [`STALL_BODY_BYTES`] of noise, shared by every `/stall/` response.
    fn stall_noise(&self) -> Bytes {
        self.stall_noise
            .get_or_init(|| {
                let mut noise = vec![0u8; STALL_BODY_BYTES];
                crate::rng::SplitMix64::new(0x57a1_1ed0).fill(&mut noise);
                Bytes::from(noise)
            })
            .clone()
    }
}

/// The router of the image hosts (every path goes to one handler).
pub fn router(state: Arc<WebState>) -> Router {
    Router::new().fallback(handler::handle).with_state(state)
}

/// Serves the image hosts on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<WebState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

impl WebServer {
    /// Serves on an already bound listener.
    pub fn start(
        listener: TcpListener,
        config: WebConfig,
        corpus: Arc<PhotoCorpus>,
    ) -> Result<Self, TestkitError> {
        let addr = listener.local_addr().map_err(TestkitError::Socket)?;
        let state = Arc::new(WebState::new(config, corpus, addr.port())?);
        let serving = Serving::spawn("image hosts", {
            let state = state.clone();
            |shutdown| serve(listener, state, shutdown)
        });
        tracing::info!(%addr, corpus = ?state.corpus.source(), "image hosts listening");
        Ok(Self {
            addr,
            state,
            serving,
        })
    }

    /// Binds `127.0.0.1:0` and serves there.
    pub async fn start_local(
        config: WebConfig,
        corpus: Arc<PhotoCorpus>,
    ) -> Result<Self, TestkitError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestkitError::Socket)?;
        Self::start(listener, config, corpus)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://{host}:{port}{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port())
    }

    pub fn stats(&self) -> &WebStats {
        &self.state.stats
    }

    pub fn corpus(&self) -> &PhotoCorpus {
        &self.state.corpus
    }

    /// The exact picture a client gets for `url` after following its redirects, if the outcome
    /// is a picture (`/ok/`, `/xrobots/`, `/tdm/`, `/private/`, `/wrongtype/`, `/pixel/`).
    pub fn expected_photo(&self, url: &str) -> Option<Photo> {
        let mut current = url::Url::parse(url).ok()?;
        for _ in 0..64 {
            let host = crate::names::normalize_host(current.host_str()?);
            let path = current.path().to_owned();
            let key = photo_key(&host, &path);
            let next = match scheme::route(&path) {
                Route::Image { kind }
                | Route::RobotsPrivate { kind }
                | Route::WrongType { kind }
                | Route::RobotsTag { kind, .. }
                | Route::Tdm { kind, .. } => {
                    return Some(self.state.corpus.pick(kind, key).clone());
                }
                Route::Named { name, .. } => return self.state.corpus.named(&name).cloned(),
                Route::Pixel => {
                    let bytes = self.state.assets.pixel.clone();
                    return Some(Photo {
                        name: "pixel.gif".into(),
                        kind: ImageKind::Gif,
                        width: 1,
                        height: 1,
                        bytes,
                    });
                }
                Route::Redirect { remaining, inner } if remaining > 1 => {
                    format!("/redirect/{}{inner}", remaining - 1)
                }
                Route::Redirect { inner, .. } | Route::SlowHeaders { inner, .. } => inner,
                Route::RedirectHost { host, inner } => {
                    format!("http://{host}:{}{inner}", self.port())
                }
                _ => return None,
            };
            current = current.join(&next).ok()?;
        }
        None
    }

    /// Stops serving; waits up to 2 s for in-flight responses (endless bodies never end), then aborts.
    pub async fn shutdown(mut self) {
        self.serving.shutdown().await;
    }
}

/// The key that picks a picture for a (host, path) pair.
pub(crate) fn photo_key(host: &str, path: &str) -> u64 {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    stable_hash(format!("{}{path}", crate::names::normalize_host(host)).as_bytes())
}
