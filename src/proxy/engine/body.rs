//! The request body of zoo's HTTP/1.1 engine: [`EngineBody`], the half the service reads
//! (polled in whichever task sends the request on, usually an upstream connection's), and
//! [`Feeder`], the half the connection's task runs to fill it from the connection's buffer
//! and socket, one frame each time the body asks.
//!
//! A channel of one frame plus a "wanted" signal, as hyper's own `Incoming` is made: the
//! connection reads a piece of the body only once the service asked for one, so that a body
//! the service never reads is never read (and `100 Continue` is sent only then, as hyper
//! sends it), and the socket stays owned by the one task that also writes the response. A
//! large body of known length may instead go through a pipe the exchange shares (upload.rs):
//! the feeder then splices each piece it is asked for into the pipe rather than reading it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, mpsc};

use super::super::splice::piece_max;
use super::stream::{ClientStream, read_now, send};
use super::upload::{self, Upload};

use crate::h1::{self, BodyFraming, ChunkedDecoder, Decoded};
use crate::upstream::BoxError;

/// Bytes asked of the socket per read of a body: as hyper's read buffer was sized
/// (listener.rs: 64 KiB cost 1 MiB uploads about 15% more CPU than 256 KiB).
pub(super) const BODY_READ_BYTES: usize = 256 * 1024;
/// The trailer section of a chunked request body, at most (hyper's limit for trailers).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

type Sent = Result<Frame<Bytes>, BoxError>;

/// Why the client's body could not be read; the service's upstream request fails with it.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("the client closed the connection before its request body ended")]
    Incomplete,
    #[error("invalid chunked request body: {0}")]
    Chunked(#[from] h1::ChunkError),
    #[error("reading the request body: {0}")]
    Io(#[from] std::io::Error),
}

/// The service's half: frames as the connection reads them.
pub(super) struct EngineBody {
    frames: mpsc::Receiver<Sent>,
    wanted: Arc<Notify>,
    /// Body bytes still to come when the length is known.
    left: Option<u64>,
    ended: bool,
}

impl Body for EngineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                if let (Some(left), Ok(frame)) = (&mut self.left, &frame)
                    && let Some(data) = frame.data_ref()
                {
                    *left = left.saturating_sub(u64::try_from(data.len()).unwrap_or(u64::MAX));
                }
                Poll::Ready(Some(frame))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.wanted.notify_one();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.left == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

/// What is left of the body on the connection.
enum Left {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Done,
}

/// The connection's half.
pub(super) struct Feeder {
    left: Left,
    frames: Option<mpsc::Sender<Sent>>,
    wanted: Arc<Notify>,
    /// The body asked for a frame that has not been sent yet (kept across cancelled feeds).
    asked: bool,
    /// `Expect: 100-continue` not answered yet.
    continue_due: bool,
    /// The body could not be read: the connection closes after the response.
    pub(super) failed: bool,
    /// The rest of the body was offered to the exchange to splice (upload.rs).
    upload: Option<Upload>,
}

/// A body and its feeder for a request framed `framing`; `None` when it has no body.
pub(super) fn channel(framing: BodyFraming, expect_continue: bool) -> Option<(EngineBody, Feeder)> {
    let (left, length) = match framing {
        BodyFraming::Empty | BodyFraming::Length(0) => return None,
        BodyFraming::Length(length) => (Left::Length(length), Some(length)),
        BodyFraming::Chunked => (
            Left::Chunked(Box::new(ChunkedDecoder::new(MAX_TRAILER_BYTES))),
            None,
        ),
    };
    let (sender, receiver) = mpsc::channel(1);
    let wanted = Arc::new(Notify::new());
    let body = EngineBody {
        frames: receiver,
        wanted: Arc::clone(&wanted),
        left: length,
        ended: false,
    };
    let feeder = Feeder {
        left,
        frames: Some(sender),
        wanted,
        asked: false,
        continue_due: expect_continue,
        failed: false,
        upload: None,
    };
    Some((body, feeder))
}

/// A body given up before its end (the connection's task answered and moved on, or closed)
/// ends its splice too: the exchange, or the task that sends the rest to an upstream that
/// answered early, would otherwise wait out `client_body_timeout` for pieces nobody sends.
/// (Dropping the channel's sender does the same for a body read as frames.)
impl Drop for Feeder {
    fn drop(&mut self) {
        if let Some(upload) = &self.upload
            && !matches!(self.left, Left::Done)
        {
            upload.fail(BodyError::Incomplete);
        }
    }
}

impl Feeder {
    /// Whether the body still has bytes on the connection and someone to take them.
    pub(super) fn active(&self) -> bool {
        !matches!(self.left, Left::Done) && self.frames.is_some() && !self.failed
    }

    /// An offer to the exchange to splice the rest of a body of known length (upload.rs),
    /// for the request's extensions: only once every byte of it that came with the head went
    /// into the channel (`buf` has none), so that those go first. The feeder reads the body
    /// as before unless the exchange takes it; then it splices it into the offer's pipe.
    pub(super) fn offer_upload(&mut self, buf: &BytesMut) -> Option<crate::upstream::UploadOffer> {
        let Left::Length(left) = self.left else {
            return None;
        };
        if !buf.is_empty() || self.failed || self.frames.is_none() {
            return None;
        }
        let (offer, upload) = upload::offer(left, Arc::clone(&self.wanted));
        self.upload = Some(upload);
        Some(offer)
    }

    /// Whether every byte of the body was read off the connection.
    pub(super) fn complete(&self) -> bool {
        matches!(self.left, Left::Done) && !self.failed
    }

    /// Puts the body's first frame in the channel when its bytes came in with the head
    /// (no read, no waiting), so that the service's first poll of a small body finds it, and
    /// finds a malformed one failed before anything is sent upstream, as with hyper's body.
    /// Not while `100 Continue` is due: that waits for the service to ask.
    pub(super) fn preload(&mut self, buf: &mut BytesMut) {
        if self.continue_due || buf.is_empty() {
            return;
        }
        let Some(Ok(permit)) = self.frames.clone().map(mpsc::Sender::try_reserve_owned) else {
            return;
        };
        match self.next_frame(buf) {
            Ok(None) => {}
            Ok(Some(frame)) => self.deliver(permit, Ok(frame)),
            Err(error) => self.deliver(permit, Err(error)),
        }
    }

    /// Sends what was read of the body; its end (or failure) closes the channel.
    fn deliver(
        &mut self,
        permit: mpsc::OwnedPermit<Sent>,
        sent: Result<Option<Frame<Bytes>>, BodyError>,
    ) {
        match sent {
            Ok(Some(frame)) => {
                permit.send(Ok(frame));
            }
            // Ended without trailers: closing the channel ends the body.
            Ok(None) => {}
            Err(error) => {
                self.failed = true;
                permit.send(Err(Box::new(error)));
            }
        }
        if matches!(self.left, Left::Done) || self.failed {
            self.frames = None;
        }
    }

    /// Waits until the body asks for a frame, then reads it from `buf` (and `stream` when
    /// `buf` has none) and sends it. Cancel-safe: an ask is remembered, bytes read stay in
    /// `buf`.
    pub(super) async fn feed<S: ClientStream>(&mut self, stream: &mut S, buf: &mut BytesMut) {
        if !self.asked {
            self.wanted.notified().await;
            self.asked = true;
        }
        if let Some(upload) = self.upload.clone().filter(Upload::taken) {
            return self.splice_piece(&upload, stream).await;
        }
        let Some(frames) = self.frames.clone() else {
            return;
        };
        let Ok(permit) = frames.try_reserve_owned() else {
            // A stale ask: the frame sent last is still waiting to be taken.
            self.asked = false;
            return;
        };
        if !self.send_continue(stream).await {
            return;
        }
        let sent = loop {
            match self.next_frame(buf) {
                Ok(Some(frame)) => break Ok(frame),
                Ok(None) => {}
                Err(error) => break Err(error),
            }
            buf.reserve(BODY_READ_BYTES);
            match stream.read_buf(buf).await {
                Ok(0) => break Err(BodyError::Incomplete),
                Ok(_) => {}
                Err(error) => break Err(BodyError::Io(error)),
            }
        };
        self.asked = false;
        self.deliver(permit, sent);
    }

    /// Writes `100 Continue` if it is due, as the body is first wanted; false when the
    /// client's socket failed.
    async fn send_continue<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> bool {
        if !self.continue_due {
            return true;
        }
        self.continue_due = false;
        let mut out = Vec::with_capacity(32);
        h1::write_informational(&mut out, http::StatusCode::CONTINUE, &HeaderMap::new());
        let sent = send(stream, &out).await.is_ok();
        self.failed |= !sent;
        sent
    }

    /// Splices the body's next piece from the client's socket into the pipe of the
    /// `upload` the exchange took, counting it off as a frame's bytes are.
    async fn splice_piece<S: ClientStream>(&mut self, upload: &Upload, stream: &mut S) {
        let Left::Length(left) = &mut self.left else {
            return;
        };
        let left = *left;
        if !self.send_continue(stream).await {
            upload.fail(BodyError::Incomplete);
            return;
        }
        let filled = match stream.tcp() {
            Some(client) => upload.fill(client, piece_max(left)).await,
            None => Err(BodyError::Incomplete),
        };
        self.asked = false;
        match filled {
            Ok(filled) => {
                let left = left.saturating_sub(u64::try_from(filled).unwrap_or(u64::MAX));
                self.left = if left == 0 {
                    Left::Done
                } else {
                    Left::Length(left)
                };
            }
            Err(error) => {
                self.failed = true;
                upload.fail(error);
            }
        }
    }

    /// The next frame from `buf`: `Ok(None)` when `buf` needs more bytes, `Ok(Some(None))`
    /// when the body ended without a frame to send.
    fn next_frame(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Option<Frame<Bytes>>>, BodyError> {
        match &mut self.left {
            Left::Done => Ok(Some(None)),
            Left::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
                *left = left.saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
                if *left == 0 {
                    self.left = Left::Done;
                }
                Ok(Some(Some(Frame::data(buf.split_to(take).freeze()))))
            }
            Left::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data { consumed, data } => {
                    let chunk = buf.split_to(consumed).freeze();
                    Ok(Some(Some(Frame::data(chunk.slice(data)))))
                }
                Decoded::NeedMore { consumed } => {
                    buf.advance(consumed);
                    Ok(None)
                }
                Decoded::Done { consumed, trailers } => {
                    buf.advance(consumed);
                    self.left = Left::Done;
                    Ok(Some(trailers.map(Frame::trailers)))
                }
            },
        }
    }

    /// After the response: reads what is left of a body the service did not read to its end,
    /// from `buf` and what the socket has ready without waiting, up to `limit` bytes (as hyper
    /// drains what it can without waiting). Whether the body ended, so that the connection may
    /// serve another request.
    pub(super) fn drain<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        limit: usize,
    ) -> bool {
        self.frames = None;
        let mut read = 0usize;
        loop {
            if self.failed {
                return false;
            }
            match self.next_frame(buf) {
                Ok(Some(None)) => return matches!(self.left, Left::Done),
                Ok(Some(Some(_))) => continue,
                Ok(None) => {}
                Err(_) => return false,
            }
            if read >= limit {
                return false;
            }
            buf.reserve(BODY_READ_BYTES.min(limit));
            match read_now(stream, buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => read = read.saturating_add(n),
            }
        }
    }
}
