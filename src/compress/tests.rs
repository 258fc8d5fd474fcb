use super::*;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncReadExt;

fn accept(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

#[test]
fn acceptable_orders_by_q_then_by_zoo_preference() {
    let all = Coding::ALL;
    assert_eq!(acceptable(&accept("gzip, br, zstd"), all), all.to_vec());
    assert_eq!(
        acceptable(&accept("gzip;q=1, br;q=0.5, zstd;q=0.1"), all),
        vec![Coding::Gzip, Coding::Br, Coding::Zstd]
    );
    assert_eq!(
        acceptable(&accept("br;q=0, *"), all),
        vec![Coding::Zstd, Coding::Gzip]
    );
    assert_eq!(acceptable(&accept("x-gzip"), all), vec![Coding::Gzip]);
    assert!(acceptable(&accept("identity"), all).is_empty());
    assert!(acceptable(&accept("gzip;q=0"), all).is_empty());
    assert!(acceptable(&HeaderMap::new(), all).is_empty());
    // A malformed q-value makes the item unacceptable rather than preferred.
    assert!(acceptable(&accept("gzip;q=2"), all).is_empty());
    assert_eq!(
        acceptable(&accept("gzip, zstd"), &[Coding::Gzip]),
        vec![Coding::Gzip]
    );
}

#[test]
fn compressible_takes_text_and_refuses_event_streams_and_packed_fonts() {
    assert!(compressible("text/html; charset=utf-8"));
    assert!(compressible("application/json"));
    assert!(compressible("application/problem+json"));
    assert!(compressible("image/svg+xml"));
    assert!(compressible("application/wasm"));
    assert!(!compressible("text/event-stream"));
    assert!(!compressible("font/woff2"));
    assert!(!compressible("image/png"));
    assert!(!compressible(""));
}

fn response(
    status: u16,
    headers: &[(&'static str, &str)],
    body: &'static [u8],
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).unwrap());
    }
    response
}

const TEXT: &[u8] = include_bytes!("../route.rs");

fn gzip_wanted() -> Wanted {
    Wanted::of(&Method::GET, &accept("gzip"), Coding::ALL).unwrap()
}

#[test]
fn apply_skips_what_must_not_be_compressed() {
    type Case = (u16, &'static [(&'static str, &'static str)], &'static [u8]);
    let cases: [Case; 6] = [
        (
            206,
            &[
                ("content-type", "text/plain"),
                ("content-range", "bytes 0-1/9"),
            ],
            TEXT,
        ),
        (
            200,
            &[("content-type", "text/plain"), ("content-encoding", "br")],
            TEXT,
        ),
        (
            200,
            &[
                ("content-type", "text/plain"),
                ("cache-control", "public, no-transform"),
            ],
            TEXT,
        ),
        (200, &[("content-type", "image/png")], TEXT),
        (200, &[("content-type", "text/plain")], b"short"),
        (304, &[("content-type", "text/plain")], b""),
    ];
    for (status, headers, body) in cases {
        let out = apply(response(status, headers, body), &gzip_wanted());
        assert!(
            matches!(out.body(), Either::Left(_)),
            "{status} {headers:?}"
        );
        assert_ne!(
            out.headers().get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
    }
    assert!(Wanted::of(&Method::HEAD, &accept("gzip"), Coding::ALL).is_none());
    assert!(Wanted::of(&Method::GET, &accept("gzip"), &[]).is_none());
}

#[test]
fn apply_sets_headers_and_keeps_vary_when_nothing_is_accepted() {
    let headers: &[(&str, &str)] = &[
        ("content-type", "text/plain"),
        ("etag", "\"abc\""),
        ("content-length", "99999"),
        ("vary", "origin"),
    ];
    let out = apply(response(200, headers, TEXT), &gzip_wanted());
    assert_eq!(out.headers()["content-encoding"], "gzip");
    assert_eq!(out.headers()["etag"], "W/\"abc\"");
    assert!(out.headers().get("content-length").is_none());
    let vary: Vec<_> = out.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["origin", "accept-encoding"]);

    let none = Wanted::of(&Method::GET, &accept("identity"), Coding::ALL).unwrap();
    let out = apply(response(200, headers, TEXT), &none);
    assert!(out.headers().get("content-encoding").is_none());
    assert_eq!(out.headers()["etag"], "\"abc\"");
    assert_eq!(out.headers().get_all("vary").iter().count(), 2);
}

async fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    let mut out = Vec::new();
    match coding {
        Coding::Zstd => ZstdDecoder::new(bytes).read_to_end(&mut out).await,
        Coding::Br => BrotliDecoder::new(bytes).read_to_end(&mut out).await,
        Coding::Gzip => GzipDecoder::new(bytes).read_to_end(&mut out).await,
    }
    .unwrap();
    out
}

/// A body of chunks; once they are out it stays pending forever when `then_pause`, else ends.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    then_pause: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if self.then_pause => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

#[tokio::test]
async fn every_coding_round_trips_a_chunked_body() {
    for coding in Coding::ALL {
        let body = Chunks {
            chunks: TEXT.chunks(1000).map(Bytes::copy_from_slice).collect(),
            then_pause: false,
        };
        let compressed = Compressed::new(body, *coding)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert!(compressed.len() < TEXT.len() / 2, "{coding:?}");
        assert_eq!(decode(*coding, &compressed).await, TEXT, "{coding:?}");
    }
}

#[tokio::test]
async fn a_paused_body_is_flushed_so_its_first_bytes_are_not_held_back() {
    for coding in Coding::ALL {
        let body = Chunks {
            chunks: [Bytes::from_static(b"data: first\n\n")].into(),
            then_pause: true,
        };
        let mut compressed = Compressed::new(body, *coding);
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), compressed.frame())
            .await
            .expect("the first bytes came while the body was still open")
            .unwrap()
            .unwrap();
        assert!(!frame.into_data().unwrap().is_empty(), "{coding:?}");
    }
}
