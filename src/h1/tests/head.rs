use http::{Method, StatusCode, Version};

use crate::h1::{BodyFraming, HeadError, HeadLimits, RequestHead, parse_request_head};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 256 * 1024,
};

fn parse(bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request_head(bytes, &LIMITS)
}

fn complete(bytes: &[u8]) -> (RequestHead, usize) {
    match parse(bytes) {
        Ok(Some(parsed)) => parsed,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

/// The status a refused head gets.
fn refused(bytes: &[u8]) -> StatusCode {
    match parse(bytes) {
        Err(error) => error.status(),
        other => panic!(
            "{:?} was not refused: {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn assert_all_refused(cases: &[&[u8]], status: StatusCode) {
    for bytes in cases {
        assert_eq!(
            refused(bytes),
            status,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Each head of `cases` parses, and `read` of it gives the value beside it.
fn assert_each_reads<T: PartialEq + std::fmt::Debug>(
    cases: &[(&[u8], T)],
    read: impl Fn(&RequestHead) -> T,
) {
    for (bytes, expected) in cases {
        let got = read(&complete(bytes).0);
        assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn request_head_parses_method_target_version_and_fields_in_order() {
    let bytes = b"POST /a/../b?q=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabcGET";
    let (head, consumed) = complete(bytes);
    assert_eq!(&bytes[consumed..], b"abcGET");
    assert_eq!(head.parts.method, Method::POST);
    assert_eq!(head.parts.uri, "/a/../b?q=1");
    assert_eq!(head.parts.version, Version::HTTP_11);
    let values: Vec<_> = head.parts.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(head.framing, BodyFraming::Length(3));
    assert!(head.keep_alive && !head.expect_continue && !head.upgrade);
}

#[test]
fn request_head_keeps_each_target_form_as_sent() {
    for target in ["/p?q", "http://h:1/p?q", "*"] {
        let bytes = format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(complete(bytes.as_bytes()).0.parts.uri, target);
    }
    let (head, _) = complete(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
    assert_eq!(
        head.parts.uri.authority().map(|a| a.as_str()),
        Some("h:443")
    );
}

#[test]
fn request_head_incomplete_is_none_until_the_empty_line() {
    let bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for end in 0..bytes.len() {
        assert!(
            matches!(parse(&bytes[..end]), Ok(None)),
            "prefix of {end} bytes"
        );
    }
    assert_eq!(complete(bytes).1, bytes.len());
}

#[test]
fn request_head_skips_empty_lines_before_the_request_line_within_the_limit() {
    let bytes = b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(complete(bytes).1, bytes.len());
    // They count against the head's bytes: a stream of them is refused at the limit.
    let limits = HeadLimits { max_head_bytes: 64 };
    let empty_lines = b"\r\n".repeat(32);
    assert!(matches!(
        parse_request_head(&empty_lines[..62], &limits),
        Ok(None)
    ));
    let error = parse_request_head(&empty_lines, &limits).unwrap_err();
    assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// `start` then `count` fields `fN: v`, and the empty line.
fn head_of_fields(start: &[u8], count: usize) -> Vec<u8> {
    let mut bytes = start.to_vec();
    for i in 0..count {
        bytes.extend_from_slice(format!("f{i}: v\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

#[test]
fn request_head_limit_is_bytes_not_fields() {
    let bytes = head_of_fields(b"GET / HTTP/1.1\r\nHost: x\r\n", 1000);
    let (head, consumed) = complete(&bytes);
    assert_eq!(consumed, bytes.len());
    assert_eq!(head.parts.headers.len(), 1001);
}

#[test]
fn request_head_over_the_byte_limit_is_431_complete_or_not() {
    let limits = HeadLimits { max_head_bytes: 64 };
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nA: {}\r\n\r\n", "v".repeat(60));
    let error = parse_request_head(head.as_bytes(), &limits).unwrap_err();
    assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let error = parse_request_head(&head.as_bytes()[..64], &limits).unwrap_err();
    assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(matches!(
        parse_request_head(&head.as_bytes()[..63], &limits),
        Ok(None)
    ));
    let exact = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let limits = HeadLimits {
        max_head_bytes: exact.len(),
    };
    assert!(matches!(parse_request_head(exact, &limits), Ok(Some(_))));
}

#[test]
fn request_head_framing_conflicts_are_400() {
    let bad: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n",
        // A list in one field, even of equal values (hyper, nginx and Caddy refuse it).
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3,\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    assert_all_refused(bad, StatusCode::BAD_REQUEST);
}

#[test]
fn request_head_unknown_coding_before_chunked_is_501() {
    for coding in [
        "gzip, chunked",
        "GZIP,chunked",
        "deflate\r\nTransfer-Encoding: chunked",
    ] {
        let bytes = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n");
        assert_eq!(
            refused(bytes.as_bytes()),
            StatusCode::NOT_IMPLEMENTED,
            "{coding}"
        );
    }
}

#[test]
fn request_head_framing_that_is_valid_is_read() {
    let cases: &[(&[u8], BodyFraming)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", BodyFraming::Empty),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n",
            BodyFraming::Length(7),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            BodyFraming::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
            BodyFraming::Length(u64::MAX),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED \r\n\r\n",
            BodyFraming::Chunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\n\r\n",
            BodyFraming::Chunked,
        ),
        (
            b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n",
            BodyFraming::Length(2),
        ),
    ];
    assert_each_reads(cases, |head| head.framing);
}

#[test]
fn request_head_host_missing_or_repeated_is_400() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        refused(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        StatusCode::BAD_REQUEST
    );
    // HTTP/1.0 has no Host requirement.
    assert!(
        complete(b"GET / HTTP/1.0\r\n\r\n")
            .0
            .parts
            .headers
            .is_empty()
    );
}

#[test]
fn request_head_syntax_errors_are_400() {
    let bad: &[&[u8]] = &[
        // obs-fold
        b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\t2\r\n\r\n",
        // whitespace before the colon, or before the first field
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
        // control characters in a value; a bare CR
        b"GET / HTTP/1.1\r\nHost: x\r\nA: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: a\x1bb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: a\rb\r\n\r\n",
        // invalid tokens: field name, method
        b"GET / HTTP/1.1\r\nHost: x\r\nA(b): 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA\x80: 1\r\n\r\n",
        // request line shapes
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"GET /\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
        b"GET / HTTP/11\r\nHost: x\r\n\r\n",
        // a target that is no URI
        b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
        // an empty line after empty lines is no request line
        b"\r\n\r\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    assert_all_refused(bad, StatusCode::BAD_REQUEST);
}

#[test]
fn request_head_other_major_versions_are_505_and_higher_minors_are_1_1() {
    for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1", "HTTP/9.9"] {
        let bytes = format!("GET / {version}\r\nHost: x\r\n\r\n");
        assert_eq!(
            refused(bytes.as_bytes()),
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "{version}"
        );
        // Known as soon as the version's eight bytes are in.
        let line = format!("GET / {version}");
        assert_eq!(
            refused(line.as_bytes()),
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "{version}"
        );
        assert!(
            matches!(parse(&line.as_bytes()[..line.len() - 1]), Ok(None)),
            "{version}"
        );
    }
    let bytes = b"GET / HTTP/1.2\r\nHost: x\r\nA: b\r\n\r\n";
    let (head, consumed) = complete(bytes);
    assert_eq!(
        (head.parts.version, consumed),
        (Version::HTTP_11, bytes.len())
    );
    assert!(matches!(parse(&bytes[..bytes.len() - 1]), Ok(None)));
}

#[test]
fn request_head_keep_alive_follows_version_and_connection() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, CLOSE\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo\r\nConnection: Close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ];
    assert_each_reads(cases, |head| head.keep_alive);
}

#[test]
fn request_head_expect_continue_and_upgrade_need_http_1_1() {
    let cases: &[(&[u8], (bool, bool))] = &[
        (
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
            (true, false),
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continueX\r\n\r\n",
            (false, false),
        ),
        (
            b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
            (false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            (false, true),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n",
            (false, true),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            (false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n",
            (false, false),
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            (false, false),
        ),
    ];
    assert_each_reads(cases, |head| (head.expect_continue, head.upgrade));
}

#[test]
fn head_error_status_covers_each_variant() {
    use http::header::HOST;
    let cases = [
        (HeadError::TooLarge { limit: 1 }, 431),
        (HeadError::TooManyFields, 431),
        (
            HeadError::Malformed {
                cause: httparse::Error::Token,
            },
            400,
        ),
        (
            HeadError::UnsupportedVersion {
                major: '2',
                minor: '0',
            },
            505,
        ),
        (HeadError::InvalidMethod, 400),
        (
            HeadError::InvalidTarget {
                source: http::Uri::try_from("\x7f").unwrap_err(),
            },
            400,
        ),
        (HeadError::InvalidFieldName, 400),
        (HeadError::InvalidFieldValue { name: HOST }, 400),
        (HeadError::MissingHost, 400),
        (HeadError::DuplicateHost, 400),
        (HeadError::LengthWithTransferEncoding, 400),
        (HeadError::InvalidContentLength, 400),
        (HeadError::ConflictingContentLength, 400),
        (HeadError::TransferEncodingInHttp10, 400),
        (HeadError::ChunkedNotLast, 400),
        (HeadError::ChunkedTwice, 400),
        (HeadError::UnsupportedTransferCoding, 501),
    ];
    for (error, status) in cases {
        assert_eq!(error.status().as_u16(), status, "{error}");
    }
}

#[test]
fn request_head_of_many_fields_before_a_body_of_newlines_parses() {
    let mut bytes = head_of_fields(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n",
        300,
    );
    let head_len = bytes.len();
    bytes.resize(head_len + 100_000, b'\n');
    let (head, consumed) = complete(&bytes);
    assert_eq!((consumed, head.parts.headers.len()), (head_len, 302));
}

#[test]
fn request_head_of_more_fields_than_a_header_map_holds_is_431() {
    // http's HeaderMap holds 32,768 fields; 40,000 of five bytes are still under 256 KiB.
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    bytes.extend_from_slice(&b"a:b\r\n".repeat(40_000));
    bytes.extend_from_slice(b"\r\n");
    assert!(bytes.len() < LIMITS.max_head_bytes);
    assert_eq!(refused(&bytes), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}
