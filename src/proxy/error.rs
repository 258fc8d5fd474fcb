//! Why zoo answered a request itself with an error, and the status and one-line body for it.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::ZooBody;
use crate::route::PathError;
use crate::upstream::{ClientBodyTimeout, SendError};

/// What a 405 says zoo serves: every method but `CONNECT` and `TRACE`.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    #[error("Transfer-Encoding other than `chunked` is not supported")]
    TransferCoding,
    #[error("{0}")]
    Host(&'static str),
    #[error("method {method} is not served: zoo is a reverse proxy, not a forward one")]
    MethodNotAllowed { method: &'static str },
    #[error("request target longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("request body over route `{route}`'s max_body of {limit} bytes")]
    BodyTooLarge { route: String, limit: u64 },
    #[error("bad request body for {upstream}: {}", innermost_cause(source))]
    BadBody {
        upstream: String,
        #[source]
        source: SendError,
    },
    #[error("the client sent nothing of its request body for {after:?} (client_body_timeout)")]
    BodyTimeout { after: Duration },
    #[error("the request target is not valid once normalised")]
    BadTarget,
    #[error("no route for {path}")]
    NoRoute { path: String },
    /// The route's `allow`/`deny` refuse the client's address; the app never sees it.
    #[error("route `{route}` does not admit {client}")]
    Forbidden {
        route: String,
        client: std::net::IpAddr,
    },
    /// The route's `basic_auth` found no right user and password in the request.
    #[error("route `{route}` needs a user and password")]
    Unauthorized {
        route: String,
        /// `Basic realm="..."`, sent as `WWW-Authenticate`.
        challenge: HeaderValue,
    },
    /// Too many `basic_auth` checks wait for bcrypt: this one was not made.
    #[error("route `{route}`: too many credential checks are waiting; try again")]
    AuthBusy { route: String },
    #[error("{upstream} is not ready (waited {waited:?})")]
    NotReady { upstream: String, waited: Duration },
    #[error("{upstream}: {}", innermost_cause(source))]
    Upstream {
        upstream: String,
        #[source]
        source: SendError,
    },
    #[error("{upstream} sent no response headers within {after:?}")]
    Timeout { upstream: String, after: Duration },
    #[error("extended CONNECT for `:protocol` `{protocol}` is not supported (only websocket)")]
    ConnectProtocol { protocol: String },
    #[error("{upstream} sent a response with {fault}")]
    UpstreamFraming {
        upstream: String,
        fault: &'static str,
    },
    #[error("{upstream} switched protocols (101) to a request that asked for no WebSocket")]
    UnsolicitedUpgrade { upstream: String },
    #[error("the upstream's WebSocket handshake has a wrong Sec-WebSocket-Accept")]
    WebSocketAccept,
    #[error("the upstream answered {status} to a WebSocket handshake instead of 101")]
    WebSocketNotSwitched { status: StatusCode },
}

impl ProxyError {
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadTarget | Self::Host(_) => StatusCode::BAD_REQUEST,
            Self::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadBody { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::NotReady { .. } | Self::AuthBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ConnectProtocol { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamFraming { .. }
            | Self::UnsolicitedUpgrade { .. }
            | Self::WebSocketAccept
            | Self::WebSocketNotSwitched { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The kind of upstream failure, for `zoo_upstream_errors_total`; `None` when the
    /// request itself was at fault.
    #[must_use]
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Self::NotReady { .. } => Some("not_ready"),
            Self::Upstream { source, .. } if source.is_connect() => Some("connect"),
            Self::Upstream { .. } => Some("exchange"),
            Self::Timeout { .. } => Some("timeout"),
            Self::UpstreamFraming { .. }
            | Self::UnsolicitedUpgrade { .. }
            | Self::WebSocketAccept
            | Self::WebSocketNotSwitched { .. } => Some("exchange"),
            Self::BadPath(_)
            | Self::BadTarget
            | Self::TransferCoding
            | Self::Host(_)
            | Self::MethodNotAllowed { .. }
            | Self::UriTooLong { .. }
            | Self::BodyTooLarge { .. }
            | Self::BadBody { .. }
            | Self::BodyTimeout { .. }
            | Self::NoRoute { .. }
            | Self::Forbidden { .. }
            | Self::Unauthorized { .. }
            | Self::AuthBusy { .. }
            | Self::ConnectProtocol { .. } => None,
        }
    }

    /// `STATUS REASON: cause` as one `text/plain` line.
    #[must_use]
    pub fn into_response(self) -> Response<ZooBody> {
        let status = self.status();
        let body = format!(
            "{} {}: {self}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            // RFC 9110 11.6.1: a 401 names the scheme and realm to answer with.
            Self::Unauthorized { challenge, .. } => {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Self::NotReady { .. } | Self::AuthBusy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 9110 15.5.6: a 405 lists the methods the target does take.
            Self::MethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            }
            _ => {}
        }
        response
    }
}

/// What went wrong with the client's request body while it was being sent upstream, if that
/// is why sending failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFault {
    /// It went over the route's `max_body`.
    TooLarge,
    /// The client paused longer than `client_body_timeout` in it.
    Stalled(Duration),
    /// It could not be read: bad chunked framing, or the client went away.
    Unreadable,
}

pub(super) fn body_fault(error: &(dyn StdError + 'static)) -> Option<BodyFault> {
    let mut cause = Some(error);
    let mut user_body = false;
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return Some(BodyFault::TooLarge);
        }
        if let Some(ClientBodyTimeout(after)) = error.downcast_ref() {
            return Some(BodyFault::Stalled(*after));
        }
        // hyper's "user body" errors are failures of the body zoo sent: the client's; zoo's
        // client names them itself.
        user_body |= error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
            || matches!(error.downcast_ref(), Some(SendError::RequestBody(_)));
        cause = error.source();
    }
    user_body.then_some(BodyFault::Unreadable)
}

/// The most specific message in an error chain ("Connection refused (os error 111)" rather
/// than hyper's "client error (Connect)").
fn innermost_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(error: ProxyError) -> (StatusCode, String, Option<HeaderValue>) {
        let response = error.into_response();
        let status = response.status();
        let retry = (response.headers().get(header::RETRY_AFTER))
            .or_else(|| response.headers().get(header::ALLOW))
            .cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), retry)
    }

    #[tokio::test]
    async fn bad_path_is_400() {
        let (status, body, _) = body_of(ProxyError::BadPath(PathError::AboveRoot)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.starts_with("400 Bad Request: bad request path: "),
            "{body}"
        );
    }

    #[tokio::test]
    async fn other_transfer_coding_is_501() {
        let (status, body, _) = body_of(ProxyError::TransferCoding).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::NOT_IMPLEMENTED,
                "501 Not Implemented: Transfer-Encoding other than `chunked` is not supported\n"
            )
        );
    }

    #[tokio::test]
    async fn connect_and_trace_are_405_with_allow() {
        for method in ["CONNECT", "TRACE"] {
            let (status, body, allow) = body_of(ProxyError::MethodNotAllowed { method }).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(
                body,
                format!(
                    "405 Method Not Allowed: method {method} is not served: zoo is a reverse \
                     proxy, not a forward one\n"
                )
            );
            assert_eq!(allow.unwrap(), ALLOWED_METHODS);
        }
    }

    #[tokio::test]
    async fn long_target_is_414() {
        let (status, body, _) = body_of(ProxyError::UriTooLong { limit: 8192 }).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::URI_TOO_LONG,
                "414 URI Too Long: request target longer than 8192 bytes\n"
            )
        );
    }

    #[tokio::test]
    async fn large_body_is_413_naming_the_route() {
        let error = ProxyError::BodyTooLarge {
            route: "/up".into(),
            limit: 10,
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body,
            "413 Payload Too Large: request body over route `/up`'s max_body of 10 bytes\n"
        );
    }

    #[tokio::test]
    async fn body_limit_is_found_in_a_chain() {
        let limited = http_body_util::Limited::new(Full::new(Bytes::from_static(b"12")), 1);
        let error = limited.collect().await.unwrap_err();
        assert_eq!(body_fault(error.as_ref()), Some(BodyFault::TooLarge));
        let other = std::io::Error::other("reset");
        assert_eq!(body_fault(&other), None);
    }

    #[tokio::test]
    async fn a_stalled_body_is_408_and_found_in_a_chain() {
        let after = Duration::from_secs(60);
        let (status, body, _) = body_of(ProxyError::BodyTimeout { after }).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the client sent nothing of its request body for 60s \
                 (client_body_timeout)\n"
            )
        );
        #[derive(Debug, thiserror::Error)]
        #[error("sending the body")]
        struct Sending(#[source] Box<dyn StdError + Send + Sync>);
        let wrapped = Sending(ClientBodyTimeout(after).into());
        assert_eq!(body_fault(&wrapped), Some(BodyFault::Stalled(after)));
    }

    #[tokio::test]
    async fn bad_target_is_400() {
        let (status, body, _) = body_of(ProxyError::BadTarget).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the request target is not valid once normalised\n"
            )
        );
    }

    #[tokio::test]
    async fn no_route_is_404() {
        let (status, body, _) = body_of(ProxyError::NoRoute { path: "/x".into() }).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "404 Not Found: no route for /x\n")
        );
    }

    #[tokio::test]
    async fn forbidden_is_403_naming_the_route_and_client() {
        let error = ProxyError::Forbidden {
            route: "/admin".into(),
            client: "10.1.2.3".parse().unwrap(),
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::FORBIDDEN,
                "403 Forbidden: route `/admin` does not admit 10.1.2.3\n"
            )
        );
    }

    #[tokio::test]
    async fn unauthorized_is_401_with_the_challenge() {
        let error = ProxyError::Unauthorized {
            route: "/metrics".into(),
            challenge: HeaderValue::from_static("Basic realm=\"metrics\""),
        };
        let challenge = error.into_response().headers()[header::WWW_AUTHENTICATE].clone();
        assert_eq!(challenge, "Basic realm=\"metrics\"");
        let error = ProxyError::Unauthorized {
            route: "/metrics".into(),
            challenge,
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: route `/metrics` needs a user and password\n"
            )
        );
    }

    #[tokio::test]
    async fn not_ready_is_503_with_retry_after() {
        let error = ProxyError::NotReady {
            upstream: "app `python`".into(),
            waited: Duration::from_secs(10),
        };
        let (status, body, retry) = body_of(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "503 Service Unavailable: app `python` is not ready (waited 10s)\n"
        );
        assert_eq!(retry.unwrap(), "1");
    }

    #[tokio::test]
    async fn timeout_is_504() {
        let error = ProxyError::Timeout {
            upstream: "app `node`".into(),
            after: Duration::from_secs(60),
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            body,
            "504 Gateway Timeout: app `node` sent no response headers within 60s\n"
        );
    }

    #[tokio::test]
    async fn unsupported_connect_protocol_is_501() {
        let error = ProxyError::ConnectProtocol {
            protocol: "connect-udp".into(),
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::NOT_IMPLEMENTED,
                "501 Not Implemented: extended CONNECT for `:protocol` `connect-udp` is not \
                 supported (only websocket)\n"
            )
        );
    }

    #[tokio::test]
    async fn failed_websocket_handshakes_are_502() {
        let (status, body, _) = body_of(ProxyError::WebSocketAccept).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the upstream's WebSocket handshake has a wrong \
                 Sec-WebSocket-Accept\n"
            )
        );
        let error = ProxyError::WebSocketNotSwitched {
            status: StatusCode::OK,
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the upstream answered 200 OK to a WebSocket handshake \
                 instead of 101\n"
            )
        );
    }

    #[tokio::test]
    async fn misframed_and_unsolicited_upstream_responses_are_502_naming_the_app() {
        let error = ProxyError::UpstreamFraming {
            upstream: "app `web`".into(),
            fault: "both Content-Length and Transfer-Encoding",
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: app `web` sent a response with both Content-Length and \
                 Transfer-Encoding\n"
            )
        );
        let error = ProxyError::UnsolicitedUpgrade {
            upstream: "app `web`".into(),
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: app `web` switched protocols (101) to a request that asked \
                 for no WebSocket\n"
            )
        );
    }

    #[tokio::test]
    async fn refused_upstream_is_502_naming_the_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let request = http::Request::builder()
            .uri("/")
            .header(header::HOST, closed.to_string())
            .body(Either::Right(Either::Right(http_body_util::Empty::new())))
            .unwrap();
        let Err((source, _)) = crate::upstream::Pool::app(false)
            .send(
                Some(crate::supervise::Dial::Tcp(closed)),
                request,
                crate::upstream::Http1Client::Zoo,
            )
            .await
        else {
            panic!("a closed port answered");
        };
        assert!(source.is_connect(), "{source}");
        let error = ProxyError::Upstream {
            upstream: format!("app `node` at {closed}"),
            source,
        };
        let (status, body, _) = body_of(error).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(
            body.starts_with(&format!("502 Bad Gateway: app `node` at {closed}: ")),
            "{body}"
        );
        assert!(body.contains("refused"), "{body}");
        assert_eq!(body.lines().count(), 1, "{body}");
    }
}
