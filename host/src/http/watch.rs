//! The deadline of one HTTP connection between requests: how long it may take to send a
//! request's header section, and how long it may sit idle between two requests.
//!
//! hyper's own `header_read_timeout` starts the moment the connection is ready for the next
//! request, so it would also bound the idle time of a keep-alive connection: the idle time and
//! the time to send a header section could not differ. The phases are tracked here instead:
//!
//! | phase | entered when | deadline |
//! |---|---|---|
//! | head | accepted; the first byte of a request arrives on an idle connection | `http.header_read_timeout` |
//! | busy | the header section is parsed (the service is called) | none (the body has `http.body_read_timeout`) |
//! | idle | the response was handed to hyper | `http.keepalive_timeout` |
//!
//! The connection task races its hyper connection against [`Watch::expired`] and drops the
//! connection when a deadline passes. Every transition happens on the connection's own task
//! (the service and the socket reads are polled by it), so the atomics never contend.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// No deadline.
const NONE: u64 = u64::MAX;

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The header section did not arrive within `http.header_read_timeout`.
    Header,
    /// The connection was idle longer than `http.keepalive_timeout`.
    KeepAlive,
}

impl Expired {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Expired::Header => "header",
            Expired::KeepAlive => "keepalive",
        }
    }
}

/// Phase and deadline of one connection.
#[derive(Debug)]
pub struct Watch {
    start: Instant,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    phase: AtomicU8,
    /// Milliseconds since `start`, or [`NONE`].
    deadline_ms: AtomicU64,
    /// Wakes [`Watch::expired`] when the deadline moves earlier or appears.
    moved: Notify,
}

impl Watch {
    /// A freshly accepted connection: its first header section is due within `header_timeout`.
    pub fn new(header_timeout: Duration, keepalive_timeout: Duration) -> Self {
        let watch = Self {
            start: Instant::now(),
            header_timeout,
            keepalive_timeout,
            phase: AtomicU8::new(HEAD),
            deadline_ms: AtomicU64::new(NONE),
            moved: Notify::new(),
        };
        watch.set_deadline(header_timeout);
        watch
    }

    fn set_deadline(&self, after: Duration) {
        let at = self.start.elapsed().saturating_add(after);
        let ms = u64::try_from(at.as_millis()).unwrap_or(NONE - 1);
        self.deadline_ms.store(ms, Ordering::Release);
    }

    /// A header section was parsed: no deadline until the response is out.
    pub fn request_started(&self) {
        self.phase.store(BUSY, Ordering::Release);
        self.deadline_ms.store(NONE, Ordering::Release);
    }

    /// The response was handed to hyper: the connection may now idle for `keepalive_timeout`.
    pub fn response_sent(&self) {
        self.phase.store(IDLE, Ordering::Release);
        self.set_deadline(self.keepalive_timeout);
        self.moved.notify_one();
    }

    /// Bytes arrived. On an idle connection they start a request: its header section is due
    /// within `header_timeout`.
    fn bytes_read(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.phase.store(HEAD, Ordering::Release);
            self.set_deadline(self.header_timeout);
            self.moved.notify_one();
        }
    }

    /// Resolves when the current deadline passes (deadlines that moved are followed).
    pub async fn expired(&self) -> Expired {
        loop {
            let ms = self.deadline_ms.load(Ordering::Acquire);
            if ms == NONE {
                self.moved.notified().await;
                continue;
            }
            let at = self.start + Duration::from_millis(ms);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.moved.notified() => continue,
            }
            if self.deadline_ms.load(Ordering::Acquire) == ms {
                return match self.phase.load(Ordering::Acquire) {
                    IDLE => Expired::KeepAlive,
                    _ => Expired::Header,
                };
            }
        }
    }
}

/// A socket that tells its [`Watch`] when bytes arrive. It stays under an upgraded WebSocket,
/// where each read costs one atomic load.
#[derive(Debug)]
pub struct WatchedIo<T> {
    inner: T,
    watch: Arc<Watch>,
}

impl<T> WatchedIo<T> {
    /// Wrap `inner`.
    pub fn new(inner: T, watch: Arc<Watch>) -> Self {
        Self { inner, watch }
    }

    /// The socket, unwrapped (an upgraded WebSocket takes its TCP stream back).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// Generous: the assertions are about which deadline applies, not about timer precision.
    const SLACK: Duration = Duration::from_millis(500);

    async fn expires_after(watch: &Watch, at_least: Duration) -> Expired {
        let started = Instant::now();
        let kind = tokio::time::timeout(at_least + SLACK, watch.expired())
            .await
            .expect("the deadline passes");
        assert!(started.elapsed() >= at_least, "{:?}", started.elapsed());
        kind
    }

    #[tokio::test]
    async fn a_silent_connection_expires_after_the_header_timeout() {
        let watch = Watch::new(50 * MS, 5000 * MS);
        assert_eq!(expires_after(&watch, 40 * MS).await, Expired::Header);
    }

    #[tokio::test]
    async fn idle_gets_the_keepalive_timeout_and_a_new_request_the_header_timeout() {
        let watch = Arc::new(Watch::new(50 * MS, 300 * MS));
        watch.request_started();
        // Busy: no deadline at all.
        assert!(
            tokio::time::timeout(200 * MS, watch.expired())
                .await
                .is_err()
        );
        watch.response_sent();
        assert_eq!(expires_after(&watch, 290 * MS).await, Expired::KeepAlive);

        // A byte on an idle connection moves the deadline earlier, and a waiter follows.
        watch.response_sent();
        let w = watch.clone();
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            (w.expired().await, started.elapsed())
        });
        tokio::time::sleep(10 * MS).await;
        watch.bytes_read();
        let (kind, waited) = waiter.await.expect("waiter");
        assert_eq!(kind, Expired::Header);
        assert!(
            waited < 250 * MS,
            "followed the earlier deadline: {waited:?}"
        );
    }
}
