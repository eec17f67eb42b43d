//! The OS thread that owns the model: commands arrive on a bounded channel, replies leave on
//! oneshot channels, and health is published on a watch channel (house style B9).
//!
//! No libtorch call runs on a tokio worker; the thread holds `tch::no_grad_guard()` for its
//! whole life.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Span, debug, warn};

use super::{Backend, BackendError, Embeddings, ImageBatch, TextBatch};

type Reply<T> = oneshot::Sender<Result<T, BackendError>>;

enum Command {
    Images(ImageBatch, Span, Reply<Embeddings>),
    Texts(TextBatch, Span, Reply<Embeddings>),
    Health(Reply<()>),
}

/// Handle of the backend thread. Dropping it closes the queue and joins the thread after the
/// queued batches are done.
#[derive(Debug)]
pub struct BackendThread {
    sender: Option<mpsc::Sender<Command>>,
    healthy: watch::Receiver<bool>,
    handle: Option<JoinHandle<()>>,
    /// Microseconds the thread spent embedding, so far.
    busy_micros: Arc<AtomicU64>,
}

impl BackendThread {
    /// Starts the thread, builds the backend on it with `load`, and waits until it is loaded.
    pub fn spawn<B, F>(queue_depth: usize, load: F) -> Result<Self, BackendError>
    where
        B: Backend,
        F: FnOnce() -> Result<B, BackendError> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(queue_depth.max(1));
        let (health_sender, healthy) = watch::channel(false);
        let (ready_sender, ready_receiver) = oneshot::channel();
        let busy_micros = Arc::new(AtomicU64::new(0));
        let busy = Arc::clone(&busy_micros);
        let handle = std::thread::Builder::new()
            .name("clip-backend".to_owned())
            .spawn(move || run(load, receiver, health_sender, ready_sender, &busy))
            .map_err(|error| {
                BackendError::DeviceUnavailable("backend thread".to_owned(), error.to_string())
            })?;
        match ready_receiver.blocking_recv() {
            Ok(Ok(())) => Ok(Self {
                sender: Some(sender),
                healthy,
                handle: Some(handle),
                busy_micros,
            }),
            Ok(Err(error)) => {
                let _ = handle.join();
                Err(error)
            }
            Err(_) => {
                let _ = handle.join();
                Err(BackendError::Stopped)
            }
        }
    }

    /// Embeds images on the backend thread.
    pub async fn embed_images(&self, batch: ImageBatch) -> Result<Embeddings, BackendError> {
        let (reply, response) = oneshot::channel();
        self.sender()?
            .send(Command::Images(batch, Span::current(), reply))
            .await
            .map_err(|_| BackendError::Stopped)?;
        response.await.map_err(|_| BackendError::Stopped)?
    }

    /// Embeds texts on the backend thread.
    pub async fn embed_texts(&self, batch: TextBatch) -> Result<Embeddings, BackendError> {
        let (reply, response) = oneshot::channel();
        self.sender()?
            .send(Command::Texts(batch, Span::current(), reply))
            .await
            .map_err(|_| BackendError::Stopped)?;
        response.await.map_err(|_| BackendError::Stopped)?
    }

    /// Runs the backend's health check on its thread.
    pub async fn check_health(&self) -> Result<(), BackendError> {
        let (reply, response) = oneshot::channel();
        self.sender()?
            .send(Command::Health(reply))
            .await
            .map_err(|_| BackendError::Stopped)?;
        response.await.map_err(|_| BackendError::Stopped)?
    }

    /// `embed_images` for callers outside an async runtime (the `embed` command).
    pub fn blocking_embed_images(&self, batch: ImageBatch) -> Result<Embeddings, BackendError> {
        let (reply, response) = oneshot::channel();
        self.sender()?
            .blocking_send(Command::Images(batch, Span::current(), reply))
            .map_err(|_| BackendError::Stopped)?;
        response
            .blocking_recv()
            .map_err(|_| BackendError::Stopped)?
    }

    /// `embed_texts` for callers outside an async runtime.
    pub fn blocking_embed_texts(&self, batch: TextBatch) -> Result<Embeddings, BackendError> {
        let (reply, response) = oneshot::channel();
        self.sender()?
            .blocking_send(Command::Texts(batch, Span::current(), reply))
            .map_err(|_| BackendError::Stopped)?;
        response
            .blocking_recv()
            .map_err(|_| BackendError::Stopped)?
    }

    /// Time the thread has spent embedding batches since it started: with batches queued back to
    /// back, the device's busy time, which the time a caller waits for its reply overstates.
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy_micros.load(Ordering::Relaxed))
    }

    /// `true` while the last health check or batch succeeded.
    pub fn healthy(&self) -> watch::Receiver<bool> {
        self.healthy.clone()
    }

    fn sender(&self) -> Result<&mpsc::Sender<Command>, BackendError> {
        self.sender.as_ref().ok_or(BackendError::Stopped)
    }
}

impl Drop for BackendThread {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            warn!("backend thread panicked");
        }
    }
}

fn run<B, F>(
    load: F,
    mut receiver: mpsc::Receiver<Command>,
    healthy: watch::Sender<bool>,
    ready: oneshot::Sender<Result<(), BackendError>>,
    busy: &AtomicU64,
) where
    B: Backend,
    F: FnOnce() -> Result<B, BackendError>,
{
    let _no_grad = tch::no_grad_guard();
    let backend = match load() {
        Ok(backend) => backend,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    healthy.send_replace(true);
    let _ = ready.send(Ok(()));
    while let Some(command) = receiver.blocking_recv() {
        let started = Instant::now();
        // Busy time and health are published before the reply, so a caller sees both.
        match command {
            Command::Images(batch, span, reply) => {
                let _entered = span.enter();
                let result = backend.embed_images(&batch);
                debug!(
                    n_images = batch.n_images,
                    ok = result.is_ok(),
                    "image batch embedded"
                );
                count_busy(busy, started);
                healthy.send_replace(result.is_ok());
                let _ = reply.send(result);
            }
            Command::Texts(batch, span, reply) => {
                let _entered = span.enter();
                let result = backend.embed_texts(&batch);
                debug!(
                    n_texts = batch.n_texts,
                    ok = result.is_ok(),
                    "text batch embedded"
                );
                count_busy(busy, started);
                healthy.send_replace(result.is_ok());
                let _ = reply.send(result);
            }
            Command::Health(reply) => {
                let result = backend.health();
                healthy.send_replace(result.is_ok());
                let _ = reply.send(result);
            }
        }
    }
    healthy.send_replace(false);
}

/// Adds the time since `started` to the thread's busy counter.
fn count_busy(busy: &AtomicU64, started: Instant) {
    busy.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeBackend;

    #[test]
    fn serves_batches_in_order_and_stops_on_drop() {
        let thread = BackendThread::spawn(2, || {
            Ok(FakeBackend {
                dim: 4,
                image_bytes: 3,
                context: 2,
            })
        })
        .expect("spawn");
        assert!(*thread.healthy().borrow());
        let images = thread
            .blocking_embed_images(ImageBatch {
                n_images: 2,
                pixels: vec![1, 2, 3, 4, 5, 6],
            })
            .expect("images");
        assert_eq!((images.rows, images.dim), (2, 4));
        let bad = thread.blocking_embed_texts(TextBatch {
            n_texts: 2,
            token_ids: vec![1, 2, 3],
        });
        assert!(matches!(bad, Err(BackendError::BadBatch(_))));
        assert!(!*thread.healthy().borrow());
        let healthy = thread.healthy();
        drop(thread);
        assert!(!*healthy.borrow());
    }

    /// A backend whose every call takes `pause`.
    struct Slow {
        inner: FakeBackend,
        pause: Duration,
    }

    impl Backend for Slow {
        fn embed_images(&self, batch: &ImageBatch) -> Result<Embeddings, BackendError> {
            std::thread::sleep(self.pause);
            self.inner.embed_images(batch)
        }

        fn embed_texts(&self, batch: &TextBatch) -> Result<Embeddings, BackendError> {
            std::thread::sleep(self.pause);
            self.inner.embed_texts(batch)
        }

        fn health(&self) -> Result<(), BackendError> {
            std::thread::sleep(self.pause);
            Ok(())
        }
    }

    #[test]
    fn busy_time_counts_the_batches_the_thread_ran_not_the_callers_wait() {
        let pause = Duration::from_millis(40);
        let thread = BackendThread::spawn(4, move || {
            Ok(Slow {
                inner: FakeBackend {
                    dim: 4,
                    image_bytes: 3,
                    context: 2,
                },
                pause,
            })
        })
        .expect("spawn");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(thread.check_health()).expect("health");
        assert_eq!(thread.busy(), Duration::ZERO, "a health check is no batch");
        // Three batches queued at once: each caller waits up to all three, the thread ran three.
        let images = || ImageBatch {
            n_images: 1,
            pixels: vec![1, 2, 3],
        };
        let texts = TextBatch {
            n_texts: 1,
            token_ids: vec![1, 2],
        };
        let started = Instant::now();
        let (first, second, third) = runtime.block_on(async {
            tokio::join!(
                thread.embed_images(images()),
                thread.embed_images(images()),
                thread.embed_texts(texts),
            )
        });
        let waited = started.elapsed();
        assert!(first.is_ok() && second.is_ok() && third.is_ok());
        let busy = thread.busy();
        assert!(busy >= 3 * pause, "{busy:?}");
        assert!(busy <= waited, "{busy:?} busy in {waited:?}");
    }

    #[test]
    fn load_failure_is_reported() {
        let result = BackendThread::spawn(1, || -> Result<FakeBackend, BackendError> {
            Err(BackendError::Stopped)
        });
        assert!(matches!(result, Err(BackendError::Stopped)));
    }
}
