use crate::h1::{ChunkError, ChunkedDecoder, Decoded};

const MAX_TRAILER_BYTES: usize = 1024;

/// Where a body fed whole (one call per step) ended up.
#[derive(Debug)]
enum Outcome {
    /// The body ended `end` bytes in.
    Done {
        data: Vec<u8>,
        trailers: Option<http::HeaderMap>,
        end: usize,
    },
    /// All of the input was read and the body has not ended.
    Incomplete,
}

fn decode_all(input: &[u8]) -> Result<Outcome, ChunkError> {
    let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
    let (mut data, mut at) = (Vec::new(), 0);
    for _ in 0..=input.len() {
        match decoder.decode(&input[at..])? {
            Decoded::Data {
                consumed,
                data: range,
            } => {
                assert_eq!(consumed, range.end);
                data.extend_from_slice(&input[at..][range]);
                at += consumed;
            }
            Decoded::NeedMore { consumed } => {
                assert_eq!(at + consumed, input.len(), "NeedMore before the end");
                return Ok(Outcome::Incomplete);
            }
            Decoded::Done { consumed, trailers } => {
                return Ok(Outcome::Done {
                    data,
                    trailers,
                    end: at + consumed,
                });
            }
        }
    }
    panic!("no progress on {input:?}")
}

fn rejected(input: &[u8]) -> ChunkError {
    match decode_all(input) {
        Err(error) => error,
        Ok(outcome) => panic!("{:?} accepted: {outcome:?}", String::from_utf8_lossy(input)),
    }
}

/// Each of `cases` is rejected with an error matching `pattern`.
macro_rules! assert_all_rejected {
    ($cases:expr, $pattern:pat) => {
        for bad in $cases {
            let error = rejected(bad);
            assert!(
                matches!(error, $pattern),
                "{:?}: {error:?}",
                String::from_utf8_lossy(bad)
            );
        }
    };
}

#[test]
fn chunked_body_decodes_data_and_stops_at_its_end() {
    let input =
        b"5\r\nhello\r\n1;a=b;c=\"d e\"\r\n \r\nA\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let Outcome::Done {
        data,
        trailers,
        end,
    } = decode_all(input).unwrap()
    else {
        panic!("incomplete")
    };
    assert_eq!(data, b"hello 0123456789");
    assert!(trailers.is_none());
    assert_eq!(&input[end..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn chunked_body_accepts_hex_of_either_case_leading_zeros_and_space_before_extensions() {
    for input in [
        &b"a\r\n0123456789\r\n0\r\n\r\n"[..],
        b"A\r\n0123456789\r\n000\r\n\r\n",
        b"0000a\r\n0123456789\r\n0\r\n\r\n",
        b"a ;x\r\n0123456789\r\n0 \t;y=\"z\"\r\n\r\n",
        b"a \r\n0123456789\r\n0\r\n\r\n",
    ] {
        assert!(
            matches!(decode_all(input), Ok(Outcome::Done { ref data, .. }) if data == b"0123456789"),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn chunked_body_trailers_are_parsed_and_bounded() {
    let body = b"1\r\nx\r\n0\r\nX-Sum: abc\r\nx-sum: def\r\nGrpc-Status: 0\r\n\r\n";
    let Outcome::Done {
        trailers: Some(trailers),
        end,
        ..
    } = decode_all(&[&body[..], b"\r\n"].concat()).unwrap()
    else {
        panic!("no trailers")
    };
    assert_eq!(end, body.len());
    let sums: Vec<_> = trailers.get_all("x-sum").iter().collect();
    assert_eq!(sums, ["abc", "def"]);
    assert_eq!(trailers["grpc-status"], "0");

    let long = format!("0\r\nA: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
    assert_all_rejected!([long.as_bytes()], ChunkError::TrailersTooLarge { .. });
    assert_all_rejected!(
        [
            &b"0\r\nA: b\r\n c\r\n\r\n"[..],
            b"0\r\nA b\r\n\r\n",
            b"0\r\nA : b\r\n\r\n",
            b"0\r\n: b\r\n\r\n",
        ],
        ChunkError::InvalidTrailers { .. }
    );
    assert_all_rejected!(
        [b"0\r\nA: \x01\r\n\r\n"],
        ChunkError::InvalidTrailerByte { found: 1 }
    );
}

#[test]
fn chunked_body_bare_lf_is_rejected_everywhere() {
    assert_all_rejected!(
        [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5;x\nhello\r\n0\r\n\r\n",
            b"5 \nhello\r\n0\r\n\r\n",
            b"0\r\nA: b\n\r\n",
            b"0\r\n\n",
        ],
        ChunkError::BareLf
    );
    assert_all_rejected!(
        [&b"5\rhello"[..], b"0\r\n\rx", b"0\r\nA: b\rx"],
        ChunkError::ExpectedLf { .. }
    );
}

#[test]
fn chunked_body_data_must_be_followed_by_crlf() {
    assert_all_rejected!(
        [
            &b"5\r\nhelloX"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello!\r\n",
        ],
        ChunkError::MissingDataCrlf { .. }
    );
    assert_all_rejected!([b"5\r\nhello\rX"], ChunkError::ExpectedLf { found: b'X' });
}

#[test]
fn chunked_body_size_is_hex_digits_only_and_fits_64_bits() {
    assert_all_rejected!(
        [
            &b"+5\r\n"[..],
            b"-5\r\n",
            b" 5\r\n",
            b"\r\n",
            b";x\r\n",
            b"g\r\n",
        ],
        ChunkError::SizeMissing { .. }
    );
    assert_all_rejected!(
        [
            &b"1 0\r\n"[..],
            b"0x5\r\n",
            b"5g\r\n",
            b"5,\r\n",
            b"5\t5\r\n",
        ],
        ChunkError::AfterSize { .. }
    );
    assert_all_rejected!([b"10000000000000000\r\n"], ChunkError::SizeOverflow);
    // The largest size fits; the body is simply not all here.
    assert!(matches!(
        decode_all(b"ffffffffffffffff\r\nabc"),
        Ok(Outcome::Incomplete)
    ));
}

#[test]
fn chunked_body_extensions_are_visible_bytes_and_bounded() {
    assert_all_rejected!([b"5;a\x00\r\n"], ChunkError::InvalidExtension { found: 0 });
    assert_all_rejected!(
        [b"5;a\x7f\r\n"],
        ChunkError::InvalidExtension { found: 0x7f }
    );
    // The bound is over the whole body, so many small chunks cannot carry unbounded extensions.
    let extension = format!(";{}", "e".repeat(1023));
    let chunk = format!("1{extension}\r\nx\r\n");
    let body = format!("{}0\r\n\r\n", chunk.repeat(17));
    assert_all_rejected!([body.as_bytes()], ChunkError::ExtensionsTooLong { .. });
    let body = format!("{}0\r\n\r\n", chunk.repeat(15));
    assert!(matches!(
        decode_all(body.as_bytes()),
        Ok(Outcome::Done { .. })
    ));
}

#[test]
fn chunked_decoder_after_done_consumes_nothing() {
    let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
    assert_eq!(
        decoder.decode(b"0\r\n\r\nnext").unwrap(),
        Decoded::Done {
            consumed: 5,
            trailers: None
        }
    );
    assert_eq!(
        decoder.decode(b"next").unwrap(),
        Decoded::Done {
            consumed: 0,
            trailers: None
        }
    );
}

#[test]
fn chunked_decoder_hands_out_data_as_it_arrives() {
    let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
    assert_eq!(
        decoder.decode(b"a\r").unwrap(),
        Decoded::NeedMore { consumed: 2 }
    );
    assert_eq!(
        decoder.decode(b"\n0123").unwrap(),
        Decoded::Data {
            consumed: 5,
            data: 1..5
        }
    );
    assert_eq!(
        decoder.decode(b"456789\r\n0\r\n\r\n").unwrap(),
        Decoded::Data {
            consumed: 6,
            data: 0..6
        }
    );
    assert_eq!(
        decoder.decode(b"\r\n0\r\n\r\n").unwrap(),
        Decoded::Done {
            consumed: 7,
            trailers: None
        }
    );
}
