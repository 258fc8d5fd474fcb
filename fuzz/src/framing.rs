//! A strict client's reading of one HTTP/1.x response (RFC 9112 6.3), for the oracle of the
//! `upstream_response` target: [`delivered`] reads what zoo sent a client and fails on any
//! framing a client could misread; [`intended`] reads what the fake upstream sent, and says
//! which body it meant only where that is certain.

/// Header fields a head may carry here: zoo passes heads of up to 256 KiB.
const MAX_FIELDS: usize = 8192;

/// A response head: its status, fields (lowercase names) and length in bytes.
struct Head {
    status: u16,
    fields: Vec<(String, Vec<u8>)>,
    len: usize,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// The head at the start of `bytes`; `Ok(None)` when it is not complete.
fn head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status: response.code.unwrap_or_default(),
            fields: response
                .headers
                .iter()
                .map(|field| (field.name.to_ascii_lowercase(), field.value.to_vec()))
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(format!("the head does not parse: {error}")),
    }
}

/// A chunked body read from the start of `bytes`.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    /// The last chunk and the trailer section arrived; `rest` bytes follow them.
    Complete { body: Vec<u8>, rest: usize },
    /// Well-formed so far, but it ends before the last chunk's trailer section does.
    Truncated,
}

fn chunked(bytes: &[u8]) -> Result<Chunked, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&bytes[at..]) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return Ok(Chunked::Truncated),
            Err(_) => return Err(format!("bad chunk size line at byte {at}")),
        };
        at += size_len;
        if size == 0 {
            break;
        }
        let Some(size) = usize::try_from(size)
            .ok()
            .filter(|size| bytes.len() - at >= *size)
        else {
            return Ok(Chunked::Truncated);
        };
        body.extend_from_slice(&bytes[at..at + size]);
        at += size;
        match bytes.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Err(format!("chunk data not followed by CRLF at byte {at}")),
            None => return Ok(Chunked::Truncated),
        }
    }
    // The trailer section: field lines up to an empty line.
    loop {
        let Some(end) = bytes[at..].windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(Chunked::Truncated);
        };
        let line = &bytes[at..at + end];
        at += end + 2;
        if line.is_empty() {
            return Ok(Chunked::Complete {
                body,
                rest: bytes.len() - at,
            });
        }
        if !line.contains(&b':') {
            return Err(format!(
                "a trailer line without `:`: {:?}",
                String::from_utf8_lossy(line)
            ));
        }
    }
}

/// A `Content-Length` value as RFC 9110 8.6 spells it: digits only.
fn length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn is_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// What the request was, as far as the framing of its response depends on it.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub head: bool,
    pub http10: bool,
    pub websocket: bool,
}

/// A response as a client read it off zoo's connection, which zoo closed after it.
#[derive(Debug)]
pub struct Delivered {
    pub status: u16,
    pub content_type: Option<Vec<u8>>,
    pub body: Vec<u8>,
    /// The framing says the whole body arrived (a full `Content-Length`, the last chunk);
    /// false for a close-delimited body, or one cut short (which a client sees as cut).
    pub complete: bool,
}

/// Reads what zoo sent a client for one request: `Ok(None)` for a WebSocket tunnel (what
/// follows the 101 is not HTTP), else the response, or what is wrong with its framing.
///
/// # Errors
/// An empty reply, a head that does not parse or never ends, a final 1xx, a 101 nobody asked
/// for, two lengths or a length beside chunked, chunked to an HTTP/1.0 client, bytes past the
/// end of the message, and a malformed chunked body.
pub fn delivered(asked: Asked, bytes: &[u8]) -> Result<Option<Delivered>, String> {
    if bytes.is_empty() {
        return Err("an empty reply: the connection closed without a response".to_owned());
    }
    let head = head(bytes)?.ok_or("the connection closed inside the response head")?;
    if head.status == 101 {
        return if asked.websocket {
            Ok(None)
        } else {
            Err("a 101 the client did not ask for".to_owned())
        };
    }
    if (100..200).contains(&head.status) {
        return Err(format!(
            "a final {} (a client waits for the real response)",
            head.status
        ));
    }
    let rest = &bytes[head.len..];
    let lengths: Vec<&[u8]> = head.values("content-length").collect();
    let codings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    if lengths.len() > 1 {
        return Err(format!("{} Content-Length fields", lengths.len()));
    }
    if !lengths.is_empty() && !codings.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".to_owned());
    }
    if !codings.is_empty() && (codings.len() > 1 || !is_chunked(codings[0])) {
        return Err(format!("Transfer-Encoding {codings:?}, not one `chunked`"));
    }
    if !codings.is_empty() && asked.http10 {
        return Err("chunked to an HTTP/1.0 client".to_owned());
    }
    let content_type = head.values("content-type").next().map(<[u8]>::to_vec);
    let delivered = |body: &[u8], complete| Delivered {
        status: head.status,
        content_type: content_type.clone(),
        body: body.to_vec(),
        complete,
    };
    if asked.head || head.status == 204 || head.status == 304 {
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes after a response that has no body",
                rest.len()
            ));
        }
        return Ok(Some(delivered(rest, true)));
    }
    if let Some(value) = lengths.first() {
        let Some(length) = length(value) else {
            return Err(format!(
                "Content-Length {:?}",
                String::from_utf8_lossy(value)
            ));
        };
        let got = rest.len() as u64;
        if got > length {
            return Err(format!(
                "Content-Length {length} but {got} bytes followed the head"
            ));
        }
        return Ok(Some(delivered(rest, got == length)));
    }
    if !codings.is_empty() {
        return match chunked(rest)? {
            Chunked::Complete { rest: 0, body } => Ok(Some(delivered(&body, true))),
            Chunked::Complete { rest, .. } => {
                Err(format!("{rest} bytes after the chunked body's end"))
            }
            Chunked::Truncated => Ok(Some(Delivered {
                body: Vec::new(),
                ..delivered(&[], false)
            })),
        };
    }
    Ok(Some(delivered(rest, false)))
}

/// What a response from upstream means, as far as a strict reading can tell.
#[derive(Debug, PartialEq, Eq)]
pub enum Intended {
    /// A complete message with this status and body.
    Complete { status: u16, body: Vec<u8> },
    /// A well-formed message whose body ends early.
    Truncated { status: u16 },
    /// A head that does not parse, a 101, framing open to two readings, a malformed body.
    Unknown,
}

/// Reads the fake upstream's bytes, which it closed after: interim 1xx responses are skipped,
/// a `Transfer-Encoding: chunked` wins over `Content-Length` (RFC 9112 6.3), no framing means
/// the body runs to the close.
#[must_use]
pub fn intended(asked: Asked, mut bytes: &[u8]) -> Intended {
    let head = loop {
        let Ok(Some(head)) = head(bytes) else {
            return Intended::Unknown;
        };
        if head.status == 101 || !(100..200).contains(&head.status) {
            break head;
        }
        bytes = &bytes[head.len..];
    };
    let status = head.status;
    if status == 101 {
        return Intended::Unknown;
    }
    let rest = &bytes[head.len..];
    if asked.head || status == 204 || status == 304 {
        return Intended::Complete {
            status,
            body: Vec::new(),
        };
    }
    let codings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    let lengths: Vec<&[u8]> = head.values("content-length").collect();
    match (codings.as_slice(), lengths.as_slice()) {
        ([coding], _) if is_chunked(coding) => match chunked(rest) {
            Ok(Chunked::Complete { body, .. }) => Intended::Complete { status, body },
            Ok(Chunked::Truncated) => Intended::Truncated { status },
            Err(_) => Intended::Unknown,
        },
        ([], [value]) => match length(value).and_then(|length| usize::try_from(length).ok()) {
            Some(length) if rest.len() >= length => Intended::Complete {
                status,
                body: rest[..length].to_vec(),
            },
            Some(_) => Intended::Truncated { status },
            None => Intended::Unknown,
        },
        ([], []) => Intended::Complete {
            status,
            body: rest.to_vec(),
        },
        _ => Intended::Unknown,
    }
}

/// Checks this oracle against answers known by hand; the targets call it when they start, so
/// every fuzz run first shows that the oracle can fail. (The fuzz crate's own unit tests cannot
/// link: the instrumented code needs libFuzzer's runtime, which only a target's binary has.)
///
/// # Panics
/// When a reading here is not the one RFC 9112 gives.
pub fn check_known_answers() {
    delivered_reads_each_framing();
    delivered_rejects_what_a_client_could_misread();
    intended_reads_the_upstream_as_rfc_9112_does();
}
const GET: Asked = Asked {
    head: false,
    http10: false,
    websocket: false,
};

fn delivered_reads_each_framing() {
    let read = |bytes: &[u8]| delivered(GET, bytes).unwrap().unwrap();
    let full = read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!((full.body.as_slice(), full.complete), (&b"hello"[..], true));
    let cut = read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel");
    assert!(!cut.complete);
    let chunks = read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\nt: 1\r\n\r\n");
    assert_eq!(
        (chunks.body.as_slice(), chunks.complete),
        (&b"hello"[..], true)
    );
    let open = read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel");
    assert!(!open.complete);
    let close = read(b"HTTP/1.1 200 OK\r\n\r\nanything");
    assert!(!close.complete);
}

fn delivered_rejects_what_a_client_could_misread() {
    for bytes in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\ncontent-len",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nhel",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\nx",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\n",
    ] {
        assert!(
            delivered(GET, bytes).is_err(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let http10 = Asked {
        http10: true,
        ..GET
    };
    assert!(
        delivered(
            http10,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .is_err()
    );
}

fn intended_reads_the_upstream_as_rfc_9112_does() {
    assert_eq!(
        intended(GET, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        Intended::Complete { status: 200, body: b"hello".to_vec() }
    );
    assert_eq!(
        intended(GET, b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello"),
        Intended::Truncated { status: 200 }
    );
    assert_eq!(
        intended(GET, b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nhello"),
        Intended::Complete {
            status: 200,
            body: b"hel".to_vec()
        }
    );
    assert_eq!(
        intended(GET, b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nhel"),
        Intended::Unknown
    );
    assert_eq!(
        intended(
            GET,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
        ),
        Intended::Unknown
    );
    assert_eq!(
        intended(GET, b"HTTP/1.0 200 OK\r\n\r\nto the close"),
        Intended::Complete {
            status: 200,
            body: b"to the close".to_vec()
        }
    );
}
