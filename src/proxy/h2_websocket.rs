//! WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol = websocket` from an h2
//! client is sent to the upstream as the HTTP/1.1 WebSocket handshake every app understands,
//! and the app's `101` goes back to the client as the `200` that opens the h2 stream.
//!
//! [`translate_request`] runs before routing: it rewrites the request (GET, `Upgrade`,
//! `Connection`, a fresh random `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13` unless the
//! client sent one; `Sec-WebSocket-Protocol`, `-Extensions`, `Origin` and the rest pass as
//! sent), so the ordinary forward path sees a WebSocket upgrade and tunnels it (the h2 stream is
//! never a TCP socket, so the tunnel copies instead of splicing). [`finish`] checks the app's
//! `Sec-WebSocket-Accept` and turns the `101` into `200`. Any other `:protocol` is 501 (RFC
//! 9220 section 3 says so for extended CONNECT; RFC 8441 is silent). An app that refuses the
//! upgrade has its answer forwarded as is, except a 2xx: to an h2 client that would mean the
//! tunnel is open, so it is 502.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::ext::Protocol;
use ring::rand::{SecureRandom as _, SystemRandom};

use super::{ProxyError, tunnel};

/// The GUID RFC 6455 section 1.3 appends to the key before hashing it into the accept value.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the app's answer to a translated extended CONNECT must carry.
#[derive(Debug)]
pub struct Handshake {
    /// `Sec-WebSocket-Accept` for the key zoo sent.
    accept: HeaderValue,
}

/// `Ok(None)` for any request that is not an extended CONNECT (nothing changes). For
/// `:protocol = websocket`, rewrites `request` into the HTTP/1.1 WebSocket handshake and
/// returns what the app must answer; any other protocol is an error (501).
pub fn translate_request<B>(request: &mut Request<B>) -> Result<Option<Handshake>, ProxyError> {
    let Some(protocol) = request.extensions().get::<Protocol>() else {
        return Ok(None);
    };
    if !protocol.as_str().eq_ignore_ascii_case("websocket") || request.method() != Method::CONNECT {
        return Err(ProxyError::ConnectProtocol {
            protocol: protocol.as_str().to_owned(),
        });
    }
    let (key, accept) = new_key();
    *request.method_mut() = Method::GET;
    let headers = request.headers_mut();
    headers.insert(header::SEC_WEBSOCKET_KEY, key);
    headers
        .entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
    tunnel::mark_websocket(headers);
    Ok(Some(Handshake { accept }))
}

/// The response for the h2 client: `200` for the app's `101` with the right accept value (its
/// `Sec-WebSocket-Protocol` and `-Extensions` kept), 502 for a wrong one or a 2xx, and any
/// other refusal as the app sent it. Without a handshake, `response` as it is.
pub fn finish<B>(
    response: Response<B>,
    handshake: Option<Handshake>,
) -> Result<Response<B>, ProxyError> {
    let Some(handshake) = handshake else {
        return Ok(response);
    };
    match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => {
            let mut response = response;
            let headers = response.headers_mut();
            if headers.get(header::SEC_WEBSOCKET_ACCEPT) != Some(&handshake.accept) {
                return Err(ProxyError::WebSocketAccept);
            }
            // Connection-specific in h2 (RFC 9113 8.2.2); the accept value is HTTP/1.1's.
            headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            headers.remove(header::CONNECTION);
            headers.remove(header::UPGRADE);
            *response.status_mut() = StatusCode::OK;
            Ok(response)
        }
        status if status.is_success() => Err(ProxyError::WebSocketNotSwitched { status }),
        _ => Ok(response),
    }
}

/// A fresh `Sec-WebSocket-Key` (16 random bytes, base64) and its expected accept value.
fn new_key() -> (HeaderValue, HeaderValue) {
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system random source is readable");
    let key = BASE64.encode(nonce);
    let accept = accept_for(&key);
    (
        HeaderValue::try_from(key).expect("base64 is a valid header value"),
        accept,
    )
}

/// RFC 6455 section 4.2.2: base64(SHA-1(key + GUID)).
fn accept_for(key: &str) -> HeaderValue {
    let mut input = Vec::with_capacity(key.len() + ACCEPT_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(ACCEPT_GUID);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    HeaderValue::try_from(BASE64.encode(digest.as_ref())).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Either, Full};

    use crate::proxy::ZooBody;

    fn connect(protocol: &'static str) -> Request<()> {
        let mut request = Request::connect("http://zoo.test/ws")
            .header("sec-websocket-protocol", "chat")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(Protocol::from_static(protocol));
        request
    }

    fn response(status: StatusCode, headers: &[(&'static str, &str)]) -> Response<ZooBody> {
        let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
        *response.status_mut() = status;
        for (name, value) in headers {
            response
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        response
    }

    #[test]
    fn accept_value_matches_rfc_6455_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn websocket_connect_becomes_an_http1_upgrade_with_a_fresh_key() {
        let mut request = connect("websocket");
        let handshake = translate_request(&mut request).unwrap().unwrap();
        assert_eq!(request.method(), Method::GET);
        let headers = request.headers();
        assert!(tunnel::wants_websocket(headers));
        assert_eq!(headers[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        let key = headers[header::SEC_WEBSOCKET_KEY].to_str().unwrap();
        assert_eq!(BASE64.decode(key).unwrap().len(), 16);
        assert_eq!(handshake.accept, accept_for(key));
        let (other, _) = new_key();
        assert_ne!(other, key, "each handshake gets its own key");
    }

    #[test]
    fn other_protocols_are_501_and_plain_requests_are_untouched() {
        let error = translate_request(&mut connect("connect-udp")).unwrap_err();
        assert_eq!(error.status(), StatusCode::NOT_IMPLEMENTED);
        let mut plain = Request::get("/ws").body(()).unwrap();
        assert!(translate_request(&mut plain).unwrap().is_none());
        assert_eq!(plain.method(), Method::GET);
        assert!(plain.headers().is_empty());
    }

    #[test]
    fn switching_with_the_right_accept_becomes_200_keeping_the_negotiated_headers() {
        let mut request = connect("websocket");
        let handshake = translate_request(&mut request).unwrap();
        let accept = handshake
            .as_ref()
            .unwrap()
            .accept
            .to_str()
            .unwrap()
            .to_owned();
        let app = response(
            StatusCode::SWITCHING_PROTOCOLS,
            &[
                ("sec-websocket-accept", &accept),
                ("sec-websocket-protocol", "chat"),
                ("sec-websocket-extensions", "permessage-deflate"),
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
            ],
        );
        let answered = finish(app, handshake).unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        let headers = answered.headers();
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(
            headers[header::SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate"
        );
        for gone in ["sec-websocket-accept", "upgrade", "connection"] {
            assert!(!headers.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn a_wrong_accept_or_a_2xx_is_502_and_a_refusal_passes() {
        let handshake = || translate_request(&mut connect("websocket")).unwrap();
        let wrong = response(
            StatusCode::SWITCHING_PROTOCOLS,
            &[("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")],
        );
        assert_eq!(
            finish(wrong, handshake()).unwrap_err().status(),
            StatusCode::BAD_GATEWAY
        );
        let ok = response(StatusCode::OK, &[]);
        assert_eq!(
            finish(ok, handshake()).unwrap_err().status(),
            StatusCode::BAD_GATEWAY
        );
        let refused = response(StatusCode::FORBIDDEN, &[]);
        assert_eq!(
            finish(refused, handshake()).unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
}
