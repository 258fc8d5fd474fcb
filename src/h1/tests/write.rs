use http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use http::{StatusCode, Version};

use crate::h1::{
    CHUNK_END, ResponseFraming, write_chunk_header, write_informational, write_last_chunk,
    write_response_head,
};

fn cookies() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
    headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
    headers.insert("X-Up", HeaderValue::from_static("yes"));
    headers
}

fn head(
    status: StatusCode,
    version: Version,
    framing: ResponseFraming,
    keep_alive: bool,
) -> String {
    let mut out = b"kept".to_vec();
    write_response_head(&mut out, status, version, &cookies(), framing, keep_alive);
    String::from_utf8(out).unwrap()
}

#[test]
fn response_head_has_fields_in_order_then_framing_then_connection() {
    assert_eq!(
        head(
            StatusCode::OK,
            Version::HTTP_11,
            ResponseFraming::Length(1234),
            true
        ),
        "keptHTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-up: yes\r\n\
         content-length: 1234\r\n\r\n"
    );
    assert_eq!(
        head(
            StatusCode::NOT_FOUND,
            Version::HTTP_11,
            ResponseFraming::Chunked,
            false
        ),
        "keptHTTP/1.1 404 Not Found\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-up: yes\r\n\
         connection: close\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn response_head_to_http_1_0_says_1_0_and_keep_alive_only_when_kept() {
    let kept = head(
        StatusCode::OK,
        Version::HTTP_10,
        ResponseFraming::Length(0),
        true,
    );
    assert!(kept.starts_with("keptHTTP/1.0 200 OK\r\n"), "{kept}");
    assert!(
        kept.ends_with("connection: keep-alive\r\ncontent-length: 0\r\n\r\n"),
        "{kept}"
    );
    // Closing is HTTP/1.0's default: no field says it.
    let closed = head(
        StatusCode::OK,
        Version::HTTP_10,
        ResponseFraming::None,
        false,
    );
    assert!(closed.ends_with("x-up: yes\r\n\r\n"), "{closed}");
}

#[test]
fn response_head_unregistered_status_has_an_empty_reason() {
    let status = StatusCode::from_u16(599).unwrap();
    let written = head(status, Version::HTTP_11, ResponseFraming::None, true);
    assert!(written.starts_with("keptHTTP/1.1 599 \r\n"), "{written}");
}

#[test]
fn informational_response_is_a_status_line_fields_and_an_empty_line() {
    let mut out = Vec::new();
    write_informational(&mut out, StatusCode::CONTINUE, &HeaderMap::new());
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    let mut hints = HeaderMap::new();
    hints.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
    out.clear();
    write_informational(&mut out, StatusCode::from_u16(103).unwrap(), &hints);
    assert_eq!(
        out,
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
    );
}

#[test]
fn chunk_framing_is_hex_size_data_crlf_and_a_last_chunk() {
    let mut out = Vec::new();
    for data in [&b"0123456789abcdef!"[..], b"x"] {
        write_chunk_header(&mut out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(CHUNK_END);
    }
    write_last_chunk(&mut out, None);
    assert_eq!(out, b"11\r\n0123456789abcdef!\r\n1\r\nx\r\n0\r\n\r\n");
    out.clear();
    write_chunk_header(&mut out, 0xbeef);
    assert_eq!(out, b"BEEF\r\n");
    out.clear();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    write_last_chunk(&mut out, Some(&trailers));
    assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
}
