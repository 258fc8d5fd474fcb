//! zoo's own HTTP/1.1 codec (`zoo::h1`) on arbitrary bytes: `parse_request_head`, and, when a
//! head parses with chunked framing, the bytes after it through `ChunkedDecoder`, fed in
//! pieces as the engine's reads would hand them. The first input byte picks the head limit
//! and the piece size; the rest is the connection's bytes.
//!
//! Checks, beyond "no panic" (overflow checks are on): `consumed` never exceeds what was
//! given; a parsed head is exactly `consumed` bytes (it parses alone, and any shorter prefix is
//! "read more"); a refusal's status is one the codec may give; every data range lies inside
//! the input; a body decodes the same whether fed whole or in pieces; trailers and response
//! heads written by `h1`'s writers read back.
//!
//! Input that starts with `HTTP/` is an upstream's response instead: `parse_response_head`
//! (bytes only: the same prefix checks, no `Content-Length` beside chunked framing, no body
//! for HEAD's answer), its chunked body decoded whole and in pieces as zoo's client reads it,
//! and the head's fields written back as a request by `write_request_head` read back.
#![no_main]

use http::{StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use zoo::h1::{
    BodyFraming, ChunkedDecoder, Decoded, HeadLimits, ResponseBodyFraming, ResponseFraming,
    parse_request_head, parse_response_head, write_last_chunk, write_request_head,
    write_response_head,
};

const MAX_TRAILER_BYTES: usize = 1024;

/// What a body decoded to: its data, and its trailers and length once it ended (`None` when
/// the input ran out first); or the decoder's error.
type Outcome = Result<(Vec<u8>, Option<(Option<http::HeaderMap>, usize)>), String>;

/// Feeds `input` to a fresh decoder `piece` bytes at a time, keeping what it has not consumed,
/// and checks each answer's offsets.
fn decode(input: &[u8], piece: usize, max_trailer_bytes: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(max_trailer_bytes);
    let (mut pending, mut data, mut taken) = (Vec::new(), Vec::new(), 0_usize);
    for chunk in input.chunks(piece) {
        pending.extend_from_slice(chunk);
        // Every answer but NeedMore and Done consumes at least one byte.
        for _ in 0..=pending.len() {
            match decoder.decode(&pending).map_err(|e| e.to_string())? {
                Decoded::Data { consumed, data: range } => {
                    assert!(!range.is_empty(), "empty data range");
                    assert_eq!(range.end, consumed);
                    assert!(consumed <= pending.len(), "consumed past the input");
                    data.extend_from_slice(&pending[range]);
                    pending.drain(..consumed);
                    taken += consumed;
                }
                Decoded::NeedMore { consumed } => {
                    assert_eq!(consumed, pending.len(), "NeedMore left bytes unread");
                    taken += consumed;
                    pending.clear();
                    break;
                }
                Decoded::Done { consumed, trailers } => {
                    assert!(consumed <= pending.len(), "consumed past the input");
                    return Ok((data, Some((trailers, taken + consumed))));
                }
            }
        }
        assert!(pending.is_empty(), "decoder made no progress");
    }
    Ok((data, None))
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&control, input)) = bytes.split_first() else {
        return;
    };
    let max_head_bytes = if control & 1 == 0 { 256 * 1024 } else { 16 + usize::from(control) * 4 };
    let piece = 1 + usize::from(control >> 4);
    let limits = HeadLimits { max_head_bytes };
    if input.starts_with(b"HTTP/") {
        response(input, max_head_bytes, piece);
        return;
    }

    let (head, consumed) = match parse_request_head(input, &limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(input.len() < max_head_bytes, "incomplete past the limit");
            return;
        }
        Err(error) => {
            let status = error.status().as_u16();
            assert!(matches!(status, 400 | 431 | 501 | 505), "{error}: {status}");
            return;
        }
    };
    assert!(consumed > 0 && consumed <= input.len().min(max_head_bytes));
    match parse_request_head(&input[..consumed], &limits) {
        Ok(Some((_, again))) => assert_eq!(again, consumed, "head is not its own bytes"),
        other => panic!("head alone does not parse: {other:?}"),
    }
    assert!(
        matches!(parse_request_head(&input[..consumed - 1], &limits), Ok(None)),
        "a prefix of a head is not `read more`"
    );
    let parts = &head.parts;
    assert!(parts.version == Version::HTTP_10 || parts.version == Version::HTTP_11);
    assert!(parts.headers.get_all(http::header::HOST).iter().count() <= 1);

    // The head's fields, written back as a response, read back whole.
    let mut out = Vec::new();
    write_response_head(
        &mut out,
        StatusCode::OK,
        parts.version,
        &parts.headers,
        ResponseFraming::Length(7),
        head.keep_alive,
    );
    let mut slots = vec![httparse::EMPTY_HEADER; parts.headers.len() + 2];
    let mut response = httparse::Response::new(&mut slots);
    assert_eq!(response.parse(&out), Ok(httparse::Status::Complete(out.len())));

    if head.framing != BodyFraming::Chunked {
        return;
    }
    assert!(parts.version == Version::HTTP_11 && !parts.headers.contains_key("content-length"));
    let body = &input[consumed..];
    let whole = decode(body, body.len().max(1), MAX_TRAILER_BYTES);
    let in_pieces = decode(body, piece, MAX_TRAILER_BYTES);
    assert_eq!(whole, in_pieces, "the split changed the outcome");
    if let Ok((_, Some((trailers, end)))) = &whole {
        assert!(*end <= body.len());
        if let Some(trailers) = trailers {
            let mut last = Vec::new();
            write_last_chunk(&mut last, Some(trailers));
            // Written with `: ` after each name, the section may be longer than it came.
            let again = decode(&last, last.len(), last.len());
            assert_eq!(again, Ok((Vec::new(), Some((Some(trailers.clone()), last.len())))));
        }
    }
});

/// An upstream's response: its head, then a chunked body.
fn response(input: &[u8], max_head_bytes: usize, piece: usize) {
    let get = http::Method::GET;
    let (head, consumed) = match parse_response_head(input, max_head_bytes, &get) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(input.len() < max_head_bytes, "incomplete past the limit");
            return;
        }
        Err(_) => return,
    };
    assert!(consumed > 0 && consumed <= input.len().min(max_head_bytes));
    match parse_response_head(&input[..consumed], max_head_bytes, &get) {
        Ok(Some((_, again))) => assert_eq!(again, consumed, "head is not its own bytes"),
        other => panic!("head alone does not parse: {other:?}"),
    }
    assert!(
        matches!(parse_response_head(&input[..consumed - 1], max_head_bytes, &get), Ok(None)),
        "a prefix of a head is not `read more`"
    );
    let answer_to_head = parse_response_head(input, max_head_bytes, &http::Method::HEAD);
    assert!(matches!(
        answer_to_head,
        Ok(Some((ref head, _))) if head.framing == ResponseBodyFraming::Empty
    ));
    if head.framing == ResponseBodyFraming::UntilClose {
        assert!(!head.keep_alive, "a body ended by the close keeps the connection");
    }

    // The head's fields, written back as a request, read back whole.
    let mut out = Vec::new();
    write_request_head(&mut out, &get, "/", Version::HTTP_11, &head.headers);
    let mut slots = vec![httparse::EMPTY_HEADER; head.headers.len() + 1];
    let mut request = httparse::Request::new(&mut slots);
    assert_eq!(request.parse(&out), Ok(httparse::Status::Complete(out.len())));

    if head.framing != ResponseBodyFraming::Chunked {
        return;
    }
    assert!(!head.headers.contains_key("content-length"));
    let body = &input[consumed..];
    let whole = decode(body, body.len().max(1), MAX_TRAILER_BYTES);
    assert_eq!(whole, decode(body, piece, MAX_TRAILER_BYTES), "the split changed the outcome");
}
