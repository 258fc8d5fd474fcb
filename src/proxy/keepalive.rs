//! The two waits of an HTTP/1.1 connection, timed apart: `keepalive_timeout` while it is
//! idle between requests (nothing of the next request has arrived yet), and
//! `client_header_timeout` once a request head has started arriving (from the accept, for the
//! first one). hyper's own `header_read_timeout` cannot tell them apart: it starts when hyper
//! begins waiting for a head, so it also closes idle keep-alive connections.
//!
//! [`Activity`] is shared by the connection's IO ([`Watched`]: the first bytes read while no
//! request is in flight start a head), its service (a request starts when hyper hands it over
//! and ends when its response body is dropped) and [`expiry`], a timer that wakes at the
//! nearest deadline and looks again, so the request path only stores a few atomics.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// `head_since` or `idle_since` when that state is not the current one.
const NOT_NOW: u64 = u64::MAX;

/// What one connection is doing, for its timeouts.
pub struct Activity {
    /// When the connection was accepted; the times below are milliseconds after it.
    accepted: Instant,
    /// Requests read and not yet answered to the end of their response body.
    in_flight: AtomicUsize,
    /// When the bytes of the next request head began arriving.
    head_since: AtomicU64,
    /// When the last response ended, leaving the connection idle.
    idle_since: AtomicU64,
    /// Wakes [`expiry`] when a head starts arriving on an idle connection: its deadline may
    /// come before the keep-alive one that `expiry` sleeps towards.
    head_started: Notify,
}

impl Activity {
    /// A connection just accepted: its first request head is due within the header timeout.
    #[must_use]
    pub fn accepted() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(NOT_NOW),
            head_started: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NOT_NOW - 1)
    }

    /// hyper handed a request to the service: its head is complete.
    pub fn request_started(self: &Arc<Self>) -> RequestActive {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NOT_NOW, Ordering::Release);
        self.idle_since.store(NOT_NOW, Ordering::Release);
        RequestActive(Arc::clone(self))
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == NOT_NOW
        {
            self.head_since.store(self.now(), Ordering::Release);
            self.head_started.notify_one();
        }
    }
}

/// Held by a response body: the request counts as in flight until it is dropped.
pub struct RequestActive(Arc<Activity>);

impl Drop for RequestActive {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.idle_since.store(activity.now(), Ordering::Release);
        }
    }
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head took longer than `client_header_timeout`: drop the connection.
    Head,
    /// Idle longer than `keepalive_timeout`: close it as a graceful shutdown does.
    Idle,
}

/// Resolves when a wait of the connection ran out; never while a request is in flight.
pub async fn expiry(activity: &Activity, header_timeout: Duration, keepalive: Duration) -> Expired {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(NOT_NOW);
    let (header_ms, keepalive_ms) = (millis(header_timeout), millis(keepalive));
    // While requests are in flight nothing can expire; look again after this long.
    let recheck_ms = header_ms.min(keepalive_ms).max(1_000);
    loop {
        let now = activity.now();
        let head = activity.head_since.load(Ordering::Acquire);
        let idle = activity.idle_since.load(Ordering::Acquire);
        let (deadline, expired) = if head != NOT_NOW {
            (head.saturating_add(header_ms), Expired::Head)
        } else if idle != NOT_NOW && activity.in_flight.load(Ordering::Acquire) == 0 {
            (idle.saturating_add(keepalive_ms), Expired::Idle)
        } else {
            (now.saturating_add(recheck_ms), Expired::Idle)
        };
        if deadline <= now {
            return expired;
        }
        let at = crate::deadline::from(activity.accepted, Duration::from_millis(deadline));
        // A head that started since `head` was read left a permit: `notified` is ready.
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = activity.head_started.notified() => {}
        }
    }
}

/// A connection's IO that tells its [`Activity`] when bytes arrive.
pub struct Watched<I> {
    pub io: I,
    pub activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_and_head_waits_are_timed_apart() {
        let header = Duration::from_secs(30);
        let keepalive = Duration::from_secs(75);
        let activity = Activity::accepted();
        // The first head is due within the header timeout from the accept.
        let started = Instant::now();
        assert_eq!(expiry(&activity, header, keepalive).await, Expired::Head);
        assert_eq!(started.elapsed(), header);

        let activity = Activity::accepted();
        let request = activity.request_started();
        drop(request);
        // Idle: the keep-alive wait, not the header one.
        let idle = Instant::now();
        assert_eq!(expiry(&activity, header, keepalive).await, Expired::Idle);
        assert_eq!(idle.elapsed(), keepalive);

        // A head that starts arriving after 70 s idle gets the full header timeout.
        let activity = Activity::accepted();
        drop(activity.request_started());
        let watcher = Arc::clone(&activity);
        let waiting = tokio::spawn(async move { expiry(&watcher, header, keepalive).await });
        tokio::time::sleep(Duration::from_secs(70)).await;
        activity.bytes_read();
        let head = Instant::now();
        assert_eq!(waiting.await.unwrap(), Expired::Head);
        assert_eq!(head.elapsed(), header);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_started_early_in_an_idle_wait_gets_the_header_timeout_from_its_start() {
        let (header, keepalive) = (Duration::from_secs(1), Duration::from_secs(3));
        let activity = Activity::accepted();
        drop(activity.request_started());
        let watcher = Arc::clone(&activity);
        let waiting = tokio::spawn(async move { expiry(&watcher, header, keepalive).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        activity.bytes_read();
        let head = Instant::now();
        assert_eq!(waiting.await.unwrap(), Expired::Head);
        // The header timeout after the head started, not the end of the idle wait (3 s).
        assert_eq!(head.elapsed(), header);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_expires_while_a_request_is_in_flight() {
        let activity = Activity::accepted();
        let request = activity.request_started();
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            expiry(&activity, Duration::from_secs(30), Duration::from_secs(75)),
        )
        .await;
        assert!(waited.is_err(), "expired during a request");
        drop(request);
    }
}
