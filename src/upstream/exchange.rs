//! zoo's own HTTP/1.1 client (`engine = "zoo"`): the request's own future does the whole
//! exchange on a connection it owns, as Pingora's does, instead of hyper's client, which
//! drives each connection from a task of its own and talks to the request through a channel
//! (about a third of zoo's instructions per keep-alive request: docs/performance.md).
//!
//! [`exchange`] writes the request head (`h1::write_request_head`, framed as hyper frames
//! it), then sends the body (`Sending`, sending.rs) while it reads the response head, so that
//! an app that answers before the body is all sent is read at once (and never blocks on a full
//! socket while zoo only writes). Interim 1xx heads other than `101` are skipped. The [`ExchangeBody`] it
//! returns owns the connection while the response streams: it goes on sending what is left
//! of the request body, decodes the response body (`Content-Length`, chunked with trailers
//! through `h1::ChunkedDecoder`, or until the close), and gives the connection back to its
//! pool once both messages have ended and both sides keep it alive. A `101` hands over the
//! raw stream and the bytes read past the head ([`UpgradedUpstream`]) to the tunnel.
//!
//! No task is spawned and no channel crossed; the one buffer is the read buffer, released
//! while the connection idles in its pool.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use super::sending::{Encoding, Sending};
use super::upload::UploadOffer;
use super::{
    BodyError, MAX_HEAD_BYTES, Pool, ResponseBody, Returned, SendError, SendFailure, UpstreamBody,
    failed_start,
};
use crate::h1::{self, ChunkedDecoder, Decoded, OutgoingBody, RequestFraming, ResponseBodyFraming};
use crate::supervise::Dial;

/// Room made in the read buffer before reading a head, and before a body's first read.
const HEAD_READ: usize = 8 * 1024;
const BODY_READ: usize = 64 * 1024;
/// A body's reads grow (doubling each time one fills its room) up to this, as hyper's
/// adaptive read buffer grows (to ~400 KiB): a large body goes in fewer, larger reads.
const MAX_BODY_READ: usize = 512 * 1024;

/// hyper's words for an upstream that closed before its response head, kept so that both
/// clients' 502s read alike.
const CLOSED_EARLY: &str = "connection closed before message completed";

/// The byte stream of an upstream connection: an app's port or Unix socket, or a remote
/// host over TCP or TLS.
pub enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! each_stream {
    ($self:ident, $stream:ident => $body:expr) => {
        match $self.get_mut() {
            UpstreamStream::Tcp($stream) => {
                let $stream = Pin::new($stream);
                $body
            }
            UpstreamStream::Unix($stream) => {
                let $stream = Pin::new($stream);
                $body
            }
            UpstreamStream::Tls($stream) => {
                let $stream = Pin::new(&mut **$stream);
                $body
            }
        }
    };
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self, stream => stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, stream => stream.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, stream => stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, stream => stream.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, stream => stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(stream) => stream.is_write_vectored(),
            Self::Unix(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// An upstream connection after its `101`: the stream, and what the upstream sent past the
/// head (the first bytes of the new protocol).
pub struct UpgradedUpstream {
    pub stream: UpstreamStream,
    pub early: Bytes,
}

/// A connection of zoo's client, idle in a pool or in an exchange.
pub(super) struct Connection {
    stream: UpstreamStream,
    /// Bytes read and not yet used: the rest of a head, or of a body.
    read: BytesMut,
}

impl Connection {
    pub(super) fn new(stream: UpstreamStream) -> Self {
        Self {
            stream,
            read: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything unasked (both end it). One read that would block, without waiting.
    pub(super) fn is_open_and_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0_u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        self.read.is_empty()
            && Pin::new(&mut self.stream)
                .poll_read(&mut cx, &mut probe)
                .is_pending()
    }

    /// Reads into the buffer, with at least `room / 4` of room made first; whether the read
    /// filled all the room it had comes back too.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<(usize, bool)>> {
        if self.read.capacity().saturating_sub(self.read.len()) < room / 4 {
            self.read.reserve(room);
        }
        let spare = self.read.capacity().saturating_sub(self.read.len());
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
            .map_ok(|read| (read, read == spare))
    }
}

/// Where an exchange's connection goes back to once both messages have ended.
pub(super) struct Home {
    pub(super) pool: Arc<Pool>,
    pub(super) addr: Option<Dial>,
}

/// Sends `request` on `connection` and reads the response head and what
/// [`ResponseBody::take_ready_start`] checks; the response's body owns the connection. On
/// failure, the request is given back unsent when `reused` and its head could not even be
/// written (the upstream had closed the idle connection, and a fresh one may take it), and as
/// written when it had no body.
pub(super) async fn exchange(
    mut connection: Connection,
    request: Request<UpstreamBody>,
    reused: bool,
    home: Home,
) -> Result<Response<ResponseBody>, SendFailure> {
    let bodiless = super::is_bodiless(&request);
    let (mut parts, body) = request.into_parts();
    let outgoing = if body.is_end_stream() {
        OutgoingBody::Empty
    } else {
        body.size_hint()
            .exact()
            .map_or(OutgoingBody::Unknown, OutgoingBody::Known)
    };
    let framing = h1::frame_request(&parts.method, &mut parts.headers, outgoing);
    let mut head = Vec::with_capacity(512);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    h1::write_request_head(
        &mut head,
        &parts.method,
        target,
        parts.version,
        &parts.headers,
    );
    let mut sending = match framing {
        RequestFraming::Length(0) => None,
        RequestFraming::Length(length) => {
            let mut sending = Sending::new(body, Encoding::Length(length), None);
            // What the client's connection offers is spliced, over a plain socket (upload.rs).
            if let Some(offer) = parts.extensions.remove::<UploadOffer>()
                && !matches!(connection.stream, UpstreamStream::Tls(_))
            {
                sending.splice = offer.take(length);
            }
            Some(Box::new(sending))
        }
        RequestFraming::Chunked => {
            let trailer = parts.headers.contains_key(header::TRAILER).then(|| {
                let mut names = HeaderMap::new();
                for value in &parts.headers.get_all(header::TRAILER) {
                    names.append(header::TRAILER, value.clone());
                }
                names
            });
            Some(Box::new(Sending::new(body, Encoding::Chunked, trailer)))
        }
    };
    // As hyper's client does: the head goes out together with the body's first frame when
    // that is ready, and a body that fails at once sends nothing at all.
    let first = match &mut sending {
        Some(sending) if !sending.splice_due() => {
            std::future::poll_fn(|cx| Poll::Ready(sending.poll_next_frame(cx))).await
        }
        _ => Poll::Pending,
    };
    match (first, &mut sending) {
        (Poll::Ready(Err(error)), _) => return Err((error, None)),
        (Poll::Ready(Ok(())), Some(sending)) => sending.queue.push_front(head.into()),
        _ => {
            let written = async {
                connection.stream.write_all(&head).await?;
                connection.stream.flush().await
            };
            if let Err(error) = written.await {
                let returned = match sending {
                    None if reused => Some(Returned::Unsent(bodiless_request(parts))),
                    Some(sending) if reused => {
                        let Sending { body, splice, .. } = *sending;
                        if let Some((splice, idle)) = splice {
                            parts.extensions.insert(UploadOffer::again(splice, idle));
                        }
                        Some(Returned::Unsent(Request::from_parts(parts, body)))
                    }
                    _ if bodiless => Some(Returned::Written(bodiless_request(parts))),
                    _ => None,
                };
                return Err((SendError::Io(error), returned));
            }
        }
    }
    let mut state = ExchangeBody {
        connection: Some(connection),
        sending,
        request_complete: framing == RequestFraming::Length(0),
        framing: Framing::Done,
        keep_alive: false,
        home: Some(home),
        body_read: BODY_READ,
    };
    let head = match std::future::poll_fn(|cx| state.poll_head(cx, &parts.method)).await {
        Ok(head) => head,
        Err(error) => {
            let returned = bodiless.then(|| Returned::Written(bodiless_request(parts)));
            return Err((error, returned));
        }
    };
    state.keep_alive = head.keep_alive;
    state.framing = match head.framing {
        ResponseBodyFraming::Empty => Framing::Done,
        ResponseBodyFraming::Length(length) => Framing::Length(length),
        ResponseBodyFraming::Chunked => {
            Framing::Chunked(Box::new(ChunkedDecoder::new(MAX_HEAD_BYTES)))
        }
        ResponseBodyFraming::UntilClose => Framing::UntilClose,
    };
    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        // The connection speaks another protocol now: the tunnel's, or closed; never pooled.
        state.framing = Framing::Upgrade;
        state.keep_alive = false;
    }
    let mut response = Response::new(ResponseBody::zoo(state));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    // Checked here, where the request's head still is (it may have to go again).
    if let Err(source) = response.body_mut().take_ready_start().await {
        return Err(failed_start(
            source,
            bodiless.then(|| bodiless_request(parts)),
        ));
    }
    Ok(response)
}

/// A request head sent again without a body.
fn bodiless_request(parts: http::request::Parts) -> Request<UpstreamBody> {
    Request::from_parts(parts, Either::Right(Either::Right(Empty::new())))
}

/// Where the response body is in its framing.
enum Framing {
    /// There is no body, or its length has all been read.
    Done,
    /// A chunked or close-delimited body has ended. Apart from [`Framing::Done`] only in what
    /// it tells of the body: such a body does not say it is empty even once it has ended, as
    /// hyper's does not, so that a response that streams nothing is still treated as a stream
    /// (compressed, for one).
    Ended,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
    /// A `101`: no body; the connection is the tunnel's to take.
    Upgrade,
}

/// An upstream's response body on zoo's client: streams the body off the connection it
/// owns, and gives the connection back to its pool when it may.
pub struct ExchangeBody {
    /// `None` once given back, or taken by a tunnel.
    connection: Option<Connection>,
    /// What is left of the request body to send (boxed: only a request with a body has it,
    /// and the body is moved with every response).
    sending: Option<Box<Sending>>,
    /// The request went out whole (so the connection is in a known state).
    request_complete: bool,
    framing: Framing,
    /// The response allows another request on the connection.
    keep_alive: bool,
    home: Option<Home>,
    /// Room for the body's next read (grows up to [`MAX_BODY_READ`]).
    body_read: usize,
}

impl std::fmt::Debug for ExchangeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeBody")
            .field("request_complete", &self.request_complete)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl ExchangeBody {
    /// Sends the request body while reading until a final response head is complete.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<h1::ResponseHead, SendError>> {
        let Some(connection) = &mut self.connection else {
            return Poll::Ready(Err(SendError::Io(io::ErrorKind::NotConnected.into())));
        };
        loop {
            if let Some(sending) = &mut self.sending {
                match sending.poll_send(&mut connection.stream, cx) {
                    Poll::Ready(Ok(())) => {
                        self.sending = None;
                        self.request_complete = true;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {}
                }
            }
            while !connection.read.is_empty() {
                let Some(head) =
                    h1::take_response_head(&mut connection.read, MAX_HEAD_BYTES, method)?
                else {
                    break;
                };
                // Interim answers (100 Continue, 103 Early Hints) are skipped, as hyper's
                // client skips them; a 101 is final.
                if head.status.is_informational()
                    && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
            match ready!(connection.poll_fill(cx, HEAD_READ)).map(|(read, _)| read) {
                Ok(0) => {
                    return Poll::Ready(Err(SendError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        CLOSED_EARLY,
                    ))));
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(SendError::Io(error))),
            }
        }
    }

    /// The rest of the body for moving socket to socket: only a body of known length whose
    /// request went out whole (so the connection has nothing else to do), over TCP or Unix.
    pub(super) fn raw(&mut self) -> Option<RawBody<'_>> {
        let plain = matches!(
            self.connection.as_ref()?.stream,
            UpstreamStream::Tcp(_) | UpstreamStream::Unix(_)
        );
        (plain && self.request_complete && matches!(self.framing, Framing::Length(_)))
            .then_some(RawBody { body: self })
    }

    /// The raw connection after a `101`, for the tunnel; `None` for any other response.
    pub fn take_upgrade(&mut self) -> Option<UpgradedUpstream> {
        if !matches!(self.framing, Framing::Upgrade) {
            return None;
        }
        let connection = self.connection.take()?;
        Some(UpgradedUpstream {
            stream: connection.stream,
            early: connection.read.freeze(),
        })
    }

    /// The body has ended: the connection goes back to its pool if both messages went whole
    /// and both sides keep it alive; else it is closed (dropped). An upstream that answered
    /// before the request body was all sent gets the rest first, from a task of its own (the
    /// one exchange that outlives its response, as on hyper's client, whose connection task
    /// goes on sending), and then its connection back in the pool.
    fn finish(&mut self) {
        self.framing = match self.framing {
            Framing::Chunked(_) | Framing::UntilClose | Framing::Ended => Framing::Ended,
            Framing::Done | Framing::Length(_) | Framing::Upgrade => Framing::Done,
        };
        if !self.keep_alive {
            self.connection = None;
            return;
        }
        let (Some(mut connection), Some(home)) = (self.connection.take(), self.home.take()) else {
            return;
        };
        if !connection.read.is_empty() {
            return;
        }
        // A buffer grown for a large body is released while idle; the head-sized one is kept,
        // so that the next exchange reads into what is left of it (no allocation and free of
        // 8 KiB per request: ~400 instructions, issue 19). An idle pool holds at most
        // `MAX_IDLE` such buffers, 8 KiB each.
        if connection.read.capacity() > HEAD_READ {
            connection.read = BytesMut::new();
        }
        match self.sending.take() {
            None if self.request_complete => home.pool.keep_idle_connection(connection, home.addr),
            None => {}
            Some(mut sending) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let sent = std::future::poll_fn(|cx| {
                            sending.poll_send(&mut connection.stream, cx)
                        })
                        .await;
                        if sent.is_ok() {
                            home.pool.keep_idle_connection(connection, home.addr);
                        }
                    });
                }
            }
        }
    }

    pub(super) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(connection) = &mut self.connection else {
            return Poll::Ready(None);
        };
        if let Some(sending) = &mut self.sending {
            match sending.poll_send(&mut connection.stream, cx) {
                Poll::Ready(Ok(())) => {
                    self.sending = None;
                    self.request_complete = true;
                }
                // The response goes on; the connection, in an unknown state, is not reused.
                Poll::Ready(Err(_)) => self.sending = None,
                Poll::Pending => {}
            }
        }
        loop {
            let step = Self::step(&mut self.framing, &mut connection.read);
            match step {
                Step::Frame { data, ended } => {
                    if ended {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::End(trailers) => {
                    self.finish();
                    return Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers))));
                }
                Step::Failed(error) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err(BodyError::Chunked(error))));
                }
                Step::Read => {}
            }
            let filled = ready!(connection.poll_fill(cx, self.body_read)).map(|(read, full)| {
                if full {
                    self.body_read = self.body_read.saturating_mul(2).min(MAX_BODY_READ);
                }
                read
            });
            match filled {
                Ok(0) if matches!(self.framing, Framing::UntilClose) => {
                    self.framing = Framing::Ended;
                    self.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Ok(_) => {}
                Err(error) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err(BodyError::Io(error))));
                }
            }
        }
    }

    /// What the bytes already read give under `framing`.
    fn step(framing: &mut Framing, read: &mut BytesMut) -> Step {
        loop {
            if read.is_empty() {
                return match framing {
                    Framing::Done | Framing::Ended | Framing::Upgrade => Step::End(None),
                    _ => Step::Read,
                };
            }
            return match framing {
                Framing::Done | Framing::Ended | Framing::Upgrade => Step::End(None),
                Framing::Length(left) => {
                    let data = take_length(left, read);
                    Step::Frame {
                        data,
                        ended: *left == 0,
                    }
                }
                Framing::UntilClose => Step::Frame {
                    data: read.split().freeze(),
                    ended: false,
                },
                Framing::Chunked(decoder) => match decoder.decode(read) {
                    Err(error) => Step::Failed(error),
                    Ok(Decoded::Data { consumed, data }) => {
                        let mut piece = read.split_to(consumed);
                        piece.advance(data.start);
                        Step::Frame {
                            data: piece.freeze(),
                            ended: false,
                        }
                    }
                    Ok(Decoded::NeedMore { consumed }) => {
                        read.advance(consumed);
                        continue;
                    }
                    Ok(Decoded::Done { consumed, trailers }) => {
                        read.advance(consumed);
                        Step::End(trailers)
                    }
                },
            };
        }
    }
}

/// The upstream's socket under a body zoo may move without copying it (splice(2)); a TLS
/// upstream has none.
pub enum RawSocket<'a> {
    Tcp(&'a TcpStream),
    Unix(&'a UnixStream),
}

/// The rest of a response body of known length on zoo's client, for the proxy to move from
/// the upstream's socket to the client's itself: the bytes already read come out of
/// [`RawBody::take_buffered`], the others are read off [`RawBody::socket`], and
/// [`RawBody::moved_all`] says they all went, which ends the body as reading them would have
/// (its connection back to the pool). A body dropped before that closes its connection.
pub struct RawBody<'a> {
    body: &'a mut ExchangeBody,
}

impl RawBody<'_> {
    /// The body's bytes not yet taken, buffered ones included.
    #[must_use]
    pub fn left(&self) -> u64 {
        match self.body.framing {
            Framing::Length(left) => left,
            _ => 0,
        }
    }

    /// The body's bytes read along with its head (at most [`RawBody::left`]).
    pub fn take_buffered(&mut self) -> Bytes {
        let (Some(connection), Framing::Length(left)) =
            (&mut self.body.connection, &mut self.body.framing)
        else {
            return Bytes::new();
        };
        take_length(left, &mut connection.read)
    }

    #[must_use]
    pub fn socket(&self) -> Option<RawSocket<'_>> {
        match &self.body.connection.as_ref()?.stream {
            UpstreamStream::Tcp(stream) => Some(RawSocket::Tcp(stream)),
            UpstreamStream::Unix(stream) => Some(RawSocket::Unix(stream)),
            UpstreamStream::Tls(_) => None,
        }
    }

    /// Every byte [`RawBody::left`] counted went to the client: the body has ended.
    pub fn moved_all(self) {
        if let Framing::Length(left) = &mut self.body.framing {
            *left = 0;
            self.body.finish();
        }
    }
}

/// The bytes of `read` that are the body's, at most `left`, which counts them off.
fn take_length(left: &mut u64, read: &mut BytesMut) -> Bytes {
    let take = usize::try_from(*left).map_or(read.len(), |left| left.min(read.len()));
    *left = left.saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
    read.split_to(take).freeze()
}

/// What [`ExchangeBody::step`] found.
enum Step {
    Frame {
        data: Bytes,
        ended: bool,
    },
    /// The body ended, with these trailers.
    End(Option<HeaderMap>),
    Failed(h1::ChunkError),
    /// Read more.
    Read,
}

impl Body for ExchangeBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.get_mut().poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.framing,
            Framing::Done | Framing::Upgrade | Framing::Length(0)
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Chunked(_) | Framing::UntilClose | Framing::Ended => SizeHint::default(),
        }
    }
}

impl Drop for ExchangeBody {
    fn drop(&mut self) {
        // A body dropped at its end (a 204, or a length all read) still gives its connection
        // back; one dropped midway closes it.
        if matches!(
            self.framing,
            Framing::Done | Framing::Ended | Framing::Length(0)
        ) {
            self.finish();
        }
    }
}
