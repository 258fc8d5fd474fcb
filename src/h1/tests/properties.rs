//! Properties of the codec over generated messages: chunked bodies round-trip through the
//! writers and the decoder at any split, the decoder never reads past a body, and each class
//! of framing error the RFC rejects is rejected wherever it is put; request heads round-trip
//! and every prefix of one is "read more".

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::h1::{
    BodyFraming, CHUNK_END, ChunkError, ChunkedDecoder, Decoded, HeadLimits, ResponseFraming,
    parse_request_head, write_chunk_header, write_last_chunk, write_response_head,
};

const MAX_TRAILER_BYTES: usize = 4096;

/// A chunked body as bytes, and where its framing is, for the properties that break it.
#[derive(Debug)]
struct Encoded {
    bytes: Vec<u8>,
    /// Offsets of each size line's first byte.
    size_lines: Vec<usize>,
    /// Offsets of the CR of each framing CRLF (size lines, after data, trailers, the end).
    framing_crs: Vec<usize>,
    /// Offsets of the CR after each chunk's data.
    data_crs: Vec<usize>,
}

/// A chunk extension as a client may send it: `;name`, `;name=token`, `;name="quoted"`,
/// with optional whitespace before the `;`.
fn extensions() -> impl Strategy<Value = String> {
    r#"([ \t]?;[a-zA-Z0-9!#$&'*+.^_|~-]{1,6}(=([a-zA-Z0-9-]{1,6}|"[ a-z;=,]{0,6}"))?){0,3}"#
}

fn trailer_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        ("[a-zA-Z][a-zA-Z0-9-]{0,8}", "([!-~]([ -~\t]{0,12}[!-~])?)?"),
        0..4,
    )
}

fn encode(
    body: &[u8],
    sizes: &[usize],
    extensions: &[String],
    upper_hex: bool,
    leading_zeros: usize,
    trailers: &HeaderMap,
) -> Encoded {
    let mut e = Encoded {
        bytes: Vec::new(),
        size_lines: Vec::new(),
        framing_crs: Vec::new(),
        data_crs: Vec::new(),
    };
    let mut rest = body;
    let mut chunk = 0;
    while !rest.is_empty() {
        let len = sizes[chunk % sizes.len()].min(rest.len());
        let (data, tail) = rest.split_at(len);
        e.size_lines.push(e.bytes.len());
        let zeros = "0".repeat(leading_zeros);
        let ext = &extensions[chunk % extensions.len()];
        if upper_hex || leading_zeros > 0 || !ext.is_empty() {
            let size = if upper_hex {
                format!("{len:X}")
            } else {
                format!("{len:x}")
            };
            e.bytes
                .extend_from_slice(format!("{zeros}{size}{ext}").as_bytes());
            e.framing_crs.push(e.bytes.len());
            e.bytes.extend_from_slice(b"\r\n");
        } else {
            write_chunk_header(&mut e.bytes, len);
            e.framing_crs.push(e.bytes.len() - 2);
        }
        e.bytes.extend_from_slice(data);
        e.framing_crs.push(e.bytes.len());
        e.data_crs.push(e.bytes.len());
        e.bytes.extend_from_slice(CHUNK_END);
        rest = tail;
        chunk += 1;
    }
    e.size_lines.push(e.bytes.len());
    let start = e.bytes.len();
    write_last_chunk(&mut e.bytes, (!trailers.is_empty()).then_some(trailers));
    e.framing_crs.extend(
        e.bytes[start..]
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n")
            .map(|(at, _)| start + at),
    );
    e
}

fn trailer_map(fields: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// What the engine does: bytes arrive in `pieces`; the decoder sees what is unconsumed.
/// Returns the data, the trailers and how many bytes the body took, or the decoder's error,
/// or `Ok(None)` when the pieces ran out first.
#[allow(clippy::type_complexity)]
fn feed(pieces: &[&[u8]]) -> Result<Option<(Vec<u8>, Option<HeaderMap>, usize)>, ChunkError> {
    let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
    let (mut pending, mut data, mut taken) = (Vec::new(), Vec::new(), 0);
    for piece in pieces {
        pending.extend_from_slice(piece);
        // Each turn but the last consumes at least one byte.
        for _ in 0..=pending.len() {
            match decoder.decode(&pending)? {
                Decoded::Data {
                    consumed,
                    data: range,
                } => {
                    assert!(
                        !range.is_empty() && range.end == consumed && consumed <= pending.len()
                    );
                    data.extend_from_slice(&pending[range]);
                    pending.drain(..consumed);
                    taken += consumed;
                }
                Decoded::NeedMore { consumed } => {
                    assert_eq!(consumed, pending.len(), "NeedMore left input unread");
                    pending.clear();
                    taken += consumed;
                    break;
                }
                Decoded::Done { consumed, trailers } => {
                    assert!(consumed <= pending.len());
                    return Ok(Some((data, trailers, taken + consumed)));
                }
            }
        }
    }
    Ok(None)
}

fn split<'a>(bytes: &'a [u8], at: &[Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[from..cut]);
        from = cut;
    }
    pieces
}

fn any_body() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<String>, bool, usize)> {
    (
        prop::collection::vec(any::<u8>(), 0..1500),
        prop::collection::vec(1_usize..400, 1..8),
        prop::collection::vec(extensions(), 1..4),
        any::<bool>(),
        0_usize..3,
    )
}

/// A body, its trailers, and the body chunked with them.
fn any_encoded() -> impl Strategy<Value = (Vec<u8>, HeaderMap, Encoded)> {
    (any_body(), trailer_fields()).prop_map(|((body, sizes, exts, upper, zeros), fields)| {
        let trailers = trailer_map(&fields);
        let encoded = encode(&body, &sizes, &exts, upper, zeros, &trailers);
        (body, trailers, encoded)
    })
}

/// A valid encoded body (no trailing bytes) and its decoded outcome must be an error after
/// `mutate`; fed whole and byte by byte.
fn assert_rejected(bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        feed(&[bytes]).is_err(),
        "accepted {:?}",
        String::from_utf8_lossy(bytes)
    );
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    prop_assert!(feed(&bytewise).is_err());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn chunked_round_trip_at_any_split(
        (body, trailers, encoded) in any_encoded(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        trailing in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut wire = encoded.bytes.clone();
        wire.extend_from_slice(&trailing);
        let decoded = feed(&split(&wire, &cuts)).unwrap();
        let (data, got_trailers, taken) = decoded.expect("body ended");
        prop_assert_eq!(data, body);
        prop_assert_eq!(got_trailers, (!trailers.is_empty()).then_some(trailers));
        // Never past the framing: the trailing bytes (the next request) are left alone.
        prop_assert_eq!(taken, encoded.bytes.len());
    }

    #[test]
    fn chunked_any_prefix_is_incomplete_not_an_error(
        (_, _, encoded) in any_encoded(),
        cut in any::<Index>(),
    ) {
        let prefix = &encoded.bytes[..cut.index(encoded.bytes.len())];
        prop_assert!(matches!(feed(&[prefix]), Ok(None)));
    }

    #[test]
    fn chunked_bare_lf_anywhere_in_the_framing_is_rejected(
        (_, _, encoded) in any_encoded(),
        which in any::<Index>(),
    ) {
        let mut bytes = encoded.bytes;
        bytes.remove(*which.get(&encoded.framing_crs));
        assert_rejected(&bytes)?;
    }

    #[test]
    fn chunked_data_not_followed_by_crlf_is_rejected(
        (body, _, encoded) in any_encoded(),
        which in any::<Index>(),
        replacement in any::<u8>().prop_filter("not CR", |b| *b != b'\r'),
    ) {
        prop_assume!(!body.is_empty());
        let mut bytes = encoded.bytes;
        bytes[*which.get(&encoded.data_crs)] = replacement;
        assert_rejected(&bytes)?;
    }

    #[test]
    fn chunked_size_with_a_sign_or_inner_whitespace_is_rejected(
        (_, _, encoded) in any_encoded(),
        which in any::<Index>(),
        insert in prop::sample::select(vec![&b"+"[..], b"-", b" ", b"\t", b"0x"]),
        inside in any::<bool>(),
    ) {
        let mut bytes = encoded.bytes;
        let line = *which.get(&encoded.size_lines);
        // Before the first digit, or between the first digit and a second one.
        let (at, insert) = if inside { (line + 1, [insert, b"0"].concat()) } else { (line, insert.to_vec()) };
        bytes.splice(at..at, insert);
        assert_rejected(&bytes)?;
    }

    #[test]
    fn chunked_size_over_64_bits_is_rejected(
        digits in "[1-9a-fA-F][0-9a-fA-F]{16,40}",
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = [digits.as_bytes(), b"\r\n", &data].concat();
        prop_assert!(matches!(feed(&[&bytes]), Err(ChunkError::SizeOverflow)));
    }
}

/// A request head with `fields` (plus Host), as a client writes it.
fn request_bytes(
    method: &str,
    target: &str,
    http10: bool,
    fields: &[(String, String, String)],
) -> Vec<u8> {
    let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut bytes = format!("{method} {target} {version}\r\nHost: example.test\r\n").into_bytes();
    for (name, space, value) in fields {
        bytes.extend_from_slice(format!("{name}:{space}{value}{space}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn head_parts() -> impl Strategy<Value = (String, String, bool, Vec<(String, String, String)>)> {
    (
        prop_oneof![
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
                .prop_map(str::to_owned),
            "[A-Z][A-Z0-9_-]{0,12}",
        ],
        r"/[a-zA-Z0-9._~!$&'()*+,;=:@/-]{0,40}(\?[a-zA-Z0-9=&/?-]{0,20})?",
        any::<bool>(),
        // Past the 128 fields of the stack array now and then: the heap path round-trips too.
        prop::collection::vec(
            (
                "[xX]-[a-zA-Z0-9-]{0,10}",
                "[ \t]{0,2}",
                "([!-~]([ -~\t]{0,20}[!-~])?)?",
            ),
            0..160,
        ),
    )
}

/// The fields of `map` named `name`, in order.
fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    map.get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect()
}

proptest! {
    // Fewer cases than the chunked properties: a head of up to 160 generated fields is slow to
    // generate in a debug build.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn request_head_round_trips_and_stops_at_its_end(
        (method, target, http10, fields) in head_parts(),
        trailing in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let bytes = request_bytes(&method, &target, http10, &fields);
        let wire = [&bytes[..], &trailing].concat();
        let limits = HeadLimits { max_head_bytes: 256 * 1024 };
        let (head, consumed) = parse_request_head(&wire, &limits).unwrap().expect("complete");
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(head.parts.method.as_str(), method);
        prop_assert_eq!(head.parts.uri.to_string(), target);
        prop_assert_eq!(head.parts.version, if http10 { Version::HTTP_10 } else { Version::HTTP_11 });
        prop_assert_eq!(head.framing, BodyFraming::Empty);
        prop_assert_eq!(head.parts.headers.len(), fields.len() + 1);
        for (name, _, _) in &fields {
            let expected: Vec<&[u8]> = fields
                .iter()
                .filter(|(n, _, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, _, v)| v.as_bytes())
                .collect();
            prop_assert_eq!(values(&head.parts.headers, name), expected);
        }
    }

    #[test]
    fn request_head_any_prefix_is_read_more(
        (method, target, http10, fields) in head_parts(),
        cut in any::<Index>(),
    ) {
        let bytes = request_bytes(&method, &target, http10, &fields);
        let limits = HeadLimits { max_head_bytes: 256 * 1024 };
        let prefix = &bytes[..cut.index(bytes.len())];
        prop_assert!(matches!(parse_request_head(prefix, &limits), Ok(None)));
    }

    #[test]
    fn response_head_fields_read_back_as_written(
        (_, _, http10, fields) in head_parts(),
        length in any::<u64>(),
        keep_alive in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, _, value) in &fields {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let version = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
        let mut out = Vec::new();
        write_response_head(&mut out, StatusCode::OK, version, &headers, ResponseFraming::Length(length), keep_alive);
        let mut slots = vec![httparse::EMPTY_HEADER; fields.len() + 2];
        let mut response = httparse::Response::new(&mut slots);
        prop_assert_eq!(response.parse(&out).unwrap(), httparse::Status::Complete(out.len()));
        prop_assert_eq!(response.version, Some(u8::from(!http10)));
        let length = length.to_string();
        let mut expected: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        match (keep_alive, http10) {
            (false, false) => expected.push(("connection", b"close")),
            (true, true) => expected.push(("connection", b"keep-alive")),
            (true, false) | (false, true) => {}
        }
        expected.push(("content-length", length.as_bytes()));
        let got: Vec<(&str, &[u8])> = response.headers.iter().map(|h| (h.name, h.value)).collect();
        prop_assert_eq!(got, expected);
    }
}
