//! An upstream's response body as either HTTP/1.1 client (or hyper's HTTP/2 client) reads
//! it, and why one failed: the body the proxy passes on, which gives its connection back to
//! the pool once read to its end and holds the app instance's lease until dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;

use super::{ExchangeBody, Pool, RawBody, SendError, UpgradedUpstream, UpstreamBody};
use crate::supervise::{Dial, Lease};

/// Why an upstream's response body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// hyper's client.
    #[error("{0}")]
    Hyper(#[from] hyper::Error),
    /// The upstream closed the connection before the body's end.
    #[error("connection closed before the response body's end")]
    Incomplete,
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("invalid chunked body: {0}")]
    Chunked(#[source] crate::h1::ChunkError),
}

impl From<BodyError> for SendError {
    /// hyper's errors stay what hyper's client path has always given (the 502's wording).
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::Hyper(error) => Self::Exchange(error),
            other => Self::Body(other),
        }
    }
}

impl BodyError {
    /// Whether the connection went away (closed or reset before the body was complete),
    /// rather than the upstream sending a malformed body.
    #[must_use]
    pub fn is_connection_lost(&self) -> bool {
        let io = match self {
            Self::Incomplete => return true,
            Self::Chunked(_) => return false,
            Self::Io(io) => Some(io),
            Self::Hyper(error) => {
                if error.is_incomplete_message() {
                    return true;
                }
                std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<io::Error>())
            }
        };
        io.is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        })
    }
}

/// An upstream's response body, streamed as it arrives; once read to its end, its HTTP/1.1
/// connection goes back to the pool for the next request.
pub struct ResponseBody {
    pub(super) source: Source,
    /// The first frame, when [`ResponseBody::take_ready_start`] found it already there; it
    /// goes out before anything else.
    pub(super) first: Option<Frame<Bytes>>,
    /// The app instance's count of requests in flight, held until the body is dropped.
    pub(super) lease: Option<Lease>,
}

/// Which client reads the body.
pub(super) enum Source {
    Hyper {
        body: Incoming,
        reuse: Option<Reuse>,
    },
    Zoo(ExchangeBody),
}

pub(super) struct Reuse {
    pub(super) pool: Arc<Pool>,
    pub(super) sender: http1::SendRequest<UpstreamBody>,
    pub(super) addr: Option<Dial>,
    /// The body returned its last frame.
    pub(super) ended: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Hyper { body, reuse } => f
                .debug_struct("ResponseBody")
                .field("body", body)
                .field("pooled", &reuse.is_some())
                .finish(),
            Source::Zoo(body) => f.debug_struct("ResponseBody").field("body", body).finish(),
        }
    }
}

impl ResponseBody {
    pub(super) fn unpooled(body: Incoming) -> Self {
        Self {
            source: Source::Hyper { body, reuse: None },
            first: None,
            lease: None,
        }
    }

    pub(super) fn zoo(body: ExchangeBody) -> Self {
        Self {
            source: Source::Zoo(body),
            first: None,
            lease: None,
        }
    }

    /// Counts the response as in flight to the instance `lease` holds until it ends.
    pub fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// Whether zoo's own client read the head: its parser already refused the framing a
    /// proxy must not pass on (`h1::ResponseHeadError::Framing`), so it need not be checked
    /// again; hyper's clients decode what they are given.
    #[must_use]
    pub fn framing_checked(&self) -> bool {
        matches!(self.source, Source::Zoo(_))
    }

    /// The upstream's raw connection after a `101` on zoo's client (hyper's hands its
    /// connection over through `hyper::upgrade::on` instead).
    pub fn take_upgrade(&mut self) -> Option<UpgradedUpstream> {
        match &mut self.source {
            Source::Zoo(body) => body.take_upgrade(),
            Source::Hyper { .. } => None,
        }
    }

    /// The rest of the body for moving socket to socket ([`ExchangeBody::raw`]), with the
    /// data of a first frame already taken ([`ResponseBody::take_ready_start`]), which goes
    /// out first.
    pub fn raw(&mut self) -> Option<(Option<Bytes>, RawBody<'_>)> {
        let Source::Zoo(body) = &mut self.source else {
            return None;
        };
        let first = match self.first.take().map(Frame::into_data) {
            None => None,
            Some(Ok(data)) => Some(data),
            Some(Err(frame)) => {
                self.first = Some(frame);
                return None;
            }
        };
        match body.raw() {
            Some(raw) => Some((first, raw)),
            None => {
                self.first = first.map(Frame::data);
                None
            }
        }
    }

    /// Takes the body's first frame if the upstream's connection already has it, without
    /// waiting; fails if the body already failed (bad chunked framing, cut short). Done before
    /// the response head is passed on, so that such an upstream can still be answered 502:
    /// hyper writes a head only together with the first body frame (or when the body is
    /// pending), and a body that fails at once would give the client an empty reply. Never
    /// waits, so a stream whose first event comes later (SSE) is not held back.
    pub async fn take_ready_start(&mut self) -> Result<(), BodyError> {
        if self.first.is_some() || self.is_end_stream() {
            return Ok(());
        }
        std::future::poll_fn(|cx| {
            Poll::Ready(match self.poll_source(cx) {
                Poll::Pending | Poll::Ready(None) => Ok(()),
                Poll::Ready(Some(Ok(frame))) => {
                    self.first = Some(frame);
                    Ok(())
                }
                Poll::Ready(Some(Err(error))) => Err(error),
            })
        })
        .await
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.source {
            Source::Hyper { body, reuse } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let (Poll::Ready(None), Some(reuse)) = (&polled, reuse) {
                    reuse.ended = true;
                }
                polled.map(|frame| frame.map(|frame| frame.map_err(BodyError::Hyper)))
            }
            Source::Zoo(body) => body.poll_body(cx),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        this.poll_source(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none()
            && match &self.source {
                Source::Hyper { body, .. } => body.is_end_stream(),
                Source::Zoo(body) => body.is_end_stream(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        let rest = match &self.source {
            Source::Hyper { body, .. } => body.size_hint(),
            Source::Zoo(body) => body.size_hint(),
        };
        // hyper frames the response to the client by this hint: the frame taken early counts.
        let Some(first) = self.first.as_ref().and_then(Frame::data_ref) else {
            return rest;
        };
        let first = u64::try_from(first.len()).unwrap_or(u64::MAX);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Source::Hyper { body, reuse } = &mut self.source
            && let Some(reuse) = reuse.take()
            && (reuse.ended || body.is_end_stream())
        {
            reuse.pool.put_back(reuse.sender, reuse.addr);
        }
    }
}
