//! Request heads: bytes to [`RequestHead`] with `httparse`, limited by bytes only, and the
//! status each bad head is answered with ([`HeadError::status`]).
//!
//! Stateless: the engine calls [`parse_request_head_shared`] again on its whole buffer after a
//! read (a complete head is then split off the buffer, its values slices of it); at most `max_head_bytes` of it are ever looked at, so one call is bounded. Calling it
//! after every read of a head sent a byte at a time would parse it again at every byte
//! (quadratic, as hyper does), so the engine calls it only once its buffer holds an empty
//! line or reaches the limit; a head refused for its request line is then refused at that
//! point rather than at its first line.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::HeaderName;
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

use super::fields;

/// How big a request head may be.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The request line, the fields and the empty line ending them (and any empty lines before
    /// the request line), in bytes; zoo passes `upstream::MAX_HEAD_BYTES`.
    pub max_head_bytes: usize,
}

/// How a request's body is delimited (RFC 9112 6.3): no body, `Content-Length`, or chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head and what its fields mean for the connection.
#[derive(Debug)]
pub struct RequestHead {
    /// Method; the target as sent (origin-, absolute-, authority- or asterisk-form: zoo
    /// normalises paths later); HTTP/1.0 or HTTP/1.1; every field in order, names lowercased,
    /// repeated fields kept.
    pub parts: http::request::Parts,
    pub framing: BodyFraming,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1 (a server ignores it from HTTP/1.0: RFC 9110
    /// 10.1.1).
    pub expect_continue: bool,
    /// `Upgrade` with `Connection: upgrade` on HTTP/1.1 (ignored from HTTP/1.0: RFC 9110
    /// 7.8).
    pub upgrade: bool,
}

/// Why a request head was refused; [`HeadError::status`] is the answer.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request head has more fields than a header map holds")]
    TooManyFields,
    #[error("malformed request head: {cause}")]
    Malformed { cause: httparse::Error },
    #[error("unsupported HTTP version {major}.{minor}")]
    UnsupportedVersion { major: char, minor: char },
    #[error("invalid method")]
    InvalidMethod,
    #[error("request target is not a URI: {source}")]
    InvalidTarget {
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("invalid header field name")]
    InvalidFieldName,
    #[error("invalid value in header field {name}")]
    InvalidFieldValue { name: HeaderName },
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("request with more than one Host")]
    DuplicateHost,
    #[error("request with both Content-Length and Transfer-Encoding")]
    LengthWithTransferEncoding,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("Content-Length values differ")]
    ConflictingContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("Transfer-Encoding does not end in chunked")]
    ChunkedNotLast,
    #[error("Transfer-Encoding names chunked more than once")]
    ChunkedTwice,
    #[error("Transfer-Encoding has a coding zoo does not implement")]
    UnsupportedTransferCoding,
}

impl HeadError {
    /// The status zoo answers with (then closes the connection). 414 is not decided here: the
    /// proxy checks the URI's length.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } | Self::TooManyFields => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UnsupportedVersion { .. } => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::Malformed { .. }
            | Self::InvalidMethod
            | Self::InvalidTarget { .. }
            | Self::InvalidFieldName
            | Self::InvalidFieldValue { .. }
            | Self::MissingHost
            | Self::DuplicateHost
            | Self::LengthWithTransferEncoding
            | Self::InvalidContentLength
            | Self::ConflictingContentLength
            | Self::TransferEncodingInHttp10
            | Self::ChunkedNotLast
            | Self::ChunkedTwice => StatusCode::BAD_REQUEST,
        }
    }
}

/// Room left in a request's header map for the fields a proxy adds (zoo's: X-Forwarded-For,
/// -Proto, -Host, X-Real-IP, the request ID): the map is made once at its final size.
const ADDED_FIELDS: usize = 6;

/// Fields parsed into a stack array first; a head with more gets a `Vec` sized from its lines.
const STACK_FIELDS: usize = 128;

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet (read more). `Ok(Some((head, consumed)))`:
/// `consumed` bytes of `buf` were the head (with any empty lines before it); the body or the
/// next pipelined request starts there. A head not complete within `max_head_bytes` is
/// [`HeadError::TooLarge`], whether or not more bytes follow.
///
/// # Errors
/// A head that is malformed or that RFC 9112 says to refuse; see [`HeadError::status`].
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(layout) = parse_layout(buf, limits)? else {
        return Ok(None);
    };
    let consumed = layout.consumed;
    let head = Bytes::copy_from_slice(buf.get(..consumed).unwrap_or(buf));
    Ok(Some((build(&layout, &head)?, consumed)))
}

/// [`parse_request_head`] on the engine's read buffer: a complete head is split off `buf`,
/// and its target and field values are slices of those bytes, not copies (one allocation per
/// value saved; the buffer's memory is reused once the request's fields are dropped).
///
/// # Errors
/// As [`parse_request_head`]; `buf` is left as it was.
pub fn parse_request_head_shared(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    let Some(layout) = parse_layout(buf, limits)? else {
        return Ok(None);
    };
    let head = buf.split_to(layout.consumed).freeze();
    build(&layout, &head).map(Some)
}

fn parse_layout(buf: &[u8], limits: &HeadLimits) -> Result<Option<Layout>, HeadError> {
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let parsed = match parse_window(window) {
        Err(HeadError::Malformed {
            cause: httparse::Error::Version,
        }) => match classify_version(window) {
            VersionClass::Incomplete => Parsed::Partial,
            VersionClass::HigherMinor { minor_at } => {
                // RFC 9110 2.5: a higher minor version of 1 is read as 1.1 (as nginx does).
                // httparse knows only 1.0 and 1.1, so it reads a copy saying 1.1; same length,
                // so `consumed` and every offset hold for `buf`. Rare enough for the copy.
                let mut patched = window.to_vec();
                if let Some(minor) = patched.get_mut(minor_at) {
                    *minor = b'1';
                }
                parse_window(&patched)?
            }
            VersionClass::Unsupported { major, minor } => {
                return Err(HeadError::UnsupportedVersion { major, minor });
            }
            VersionClass::Invalid => {
                return Err(HeadError::Malformed {
                    cause: httparse::Error::Version,
                });
            }
        },
        other => other?,
    };
    match parsed {
        Parsed::Complete(layout) => Ok(Some(layout)),
        Parsed::Partial if window.len() < limits.max_head_bytes => Ok(None),
        Parsed::Partial => Err(HeadError::TooLarge {
            limit: limits.max_head_bytes,
        }),
    }
}

enum Parsed {
    Complete(Layout),
    Partial,
}

/// Where a complete head's parts lie in its bytes: what httparse found, as offsets, so that
/// the head can be split off the buffer before its parts are made.
struct Layout {
    consumed: usize,
    method: Range<usize>,
    target: Range<usize>,
    minor: u8,
    /// Each field's name and value.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

fn parse_window(window: &[u8]) -> Result<Parsed, HeadError> {
    // Left uninitialised: httparse writes each field it finds before it is read, and zeroing
    // 128 fields (4 KiB) cost more than parsing a usual head's.
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(window, &mut stack) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap = vec![httparse::EMPTY_HEADER; fields::max_fields(window)];
            let mut request = httparse::Request::new(&mut heap);
            let status = request.parse(window);
            outcome(window, &request, status)
        }
        status => outcome(window, &request, status),
    }
}

fn outcome(
    window: &[u8],
    request: &httparse::Request<'_, '_>,
    status: httparse::Result<usize>,
) -> Result<Parsed, HeadError> {
    match status {
        Ok(httparse::Status::Complete(consumed)) => {
            Ok(Parsed::Complete(layout(window, request, consumed)?))
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        // A refused version is classified by the caller (`classify_version`).
        Err(cause) => Err(HeadError::Malformed { cause }),
    }
}

/// The offsets of `part`, a slice of `window`.
fn offsets(window: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = part.as_ptr().addr().checked_sub(window.as_ptr().addr())?;
    let end = start.checked_add(part.len())?;
    (end <= window.len()).then_some(start..end)
}

fn layout(
    window: &[u8],
    request: &httparse::Request<'_, '_>,
    consumed: usize,
) -> Result<Layout, HeadError> {
    // httparse fills method, path and version before it reports a complete head, each a
    // slice of `window`.
    let malformed = || HeadError::Malformed {
        cause: httparse::Error::Token,
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(malformed());
    };
    let mut fields = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = offsets(window, field.name.as_bytes()).ok_or_else(malformed)?;
        let value = offsets(window, field.value).ok_or_else(malformed)?;
        fields.push((name, value));
    }
    Ok(Layout {
        consumed,
        method: offsets(window, method.as_bytes()).ok_or_else(malformed)?,
        target: offsets(window, target.as_bytes()).ok_or_else(malformed)?,
        minor,
        fields,
    })
}

/// The head `layout` describes, its target and values slices of `head`.
fn build(layout: &Layout, head: &Bytes) -> Result<RequestHead, HeadError> {
    let bytes = |range: &Range<usize>| head.get(range.clone()).unwrap_or_default();
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method =
        Method::from_bytes(bytes(&layout.method)).map_err(|_| HeadError::InvalidMethod)?;
    parts.uri = Uri::from_maybe_shared(head.slice(layout.target.clone()))
        .map_err(|source| HeadError::InvalidTarget { source })?;
    parts.version = if layout.minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Room left for the fields a proxy adds: the map is made once at its final size.
    let capacity = layout.fields.len().saturating_add(ADDED_FIELDS);
    let mut headers =
        HeaderMap::try_with_capacity(capacity).map_err(|_| HeadError::TooManyFields)?;
    for (name, value) in &layout.fields {
        fields::append_shared(&mut headers, bytes(name), head.slice(value.clone())).map_err(
            |error| match error {
                fields::FieldError::Name => HeadError::InvalidFieldName,
                fields::FieldError::Value(name) => HeadError::InvalidFieldValue { name },
                fields::FieldError::TooMany => HeadError::TooManyFields,
            },
        )?;
    }
    parts.headers = headers;
    let semantics = fields::read(&parts.headers, parts.version)?;
    Ok(RequestHead {
        parts,
        framing: semantics.framing,
        keep_alive: semantics.keep_alive,
        expect_continue: semantics.expect_continue,
        upgrade: semantics.upgrade,
    })
}

enum VersionClass {
    /// A prefix of `HTTP/d.d`: read more.
    Incomplete,
    /// `HTTP/1.d` with `d` above 1; the minor digit is at this offset.
    HigherMinor { minor_at: usize },
    /// A well-formed version zoo does not speak (2.0, 0.9, ...).
    Unsupported { major: char, minor: char },
    /// Not an HTTP-version at all.
    Invalid,
}

/// What the request line's version token is, once httparse refused it. The request line is
/// `method SP target SP version`, with single spaces (httparse's default), after any empty
/// lines.
fn classify_version(window: &[u8]) -> VersionClass {
    let Some(line_start) = window.iter().position(|&b| b != b'\r' && b != b'\n') else {
        return VersionClass::Incomplete;
    };
    let Some(after_line_start) = window.get(line_start..) else {
        return VersionClass::Invalid;
    };
    let mut spaces = after_line_start
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b' ')
        .map(|(at, _)| at);
    let (Some(_), Some(second)) = (spaces.next(), spaces.next()) else {
        return VersionClass::Invalid;
    };
    let Some(version_at) = line_start
        .checked_add(second)
        .and_then(|at| at.checked_add(1))
    else {
        return VersionClass::Invalid;
    };
    let version = window.get(version_at..).unwrap_or_default();
    let version = version.get(..8).unwrap_or(version);
    // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3).
    let matches_pattern = version.iter().zip(b"HTTP/0.0").all(|(&b, &p)| {
        if p == b'0' {
            b.is_ascii_digit()
        } else {
            b == p
        }
    });
    match (matches_pattern, version) {
        (false, _) => VersionClass::Invalid,
        (true, [_, _, _, _, _, b'1', _, minor]) if *minor > b'1' => VersionClass::HigherMinor {
            minor_at: version_at.saturating_add(7),
        },
        (true, [_, _, _, _, _, major, _, minor]) => VersionClass::Unsupported {
            major: char::from(*major),
            minor: char::from(*minor),
        },
        (true, _) => VersionClass::Incomplete,
    }
}
