use crate::h1::{ChunkError, ChunkedDecoder, Decoded};

const MAX_TRAILER_BYTES: usize = 1024;

/// Decodes all of `input` in one piece per call: the data, the trailers, and where it stopped.
fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Option<http::HeaderMap>, usize), ChunkError> {
    let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
    let (mut data, mut at) = (Vec::new(), 0);
    for _ in 0..=input.len() {
        match decoder.decode(&input[at..])? {
            Decoded::Data {
                consumed,
                data: range,
            } => {
                data.extend_from_slice(&input[at..][range]);
                at += consumed;
            }
            Decoded::NeedMore { consumed } => {
                at += consumed;
                assert_eq!(at, input.len(), "NeedMore before the end of the input");
                panic!("incomplete body: {input:?}");
            }
            Decoded::Done { consumed, trailers } => return Ok((data, trailers, at + consumed)),
        }
    }
    panic!("no progress on {input:?}")
}

#[test]
fn chunked_body_decodes_data_and_stops_at_its_end() {
    let input = b"5\r\nhello\r\n1;a=b;c=\"d e\"\r\n \r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (data, trailers, end) = decode_all(input).unwrap();
    assert_eq!(data, b"hello ");
    assert!(trailers.is_none());
    assert_eq!(&input[end..], b"GET / HTTP/1.1\r\n");
}
