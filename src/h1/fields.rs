//! What a request's fields mean for the message and the connection (RFC 9112 6.3, 9.3; RFC
//! 9110 7.2, 7.6.1, 7.8, 10.1.1): body framing, `Host`, keep-alive, `Expect`, `Upgrade`.
//! The refusals here are the ones request smuggling goes through, so each is strict.

use bytes::Bytes;
use http::Version;
use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HOST, HeaderMap, HeaderName, HeaderValue,
    TRANSFER_ENCODING, UPGRADE,
};

use super::head::{BodyFraming, HeadError};

/// What [`read`] found; copied into a `RequestHead`.
pub struct Semantics {
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
}

pub fn read(headers: &HeaderMap, version: Version) -> Result<Semantics, HeadError> {
    let http10 = version == Version::HTTP_10;
    let fields = Framing::of(headers);
    match fields.count(Tracked::Host) {
        0 if !http10 => return Err(HeadError::MissingHost),
        0 | 1 => {}
        _ => return Err(HeadError::DuplicateHost),
    }
    let framing = framing(&fields, http10)?;
    let (mut close, mut keep_alive, mut upgrade) = (false, false, false);
    for token in fields.elements(Tracked::Connection) {
        close |= token.eq_ignore_ascii_case(b"close");
        keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        upgrade |= token.eq_ignore_ascii_case(b"upgrade");
    }
    let expect_continue = !http10
        && fields.values(Tracked::Expect).any(|value| {
            value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue")
        });
    Ok(Semantics {
        framing,
        keep_alive: !close && (!http10 || keep_alive),
        expect_continue,
        upgrade: !http10 && upgrade && fields.count(Tracked::Upgrade) > 0,
    })
}

/// The fields whose values decide a message's framing and its connection's fate.
#[derive(Clone, Copy)]
pub(super) enum Tracked {
    Host,
    Connection,
    ContentLength,
    TransferEncoding,
    Expect,
    Upgrade,
}

impl Tracked {
    fn index(self) -> usize {
        match self {
            Self::Host => 0,
            Self::Connection => 1,
            Self::ContentLength => 2,
            Self::TransferEncoding => 3,
            Self::Expect => 4,
            Self::Upgrade => 5,
        }
    }
}

/// The names of [`Tracked`], at its indices.
const TRACKED: [HeaderName; 6] = [
    HOST,
    CONNECTION,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    EXPECT,
    UPGRADE,
];

/// Where a head's [`Tracked`] fields are, found in one pass over its fields (standard names
/// compare by tag) rather than by one hashed lookup per name (issue 19: six lookups cost
/// more than the pass). A name sent once is read from here; one sent more often is looked up
/// in the map, whose values of a name are in the order they came.
pub(super) struct Framing<'a> {
    headers: &'a HeaderMap,
    /// Each tracked name's first value and how many fields have the name.
    found: [(Option<&'a HeaderValue>, usize); 6],
}

impl<'a> Framing<'a> {
    pub(super) fn of(headers: &'a HeaderMap) -> Self {
        let mut found = [(None, 0_usize); 6];
        for (name, value) in headers {
            if let Some((first, count)) = TRACKED
                .iter()
                .position(|tracked| tracked == name)
                .and_then(|index| found.get_mut(index))
            {
                first.get_or_insert(value);
                *count = count.saturating_add(1);
            }
        }
        Self { headers, found }
    }

    pub(super) fn count(&self, which: Tracked) -> usize {
        self.found.get(which.index()).map_or(0, |&(_, count)| count)
    }

    /// The values of `which`, in order.
    pub(super) fn values(&self, which: Tracked) -> impl Iterator<Item = &'a HeaderValue> {
        let (first, count) = self.found.get(which.index()).copied().unwrap_or((None, 0));
        let many = TRACKED
            .get(which.index())
            .filter(|_| count > 1)
            .map(|name| self.headers.get_all(name).iter());
        first
            .filter(|_| count == 1)
            .into_iter()
            .chain(many.into_iter().flatten())
    }

    /// The non-empty elements of the comma-separated field `which`, over all its lines,
    /// without their surrounding whitespace (RFC 9110 5.6.1: empty elements are ignored).
    pub(super) fn elements(&self, which: Tracked) -> impl Iterator<Item = &'a [u8]> {
        self.values(which)
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|element| !element.is_empty())
    }
}

/// RFC 9112 6.3, for a request: `Transfer-Encoding` wins over nothing, it is refused next to
/// `Content-Length` (the pair is how requests are smuggled: issue 19), and its last coding
/// must be `chunked` (else the body's end is unknowable).
fn framing(fields: &Framing<'_>, http10: bool) -> Result<BodyFraming, HeadError> {
    if fields.count(Tracked::TransferEncoding) > 0 {
        if http10 {
            // RFC 9112 6.1: an HTTP/1.0 recipient may not read it; treat as faulty framing.
            return Err(HeadError::TransferEncodingInHttp10);
        }
        if fields.count(Tracked::ContentLength) > 0 {
            return Err(HeadError::LengthWithTransferEncoding);
        }
        return transfer_coding(fields);
    }
    let mut length = None;
    // Each field is one number: a list in one field (`5, 5`) is refused, as hyper, nginx and
    // Caddy refuse it (RFC 9110 8.6 allows either).
    for field in fields.values(Tracked::ContentLength) {
        let value =
            parse_length(field.as_bytes().trim_ascii()).ok_or(HeadError::InvalidContentLength)?;
        // Repeated identical fields are one length (RFC 9110 8.6, as hyper reads them).
        if length.is_some_and(|seen| seen != value) {
            return Err(HeadError::ConflictingContentLength);
        }
        length = Some(value);
    }
    Ok(length.map_or(BodyFraming::Empty, BodyFraming::Length))
}

fn transfer_coding(fields: &Framing<'_>) -> Result<BodyFraming, HeadError> {
    let (mut chunked, mut other, mut last_is_chunked) = (0_usize, false, false);
    for coding in fields.elements(Tracked::TransferEncoding) {
        last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
        if last_is_chunked {
            chunked = chunked.saturating_add(1);
        } else {
            other = true;
        }
    }
    if !last_is_chunked {
        Err(HeadError::ChunkedNotLast)
    } else if chunked > 1 {
        Err(HeadError::ChunkedTwice)
    } else if other {
        Err(HeadError::UnsupportedTransferCoding)
    } else {
        Ok(BodyFraming::Chunked)
    }
}

/// The one length every `Content-Length` value (and list element) names; `None` without the
/// field, or where an element is not 1*DIGIT or two differ (RFC 9110 8.6).
pub(super) fn listed_content_length(headers: &HeaderMap) -> Option<u64> {
    length_of(headers.get_all(CONTENT_LENGTH).iter())
}

/// The one length `values` and their list elements name; `None` without a value, or where an
/// element is not 1*DIGIT (empty ones too: `Content-Length: ` names no length) or two differ.
pub(super) fn length_of<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<u64> {
    let mut length = None;
    for element in values.flat_map(|value| value.as_bytes().split(|&b| b == b',')) {
        let parsed = parse_length(element.trim_ascii())?;
        if length.is_some_and(|seen| seen != parsed) {
            return None;
        }
        length = Some(parsed);
    }
    length
}

/// Leaves `headers` at most one `Content-Length` field, of digits only, and returns its
/// length: equal duplicates (`5` twice, or `5, 5`) become one field, as hyper writes them,
/// and a value that names no one length is removed (a recipient reads two fields as a
/// fault, and the fuzz suite found zoo passing an upstream's two on: CI of fa1a5fd).
pub fn single_content_length(headers: &mut HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (None, _) => return None,
        (Some(value), None) => {
            if let Some(length) = parse_length(value.as_bytes()) {
                return Some(length);
            }
        }
        (Some(_), Some(_)) => {}
    }
    let length = listed_content_length(headers);
    match length {
        Some(length) => headers.insert(CONTENT_LENGTH, HeaderValue::from(length)),
        None => headers.remove(CONTENT_LENGTH),
    };
    length
}

/// `1*DIGIT` as a `u64`: no sign, no space inside, no overflow.
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_u64, |value, &b| {
        let digit = char::from(b).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Why [`header_map`] refused a field httparse accepted.
pub enum FieldError {
    Name,
    Value(HeaderName),
    /// More than a `HeaderMap` holds (32,768 fields; a 256 KiB head can have 65,536).
    TooMany,
}

/// httparse's fields as a `HeaderMap`, in order, repeated names kept.
pub fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, FieldError> {
    let mut map = HeaderMap::try_with_capacity(fields.len()).map_err(|_| FieldError::TooMany)?;
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| FieldError::Name)?;
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| FieldError::Value(name.clone()))?;
        map.try_append(name, value)
            .map_err(|_| FieldError::TooMany)?;
    }
    Ok(map)
}

/// Appends the field `name: value` to `map`, `value` a slice of the head's bytes kept as it is
/// (checked, not copied: [`header_map`] copies each value into its own allocation).
pub fn append_shared(map: &mut HeaderMap, name: &[u8], value: Bytes) -> Result<(), FieldError> {
    let name = HeaderName::from_bytes(name).map_err(|_| FieldError::Name)?;
    let Ok(value) = HeaderValue::from_maybe_shared(value) else {
        return Err(FieldError::Value(name));
    };
    map.try_append(name, value)
        .map_err(|_| FieldError::TooMany)?;
    Ok(())
}

/// An upper bound on the fields in `section` (each takes a line), to size httparse's array:
/// the lines up to the first empty one, after any empty lines it starts with. Not all of the
/// buffer's lines: what follows the head (a body of newlines) would size a far larger array.
pub fn max_fields(section: &[u8]) -> usize {
    let empty = |line: &&[u8]| line.is_empty() || *line == b"\r";
    section
        .split(|&b| b == b'\n')
        .skip_while(empty)
        .take_while(|line| !empty(line))
        .count()
}
