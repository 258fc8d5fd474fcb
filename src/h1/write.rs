//! Response heads and chunk framing as bytes, appended to the caller's buffer.
//!
//! The head carries the framing and connection fields zoo decided, after the fields the proxy
//! kept (it removed hop-by-hop and framing fields, so none is written twice). Field names go
//! out lowercased, as `HeaderName` holds them and as hyper writes them; the status line echoes
//! the client's version (HTTP/1.0 to an HTTP/1.0 client), as hyper does, so that the two
//! engines answer alike.

use std::io::Write;

use http::header::HeaderMap;
use http::{StatusCode, Version};

/// How a response body is delimited on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No framing field: a response without a body (1xx, 204, 304, HEAD's answer keeps its
    /// `Content-Length` as `Length`), or one that ends when the connection closes.
    None,
    Length(u64),
    /// Only to an HTTP/1.1 client (RFC 9112 7.1).
    Chunked,
}

/// Writes a response's status line, `headers`, `Connection: close` when `!keep_alive` to an
/// HTTP/1.1 client (`Connection: keep-alive` to an HTTP/1.0 client kept alive), the framing
/// field, and the empty line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    framing: ResponseFraming,
    keep_alive: bool,
) {
    let http10 = version == Version::HTTP_10;
    debug_assert!(
        !(http10 && framing == ResponseFraming::Chunked),
        "chunked framing to an HTTP/1.0 client"
    );
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    write_status(out, status);
    write_fields(out, headers);
    // Before the framing field, and none to an HTTP/1.0 client that is closed (closing is
    // its default): where and what hyper writes, so that the engines' heads are equal.
    match (keep_alive, http10) {
        (false, false) => out.extend_from_slice(b"connection: close\r\n"),
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, false) | (false, true) => {}
    }
    match framing {
        ResponseFraming::None => {}
        ResponseFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim response (`HTTP/1.1 100 Continue\r\n\r\n`, 103 Early Hints, ...).
/// HTTP/1.1 only: a server sends no 1xx to an HTTP/1.0 client (RFC 9110 15.2).
pub fn write_informational(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    debug_assert!(status.is_informational(), "{status} is not a 1xx");
    out.extend_from_slice(b"HTTP/1.1 ");
    write_status(out, status);
    write_fields(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// A chunk's size line, `{len:X}\r\n` (uppercase hex, as hyper writes it); the data and
/// [`CHUNK_END`] follow. Not for `len == 0`,
/// which ends the body ([`write_last_chunk`]).
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len > 0, "an empty chunk ends the body");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{len:X}\r\n");
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk, the trailers if any, and the empty line ending the body.
pub fn write_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        write_fields(out, trailers);
    }
    out.extend_from_slice(b"\r\n");
}

/// `200 OK\r\n`; an unregistered code gets an empty reason phrase (RFC 9112 4 allows it).
fn write_status(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}
