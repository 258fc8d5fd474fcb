//! zoo's own HTTP/1.1 codec: request heads parsed from bytes (`head.rs`, with the framing and
//! connection rules of RFC 9112 in `fields.rs`), response heads and chunk framing written to
//! bytes (`write.rs`), and a strict streaming decoder for chunked bodies (`chunked.rs`); for
//! zoo's upstream client, request heads written (`request_write.rs`) and response heads
//! parsed (`response.rs`).
//!
//! Pure: no sockets, no tokio, no buffers of its own beyond a chunked body's trailers; it
//! works on the byte slices the HTTP/1 engine in `proxy/` reads and writes. It decides what a
//! message's bytes mean (framing, keep-alive, `Expect`, upgrade) and which status a bad head
//! gets; what to do about it (routing, limits on the URI, hop-by-hop rules) is the proxy's.
//!
//! Why hand-written on `httparse` (the parser under hyper) rather than hyper's server codec:
//! hyper's codec costs about 30% of zoo's instructions per keep-alive request
//! (docs/performance.md, issue 19) and caps a head at 100 fields whatever its size (a
//! 900-byte head of 101 fields got 431: issue 13, item 4). Here a head is limited by bytes
//! only ([`HeadLimits`]), as nginx and Caddy limit it, and the common path allocates no
//! header array (a stack array first, a `Vec` only for a head of more than 128 fields).
//!
//! Stricter than hyper where a proxy must be (RFC 9112 6.3 and 11.2): `Content-Length` with
//! `Transfer-Encoding` is 400, `Transfer-Encoding` must end in `chunked` and name it once,
//! an HTTP/1.1 request needs exactly one `Host`, and the chunked decoder takes CRLF only.

// Every number here comes from the peer (sizes, lengths, offsets into its bytes): no silent
// overflow, no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

mod chunked;
mod fields;
mod head;
mod request_write;
mod response;
mod write;

pub use chunked::{ChunkError, ChunkedDecoder, Decoded};
pub use fields::{parse_length, single_content_length};
pub use head::{
    BodyFraming, HeadError, HeadLimits, RequestHead, parse_request_head, parse_request_head_shared,
};
pub use request_write::{
    OutgoingBody, RequestFraming, allowed_trailers, frame_request, write_request_head,
};
pub use response::{
    ResponseBodyFraming, ResponseHead, ResponseHeadError, parse_response_head, take_response_head,
};
pub use write::{
    CHUNK_END, ResponseFraming, write_chunk_header, write_informational, write_last_chunk,
    write_response_head,
};

#[cfg(test)]
mod tests;
