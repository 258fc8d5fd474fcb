//! Writing a response on the engine's connection: the framing hyper's server would choose
//! for it (so that the two engines answer alike), the `Date` field, the head coalesced with
//! the body's first bytes when those are ready, chunks, trailers announced by `Trailer`.

use std::cell::RefCell;
use std::io::IoSlice;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::drain::CountedBody;
use super::super::splice;
use crate::h1::{self, ResponseFraming};
use crate::upstream::RawSocket;

/// Body data up to this size is copied next to its framing (one write); larger data is
/// written from where it is, beside its framing (one vectored write).
const COPY_BYTES: usize = 8 * 1024;

/// How the body of a response is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delimited {
    /// No body may follow (HEAD, 1xx, 204, 304).
    Bodiless,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the body ends when the connection closes.
    Close,
}

/// What the engine reads of a response's fields besides their framing, found by [`framing`]
/// in its one pass over them.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadFields {
    /// The response has a `Date` (else the engine adds one: [`add_date`]).
    pub(super) date: bool,
    /// The response has a `Trailer` ([`trailers_allowed`]).
    trailer: bool,
}

/// The fields [`framing`] reads: `Date`, `Trailer`, and `Content-Length` (how many, and the
/// first one's number), in one pass over the fields where standard names compare by tag, not
/// three hashed lookups (issue 19); and the declared length from those.
fn read_fields(headers: &mut HeaderMap) -> (HeadFields, Option<u64>) {
    let mut fields = HeadFields {
        date: false,
        trailer: false,
    };
    let (mut lengths, mut first_length) = (0_usize, None);
    for (name, value) in headers.iter() {
        if *name == header::CONTENT_LENGTH {
            if lengths == 0 {
                first_length = h1::parse_length(value.as_bytes());
            }
            lengths = lengths.saturating_add(1);
        } else if *name == header::DATE {
            fields.date = true;
        } else if *name == header::TRAILER {
            fields.trailer = true;
        }
    }
    let declared = match (lengths, first_length) {
        (0, _) => None,
        (1, Some(length)) => Some(length),
        // Several, or one that is not a number: normalised (or dropped) as hyper does.
        _ => h1::single_content_length(headers),
    };
    (fields, declared)
}

/// The response head's framing, decided as hyper's server decides it
/// (`proto/h1/role.rs`): a `Content-Length` the response carries is kept where it is; one
/// that a body without bytes contradicts is replaced by `0`; without one, the body's exact
/// size, else chunked to HTTP/1.1 and close-delimited to HTTP/1.0. The field to write (if
/// any), how the body is delimited, and what else the head's writing needs of the fields.
pub(super) fn framing<B: Body>(
    method: &Method,
    version: Version,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: &B,
) -> (ResponseFraming, Delimited, HeadFields) {
    let (fields, declared) = read_fields(headers);
    let (field, delimited) = framing_of(method, version, status, headers, body, declared);
    (field, delimited, fields)
}

/// [`framing`] once the response's declared `Content-Length` is known.
fn framing_of<B: Body>(
    method: &Method,
    version: Version,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: &B,
    declared: Option<u64>,
) -> (ResponseFraming, Delimited) {
    let exact = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless_status {
        headers.remove(header::CONTENT_LENGTH);
        return (ResponseFraming::None, Delimited::Bodiless);
    }
    if method == Method::HEAD {
        let field = match exact {
            Some(length) if length > 0 && declared.is_none() => ResponseFraming::Length(length),
            _ => ResponseFraming::None,
        };
        return (field, Delimited::Bodiless);
    }
    match (declared, exact) {
        (Some(_), Some(0)) | (None, Some(0)) => {
            headers.remove(header::CONTENT_LENGTH);
            (ResponseFraming::Length(0), Delimited::Length(0))
        }
        (Some(declared), _) => (ResponseFraming::None, Delimited::Length(declared)),
        (None, Some(length)) => (ResponseFraming::Length(length), Delimited::Length(length)),
        (None, None) if version == Version::HTTP_10 => (ResponseFraming::None, Delimited::Close),
        (None, None) => (ResponseFraming::Chunked, Delimited::Chunked),
    }
}

/// Ends the head in `out` with `Date` (last, where hyper writes it), unless the response
/// `has_date`.
pub(super) fn add_date(out: &mut Vec<u8>, has_date: bool) {
    if has_date {
        return;
    }
    // The head ends with its empty line: the field goes before it.
    out.truncate(out.len().saturating_sub(2));
    out.extend_from_slice(b"date: ");
    with_date(|date| out.extend_from_slice(date));
    out.extend_from_slice(b"\r\n\r\n");
}

/// Calls `with` on the `Date` of this second, formatted once per second per thread.
fn with_date<R>(with: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            *text = httpdate::fmt_http_date(now);
            *cached_second = second;
        }
        with(text.as_bytes())
    })
}

/// Whether `value`, a comma-separated list, has `token` (case-insensitively).
pub(super) fn lists_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    })
}

/// The trailer fields a response may carry, as hyper decides: only in a chunked body, to a
/// client that sent `TE: trailers`, and only those the response's `Trailer` field announces.
/// A response that cannot be chunked (to HTTP/1.0, or bodiless) loses its `Trailer` field.
pub(super) fn trailers_allowed(
    headers: &mut HeaderMap,
    fields: HeadFields,
    delimited: Delimited,
    version: Version,
    te_trailers: bool,
) -> Vec<HeaderName> {
    if !fields.trailer {
        return Vec::new();
    }
    if version == Version::HTTP_10 || delimited == Delimited::Bodiless {
        headers.remove(header::TRAILER);
        return Vec::new();
    }
    if delimited != Delimited::Chunked || !te_trailers {
        return Vec::new();
    }
    announced_trailers(headers)
}

/// The trailer fields a chunked response's `Trailer` field announces.
fn announced_trailers(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Writes the body's frames after a head already in `out`, delimited `delimited`. `Ok(true)`
/// when the body was written to its end, `Ok(false)` when it failed midway (the connection
/// must close, leaving the client with a response it can tell is incomplete).
pub(super) struct BodyWriter {
    pub(super) delimited: Delimited,
    pub(super) announced: Vec<HeaderName>,
    /// Data bytes written so far, against a `Content-Length`.
    pub(super) written: u64,
}

impl BodyWriter {
    /// Appends `frame` to `out`, or writes `out` and the frame's data to `stream` when the
    /// data is large; `Ok(true)` when this frame ended the body.
    pub(super) async fn frame<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        out: &mut Vec<u8>,
        frame: Frame<Bytes>,
    ) -> std::io::Result<bool> {
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Ok(trailers), Delimited::Chunked) = (frame.into_trailers(), self.delimited)
                {
                    self.finish_chunked(out, Some(&trailers));
                    return Ok(true);
                }
                return Ok(false);
            }
        };
        if data.is_empty() || self.delimited == Delimited::Bodiless {
            return Ok(false);
        }
        self.written = self
            .written
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        let chunked = self.delimited == Delimited::Chunked;
        if chunked {
            h1::write_chunk_header(out, data.len());
        }
        if data.len() <= COPY_BYTES {
            out.extend_from_slice(&data);
            if chunked {
                out.extend_from_slice(h1::CHUNK_END);
            }
        } else {
            let end: &[u8] = if chunked { h1::CHUNK_END } else { b"" };
            write_all_vectored(stream, &[out, &data, end]).await?;
            out.clear();
        }
        Ok(false)
    }

    /// Whether a body that ended without trailers was complete, writing its last chunk.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) -> bool {
        match self.delimited {
            Delimited::Chunked => {
                self.finish_chunked(out, None);
                true
            }
            Delimited::Length(length) => self.written == length,
            Delimited::Bodiless | Delimited::Close => true,
        }
    }

    fn finish_chunked(&mut self, out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
        let allowed = trailers.map(|trailers| {
            let mut allowed = HeaderMap::new();
            for (name, value) in trailers {
                if self.announced.contains(name) {
                    allowed.append(name, value.clone());
                }
            }
            allowed
        });
        let allowed = allowed.filter(|allowed| !allowed.is_empty() && !self.announced.is_empty());
        h1::write_last_chunk(out, allowed.as_ref());
    }
}

/// A body shorter than this is copied: what arrives with its head is most of it, and two
/// splices and a pipe cost more than the copy.
pub(super) const SPLICE_MIN: u64 = 64 * 1024;

/// Writes `head` and then `body`, an upstream's body of `length` bytes (at least
/// [`SPLICE_MIN`]: the caller checks, so that a small response builds no future of this),
/// moving its bytes from the upstream's socket to the client's through a pipe (splice(2)),
/// when it can be: a plain TCP client, a TCP or Unix upstream on zoo's client, a pipe free.
/// `None` when it cannot (nothing written: the caller copies the body), else whether the
/// body went whole.
pub(super) async fn splice_body<S: super::ClientStream>(
    stream: &mut S,
    head: &[u8],
    body: &mut CountedBody,
    length: u64,
) -> Option<bool> {
    if stream.tcp().is_none() || body.size_hint().exact() != Some(length) {
        return None;
    }
    let pipe = splice::body_pipe()?;
    let Some((first, mut raw)) = body.raw() else {
        // Back to the pool, never used.
        drop(pipe);
        return None;
    };
    let buffered = raw.take_buffered();
    let first = first.unwrap_or_default();
    if write_all_vectored(stream, &[head, &first, &buffered])
        .await
        .is_err()
    {
        return Some(false);
    }
    let left = raw.left();
    // The head is written: from here on a failure can only cut the response. (`raw` is
    // given only over TCP or Unix, and `tcp()` was there above: neither fails in fact.)
    let moved = match (raw.socket(), stream.tcp()) {
        (Some(RawSocket::Tcp(upstream)), Some(client)) => {
            pipe.move_exactly(upstream, client, left).await
        }
        (Some(RawSocket::Unix(upstream)), Some(client)) => {
            pipe.move_exactly(upstream, client, left).await
        }
        _ => return Some(false),
    };
    match moved {
        Ok(()) => {
            raw.moved_all();
            tracing::debug!(bytes = length, spliced = left, "response body spliced");
            Some(true)
        }
        // Cut (the upstream closed early, or the client went): the connection closes.
        Err(error) => {
            tracing::debug!("spliced response body cut: {error}");
            Some(false)
        }
    }
}

/// Writes every byte of `parts` in as few system calls as the socket allows.
async fn write_all_vectored<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let mut parts: Vec<&[u8]> = parts
        .iter()
        .copied()
        .filter(|part| !part.is_empty())
        .collect();
    while !parts.is_empty() {
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while let Some(first) = parts.first_mut() {
            if written >= first.len() {
                written -= first.len();
                parts.remove(0);
            } else {
                *first = &first[written..];
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A body of unknown length, like a chunked response from an app.
    struct Streamed;

    impl Body for Streamed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(None)
        }
    }

    fn decide(
        method: Method,
        version: Version,
        status: u16,
        length: Option<&str>,
        body: Option<&'static [u8]>,
    ) -> (ResponseFraming, Delimited, Option<HeaderValue>) {
        let mut headers = HeaderMap::new();
        if let Some(length) = length {
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(length).unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        let (field, delimited, _) = match body {
            Some(bytes) => framing(
                &method,
                version,
                status,
                &mut headers,
                &Full::new(Bytes::from_static(bytes)),
            ),
            None => framing(&method, version, status, &mut headers, &Streamed),
        };
        (
            field,
            delimited,
            headers.get(header::CONTENT_LENGTH).cloned(),
        )
    }

    #[test]
    fn framing_follows_hypers_choices() {
        use Delimited as D;
        use ResponseFraming as F;
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, None, Some(b"abc")),
            (F::Length(3), D::Length(3), None)
        );
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, None, None),
            (F::Chunked, D::Chunked, None)
        );
        assert_eq!(
            decide(Method::GET, Version::HTTP_10, 200, None, None),
            (F::None, D::Close, None)
        );
        // An app's own length stays where it is.
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, Some("5"), None),
            (F::None, D::Length(5), Some(HeaderValue::from_static("5")))
        );
        assert_eq!(
            decide(Method::HEAD, Version::HTTP_11, 200, None, Some(b"abc")),
            (F::Length(3), D::Bodiless, None)
        );
        assert_eq!(
            decide(Method::HEAD, Version::HTTP_11, 200, Some("9"), Some(b"")),
            (F::None, D::Bodiless, Some(HeaderValue::from_static("9")))
        );
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 304, Some("9"), Some(b"")),
            (F::None, D::Bodiless, None)
        );
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, Some("0"), Some(b"")),
            (F::Length(0), D::Length(0), None)
        );
        // One field of digits goes out, never two (the fuzz suite's find) nor a sign.
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, Some("5, 5"), None),
            (F::None, D::Length(5), Some(HeaderValue::from_static("5")))
        );
        assert_eq!(
            decide(Method::GET, Version::HTTP_11, 200, Some("+3"), Some(b"abc")),
            (F::Length(3), D::Length(3), None)
        );
    }

    #[test]
    fn equal_length_fields_go_out_as_one() {
        let mut headers = HeaderMap::new();
        for _ in 0..2 {
            headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        }
        let (field, delimited, _) = framing(
            &Method::GET,
            Version::HTTP_11,
            StatusCode::OK,
            &mut headers,
            &Full::new(Bytes::from_static(b"hello")),
        );
        assert_eq!(
            (field, delimited),
            (ResponseFraming::None, Delimited::Length(5))
        );
        let values: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
        assert_eq!(values, [HeaderValue::from_static("5")]);
    }

    #[test]
    fn the_one_pass_finds_date_and_trailer() {
        let found = |names: &[HeaderName]| {
            let mut headers = HeaderMap::new();
            for name in names {
                headers.append(name, HeaderValue::from_static("x"));
            }
            let (.., fields) = framing(
                &Method::GET,
                Version::HTTP_11,
                StatusCode::OK,
                &mut headers,
                &Streamed,
            );
            (fields.date, fields.trailer)
        };
        assert_eq!(found(&[header::CONTENT_TYPE]), (false, false));
        assert_eq!(found(&[header::DATE, header::SERVER]), (true, false));
        assert_eq!(found(&[header::TRAILER, header::DATE]), (true, true));
        let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        add_date(&mut out, true);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\n\r\n");
        add_date(&mut out, false);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\ndate: "), "{out:?}");
        assert!(out.ends_with(b" GMT\r\n\r\n"), "{out:?}");
    }

    #[test]
    fn only_announced_trailers_are_written() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::TRAILER,
            HeaderValue::from_static("grpc-status, x-sum"),
        );
        let mut writer = BodyWriter {
            delimited: Delimited::Chunked,
            announced: announced_trailers(&headers),
            written: 0,
        };
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("7"));
        trailers.insert("x-secret", HeaderValue::from_static("no"));
        let mut out = Vec::new();
        writer.finish_chunked(&mut out, Some(&trailers));
        assert_eq!(out, b"0\r\nx-sum: 7\r\n\r\n");
    }
}
