//! The chunked transfer coding, decoded as it streams in (RFC 9112 7.1): a state machine fed
//! slices of any size, which hands back where the data bytes are and never consumes a byte
//! past the body, so the next pipelined request starts right after it.
//!
//! Strict where the RFC is: a size is `1*HEXDIG` with no sign and no space inside, and one that
//! does not fit a `u64` is refused; every line ends in CRLF (a bare LF is an error, unlike
//! nginx, which takes one); the data is followed by CRLF exactly. Chunk extensions are
//! accepted and ignored: their bytes must be visible characters, spaces or tabs, and at most
//! [`MAX_EXTENSION_BYTES`] of them in a body (hyper's bound, against a body of tiny chunks
//! that is mostly extensions). Trailers are buffered up to the caller's limit and parsed by
//! `httparse` into a `HeaderMap`.

use std::ops::Range;

use http::header::HeaderMap;

use super::fields;

/// Extension bytes allowed in one body, all chunks together.
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;

/// A streaming decoder for one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The trailer section's bytes are held until it ends; this bounds them.
    max_trailer_bytes: usize,
    /// Extension bytes seen so far, against [`MAX_EXTENSION_BYTES`].
    extension_bytes: usize,
    /// The trailer section as it arrives (empty for the usual body without trailers).
    trailer_bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk size.
    SizeStart,
    /// More hex digits, or the end of the size.
    Size(u64),
    /// Whitespace after the size (RFC 9112's BWS before `;`; hyper also takes it before CR).
    SizeSpace(u64),
    /// Inside chunk extensions, up to CR.
    Extension(u64),
    /// The LF of the size line.
    SizeLf(u64),
    /// Data bytes still to come in this chunk.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// At the start of a trailer line, or of the empty line ending the body.
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// The LF of a trailer field line.
    TrailerLf,
    /// The LF of the empty line ending the body.
    EndLf,
    /// The body has ended.
    Done,
}

/// What one [`ChunkedDecoder::decode`] call found. `consumed` counts bytes of the input given;
/// the caller drops them and calls again with the rest (and more, once read).
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// `input[data]` are body bytes (a chunk may come in several pieces); `consumed` is
    /// `data.end`.
    Data { consumed: usize, data: Range<usize> },
    /// All of the input was framing, or a piece of it: read more.
    NeedMore { consumed: usize },
    /// The body ended after `consumed` bytes; the trailers, if it had any.
    Done {
        consumed: usize,
        trailers: Option<HeaderMap>,
    },
}

/// Why a chunked body is invalid: the request is answered 400 (or the response from an
/// upstream 502), and the connection closed, since its framing is lost.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("expected a hexadecimal chunk size, found byte {found:#04x}")]
    SizeMissing { found: u8 },
    #[error("chunk size does not fit in 64 bits")]
    SizeOverflow,
    #[error("expected `;` or CRLF after the chunk size, found byte {found:#04x}")]
    AfterSize { found: u8 },
    #[error("byte {found:#04x} in a chunk extension")]
    InvalidExtension { found: u8 },
    #[error("chunk extensions longer than {limit} bytes")]
    ExtensionsTooLong { limit: usize },
    #[error("expected LF after CR, found byte {found:#04x}")]
    ExpectedLf { found: u8 },
    #[error("a line ends in a bare LF")]
    BareLf,
    #[error("expected CRLF after the chunk data, found byte {found:#04x}")]
    MissingDataCrlf { found: u8 },
    #[error("byte {found:#04x} in a trailer field")]
    InvalidTrailerByte { found: u8 },
    #[error("trailers longer than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    #[error("invalid trailer section: {cause}")]
    InvalidTrailers { cause: httparse::Error },
    #[error("trailer section has more fields than a header map holds")]
    TooManyTrailerFields,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body; its trailer section may take `max_trailer_bytes`.
    #[must_use]
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::SizeStart,
            max_trailer_bytes,
            extension_bytes: 0,
            trailer_bytes: Vec::new(),
        }
    }

    /// Decodes from `input`: returns what it consumed and where the data bytes are. Call again
    /// with the remaining input. After `Done`, every call returns `Done` with nothing consumed.
    ///
    /// # Errors
    /// The body breaks the chunked grammar or a bound ([`ChunkError`]); the decoder is then
    /// unusable and the connection's framing lost.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        if self.state == State::Done {
            return Ok(Decoded::Done {
                consumed: 0,
                trailers: None,
            });
        }
        let mut at = 0_usize;
        loop {
            if let State::Data(remaining) = self.state {
                return Ok(self.data(input, at, remaining));
            }
            let Some(&byte) = input.get(at) else {
                return Ok(Decoded::NeedMore { consumed: at });
            };
            at = at.saturating_add(1);
            self.state = self.step(byte)?;
            if self.state == State::Done {
                return Ok(Decoded::Done {
                    consumed: at,
                    trailers: self.trailers()?,
                });
            }
        }
    }

    /// Hands out the data bytes of the chunk from `at` on, as many as `input` holds.
    fn data(&mut self, input: &[u8], at: usize, remaining: u64) -> Decoded {
        let available = input.len().saturating_sub(at);
        if available == 0 {
            return Decoded::NeedMore { consumed: at };
        }
        let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
        let left = remaining.saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
        self.state = if left == 0 {
            State::DataCr
        } else {
            State::Data(left)
        };
        let end = at.saturating_add(take);
        Decoded::Data {
            consumed: end,
            data: at..end,
        }
    }

    /// The state after `byte`, one byte of framing.
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        Ok(match (self.state, byte) {
            (State::SizeStart, _) => {
                State::Size(hex_digit(byte).ok_or(ChunkError::SizeMissing { found: byte })?)
            }
            (State::Size(size), _) if hex_digit(byte).is_some() => {
                let digit = hex_digit(byte).unwrap_or_default();
                State::Size(
                    size.checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or(ChunkError::SizeOverflow)?,
                )
            }
            (State::Size(size) | State::SizeSpace(size), b' ' | b'\t') => State::SizeSpace(size),
            (State::Size(size) | State::SizeSpace(size), b';') => {
                self.count_extension()?;
                State::Extension(size)
            }
            (State::Size(size) | State::SizeSpace(size) | State::Extension(size), b'\r') => {
                State::SizeLf(size)
            }
            (State::Size(_) | State::SizeSpace(_) | State::Extension(_), b'\n') => {
                return Err(ChunkError::BareLf);
            }
            (State::Size(_) | State::SizeSpace(_), _) => {
                return Err(ChunkError::AfterSize { found: byte });
            }
            (State::Extension(size), _) if is_field_byte(byte) => {
                self.count_extension()?;
                State::Extension(size)
            }
            (State::Extension(_), _) => return Err(ChunkError::InvalidExtension { found: byte }),
            (State::SizeLf(0), b'\n') => State::TrailerStart,
            (State::SizeLf(size), b'\n') => State::Data(size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr, _) => return Err(ChunkError::MissingDataCrlf { found: byte }),
            (State::DataLf, b'\n') => State::SizeStart,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerLine, b'\r') => {
                self.push_trailer(byte)?;
                State::TrailerLf
            }
            (State::TrailerStart | State::TrailerLine, b'\n') => return Err(ChunkError::BareLf),
            (State::TrailerStart | State::TrailerLine, _) if is_field_byte(byte) => {
                self.push_trailer(byte)?;
                State::TrailerLine
            }
            (State::TrailerStart | State::TrailerLine, _) => {
                return Err(ChunkError::InvalidTrailerByte { found: byte });
            }
            (State::TrailerLf, b'\n') => {
                self.push_trailer(byte)?;
                State::TrailerStart
            }
            (State::EndLf, b'\n') => State::Done,
            (State::SizeLf(_) | State::DataLf | State::TrailerLf | State::EndLf, _) => {
                return Err(ChunkError::ExpectedLf { found: byte });
            }
            // `decode` never steps in these: it hands out data, or returns at the end.
            (State::Data(_) | State::Done, _) => self.state,
        })
    }

    fn count_extension(&mut self) -> Result<(), ChunkError> {
        self.extension_bytes = self.extension_bytes.saturating_add(1);
        if self.extension_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkError::ExtensionsTooLong {
                limit: MAX_EXTENSION_BYTES,
            });
        }
        Ok(())
    }

    fn push_trailer(&mut self, byte: u8) -> Result<(), ChunkError> {
        if self.trailer_bytes.len() >= self.max_trailer_bytes {
            return Err(ChunkError::TrailersTooLarge {
                limit: self.max_trailer_bytes,
            });
        }
        self.trailer_bytes.push(byte);
        Ok(())
    }

    /// The trailer section buffered so far, parsed (it has just ended).
    fn trailers(&mut self) -> Result<Option<HeaderMap>, ChunkError> {
        if self.trailer_bytes.is_empty() {
            return Ok(None);
        }
        let mut section = std::mem::take(&mut self.trailer_bytes);
        // httparse reads a field section up to its empty line; each line ends in CRLF here.
        section.extend_from_slice(b"\r\n");
        let mut slots = vec![httparse::EMPTY_HEADER; fields::max_fields(&section)];
        let parsed = match httparse::parse_headers(&section, &mut slots) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            Ok(httparse::Status::Partial) => {
                return Err(ChunkError::InvalidTrailers {
                    cause: httparse::Error::NewLine,
                });
            }
            Err(cause) => return Err(ChunkError::InvalidTrailers { cause }),
        };
        let map = fields::header_map(parsed).map_err(|error| match error {
            fields::FieldError::TooMany => ChunkError::TooManyTrailerFields,
            fields::FieldError::Name => ChunkError::InvalidTrailers {
                cause: httparse::Error::HeaderName,
            },
            fields::FieldError::Value(_) => ChunkError::InvalidTrailers {
                cause: httparse::Error::HeaderValue,
            },
        })?;
        Ok(Some(map))
    }
}

fn hex_digit(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// A byte allowed inside a field value or an extension: visible, space, tab, or obs-text.
fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}
