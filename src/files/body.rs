//! The body of every response a `static` route sends: a short text, nothing, or a file
//! streamed in chunks from where the range starts.
//!
//! Invariant: it yields exactly the length it announced ([`Body::size_hint`], which hyper
//! sends as `Content-Length`) or fails. A file that grew while being sent is cut at that
//! length; one that shrank fails the body, so hyper closes the connection rather than end a
//! short response that looks complete.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio_util::io::poll_read_buf;

/// Largest read of a file at a time: large reads keep the blocking-pool hops per MiB few,
/// and bound the memory a response holds.
const CHUNK: u64 = 256 * 1024;

pub(crate) struct FileBody {
    /// Bytes read already (a short text, or a file's first chunk), sent first.
    first: Option<Bytes>,
    /// The rest of the file, positioned where `first` ended.
    file: Option<tokio::fs::File>,
    /// Bytes still to send from `file`.
    remaining: u64,
    /// Where the next chunk is read to; kept across a pending read.
    buffer: BytesMut,
}

impl FileBody {
    pub(super) fn bytes(bytes: impl Into<Bytes>) -> Self {
        Self {
            first: Some(bytes.into()),
            file: None,
            remaining: 0,
            buffer: BytesMut::new(),
        }
    }

    pub(super) fn empty() -> Self {
        Self::bytes(Bytes::new())
    }

    /// `first`, then `remaining` more bytes of `file` from its current position.
    pub(super) fn file(first: Bytes, file: std::fs::File, remaining: u64) -> Self {
        Self {
            first: Some(first),
            file: (remaining > 0).then(|| tokio::fs::File::from_std(file)),
            remaining,
            buffer: BytesMut::new(),
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take()
            && !first.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(file) = this.file.as_mut().filter(|_| this.remaining > 0) else {
            this.file = None;
            return Poll::Ready(None);
        };
        let want = usize::try_from(this.remaining.min(CHUNK)).unwrap_or(usize::MAX);
        if this.buffer.capacity() < want {
            this.buffer.reserve(want);
        }
        let read = ready!(poll_read_buf(Pin::new(file), cx, &mut this.buffer))?;
        if read == 0 {
            this.file = None;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being sent",
            ))));
        }
        let len = u64::try_from(this.buffer.len()).unwrap_or(u64::MAX);
        if len > this.remaining {
            // It grew: send no more than was announced.
            this.buffer
                .truncate(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        }
        this.remaining -= this.remaining.min(len);
        Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.as_ref().is_none_or(Bytes::is_empty) && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |first| first.len() as u64);
        SizeHint::with_exact(first + self.remaining)
    }
}
