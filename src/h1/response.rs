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

use http::{HeaderMap, Method, StatusCode, Version, header};

use super::fields;

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
pub const FAULT_CODING: &str = "a Transfer-Encoding other than `chunked`";
/// `Content-Length` beside `Transfer-Encoding`.
pub const FAULT_LENGTH_AND_CODING: &str = "both Content-Length and Transfer-Encoding";
/// A `Content-Length` that is not one decimal number.
pub const FAULT_BAD_LENGTH: &str = "an invalid Content-Length";

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
    let window = buf.get(..max_head_bytes).unwrap_or(buf);
    let mut stack = [httparse::EMPTY_HEADER; STACK_FIELDS];
    let mut response = httparse::Response::new(&mut stack);
    let status = match response.parse(window) {
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
    let headers = fields::header_map(response.headers).map_err(|error| match error {
        fields::FieldError::TooMany => ResponseHeadError::TooManyFields,
        fields::FieldError::Name | fields::FieldError::Value(_) => ResponseHeadError::InvalidField,
    })?;
    let framing = framing(&headers, status, method)?;
    let keep_alive = framing != ResponseBodyFraming::UntilClose && keeps_alive(&headers, version);
    Ok(Some((
        ResponseHead {
            status,
            version,
            headers,
            framing,
            keep_alive,
        },
        consumed,
    )))
}

/// The body's framing (RFC 9112 6.3), the faults checked whatever the status, as they are on
/// hyper's path.
fn framing(
    headers: &HeaderMap,
    status: StatusCode,
    method: &Method,
) -> Result<ResponseBodyFraming, ResponseHeadError> {
    let fault = |fault| Err(ResponseHeadError::Framing { fault });
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
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
            if headers.contains_key(header::CONTENT_LENGTH) {
                return fault(FAULT_LENGTH_AND_CODING);
            }
            true
        }
    };
    let length = if chunked {
        None
    } else {
        match content_length(headers) {
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
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = None;
    for element in elements(headers, &header::CONTENT_LENGTH) {
        if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let parsed = std::str::from_utf8(element)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or(())?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(());
        }
        length = Some(parsed);
    }
    Ok(length)
}

fn keeps_alive(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| {
        elements(headers, &header::CONNECTION).any(|element| element.eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

/// The non-empty elements of a comma-separated field over all its lines, trimmed (RFC 9110
/// 5.6.1). Its own copy rather than `fields.rs`'s private one, which the request side owns.
fn elements<'a>(
    headers: &'a HeaderMap,
    name: &'a header::HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
}
