//! The request body on its way to the upstream on zoo's client: [`Sending`] writes the body's
//! frames as they come (by `Content-Length`, or chunked with the trailers the request's
//! `Trailer` names), each write vectored with the pieces queued before it (the request head
//! goes out with the first frame), and moves the last bytes of a body the client's connection
//! offered to splice (upload.rs) through its pipe. The exchange (exchange.rs) polls it while
//! it reads the response, and its response body goes on polling it after the head.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::HeaderMap;
use hyper::body::{Body, Frame};
use tokio::io::AsyncWrite;

use super::exchange::{RawSocket, UpstreamStream};
use super::upload::RequestSplice;
use super::{SendError, UpstreamBody};
use crate::h1;

/// Queued pieces written in one vectored write.
const MAX_SLICES: usize = 16;

/// How the rest of the request body is encoded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Encoding {
    /// This many bytes are still to come.
    Length(u64),
    Chunked,
}

/// The request body, sent as it comes while the response is read.
pub(super) struct Sending {
    pub(super) body: UpstreamBody,
    encoding: Encoding,
    /// The request's `Trailer` field, which names the trailers a chunked body may carry.
    trailer: Option<HeaderMap>,
    /// Bytes to write, in order (a chunk's size line, its data, its CRLF).
    pub(super) queue: VecDeque<Bytes>,
    /// Bytes were written since the last flush (a TLS stream holds them until flushed).
    unflushed: bool,
    /// The body's last bytes are in the queue.
    ended: bool,
    /// The body's last bytes, spliced through the pipe the client's connection fills
    /// (upload.rs) once the frames have given the others; with the route's
    /// `client_body_timeout`.
    pub(super) splice: Option<(Box<dyn RequestSplice>, std::time::Duration)>,
}

/// The client's body framed otherwise than its `Content-Length` said.
#[derive(Debug, thiserror::Error)]
#[error("the request body's length differs from its Content-Length")]
struct LengthMismatch;

impl Sending {
    pub(super) fn new(body: UpstreamBody, encoding: Encoding, trailer: Option<HeaderMap>) -> Self {
        Self {
            body,
            encoding,
            trailer,
            queue: VecDeque::new(),
            unflushed: false,
            ended: false,
            splice: None,
        }
    }

    /// Whether the frames have given their bytes and the splice's are next.
    pub(super) fn splice_due(&self) -> bool {
        match (&self.splice, self.encoding) {
            (Some((splice, _)), Encoding::Length(left)) => left == splice.len(),
            _ => false,
        }
    }

    /// Moves the splice's bytes to `stream` (all there is left of the body), then the body
    /// has ended.
    fn poll_splice(
        &mut self,
        stream: &UpstreamStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        let Some((splice, _)) = &mut self.splice else {
            return Poll::Ready(Ok(()));
        };
        let socket = match stream {
            UpstreamStream::Tcp(stream) => RawSocket::Tcp(stream),
            UpstreamStream::Unix(stream) => RawSocket::Unix(stream),
            // Not taken over TLS (exchange).
            UpstreamStream::Tls(_) => {
                return Poll::Ready(Err(SendError::Io(io::ErrorKind::Unsupported.into())));
            }
        };
        ready!(splice.poll_move(cx, socket)).map_err(SendError::RequestBody)?;
        self.splice = None;
        self.encoding = Encoding::Length(0);
        self.ended = true;
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued, then the body's next frames, until the body has ended (ready)
    /// or the socket or the body has to wait (pending).
    pub(super) fn poll_send(
        &mut self,
        stream: &mut UpstreamStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        loop {
            while !self.queue.is_empty() {
                // A chunk's size line, data and CRLF (or a head and its body) in one call.
                let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slice, bytes) in slices.iter_mut().zip(&self.queue) {
                    *slice = io::IoSlice::new(bytes);
                    count += 1;
                }
                let mut written =
                    ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]))
                        .map_err(SendError::Io)?;
                if written == 0 {
                    return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())));
                }
                self.unflushed = true;
                while let Some(front) = self.queue.front_mut() {
                    if written < front.len() {
                        front.advance(written);
                        break;
                    }
                    written = written.saturating_sub(front.len());
                    self.queue.pop_front();
                }
            }
            if self.unflushed {
                ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(SendError::Io)?;
                self.unflushed = false;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            if self.splice_due() {
                ready!(self.poll_splice(stream, cx))?;
                continue;
            }
            ready!(self.poll_next_frame(cx))?;
        }
    }

    /// Polls the body once and queues what it gave.
    pub(super) fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            Some(Ok(frame)) => self.queue_frame(frame),
            Some(Err(error)) => Err(SendError::RequestBody(error)),
            None => {
                self.ended = true;
                match self.encoding {
                    Encoding::Length(0) => Ok(()),
                    Encoding::Length(_) => Err(SendError::RequestBody(LengthMismatch.into())),
                    Encoding::Chunked => {
                        self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                        Ok(())
                    }
                }
            }
        })
    }

    fn queue_frame(&mut self, frame: Frame<Bytes>) -> Result<(), SendError> {
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                // Trailers end a chunked body; a body sent by length has no room for them.
                if let (Encoding::Chunked, Ok(trailers)) = (self.encoding, frame.into_trailers()) {
                    let kept = self
                        .trailer
                        .as_ref()
                        .and_then(|names| h1::allowed_trailers(names, &trailers));
                    let mut end = Vec::new();
                    h1::write_last_chunk(&mut end, kept.as_ref());
                    self.queue.push_back(end.into());
                    self.ended = true;
                }
                return Ok(());
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.encoding {
            Encoding::Length(left) => {
                let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                *left = left
                    .checked_sub(len)
                    .ok_or_else(|| SendError::RequestBody(LengthMismatch.into()))?;
                self.queue.push_back(data);
            }
            Encoding::Chunked => {
                let mut size = Vec::with_capacity(18);
                h1::write_chunk_header(&mut size, data.len());
                self.queue.push_back(size.into());
                self.queue.push_back(data);
                self.queue.push_back(Bytes::from_static(h1::CHUNK_END));
            }
        }
        Ok(())
    }
}
