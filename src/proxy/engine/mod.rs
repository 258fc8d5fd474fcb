//! zoo's own HTTP/1.1 server engine (`engine = "zoo"`): one task serves a whole client
//! connection (read the head into a buffer, parse it with `crate::h1`, call the proxy
//! service, write the response head and relay its body, then the next request), with no
//! hyper server codec and no channel to a connection task but the request body's
//! (body.rs). It serves plain TCP and TLS with ALPN `http/1.1` (or none) alike, over any
//! [`ClientStream`] (stream.rs); HTTP/2 and h2c stay on hyper (listener.rs).
//!
//! What it keeps of hyper's server, so that the two engines answer alike
//! (tests/integration/engines.rs): the framing of responses (respond.rs), `Date`, `100
//! Continue` sent when the service first reads the body, a body the service did not read
//! drained only as far as it is already there, pipelined requests answered in order, the
//! idle and head timeouts of keepalive.rs, and graceful shutdown (the exchange in flight
//! finishes, an idle connection closes at once). What it does differently is in
//! docs/proxy.md ("Two HTTP/1.1 engines").
//!
//! An idle connection holds no buffer: the read and write buffers are released once it has
//! waited 50 ms for its next request, and made again when the socket is readable.

mod body;
mod respond;
mod stream;
mod upload;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Either, Empty, combinators::BoxBody};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::drain::{Counted, CountedBody};
use crate::h1::{self, HeadLimits, RequestHead};
use crate::upstream::MAX_HEAD_BYTES;
use respond::{BodyWriter, Delimited};
pub use stream::{ClientSocket, ClientStream, TunnelStream};
use stream::{read_now, send};

/// The read buffer made for a request head; it grows to [`MAX_HEAD_BYTES`] if the head does.
const HEAD_READ_BYTES: usize = 2 * 1024;
/// The write buffer made for a response: its head and, coalesced, a small body.
const OUT_BYTES: usize = 1024;
/// How long a kept-alive connection keeps its buffers while it waits for the next request:
/// long enough for a busy client's next request (no allocation per request), short enough
/// that a wave of new connections does not leave many buffers' worth of holes in the heap
/// (1 s left 7.2 KiB per idle connection after a wave of 5,000; 50 ms, 2.7).
const BUFFERS_KEPT_IDLE: Duration = Duration::from_millis(50);
/// The limits a request head is parsed with.
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: MAX_HEAD_BYTES,
};
/// Bytes of a request body the service did not read that are read and dropped after the
/// response so that the connection may serve another request; past this it closes.
const DRAIN_BYTES: usize = 64 * 1024;

/// A client connection's socket and what was read past a request head, handed to the
/// WebSocket tunnel after the `101` (forward.rs takes it from the request's extensions).
pub(super) type Handoff = (ClientSocket, Bytes);

/// The request extension through which a WebSocket upgrade gets the client's connection.
#[derive(Clone)]
pub(super) struct EngineUpgrade(Arc<Mutex<Option<oneshot::Receiver<Handoff>>>>);

impl EngineUpgrade {
    /// The connection, once the engine has written the `101`; `None` if it was not.
    pub(super) async fn connection(self) -> Option<Handoff> {
        let receiver = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        receiver.await.ok()
    }
}

/// How long each wait of a connection may last (keepalive.rs's two waits).
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    /// When the first request's head must be complete: `header` after the accept.
    pub(super) first_head_due: Instant,
    pub(super) header: Duration,
    pub(super) keepalive: Duration,
}

/// One client connection.
struct Connection<S> {
    stream: S,
    /// Bytes read and not yet used; empty (no allocation) while idle.
    buf: BytesMut,
    /// The response being written.
    out: Vec<u8>,
}

/// How an exchange left the connection.
enum After {
    KeepAlive,
    Close,
    /// A `101` was written: the connection goes to the tunnel waiting on this.
    Switch(oneshot::Sender<Handoff>),
}

/// Serves the HTTP/1.1 connection `stream` (whose first bytes, read to tell it from h2c,
/// are `read`) until it closes, a wait runs out, or `stop` is cancelled.
///
/// Not an `async fn`: one keeps its arguments and the locals moved from them side by side in
/// its future, room that every idle connection's task would hold (issue 19: memory per idle
/// connection). The connection is made here and the block below uses what it captures in
/// place; the service and the timeouts are the caller's, borrowed.
pub(super) fn serve<'a, S: ClientStream>(
    stream: S,
    read: Bytes,
    service: &'a Counted,
    timeouts: &'a Timeouts,
    stop: &'a CancellationToken,
) -> impl Future<Output = ()> + Send + 'a {
    let mut connection = Connection {
        stream,
        // The sniffed bytes' own buffer, not a copy of them.
        buf: BytesMut::from(read),
        out: Vec::new(),
    };
    async move {
        // Not the first head's deadline itself: a copy of it kept across the waits would take
        // room in the task.
        let mut first = true;
        loop {
            // Boxed: an idle connection's task then holds only what waiting for a head needs,
            // not the space of an exchange's futures (issue 19: memory per idle connection).
            // Made in a block of its own, so that the head (248 bytes) bound there has no room
            // in the task while the next head is awaited.
            let exchange = {
                let Some(head) = connection
                    .read_head(timeouts, first.then_some(timeouts.first_head_due), stop)
                    .await
                else {
                    return;
                };
                let head = match head {
                    Ok(head) => head,
                    Err(error) => {
                        // Boxed, as the exchange: rare, and an idle task need not have room
                        // for it.
                        Box::pin(connection.refuse(&error)).await;
                        return;
                    }
                };
                let keep_alive = head.keep_alive && !timeouts.keepalive.is_zero();
                Box::pin(connection.exchange(head, keep_alive, service, stop))
            };
            match exchange.await {
                Some(After::KeepAlive) => {}
                Some(After::Switch(handoff)) => {
                    let socket = connection.stream.into_socket();
                    let _ = handoff.send((socket, connection.buf.freeze()));
                    return;
                }
                // Closed after the match: a value matched stays in the task while an arm waits.
                Some(After::Close) | None => break,
            }
            first = false;
        }
        let _ = connection.stream.shutdown().await;
    }
}

impl<S: ClientStream> Connection<S> {
    /// Reads the next request head. `None`: the connection is done (closed by the client,
    /// idle past `keepalive_timeout`, a head past `client_header_timeout`, or shutdown while
    /// idle). `head_deadline` is set for the first request (timed from the accept).
    ///
    /// Not an `async fn`, as [`serve`]: its arguments would take room twice in every idle
    /// connection's task.
    #[allow(clippy::manual_async_fn)] // what the lint asks for is what this avoids
    fn read_head<'a>(
        &'a mut self,
        timeouts: &'a Timeouts,
        mut head_deadline: Option<Instant>,
        stop: &'a CancellationToken,
    ) -> impl Future<Output = Option<Result<RequestHead, h1::HeadError>>> + Send + 'a {
        async move {
            let mut scanned = 0;
            let mut line_seen = false;
            let idle_until = match head_deadline {
                Some(deadline) => deadline,
                None => crate::deadline::after(timeouts.keepalive),
            };
            if !self.buf.is_empty() {
                // A pipelined head has started arriving already.
                head_deadline.get_or_insert_with(|| crate::deadline::after(timeouts.header));
            }
            loop {
                if self.buf.is_empty() {
                    // Between two requests of a busy connection the buffers are kept (made
                    // again for each request they cost more instructions than the rest of the
                    // head's handling), for a while. Not a deadline kept across the waits: it
                    // would take room in the task.
                    let holding = self.buf.capacity() > 0 || self.out.capacity() > 0;
                    let wait_until = if holding {
                        crate::deadline::after(BUFFERS_KEPT_IDLE).min(idle_until)
                    } else {
                        idle_until
                    };
                    tokio::select! {
                        readable = self.stream.readable() => readable.ok()?,
                        () = tokio::time::sleep_until(wait_until) => {
                            // Past the idle limit, or idle for a while: then hold no buffer.
                            if self.buf.capacity() == 0 && self.out.capacity() == 0 {
                                return None;
                            }
                            self.buf = BytesMut::new();
                            self.out = Vec::new();
                            continue;
                        }
                        () = stop.cancelled() => return None,
                    }
                    self.buf.reserve(HEAD_READ_BYTES);
                    match read_now(&mut self.stream, &mut self.buf) {
                        Ok(0) => return None,
                        Ok(_) => {
                            head_deadline
                                .get_or_insert_with(|| crate::deadline::after(timeouts.header));
                        }
                        // Woken without bytes (or a stream that cannot tell before it reads, or a
                        // TLS record without data): the read below waits, in the buffer.
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return None,
                    }
                }
                // Parse only once the bytes hold the end of a head, so that a head arriving a
                // byte at a time is not parsed again at every byte; and once when the request line
                // ends, so that a bad one (TLS bytes on the plain port) is answered at once, as
                // hyper answers it, not when an empty line or the byte limit comes.
                // Only the new bytes are looked at: a long line arriving a byte at a time costs
                // no rescans.
                let line_ended = !line_seen
                    && self
                        .buf
                        .get(scanned..)
                        .is_some_and(|new| new.contains(&b'\n'));
                line_seen |= line_ended;
                if scanned == 0
                    || line_ended
                    || ends_head(&self.buf, scanned)
                    || self.buf.len() >= MAX_HEAD_BYTES
                {
                    match h1::parse_request_head_shared(&mut self.buf, &HEAD_LIMITS) {
                        Ok(Some(head)) => return Some(Ok(head)),
                        Ok(None) => {}
                        Err(error) => return Some(Err(error)),
                    }
                }
                scanned = self.buf.len();
                // Idle still (no byte of a head yet): the idle limit and shutdown end the wait.
                let idle = head_deadline.is_none();
                let deadline = head_deadline.unwrap_or(idle_until);
                if self.buf.capacity() == self.buf.len() {
                    self.buf.reserve(self.buf.len().max(HEAD_READ_BYTES));
                }
                let read = tokio::select! {
                    read = tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut self.buf) => read,
                    () = tokio::time::sleep_until(deadline) => return None,
                    () = stop.cancelled(), if idle => return None,
                };
                match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
                head_deadline.get_or_insert_with(|| crate::deadline::after(timeouts.header));
            }
        }
    }

    /// Answers a head that could not be parsed (one `text/plain` line, as zoo's other
    /// errors), then the connection closes.
    async fn refuse(&mut self, error: &h1::HeadError) {
        let status = error.status();
        let body = format!(
            "{} {}: {error}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(256);
        h1::write_response_head(
            &mut out,
            status,
            Version::HTTP_11,
            &headers,
            h1::ResponseFraming::Length(length),
            false,
        );
        respond::add_date(&mut out, false);
        out.extend_from_slice(body.as_bytes());
        let _ = send(&mut self.stream, &out).await;
        let _ = self.stream.shutdown().await;
    }

    /// Serves one request: calls the service (feeding its body as it asks), writes the
    /// response. `None` when the connection was handed to a tunnel or failed.
    async fn exchange(
        &mut self,
        head: RequestHead,
        keep_alive: bool,
        service: &Counted,
        stop: &CancellationToken,
    ) -> Option<After> {
        let RequestHead {
            mut parts,
            framing,
            expect_continue,
            upgrade,
            ..
        } = head;
        if let h1::BodyFraming::Length(_) = framing {
            // Equal duplicates (`5` twice) reach the app as the one field zoo decoded.
            h1::single_content_length(&mut parts.headers);
        }
        let method = parts.method.clone();
        let version = parts.version;
        let (body, mut feeder) = match body::channel(framing, expect_continue) {
            Some((body, mut feeder)) => {
                feeder.preload(&mut self.buf);
                (BoxBody::new(body), Some(feeder))
            }
            None => (
                BoxBody::new(Empty::new().map_err(|never| match never {})),
                None,
            ),
        };
        // hyper writes a response's trailers only to a client that said it takes them.
        let te_trailers = parts
            .headers
            .get_all(header::TE)
            .iter()
            .any(|value| respond::lists_token(value, "trailers"));
        let mut request = Request::from_parts(parts, Either::Right(body));
        // A large body of known length may be spliced (upload.rs).
        if let h1::BodyFraming::Length(length) = framing
            && length >= respond::SPLICE_MIN
            && self.stream.tcp().is_some()
            && let Some(feeder) = &mut feeder
            && let Some(offer) = feeder.offer_upload(&self.buf)
        {
            request.extensions_mut().insert(offer);
        }
        let handoff = (upgrade && super::tunnel::wants_websocket(request.headers())).then(|| {
            let (sender, receiver) = oneshot::channel();
            request
                .extensions_mut()
                .insert(EngineUpgrade(Arc::new(Mutex::new(Some(receiver)))));
            sender
        });
        let answer = service.answer(request);
        tokio::pin!(answer);
        let response = loop {
            match &mut feeder {
                Some(feeder) if feeder.active() => tokio::select! {
                    response = &mut answer => break response,
                    () = feeder.feed(&mut self.stream, &mut self.buf) => {}
                },
                _ => break (&mut answer).await,
            }
        };
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(handoff) = handoff
        {
            return self.switch(response, version, handoff).await;
        }
        let closing = !keep_alive
            || stop.is_cancelled()
            || feeder.as_ref().is_some_and(|feeder| feeder.failed);
        let (mut parts, body) = response.into_parts();
        let headers = &mut parts.headers;
        let (field, delimited, fields) = respond::framing(&method, version, status, headers, &body);
        let keep_alive = !closing && delimited != Delimited::Close;
        let announced = respond::trailers_allowed(headers, fields, delimited, version, te_trailers);
        self.out.clear();
        // Room for a usual head and a small body at once, rather than growing to it.
        self.out.reserve(OUT_BYTES);
        h1::write_response_head(&mut self.out, status, version, headers, field, keep_alive);
        respond::add_date(&mut self.out, fields.date);
        let mut writer = BodyWriter {
            delimited,
            announced,
            written: 0,
        };
        let complete = self.relay(body, &mut writer, feeder.as_mut()).await?;
        let body_read = match &mut feeder {
            None => true,
            Some(feeder) => {
                feeder.complete() || feeder.drain(&mut self.stream, &mut self.buf, DRAIN_BYTES)
            }
        };
        Some(if complete && keep_alive && body_read {
            After::KeepAlive
        } else {
            After::Close
        })
    }

    /// Writes the head in `out` and the response body after it, feeding the request body
    /// meanwhile (an app may answer while it still reads). `Some(true)` when the body was
    /// written whole; `None` when the client's socket failed.
    async fn relay(
        &mut self,
        mut body: CountedBody,
        writer: &mut BodyWriter,
        mut feeder: Option<&mut body::Feeder>,
    ) -> Option<bool> {
        if writer.delimited == Delimited::Bodiless {
            drop(body);
            send(&mut self.stream, &self.out).await.ok()?;
            return Some(true);
        }
        // Spliced only once the request body is all read: the feeder needs the task too.
        if let Delimited::Length(length) = writer.delimited
            && length >= respond::SPLICE_MIN
            && feeder.as_ref().is_none_or(|feeder| !feeder.active())
            && let Some(whole) =
                respond::splice_body(&mut self.stream, &self.out, &mut body, length).await
        {
            self.out.clear();
            return Some(whole);
        }
        loop {
            // Gather what the body has ready; write once it has to wait.
            let frame = match body.frame_now() {
                Some(frame) => frame,
                None => {
                    if !self.out.is_empty() {
                        self.stream.write_all(&self.out).await.ok()?;
                        self.out.clear();
                    }
                    // What was written reaches the client before the wait (TLS holds it).
                    self.stream.flush().await.ok()?;
                    match &mut feeder {
                        Some(feeder) if feeder.active() => tokio::select! {
                            frame = body.frame() => frame,
                            () = feeder.feed(&mut self.stream, &mut self.buf) => continue,
                        },
                        _ => body.frame().await,
                    }
                }
            };
            let ended = match frame {
                None => writer.end(&mut self.out),
                Some(Ok(frame)) => {
                    if writer
                        .frame(&mut self.stream, &mut self.out, frame)
                        .await
                        .ok()?
                    {
                        true
                    } else {
                        continue;
                    }
                }
                // Cut: what was written stays incomplete for the client to see.
                Some(Err(_)) => {
                    let _ = send(&mut self.stream, &self.out).await;
                    return Some(false);
                }
            };
            drop(body);
            send(&mut self.stream, &self.out).await.ok()?;
            self.out.clear();
            return Some(ended);
        }
    }

    /// Writes a `101` and hands the connection to the tunnel forward.rs opened.
    async fn switch(
        &mut self,
        response: Response<CountedBody>,
        version: Version,
        handoff: oneshot::Sender<Handoff>,
    ) -> Option<After> {
        let headers = response.headers();
        self.out.clear();
        h1::write_response_head(
            &mut self.out,
            StatusCode::SWITCHING_PROTOCOLS,
            version,
            headers,
            h1::ResponseFraming::None,
            true,
        );
        respond::add_date(&mut self.out, headers.contains_key(header::DATE));
        send(&mut self.stream, &self.out).await.ok()?;
        Some(After::Switch(handoff))
    }
}

/// Whether `buf` holds the empty line that ends a head, looking only at what arrived after
/// `scanned` bytes (and the three before them, where the line may have started).
fn ends_head(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    let tail = buf.get(from..).unwrap_or_default();
    tail.windows(2).any(|pair| pair == b"\n\n") || tail.windows(3).any(|three| three == b"\n\r\n")
}

impl CountedBody {
    /// The body's next frame if it is ready now, without waiting.
    fn frame_now(
        &mut self,
    ) -> Option<Option<Result<hyper::body::Frame<Bytes>, crate::upstream::BoxError>>> {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match hyper::body::Body::poll_frame(std::pin::Pin::new(self), &mut context) {
            std::task::Poll::Ready(frame) => Some(frame),
            std::task::Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_an_empty_line() {
        assert!(ends_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0));
        assert!(ends_head(b"GET / HTTP/1.1\nHost: a\n\n", 0));
        assert!(!ends_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        // The empty line split across two reads.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(ends_head(head, head.len() - 1));
    }
}
