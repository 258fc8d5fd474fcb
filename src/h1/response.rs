//! Response heads from upstreams: bytes to [`ResponseHead`] with `httparse`, limited by bytes
//! only (never by a count of fields, unlike hyper's client, which stops at 100), and how the
//! body that follows is delimited (RFC 9112 6.3).
//!
//! Strict where a proxy must be, since the framing zoo sends on must be the framing it
//! decoded: `Content-Length` beside `Transfer-Encoding`, a `Transfer-Encoding` other than a
//! single `chunked`, and a `Content-Length` that is not one number (or lists numbers that
//! differ) are [`ResponseHeadError::Framing`], answered 502 with the fault named, as nginx
//! answers them. The fault texts are those `proxy/headers.rs` gives for hyper's client, so
//! that both clients answer such an upstream alike.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};

use super::fields::{self, Tracked};

/// A parsed response head and what it says about the body and the connection.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every field in order, names lowercased, repeated fields kept; the framing fields stay
    /// (the proxy removes what is hop-by-hop).
    pub headers: HeaderMap,
    pub framing: ResponseBodyFraming,
    /// Whether the connection may carry another request once this response ends: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`, and never
    /// after a body delimited by the close.
    pub keep_alive: bool,
}

/// How a response body is delimited on the upstream's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBodyFraming {
    /// No body: 1xx, 204, 304, or the answer to a HEAD request.
    Empty,
    Length(u64),
    Chunked,
    /// Neither field: the body ends when the upstream closes the connection.
    UntilClose,
}

/// Why an upstream's response head was refused (502).
#[derive(Debug, thiserror::Error)]
pub enum ResponseHeadError {
    #[error("response head larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("response head has more fields than a header map holds")]
    TooManyFields,
    #[error("malformed response head: {cause}")]
    Malformed { cause: httparse::Error },
    #[error("invalid header field in the response head")]
    InvalidField,
    #[error("a response with {fault}")]
    Framing { fault: &'static str },
}

/// `Transfer-Encoding` other than one `chunked` (the text hyper's path gives too).
const FAULT_CODING: &str = "a Transfer-Encoding other than `chunked`";
/// `Content-Length` beside `Transfer-Encoding`.
const FAULT_LENGTH_AND_CODING: &str = "both Content-Length and Transfer-Encoding";
/// A `Content-Length` that is not one decimal number.
const FAULT_BAD_LENGTH: &str = "an invalid Content-Length";

/// Fields parsed into a stack array first; a head with more gets a `Vec` sized from its lines.
const STACK_FIELDS: usize = 64;

/// Parses the response head at the start of `buf`, the answer to a `method` request.
///
/// `Ok(None)`: not complete yet (read more). `Ok(Some((head, consumed)))`: the first
/// `consumed` bytes were the head; the body starts there. A head not complete within
/// `max_head_bytes` is [`ResponseHeadError::TooLarge`]. A 1xx head is returned like any other:
/// the caller skips the interim ones.
///
/// # Errors
/// A malformed head, or framing RFC 9112 says a proxy must not pass on.
pub fn parse_response_head(
    buf: &[u8],
    max_head_bytes: usize,
    method: &Method,
) -> Result<Option<(ResponseHead, usize)>, ResponseHeadError> {
    let Some(parsed) = parse_fields(buf, max_head_bytes, |fields| {
        fields::header_map(fields).map_err(|error| match error {
            fields::FieldError::TooMany => ResponseHeadError::TooManyFields,
            fields::FieldError::Name | fields::FieldError::Value(_) => {
                ResponseHeadError::InvalidField
            }
        })
    })?
    else {
        return Ok(None);
    };
    let head = finish(parsed.status, parsed.version, parsed.fields, method)?;
    Ok(Some((head, parsed.consumed)))
}

/// [`parse_response_head`] on a read buffer: a complete head is taken off its front, and its
/// field values share the head's bytes (no copy per value, as hyper's client reads them).
///
/// # Errors
/// As [`parse_response_head`]; nothing is taken off `buf` then.
pub fn take_response_head(
    buf: &mut BytesMut,
    max_head_bytes: usize,
    method: &Method,
) -> Result<Option<ResponseHead>, ResponseHeadError> {
    let base = buf.as_ptr().addr();
    let Some(parsed) = parse_fields(buf, max_head_bytes, |fields| {
        let mut located = Vec::with_capacity(fields.len());
        for field in fields {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| ResponseHeadError::InvalidField)?;
            // httparse's value is a slice of `buf`: where it starts in it.
            let start = field.value.as_ptr().addr().saturating_sub(base);
            located.push((name, start, field.value.len()));
        }
        Ok(located)
    })?
    else {
        return Ok(None);
    };
    let bytes = buf.split_to(parsed.consumed).freeze();
    let mut headers = HeaderMap::try_with_capacity(parsed.fields.len())
        .map_err(|_| ResponseHeadError::TooManyFields)?;
    for (name, start, len) in parsed.fields {
        let end = start.checked_add(len).filter(|&end| end <= bytes.len());
        let value = end
            .map(|end| bytes.slice(start..end))
            .and_then(|value| HeaderValue::from_maybe_shared(value).ok())
            .ok_or(ResponseHeadError::InvalidField)?;
        headers
            .try_append(name, value)
            .map_err(|_| ResponseHeadError::TooManyFields)?;
    }
    finish(parsed.status, parsed.version, headers, method).map(Some)
}

/// A complete head's start line, its fields as `fields` made them, and its length.
struct Parsed<T> {
    status: StatusCode,
    version: Version,
    fields: T,
    consumed: usize,
}

/// httparse over the head at the start of `buf` (a stack array of fields first, a `Vec`
/// sized from its lines for a longer head); `fields` turns what it found into `T`.
fn parse_fields<T>(
    buf: &[u8],
    max_head_bytes: usize,
    fields: impl FnOnce(&[httparse::Header<'_>]) -> Result<T, ResponseHeadError>,
) -> Result<Option<Parsed<T>>, ResponseHeadError> {
    let window = buf.get(..max_head_bytes).unwrap_or(buf);
    // Left uninitialised, as for request heads (head.rs).
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let status = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        window,
        &mut stack,
    ) {
        Err(httparse::Error::TooManyHeaders) => None,
        other => Some(other),
    };
    let mut heap;
    let (status, response) = match status {
        Some(status) => (status, response),
        None => {
            heap = vec![httparse::EMPTY_HEADER; fields::max_fields(window)];
            let mut response = httparse::Response::new(&mut heap);
            (response.parse(window), response)
        }
    };
    let consumed = match status {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if window.len() >= max_head_bytes => {
            return Err(ResponseHeadError::TooLarge {
                limit: max_head_bytes,
            });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(cause) => return Err(ResponseHeadError::Malformed { cause }),
    };
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ResponseHeadError::Malformed {
            cause: httparse::Error::Status,
        })?;
    Ok(Some(Parsed {
        status,
        version,
        fields: fields(response.headers)?,
        consumed,
    }))
}

/// The head with what its fields say about the body and the connection.
fn finish(
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    method: &Method,
) -> Result<ResponseHead, ResponseHeadError> {
    let fields = fields::Framing::of(&headers);
    let framing = framing(&fields, status, method)?;
    let keep_alive = framing != ResponseBodyFraming::UntilClose && keeps_alive(&fields, version);
    Ok(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    })
}

/// The body's framing (RFC 9112 6.3), the faults checked whatever the status, as they are on
/// hyper's path.
fn framing(
    fields: &fields::Framing<'_>,
    status: StatusCode,
    method: &Method,
) -> Result<ResponseBodyFraming, ResponseHeadError> {
    let fault = |fault| Err(ResponseHeadError::Framing { fault });
    let mut codings = fields.values(Tracked::TransferEncoding);
    let chunked = match codings.next() {
        None => false,
        Some(first) => {
            if codings.next().is_some()
                || !first
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked")
            {
                return fault(FAULT_CODING);
            }
            if fields.count(Tracked::ContentLength) > 0 {
                return fault(FAULT_LENGTH_AND_CODING);
            }
            true
        }
    };
    let length = if chunked {
        None
    } else {
        match content_length(fields) {
            Ok(length) => length,
            Err(()) => return fault(FAULT_BAD_LENGTH),
        }
    };
    let bodyless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD;
    Ok(match (bodyless, chunked, length) {
        (true, _, _) | (false, false, Some(0)) => ResponseBodyFraming::Empty,
        (false, true, _) => ResponseBodyFraming::Chunked,
        (false, false, Some(length)) => ResponseBodyFraming::Length(length),
        (false, false, None) => ResponseBodyFraming::UntilClose,
    })
}

/// The one length every `Content-Length` value (and list element) names, `None` without one.
///
/// # Errors
/// A value that is not 1*DIGIT fitting a `u64`, or values that differ.
fn content_length(fields: &fields::Framing<'_>) -> Result<Option<u64>, ()> {
    if fields.count(Tracked::ContentLength) == 0 {
        return Ok(None);
    }
    fields::length_of(fields.values(Tracked::ContentLength))
        .map(Some)
        .ok_or(())
}

fn keeps_alive(fields: &fields::Framing<'_>, version: Version) -> bool {
    let has = |token: &[u8]| {
        fields
            .elements(Tracked::Connection)
            .any(|element| element.eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, ResponseHeadError> {
        parse_response_head(bytes, 256 * 1024, &Method::GET)
    }

    fn head(bytes: &[u8]) -> ResponseHead {
        parse(bytes).unwrap().unwrap().0
    }

    fn fault(bytes: &[u8]) -> &'static str {
        match parse(bytes) {
            Err(ResponseHeadError::Framing { fault }) => fault,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_head_is_parsed_up_to_its_empty_line() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello";
        let (head, consumed) = parse(bytes).unwrap().unwrap();
        assert_eq!(consumed, bytes.len() - 5);
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, ResponseBodyFraming::Length(5));
        assert!(head.keep_alive);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn a_head_taken_off_a_buffer_leaves_the_body_and_reads_as_parsed() {
        let bytes = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nSet-Cookie: a=1\r\nContent-Length: 2\r\n\r\nok";
        let mut buf = BytesMut::from(&bytes[..]);
        let taken = take_response_head(&mut buf, 1024, &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"ok");
        let (parsed, _) = parse(bytes).unwrap().unwrap();
        assert_eq!(taken.headers, parsed.headers);
        assert_eq!(
            (taken.status, taken.framing),
            (parsed.status, parsed.framing)
        );
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"[..]);
        assert!(
            take_response_head(&mut partial, 1024, &Method::GET)
                .unwrap()
                .is_none()
        );
        assert_eq!(partial.len(), 25);
    }

    #[test]
    fn an_incomplete_head_asks_for_more_until_the_byte_limit() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n").unwrap().is_none());
        let long = [&b"HTTP/1.1 200 OK\r\nX-A: "[..], &[b'a'; 100]].concat();
        assert!(matches!(
            parse_response_head(&long, 64, &Method::GET),
            Err(ResponseHeadError::TooLarge { limit: 64 })
        ));
    }

    #[test]
    fn a_thousand_fields_under_the_byte_limit_pass() {
        let fields: String = (0..1000).map(|i| format!("x-f{i}: v\r\n")).collect();
        let bytes = format!("HTTP/1.1 200 OK\r\n{fields}content-length: 0\r\n\r\n");
        let head = head(bytes.as_bytes());
        assert_eq!(head.headers.len(), 1001);
        assert_eq!(head.framing, ResponseBodyFraming::Empty);
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        for (bytes, framing) in [
            (
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                ResponseBodyFraming::Chunked,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", ResponseBodyFraming::UntilClose),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                ResponseBodyFraming::Empty,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                ResponseBodyFraming::Empty,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", ResponseBodyFraming::Empty),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                ResponseBodyFraming::Length(7),
            ),
        ] {
            assert_eq!(
                head(bytes).framing,
                framing,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let answer_to_head = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            1024,
            &Method::HEAD,
        );
        assert_eq!(
            answer_to_head.unwrap().unwrap().0.framing,
            ResponseBodyFraming::Empty
        );
    }

    #[test]
    fn framing_a_proxy_cannot_pass_on_is_a_fault() {
        assert_eq!(
            fault(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            FAULT_LENGTH_AND_CODING
        );
        for coding in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
            let bytes = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert_eq!(fault(bytes.as_bytes()), FAULT_CODING, "{coding}");
        }
        for length in ["3, 4", "+3", "-1", "3 4", "", "99999999999999999999999"] {
            let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            assert_eq!(fault(bytes.as_bytes()), FAULT_BAD_LENGTH, "{length:?}");
        }
        assert_eq!(
            fault(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            FAULT_BAD_LENGTH
        );
    }

    #[test]
    fn keep_alive_is_each_version_s_default_unless_the_upstream_says_otherwise() {
        for (bytes, keep_alive) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..], true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false),
        ] {
            assert_eq!(
                head(bytes).keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bytes in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n",
        ] {
            assert!(parse(bytes).is_err(), "{}", String::from_utf8_lossy(bytes));
        }
    }
}
