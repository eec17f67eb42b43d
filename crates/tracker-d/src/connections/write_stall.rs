//! A socket whose writes must make progress: a client that stops reading its response for
//! longer than the limit gets its connection closed, so it cannot hold one of the capped
//! connections for ever. Progress is seen when the kernel takes more bytes, which it does once
//! about a third of its send buffer was read: a reader slower than that per limit is cut too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub(super) struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// The deadline of a write that waits on the client; armed by the first write that makes
    /// no progress, disarmed by every write that goes through (one timer, reset, not
    /// reallocated).
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> WriteStall<S> {
    pub(super) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// After a write that made no progress: an error once the limit has passed, else pending
    /// (the timer wakes the task when it runs out).
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `result` of a write: progress resets the timer, no progress runs it.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_cut_and_one_that_reads_is_not() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut guarded = WriteStall::new(ours, Duration::from_secs(5));
        // The peer reads slowly but steadily: never cut.
        let reader = tokio::spawn(async move {
            // 8 KiB, 256 bytes a second: 32 s in all, far past the limit.
            let mut buffer = [0_u8; 256];
            for _ in 0..32 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut buffer)
                    .await
                    .expect("read");
            }
            theirs
        });
        guarded
            .write_all(&[1_u8; 8 * 1024])
            .await
            .expect("a slow reader is fine");
        let theirs = reader.await.expect("reader");
        // Now it stops reading: the next writes fill the pipe and then fail.
        let stalled = guarded.write_all(&[2_u8; 8 * 1024]).await;
        assert_eq!(stalled.expect_err("cut").kind(), io::ErrorKind::TimedOut);
        drop(theirs);
    }
}
