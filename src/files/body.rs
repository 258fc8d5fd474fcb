//! The body of every response a `static` route sends: a short text, nothing, or a file
//! streamed in chunks from where the range starts.
//!
//! Invariant: it yields exactly the length it announced ([`Body::size_hint`], which hyper
//! sends as `Content-Length`) or fails. A file that grew while being sent is cut at that
//! length; one that shrank fails the body, so hyper closes the connection rather than end a
//! short response that looks complete.
//!
//! Each chunk is one `read(2)` of up to [`CHUNK`] bytes, on the worker thread when hyper asks
//! for it (as nginx reads without `aio threads`: from the page cache it takes microseconds,
//! less than a hand-off to the blocking pool), straight into the buffer that becomes the
//! frame: no zero-fill, no copy between buffers. `sendfile(2)` is out of reach: hyper owns the
//! connection and takes bodies as buffers (docs/performance.md, "Static files").

use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Largest read of a file at a time: large reads keep the system calls per MiB few, bound
/// the memory a response holds and how long one read holds the worker.
const CHUNK: u64 = 256 * 1024;

pub(crate) struct FileBody {
    /// Bytes read already (a short text, or a file's first chunk), sent first.
    first: Option<Bytes>,
    /// The rest of the file, positioned at the next byte to send; `None` once all is sent.
    file: Option<File>,
    /// Bytes still to send from `file`.
    remaining: u64,
}

/// Up to `want` bytes from `file`'s position, in one buffer of that capacity. `read_to_end`
/// on a `take` fills the spare capacity without zeroing it first; fewer bytes than `want`
/// means the file ended.
pub(super) fn read_chunk(file: &mut File, want: u64) -> io::Result<Bytes> {
    let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(usize::MAX));
    file.by_ref().take(want).read_to_end(&mut chunk)?;
    Ok(Bytes::from(chunk))
}

impl FileBody {
    pub(super) fn bytes(bytes: impl Into<Bytes>) -> Self {
        Self {
            first: Some(bytes.into()),
            file: None,
            remaining: 0,
        }
    }

    pub(super) fn empty() -> Self {
        Self::bytes(Bytes::new())
    }

    /// `first`, then `remaining` more bytes of `file` from its current position.
    pub(super) fn file(first: Bytes, file: File, remaining: u64) -> Self {
        Self {
            first: Some(first),
            file: (remaining > 0).then_some(file),
            remaining,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take()
            && !first.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(None);
        };
        // A chunk never exceeds what is left, so a file that grew is cut here.
        let chunk = read_chunk(file, this.remaining.min(CHUNK));
        let chunk = match chunk {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => {
                this.file = None;
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being sent",
                ))));
            }
            Err(error) => {
                this.file = None;
                return Poll::Ready(Some(Err(error)));
            }
        };
        this.remaining -= chunk.len() as u64;
        if this.remaining == 0 {
            this.file = None;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.as_ref().is_none_or(Bytes::is_empty) && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |first| first.len() as u64);
        SizeHint::with_exact(first + self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http_body_util::BodyExt;

    use super::*;

    /// More than two chunks, so that a change between reads is seen.
    const LEN: usize = 600 * 1024;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// The body's frames until it ends or fails: (bytes received, the error if it failed).
    async fn drain(mut body: FileBody) -> (Vec<u8>, Option<io::Error>) {
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received.extend_from_slice(frame.data_ref().unwrap()),
                Err(error) => return (received, Some(error)),
            }
        }
        (received, None)
    }

    #[tokio::test]
    async fn file_body_sends_exactly_the_announced_length_of_a_file_that_grew() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&pattern(LEN)).unwrap();
        let reader = File::open(file.path()).unwrap();
        file.write_all(&[7; 100_000]).unwrap();
        let body = FileBody::file(Bytes::new(), reader, LEN as u64);
        assert_eq!(body.size_hint().exact(), Some(LEN as u64));
        let (received, error) = drain(body).await;
        assert!(error.is_none(), "{error:?}");
        assert!(received == pattern(LEN), "{} bytes", received.len());
    }

    #[tokio::test]
    async fn file_body_fails_when_the_file_shrank() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&pattern(LEN)).unwrap();
        file.set_len(300 * 1024).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let (received, error) = drain(FileBody::file(Bytes::new(), file, LEN as u64)).await;
        assert_eq!(received.len(), 300 * 1024);
        assert_eq!(error.unwrap().kind(), io::ErrorKind::UnexpectedEof);
    }
}
