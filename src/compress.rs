//! Response compression: which coding a client accepts (`Accept-Encoding` with q-values),
//! whether a response may be compressed, and the body that compresses it as it streams.
//!
//! A response is compressed only when all of these hold: not HEAD; a status other than 1xx,
//! 204, 206 and 304; no `Content-Encoding` or `Content-Range` of its own; no `no-transform`
//! in `Cache-Control`; a compressible `Content-Type` ([`compressible`]); and a length of at
//! least [`MIN_LENGTH`] or an unknown one. Then `Vary: Accept-Encoding` is added, and when the
//! client accepts one of the route's codings, `Content-Encoding` is set, `Content-Length` and
//! `Accept-Ranges` dropped and a strong `ETag` made weak (the bytes differ, the meaning not).
//!
//! Memory is bounded per response: the encoder's window plus at most [`OUTPUT_CHUNK`] of
//! output. Output is flushed whenever the wrapped body has nothing more to give at once, so a
//! slow app's first bytes reach the client as promptly as uncompressed ones; a fast body is
//! compressed in large blocks. `text/event-stream` is never compressed (docs/proxy.md says
//! why). Request bodies are not touched here or anywhere: zoo never decompresses them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Either;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;

use crate::config::Coding;
use crate::upstream::BoxError;

/// Smaller responses are sent as they are: the coding's framing would eat the gain.
pub(crate) const MIN_LENGTH: u64 = 1024;
/// Compressed output is handed on once this much has gathered, even while input keeps coming.
const OUTPUT_CHUNK: usize = 64 * 1024;
/// gzip level 2 of zlib-rs (flate2's back end here, Cargo.toml): zlib's fast deflate, the one
/// behind nginx's default `gzip_comp_level 1`. zlib-rs's level 1 is zlib-ng's quicker one with
/// a worse ratio. On bench/'s 100 KiB JSON: 18.3 KB in 450 us, where nginx (system zlib,
/// level 1) sends 19.5 KB, zlib-rs level 1 24.4 KB, and miniz_oxide (flate2's default back
/// end) 20.7 KB at level 1 in the same 450 us.
const GZIP_LEVEL: i32 = 2;
/// Brotli quality 4: faster than gzip level 6 with a better ratio.
const BROTLI_QUALITY: i32 = 4;
/// zstd level 3, the library's default.
const ZSTD_LEVEL: i32 = 3;

/// The codings `Accept-Encoding` accepts among `offered`, best first: by q-value, ties in
/// `offered` order. A coding not named is unacceptable unless `*` is; `x-gzip` is `gzip`.
pub(crate) fn acceptable(headers: &HeaderMap, offered: &[Coding]) -> Vec<Coding> {
    let mut weighted: Vec<(u16, Coding)> = offered
        .iter()
        .filter_map(|coding| {
            let quality = quality_of(headers, *coding)?;
            (quality > 0).then_some((quality, *coding))
        })
        .collect();
    // A stable sort keeps `offered`'s order among equal q-values.
    weighted.sort_by_key(|(quality, _)| std::cmp::Reverse(*quality));
    weighted.into_iter().map(|(_, coding)| coding).collect()
}

/// The q-value (in thousandths) the client gives `coding`, or `None` when it names neither
/// it nor `*`.
fn quality_of(headers: &HeaderMap, coding: Coding) -> Option<u16> {
    let mut wildcard = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let quality = parts
                .find_map(|parameter| {
                    let (key, value) = parameter.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_quality(value))
                })
                .unwrap_or(Some(1000))?;
            let named = name.eq_ignore_ascii_case(coding.as_str())
                || (coding == Coding::Gzip && name.eq_ignore_ascii_case("x-gzip"));
            if named {
                return Some(quality);
            }
            if name == "*" {
                wildcard = Some(quality);
            }
        }
    }
    wildcard
}

/// `0`, `0.5`, `1.000` as thousandths; anything else is `None` (RFC 9110 12.4.2).
fn parse_quality(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a `Content-Type` is worth compressing: text, JSON, JavaScript, XML, SVG, wasm and
/// fonts that are not compressed already (not WOFF/WOFF2). Never `text/event-stream`.
pub(crate) fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "application/vnd.ms-fontobject"
                | "font/ttf"
                | "font/otf"
                | "application/x-font-ttf"
                | "image/x-icon"
                | "image/bmp"
        )
}

/// What the request says about compressing its response, taken before the request moves on.
pub(crate) struct Wanted {
    /// The route's codings the client accepts, best first; empty compresses nothing.
    codings: Vec<Coding>,
}

impl Wanted {
    /// `None` when nothing could be compressed (HEAD, or the route compresses nothing), so
    /// that such responses skip every check.
    pub(crate) fn of(method: &Method, headers: &HeaderMap, offered: &[Coding]) -> Option<Self> {
        if offered.is_empty() || method == Method::HEAD {
            return None;
        }
        Some(Self {
            codings: acceptable(headers, offered),
        })
    }
}

/// `response` compressed with the best coding wanted, when it may be.
pub(crate) fn apply<B>(
    response: Response<B>,
    wanted: &Wanted,
) -> Response<Either<B, Box<Compressed<B>>>>
where
    B: Body<Data = Bytes> + Unpin,
{
    if !eligible(&response) {
        return response.map(Either::Left);
    }
    let (mut parts, body) = response.into_parts();
    add_vary(&mut parts.headers);
    let Some(coding) = wanted.codings.first().copied() else {
        return Response::from_parts(parts, Either::Left(body));
    };
    let headers = &mut parts.headers;
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.as_str()),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    if let Some(etag) = headers.get(header::ETAG)
        && etag.as_bytes().starts_with(b"\"")
        && let Ok(weak) = HeaderValue::from_bytes(&[b"W/", etag.as_bytes()].concat())
    {
        headers.insert(header::ETAG, weak);
    }
    Response::from_parts(
        parts,
        Either::Right(Box::new(Compressed::new(body, coding))),
    )
}

fn eligible<B: Body>(response: &Response<B>) -> bool {
    let status = response.status();
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let headers = response.headers();
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|text| text.to_ascii_lowercase().contains("no-transform"))
    });
    let typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(compressible);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    typed
        && !encoded
        && !no_transform
        && !headers.contains_key(header::CONTENT_RANGE)
        && length.is_none_or(|length| length >= MIN_LENGTH)
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is there already.
pub(crate) fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|name| {
                let name = name.trim();
                name == "*" || name.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// One coding's streaming encoder, writing into a buffer that the body hands on.
enum Encoder {
    Zstd(ZstdEncoder<Vec<u8>>),
    /// Boxed: brotli's state is kilobytes, the others' a pointer or two.
    Brotli(Box<BrotliEncoder<Vec<u8>>>),
    Gzip(GzipEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> Self {
        let out = Vec::with_capacity(8 * 1024);
        match coding {
            Coding::Zstd => Self::Zstd(ZstdEncoder::with_quality(out, Level::Precise(ZSTD_LEVEL))),
            Coding::Br => Self::Brotli(Box::new(BrotliEncoder::with_quality(
                out,
                Level::Precise(BROTLI_QUALITY),
            ))),
            Coding::Gzip => Self::Gzip(GzipEncoder::with_quality(out, Level::Precise(GZIP_LEVEL))),
        }
    }

    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Unpin)> {
        match self {
            Self::Zstd(encoder) => Pin::new(encoder),
            Self::Brotli(encoder) => Pin::new(&mut **encoder),
            Self::Gzip(encoder) => Pin::new(encoder),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Zstd(encoder) => encoder.get_mut(),
            Self::Brotli(encoder) => encoder.get_mut(),
            Self::Gzip(encoder) => encoder.get_mut(),
        }
    }

    /// Takes the output gathered so far.
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.output()))
    }

    /// Feeds all of `data`. The sink is a `Vec`, which never waits, so neither does this.
    fn write(&mut self, cx: &mut Context<'_>, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.writer().poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => data = &data[written..],
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Err(io::Error::other("encoder into memory waited")),
            }
        }
        Ok(())
    }

    /// A flush (`true`: the end of the stream) that completes at once, as `write` does.
    fn finish_block(&mut self, cx: &mut Context<'_>, end: bool) -> io::Result<()> {
        let polled = if end {
            self.writer().poll_shutdown(cx)
        } else {
            self.writer().poll_flush(cx)
        };
        match polled {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::Error::other("encoder into memory waited")),
        }
    }
}

/// A body compressed as it streams. Trailers of the wrapped body are dropped (a compressed
/// response is never gRPC: `application/grpc` is not compressible).
pub(crate) struct Compressed<B> {
    /// The body being compressed; `None` once it ended.
    inner: Option<B>,
    encoder: Encoder,
    /// Input written since the last flush, which a pause of the input must push out.
    unflushed: bool,
    /// The encoder's end was written and handed on.
    done: bool,
}

impl<B> Compressed<B> {
    fn new(body: B, coding: Coding) -> Self {
        Self {
            inner: Some(body),
            encoder: Encoder::new(coding),
            unflushed: false,
            done: false,
        }
    }
}

impl<B> Body for Compressed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                this.encoder.finish_block(cx, true)?;
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::data(this.encoder.take()))));
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.encoder.write(cx, &data)?;
                        this.unflushed = true;
                        if this.encoder.output().len() >= OUTPUT_CHUNK {
                            return Poll::Ready(Some(Ok(Frame::data(this.encoder.take()))));
                        }
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(None) => this.inner = None,
                Poll::Pending => {
                    if this.unflushed {
                        this.encoder.finish_block(cx, false)?;
                        this.unflushed = false;
                    }
                    if this.encoder.output().is_empty() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(this.encoder.take()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
