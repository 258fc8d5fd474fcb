//! A request body of known, large length moved from a plain TCP client's socket to the
//! upstream's through a pipe (splice(2)), by the exchange that sends the request (zoo's
//! client, `upstream::RequestSplice`), instead of being read into buffers by the feeder
//! (body.rs) and written from them. The engine offers it ([`offer`]) when the body's first
//! bytes that came with the head are already in the body's channel; it moves the rest.
//!
//! The exchange runs inside the service's future, which cannot borrow the connection's
//! socket; it gets its own descriptor of it (a `dup`), which it reads only while the feeder
//! does not ([`Uploaded`] tells the feeder how far the move went).

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::super::splice::{self, BodyPipe};
use super::body::BodyError;
use crate::h1;
use crate::upstream::{BoxError, ClientBodyTimeout, RawSocket, RequestSplice, UploadOffer};

/// How far an offered move went, as the connection's task sees it.
#[derive(Clone, Default)]
pub(super) struct Uploaded(Arc<AtomicU8>);

/// Not taken (yet): the body's frames carry the bytes, the feeder reads them.
const OFFERED: u8 = 0;
/// The exchange moves them: the feeder must not read the socket.
const TAKEN: u8 = 1;
/// Every byte went: the body was read off the connection whole.
const MOVED: u8 = 2;

impl Uploaded {
    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Release);
    }

    /// The exchange has taken the body's bytes on the socket (whether or not all went yet).
    pub(super) fn taken(&self) -> bool {
        self.0.load(Ordering::Acquire) != OFFERED
    }

    pub(super) fn moved(&self) -> bool {
        self.0.load(Ordering::Acquire) == MOVED
    }
}

/// The offer of the `left` bytes of a body still on `client`'s socket (none of them in the
/// connection's buffer), with `100 Continue` still to send when `continue_due`; `None` when
/// the socket cannot be had twice (out of descriptors: then the body is copied).
pub(super) fn offer(
    client: &TcpStream,
    left: u64,
    continue_due: bool,
) -> Option<(UploadOffer, Uploaded)> {
    let socket = std::os::fd::AsFd::as_fd(client).try_clone_to_owned().ok()?;
    let uploaded = Uploaded::default();
    let upload = ClientUpload {
        socket: Held::Unready(socket),
        pipe: None,
        len: left,
        left,
        continue_out: continue_due.then(continue_head),
        idle: None,
        idle_timeout: Duration::ZERO,
        uploaded: uploaded.clone(),
    };
    Some((UploadOffer::new(Box::new(upload)), uploaded))
}

fn continue_head() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    h1::write_informational(&mut out, StatusCode::CONTINUE, &HeaderMap::new());
    out
}

/// The client's socket as the move holds it: its descriptor until the move is readied, then
/// registered with tokio (only a body that is spliced pays for that).
enum Held {
    Unready(OwnedFd),
    Ready(TcpStream),
    /// Registering failed.
    Gone,
}

struct ClientUpload {
    socket: Held,
    pipe: Option<BodyPipe>,
    len: u64,
    /// Bytes not yet taken from the client's socket.
    left: u64,
    /// `100 Continue` (what is left of it to write): sent when the move first runs, which is
    /// when the body is first wanted.
    continue_out: Option<Vec<u8>>,
    /// Runs while the move waits for the client; reset at each of its reads.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_timeout: Duration,
    uploaded: Uploaded,
}

impl RequestSplice for ClientUpload {
    fn len(&self) -> u64 {
        self.len
    }

    fn prepare(&mut self, idle: Duration) -> bool {
        self.idle_timeout = idle;
        if let Held::Unready(_) = self.socket {
            let Held::Unready(fd) = std::mem::replace(&mut self.socket, Held::Gone) else {
                return false;
            };
            if let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(fd)) {
                self.socket = Held::Ready(stream);
            }
        }
        if self.pipe.is_none() {
            self.pipe = splice::body_pipe();
        }
        matches!(self.socket, Held::Ready(_)) && self.pipe.is_some()
    }

    fn poll_move(&mut self, cx: &mut Context<'_>, to: RawSocket<'_>) -> Poll<Result<(), BoxError>> {
        self.uploaded.set(TAKEN);
        let moved = ready!(self.poll_moving(cx, to));
        match &moved {
            Ok(()) => {
                self.uploaded.set(MOVED);
                tracing::debug!(bytes = self.len, "request body spliced");
            }
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
        let (Held::Ready(client), Some(pipe)) = (&mut self.socket, &mut self.pipe) else {
            return Poll::Ready(Err(Box::new(BodyError::Io(
                io::ErrorKind::NotConnected.into(),
            ))));
        };
        while let Some(out) = &mut self.continue_out {
            match ready!(Pin::new(&mut *client).poll_write(cx, out)) {
                Ok(0) => return Poll::Ready(Err(Box::new(BodyError::Incomplete))),
                Ok(written) if written >= out.len() => self.continue_out = None,
                Ok(written) => drop(out.drain(..written)),
                Err(error) => return Poll::Ready(Err(Box::new(BodyError::Io(error)))),
            }
        }
        while self.left > 0 {
            let max = splice::piece_max(self.left);
            let piece = match to {
                RawSocket::Tcp(to) => pipe.poll_piece(cx, &*client, to, max),
                RawSocket::Unix(to) => pipe.poll_piece(cx, &*client, to, max),
            };
            let moved = match piece {
                Poll::Pending => {
                    if !pipe.awaits_source() {
                        return Poll::Pending;
                    }
                    // Waiting for the client: held to client_body_timeout, as its frames are.
                    let timeout = self.idle_timeout;
                    let idle = self.idle.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep_until(crate::deadline::after(timeout)))
                    });
                    ready!(idle.as_mut().poll(cx));
                    return Poll::Ready(Err(Box::new(ClientBodyTimeout(timeout))));
                }
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Box::new(BodyError::Incomplete))),
                Poll::Ready(Ok(moved)) => moved,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(Box::new(BodyError::Io(error)))),
            };
            self.left = self
                .left
                .saturating_sub(u64::try_from(moved).unwrap_or(u64::MAX));
            if let Some(idle) = &mut self.idle {
                idle.as_mut()
                    .reset(crate::deadline::after(self.idle_timeout));
            }
        }
        Poll::Ready(Ok(()))
    }
}
