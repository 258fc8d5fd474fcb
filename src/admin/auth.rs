//! Who may call which admin endpoint. The control socket serves every endpoint, but only to
//! root and to zoo's own uid (checked per connection, SO_PEERCRED). The `admin` TCP listener
//! serves the read-only probes to anyone who reaches it (`GET /livez`, `/readyz`, `/metrics`,
//! `/status`); the endpoints that change state or show app output (`POST /reload`,
//! `POST /apps/NAME/VERB`, `GET /apps/NAME/logs`) only to a bearer of `admin_token`, and not at
//! all when no token is configured. On both, a privileged request that looks like it came from
//! a browser (an `Origin`, or a content type an HTML form can send) is refused, so that a web
//! page cannot drive zoo through the user's browser (CSRF).
//!
//! Pure: no I/O; the admin server asks, this answers.

use std::path::PathBuf;

use http::{HeaderMap, Method, Request, StatusCode, header};
use ring::digest;

/// Which listener a connection came in on, and so what it may ask.
#[derive(Debug, Clone)]
pub enum Policy {
    /// The control socket; its peers were checked with [`peer_allowed`] when they connected.
    Socket,
    /// The `admin` TCP listener: read-only, plus everything for a bearer of the config's
    /// `admin_token` when one is set (read from the config in use, so a reload changes it).
    Tcp,
}

/// Why a request is not served; each variant maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("uid {uid} may not use this control socket (only root and uid {own} may)")]
    Peer { uid: u32, own: u32 },
    #[error(
        "{method} {path} is not served on the admin listener: set `admin_token` in the config \
         to enable it, or use the zoo CLI on the control socket"
    )]
    TcpReadOnly { method: Method, path: String },
    #[error("{method} {path} needs `Authorization: Bearer` with the config's `admin_token`")]
    Unauthorized { method: Method, path: String },
    #[error("{method} {path} carries an Origin header ({origin}): browsers may not drive zoo")]
    FromBrowser {
        method: Method,
        path: String,
        origin: String,
    },
    #[error(
        "{method} {path} has content type {content_type}, which an HTML form can send: \
         browsers may not drive zoo"
    )]
    FormContent {
        method: Method,
        path: String,
        content_type: String,
    },
    #[error("this zoo runs {}, not {}", runs.display(), named.display())]
    OtherConfig { runs: PathBuf, named: PathBuf },
}

impl Refusal {
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Refusal::OtherConfig { .. } => StatusCode::CONFLICT,
            Refusal::Peer { .. }
            | Refusal::TcpReadOnly { .. }
            | Refusal::FromBrowser { .. }
            | Refusal::FormContent { .. } => StatusCode::FORBIDDEN,
        }
    }
}

/// Content types a cross-origin HTML form (or `fetch` without a CORS preflight) can send.
const FORM_CONTENT_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Root, or the uid zoo runs as: the only peers the control socket serves. An app that zoo
/// runs as `user = "nobody"` is a different uid, so it cannot stop its neighbours.
#[must_use]
pub fn peer_allowed(peer: u32, own: u32) -> bool {
    peer == 0 || peer == own
}

impl Policy {
    /// Whether `request` may be served on this listener.
    ///
    /// # Errors
    /// The [`Refusal`] to answer with instead.
    pub fn check<B>(&self, request: &Request<B>, admin_token: Option<&str>) -> Result<(), Refusal> {
        let (method, path) = (request.method(), request.uri().path());
        if !privileged(method, path) {
            return Ok(());
        }
        from_browser(method, path, request.headers())?;
        match (self, admin_token) {
            (Policy::Socket, _) => Ok(()),
            (Policy::Tcp, None) => Err(Refusal::TcpReadOnly {
                method: method.clone(),
                path: path.to_owned(),
            }),
            (Policy::Tcp, Some(token)) => {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "));
                match presented {
                    Some(presented) if same_secret(presented, token) => Ok(()),
                    _ => Err(Refusal::Unauthorized {
                        method: method.clone(),
                        path: path.to_owned(),
                    }),
                }
            }
        }
    }
}

/// Everything but the read-only GETs: unknown GET paths stay open so that they answer 404,
/// while every other method and the whole `/apps/` namespace are privileged, so that an
/// endpoint added later is closed until someone decides otherwise.
fn privileged(method: &Method, path: &str) -> bool {
    *method != Method::GET || path.starts_with("/apps/") || path == "/reload"
}

/// Refuses what a browser sends on behalf of a web page: browsers add `Origin` to every
/// cross-origin (and same-origin non-GET) request, and a form can only send these types.
fn from_browser(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return Err(Refusal::FromBrowser {
            method: method.clone(),
            path: path.to_owned(),
            origin: String::from_utf8_lossy(origin.as_bytes()).into_owned(),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
    if let Some(content_type) = content_type {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if FORM_CONTENT_TYPES.contains(&essence) {
            return Err(Refusal::FormContent {
                method: method.clone(),
                path: path.to_owned(),
                content_type,
            });
        }
    }
    Ok(())
}

/// Compares the SHA-256 digests of both, byte by byte without an early exit: the time taken
/// depends neither on the token's length nor on where the first wrong byte is.
fn same_secret(presented: &str, token: &str) -> bool {
    let presented = digest::digest(&digest::SHA256, presented.as_bytes());
    let token = digest::digest(&digest::SHA256, token.as_bytes());
    let difference = presented
        .as_ref()
        .iter()
        .zip(token.as_ref())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    /// A listener's policy and the `admin_token` of the config in use.
    type Listener<'t> = (Policy, Option<&'t str>);

    const SOCKET: Listener<'static> = (Policy::Socket, None);

    fn tcp(token: Option<&str>) -> Listener<'_> {
        (Policy::Tcp, token)
    }

    fn status(listener: &Listener<'_>, request: &Request<()>) -> StatusCode {
        let (policy, token) = listener;
        policy
            .check(request, *token)
            .map_or_else(|refusal| refusal.status(), |()| StatusCode::OK)
    }

    #[test]
    fn read_only_endpoints_are_open_everywhere() {
        for path in ["/livez", "/readyz", "/metrics", "/status"] {
            let get = request(Method::GET, path, &[("origin", "http://evil.example")]);
            assert_eq!(status(&tcp(None), &get), StatusCode::OK, "{path}");
            assert_eq!(status(&tcp(Some("t")), &get), StatusCode::OK, "{path}");
            assert_eq!(status(&SOCKET, &get), StatusCode::OK, "{path}");
        }
        // Unknown GET paths get their 404 from the router.
        let unknown = request(Method::GET, "/nope", &[]);
        assert_eq!(status(&tcp(None), &unknown), StatusCode::OK);
    }

    #[test]
    fn privileged_endpoints_are_closed_on_tcp_without_token() {
        for (method, path) in [
            (Method::POST, "/reload"),
            (Method::POST, "/apps/web/stop"),
            (Method::POST, "/apps/web/restart"),
            (Method::POST, "/apps/web/scale/4"),
            (Method::POST, "/apps/web/start"),
            (Method::GET, "/apps/web/logs"),
            (Method::POST, "/status"),
            (Method::DELETE, "/anything"),
        ] {
            let refused = request(method.clone(), path, &[]);
            assert_eq!(
                status(&tcp(None), &refused),
                StatusCode::FORBIDDEN,
                "{method} {path}"
            );
            assert_eq!(status(&SOCKET, &refused), StatusCode::OK, "{method} {path}");
        }
    }

    #[test]
    fn token_must_match_exactly() {
        let policy = tcp(Some("s3cret"));
        let stop = |headers: &[(&str, &str)]| request(Method::POST, "/apps/web/stop", headers);
        assert_eq!(
            status(&policy, &stop(&[("authorization", "Bearer s3cret")])),
            StatusCode::OK
        );
        for wrong in [
            &[][..],
            &[("authorization", "Bearer s3cre")],
            &[("authorization", "Bearer s3cret ")],
            &[("authorization", "Bearer S3CRET")],
            &[("authorization", "Basic s3cret")],
            &[("authorization", "s3cret")],
        ] {
            assert_eq!(
                status(&policy, &stop(wrong)),
                StatusCode::UNAUTHORIZED,
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn browser_requests_are_refused_even_with_the_token() {
        let bearer = ("authorization", "Bearer t");
        for (extra, what) in [
            (("origin", "http://evil.example"), "origin"),
            (("origin", "null"), "null origin"),
            (
                ("content-type", "application/x-www-form-urlencoded"),
                "form",
            ),
            (
                ("content-type", "multipart/form-data; boundary=x"),
                "multipart",
            ),
            (("content-type", "Text/Plain;charset=UTF-8"), "text"),
        ] {
            let post = request(Method::POST, "/reload", &[bearer, extra]);
            assert_eq!(
                status(&tcp(Some("t")), &post),
                StatusCode::FORBIDDEN,
                "{what}"
            );
            assert_eq!(status(&SOCKET, &post), StatusCode::FORBIDDEN, "{what}");
        }
        let json = request(
            Method::POST,
            "/reload",
            &[bearer, ("content-type", "application/json")],
        );
        assert_eq!(status(&tcp(Some("t")), &json), StatusCode::OK);
    }

    #[test]
    fn only_root_and_own_uid_may_use_the_socket() {
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(65534, 1000));
        assert!(!peer_allowed(65534, 0));
    }

    #[test]
    fn refusals_map_to_their_status() {
        let (method, path) = (Method::POST, "/reload".to_owned());
        assert_eq!(
            Refusal::Peer { uid: 1, own: 0 }.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            Refusal::TcpReadOnly {
                method: method.clone(),
                path: path.clone()
            }
            .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            Refusal::Unauthorized {
                method: method.clone(),
                path: path.clone()
            }
            .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            Refusal::FromBrowser {
                method: method.clone(),
                path: path.clone(),
                origin: "x".to_owned()
            }
            .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            Refusal::FormContent {
                method,
                path,
                content_type: "text/plain".to_owned()
            }
            .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            Refusal::OtherConfig {
                runs: PathBuf::from("/a.toml"),
                named: PathBuf::from("/b.toml")
            }
            .status(),
            StatusCode::CONFLICT
        );
    }
}
