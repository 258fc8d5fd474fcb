//! Request heads as zoo's HTTP/1.1 client writes them to an upstream, framed as hyper's client
//! frames them, so that the two clients send an app the same bytes (tests/integration/
//! engines.rs compares them):
//!
//! - a body known to be empty: the fields as they are (a client's `Content-Length: 0` stays),
//!   no `Transfer-Encoding`;
//! - otherwise a valid `Content-Length` already there, else the body's exact length as a new
//!   `Content-Length` (the client's `Transfer-Encoding` is hop-by-hop: never passed on);
//! - a body of unknown length is chunked with a new `transfer-encoding: chunked`, except for
//!   GET, HEAD and CONNECT, whose body is not sent at all (hyper's rule: those methods
//!   "almost never have bodies");
//! - a chunked body carries only the trailers its `Trailer` field names.
//!
//! Field names go out lowercased (as `HeaderName` holds them), in the map's order.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

/// What is known of a request body before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingBody {
    /// It has ended already: nothing to send.
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// A stream of unknown length.
    Unknown,
}

/// How the request body goes on the upstream's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// This many bytes as they are (0: none at all).
    Length(u64),
    Chunked,
}

/// Decides the framing of an HTTP/1.1 request with `body`, and sets the framing fields in
/// `headers` to match (hyper's client's `set_length`).
pub fn frame_request(
    method: &Method,
    headers: &mut HeaderMap,
    body: OutgoingBody,
) -> RequestFraming {
    // The client's `Transfer-Encoding` is hop-by-hop (the proxy removed it); whatever is
    // left must not contradict the framing decided here.
    headers.remove(header::TRANSFER_ENCODING);
    let length = match body {
        OutgoingBody::Empty => return RequestFraming::Length(0),
        OutgoingBody::Known(length) => Some(length),
        OutgoingBody::Unknown => None,
    };
    if let Some(existing) = super::fields::listed_content_length(headers) {
        return RequestFraming::Length(existing);
    }
    match length {
        Some(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            RequestFraming::Length(length)
        }
        None if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
            RequestFraming::Length(0)
        }
        None => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            // A valid Content-Length would have been taken above: drop an invalid one.
            headers.remove(header::CONTENT_LENGTH);
            RequestFraming::Chunked
        }
    }
}

/// Writes `METHOD target HTTP/1.1`, the fields and the empty line. `version` is the request's
/// (HTTP/1.0 stays 1.0; anything else goes as 1.1, as hyper coerces it).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    version: Version,
    headers: &HeaderMap,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    super::write::write_fields(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// The trailers of a chunked request that its `Trailer` field names (hyper's client drops the
/// others); `None` when none is left.
#[must_use]
pub fn allowed_trailers(request_headers: &HeaderMap, trailers: &HeaderMap) -> Option<HeaderMap> {
    let allowed: Vec<HeaderName> = request_headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let mut kept = HeaderMap::new();
    for (name, value) in trailers {
        if allowed.contains(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(
        method: &Method,
        pairs: &[(&'static str, &'static str)],
        body: OutgoingBody,
    ) -> (String, RequestFraming) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let framing = frame_request(method, &mut headers, body);
        let mut out = Vec::new();
        write_request_head(&mut out, method, "/p?q=1", Version::HTTP_11, &headers);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn requests_are_framed_as_hypers_client_frames_them() {
        let host = ("host", "x");
        for (method, pairs, body, head, framing) in [
            (
                Method::GET,
                vec![host],
                OutgoingBody::Empty,
                "host: x\r\n",
                RequestFraming::Length(0),
            ),
            (
                Method::POST,
                vec![host, ("content-length", "0")],
                OutgoingBody::Empty,
                "host: x\r\ncontent-length: 0\r\n",
                RequestFraming::Length(0),
            ),
            (
                Method::POST,
                vec![("content-length", "5"), host],
                OutgoingBody::Known(5),
                "content-length: 5\r\nhost: x\r\n",
                RequestFraming::Length(5),
            ),
            (
                Method::POST,
                vec![host],
                OutgoingBody::Known(5),
                "host: x\r\ncontent-length: 5\r\n",
                RequestFraming::Length(5),
            ),
            (
                Method::POST,
                vec![host],
                OutgoingBody::Unknown,
                "host: x\r\ntransfer-encoding: chunked\r\n",
                RequestFraming::Chunked,
            ),
            (
                Method::GET,
                vec![host],
                OutgoingBody::Unknown,
                "host: x\r\n",
                RequestFraming::Length(0),
            ),
            (
                Method::PUT,
                vec![
                    host,
                    ("content-length", "bad"),
                    ("transfer-encoding", "gzip"),
                ],
                OutgoingBody::Unknown,
                "host: x\r\ntransfer-encoding: chunked\r\n",
                RequestFraming::Chunked,
            ),
        ] {
            let (got, got_framing) = written(&method, &pairs, body);
            let start = format!("{method} /p?q=1 HTTP/1.1\r\n");
            assert_eq!(
                got,
                format!("{start}{head}\r\n"),
                "{method} {pairs:?} {body:?}"
            );
            assert_eq!(got_framing, framing, "{method} {pairs:?} {body:?}");
        }
    }

    #[test]
    fn only_the_trailers_the_trailer_field_names_are_kept() {
        let mut request = HeaderMap::new();
        request.append(header::TRAILER, HeaderValue::from_static("x-sum, X-Other"));
        let mut trailers = HeaderMap::new();
        trailers.append("x-sum", HeaderValue::from_static("5"));
        trailers.append("x-secret", HeaderValue::from_static("no"));
        let kept = allowed_trailers(&request, &trailers).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["x-sum"], "5");
        assert!(allowed_trailers(&HeaderMap::new(), &trailers).is_none());
    }
}
