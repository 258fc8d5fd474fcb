//! A request body of known, large length moved from a plain TCP client's socket to the
//! upstream's through a pipe (splice(2)) instead of being read into buffers and written from
//! them. The engine offers it ([`offer`]) once the body's bytes that came with the head are in
//! the body's channel; zoo's client takes it (`upstream::RequestSplice`) when it sends on a
//! plain socket and a pipe is free.
//!
//! The two sockets never meet in one place: the connection's task owns the client's, the
//! service's future the upstream connection. So the pipe is shared, and each half splices on
//! its own socket: the exchange ([`ClientUpload`]) asks for a piece through the feeder's
//! "wanted" signal when the pipe is empty, the feeder (body.rs) splices up to a piece from the
//! client into the pipe ([`Upload::fill`]) and wakes the exchange, which splices it out to the
//! upstream. The feeder counts the body's bytes off the socket as it does when it copies them,
//! so the connection knows as before whether the body was read whole.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::super::splice::{self, BodyPipe};
use super::body::BodyError;
use crate::upstream::{BoxError, ClientBodyTimeout, RawSocket, RequestSplice, UploadOffer};

/// What both halves share.
struct Shared {
    state: Mutex<State>,
    /// The feeder's: notified when the exchange wants the next piece.
    wanted: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Leased when the exchange takes the offer.
    pipe: Option<BodyPipe>,
    /// Bytes the feeder put in the pipe so far.
    filled: u64,
    /// Why the feeder could not read the body; the exchange's request fails with it.
    failed: Option<BodyError>,
    /// The exchange, waiting for a piece.
    waker: Option<Waker>,
}

/// The feeder's half.
#[derive(Clone)]
pub(super) struct Upload(Arc<Shared>);

/// The offer of the `left` bytes of a body still on the client's socket (none in the
/// connection's buffer), which asks for pieces through `wanted`.
pub(super) fn offer(left: u64, wanted: Arc<Notify>) -> (UploadOffer, Upload) {
    let (exchange, feeder) = halves(left, wanted);
    (UploadOffer::new(Box::new(exchange)), feeder)
}

fn halves(left: u64, wanted: Arc<Notify>) -> (ClientUpload, Upload) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wanted,
    });
    let exchange = ClientUpload {
        shared: Arc::clone(&shared),
        len: left,
        idle: None,
        idle_timeout: Duration::ZERO,
    };
    (exchange, Upload(shared))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Upload {
    /// The exchange took the offer: the body's bytes go through the pipe, not the channel.
    pub(super) fn taken(&self) -> bool {
        self.0.state().pipe.is_some()
    }

    /// Splices up to `max` bytes from `client` into the pipe once the client has some, and
    /// wakes the exchange. `Ok(0)`: a stale ask (the pipe still holds the last piece).
    /// Cancel-safe: it waits only before it splices.
    pub(super) async fn fill(&self, client: &TcpStream, max: usize) -> Result<usize, BodyError> {
        loop {
            if self.0.state().pipe.as_ref().is_none_or(BodyPipe::holds) {
                return Ok(0);
            }
            client.readable().await?;
            let mut state = self.0.state();
            let Some(pipe) = &mut state.pipe else {
                return Ok(0);
            };
            match pipe.try_fill(client, max) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(BodyError::Io(error)),
                Ok(0) => return Err(BodyError::Incomplete),
                Ok(filled) => {
                    state.filled = state
                        .filled
                        .saturating_add(u64::try_from(filled).unwrap_or(u64::MAX));
                    if let Some(waker) = state.waker.take() {
                        waker.wake();
                    }
                    return Ok(filled);
                }
            }
        }
    }

    /// The body could not be read: the exchange fails with `error`.
    pub(super) fn fail(&self, error: BodyError) {
        let mut state = self.0.state();
        state.failed = Some(error);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// The exchange's half.
struct ClientUpload {
    shared: Arc<Shared>,
    len: u64,
    /// Runs while the exchange waits for a piece; reset at each piece.
    idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    idle_timeout: Duration,
}

impl RequestSplice for ClientUpload {
    fn len(&self) -> u64 {
        self.len
    }

    fn prepare(&mut self, idle: Duration) -> bool {
        self.idle_timeout = idle;
        let mut state = self.shared.state();
        if state.pipe.is_none() {
            state.pipe = splice::body_pipe();
        }
        state.pipe.is_some()
    }

    fn poll_move(&mut self, cx: &mut Context<'_>, to: RawSocket<'_>) -> Poll<Result<(), BoxError>> {
        let moved = ready!(self.poll_moving(cx, to));
        match &moved {
            Ok(()) => tracing::debug!(bytes = self.len, "request body spliced"),
            // The request fails with it; the client's connection closes after the response.
            Err(error) => tracing::debug!("spliced request body cut: {error}"),
        }
        Poll::Ready(moved)
    }
}

impl ClientUpload {
    fn poll_moving(
        &mut self,
        cx: &mut Context<'_>,
        to: RawSocket<'_>,
    ) -> Poll<Result<(), BoxError>> {
        let mut state = self.shared.state();
        loop {
            if let Some(error) = state.failed.take() {
                return Poll::Ready(Err(Box::new(error)));
            }
            let Some(pipe) = &mut state.pipe else {
                return Poll::Ready(Err(Box::new(BodyError::Incomplete)));
            };
            if pipe.holds() {
                let emptied = match to {
                    RawSocket::Tcp(to) => pipe.poll_empty(cx, to),
                    RawSocket::Unix(to) => pipe.poll_empty(cx, to),
                };
                ready!(emptied).map_err(|error| Box::new(BodyError::Io(error)))?;
                if let Some(idle) = &mut self.idle {
                    idle.as_mut()
                        .reset(crate::deadline::after(self.idle_timeout));
                }
                continue;
            }
            if state.filled >= self.len {
                return Poll::Ready(Ok(()));
            }
            // The pipe is empty: the next piece, from the connection's task.
            state.waker = Some(cx.waker().clone());
            self.shared.wanted.notify_one();
            // Waiting for the client: held to client_body_timeout, as the body's frames are.
            let timeout = self.idle_timeout;
            let idle = self.idle.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(crate::deadline::after(timeout)))
            });
            ready!(idle.as_mut().poll(cx));
            return Poll::Ready(Err(Box::new(ClientBodyTimeout(timeout))));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::super::splice::test_sockets::{pair, patterned};
    use super::*;

    /// What the feeder does with a taken offer: a piece each time the exchange asks, until
    /// `len` bytes went or the client failed.
    async fn feed(upload: &Upload, wanted: &Notify, client: &TcpStream, len: u64) {
        let mut left = len;
        while left > 0 {
            wanted.notified().await;
            match upload.fill(client, splice::piece_max(left)).await {
                Ok(filled) => left -= u64::try_from(filled).unwrap(),
                Err(error) => return upload.fail(error),
            }
        }
    }

    /// The exchange's move of `len` bytes from `engine_side` to `to`, fed as the engine does.
    async fn upload(
        len: u64,
        idle: Duration,
        engine_side: &TcpStream,
        to: &TcpStream,
    ) -> Result<(), BoxError> {
        let wanted = Arc::new(Notify::new());
        let (mut exchange, feeder) = halves(len, Arc::clone(&wanted));
        assert!(exchange.prepare(idle), "a pipe is free");
        let moving = std::future::poll_fn(|cx| exchange.poll_move(cx, RawSocket::Tcp(to)));
        tokio::select! {
            moved = moving => moved,
            // Ends once the last piece is in the pipe; the move ends after it.
            () = feed(&feeder, &wanted, engine_side, len) => {
                std::future::poll_fn(|cx| exchange.poll_move(cx, RawSocket::Tcp(to))).await
            }
        }
    }

    #[tokio::test]
    async fn exactly_the_offered_bytes_go_and_the_next_request_stays() {
        let (engine_side, mut client) = pair().await;
        let (to, mut app) = pair().await;
        let body = patterned(600_003);
        let mut sent = body.clone();
        sent.extend_from_slice(b"NEXT");
        let writing = tokio::spawn(async move { client.write_all(&sent).await.map(|()| client) });
        let len = u64::try_from(body.len()).unwrap();
        let receiving = tokio::spawn(async move {
            let mut got = vec![0; body.len()];
            app.read_exact(&mut got).await.map(|_| got == body)
        });
        upload(len, Duration::from_secs(10), &engine_side, &to)
            .await
            .unwrap();
        assert!(receiving.await.unwrap().unwrap(), "the body differs");
        let mut next = [0; 4];
        let mut engine_side = engine_side;
        tokio::time::timeout(Duration::from_secs(5), engine_side.read_exact(&mut next))
            .await
            .expect("the next request's bytes are still on the socket")
            .unwrap();
        assert_eq!(&next, b"NEXT");
        drop(writing.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_client_that_closes_early_fails_the_move_as_incomplete() {
        let (engine_side, mut client) = pair().await;
        let (to, _app) = pair().await;
        client.write_all(&[7; 1000]).await.unwrap();
        drop(client);
        let moved = upload(5000, Duration::from_secs(10), &engine_side, &to).await;
        let error = moved.expect_err("the body ended short");
        assert!(
            matches!(error.downcast_ref(), Some(BodyError::Incomplete)),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_client_that_stalls_fails_the_move_after_the_idle_timeout() {
        let (engine_side, _client) = pair().await;
        let (to, _app) = pair().await;
        let moved = tokio::time::timeout(
            Duration::from_secs(5),
            upload(5000, Duration::from_millis(100), &engine_side, &to),
        )
        .await
        .expect("the idle timeout ends the wait");
        let error = moved.expect_err("nothing came");
        assert!(error.is::<ClientBodyTimeout>(), "{error}");
    }
}
