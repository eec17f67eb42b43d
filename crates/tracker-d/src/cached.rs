//! A value recomputed at most once per time-to-live and by one caller at a time, for reads anyone may poll.
//!
//! The tokenless reads (the dashboard, `/data`, `/metrics`, `/api/jobCount`, `/api/ext/clients`)
//! must cost the database the same however many callers poll them. A fresh value is shared.
//! When it is stale, one caller recomputes it while the others get the stale value at once;
//! only before there is any value do they wait, for that one computation. The age counts from
//! the end of a computation, so even a computation slower than the time-to-live leaves the
//! database that long between two.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A shared value and when it was computed.
#[derive(Debug)]
pub struct Cached<T> {
    ttl: Duration,
    value: Mutex<Option<(Instant, Arc<T>)>>,
    /// Held by the one caller computing a new value.
    computing: tokio::sync::Mutex<()>,
}

impl<T> Cached<T> {
    /// An empty cache whose values are reused for `ttl`; a zero `ttl` computes on every call.
    pub fn new(ttl: Duration) -> Cached<T> {
        Cached {
            ttl,
            value: Mutex::new(None),
            computing: tokio::sync::Mutex::new(()),
        }
    }

    /// The value, computed by `compute` if none is fresh and no other caller is computing one.
    ///
    /// A failed computation keeps the previous value, and is reported to its caller only.
    pub async fn get<E, F, Fut>(&self, compute: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        let stale = match self.stored() {
            Some((at, value)) if at.elapsed() < self.ttl => return Ok(value),
            stored => stored.map(|(_, value)| value),
        };
        let computing = match (self.computing.try_lock(), stale) {
            (Ok(computing), _) => computing,
            (Err(_), Some(stale)) => return Ok(stale),
            // Nothing to serve yet: wait for the computation in flight.
            (Err(_), None) => self.computing.lock().await,
        };
        // Whoever held the lock before may have just stored a fresh value (or failed).
        if let Some((at, value)) = self.stored()
            && at.elapsed() < self.ttl
        {
            return Ok(value);
        }
        let value = Arc::new(compute().await?);
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&value)));
        drop(computing);
        Ok(value)
    }

    fn stored(&self) -> Option<(Instant, Arc<T>)> {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(at, value)| (*at, Arc::clone(value)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A computation that takes `delay` and returns how many computations started before it.
    async fn counted(started: &AtomicU32, delay: Duration) -> Result<u32, &'static str> {
        let n = started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        Ok(n)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_computation() {
        let cache = Arc::new(Cached::new(Duration::from_secs(2)));
        let started = Arc::new(AtomicU32::new(0));
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (cache, started) = (Arc::clone(&cache), Arc::clone(&started));
                tokio::spawn(async move {
                    *cache
                        .get(|| counted(&started, Duration::from_millis(600)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 0, "every caller got the first value");
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // Fresh for 2 s from the end of the computation.
        tokio::time::advance(Duration::from_millis(1_900)).await;
        let again = cache.get(|| counted(&started, Duration::ZERO)).await;
        assert_eq!(*again.unwrap(), 0);
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_value_is_served_while_one_caller_recomputes() {
        let cache = Arc::new(Cached::new(Duration::from_secs(2)));
        let started = Arc::new(AtomicU32::new(0));
        cache
            .get(|| counted(&started, Duration::ZERO))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        let recomputing = {
            let (cache, started) = (Arc::clone(&cache), Arc::clone(&started));
            tokio::spawn(async move {
                *cache
                    .get(|| counted(&started, Duration::from_secs(10)))
                    .await
                    .unwrap()
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(started.load(Ordering::SeqCst), 2, "the recount started");
        // Others neither wait for it nor start their own.
        for _ in 0..20 {
            let served = tokio::time::timeout(
                Duration::from_millis(1),
                cache.get(|| counted(&started, Duration::ZERO)),
            )
            .await
            .expect("served at once");
            assert_eq!(*served.unwrap(), 0, "the stale value");
        }
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(recomputing.await.unwrap(), 1);
        assert_eq!(
            *cache
                .get(|| counted(&started, Duration::ZERO))
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_keeps_the_previous_value_and_the_next_caller_retries() {
        let cache = Cached::new(Duration::from_secs(2));
        let value = cache.get(|| async { Ok::<_, &str>(1) }).await.unwrap();
        assert_eq!(*value, 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        let failed = cache.get(|| async { Err::<u32, _>("database down") }).await;
        assert_eq!(failed.unwrap_err(), "database down");
        let value = cache.get(|| async { Ok::<_, &str>(2) }).await.unwrap();
        assert_eq!(*value, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_computes_every_time() {
        let cache = Cached::new(Duration::ZERO);
        let started = AtomicU32::new(0);
        for expected in 0..3 {
            let value = cache.get(|| counted(&started, Duration::ZERO)).await;
            assert_eq!(*value.unwrap(), expected);
        }
    }
}
