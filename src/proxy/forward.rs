//! Forwarding a routed request to its upstream: hop-by-hop and forwarded headers, the target
//! rewritten for the app or the external server, the body held to the route's `max_body`,
//! the wait for an app that is not ready, resends of what can be sent twice, the timeout to
//! response headers, and the WebSocket tunnel when both sides agree to upgrade.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme as UriScheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{Either, Empty, Limited};
use hyper::body::Body;
use tokio::time::Instant;

use super::engine::EngineUpgrade;
use super::error::{self, BodyFault};
use super::service::{ProxyService, Trace};
use super::{ProxyError, ZooBody, headers, tunnel};
use crate::config::Engine;
use crate::h1::ResponseHeadError;
use crate::route;
use crate::runtime::{HeaderSteps, Upstream, Values};
use crate::supervise::{AppHandle, Lease};
use crate::telemetry::Metrics;
use crate::upstream::{
    self, ClientBody, Http1Client, RequestBody, ResponseBody, Returned, SendError,
    UpgradedUpstream, UploadOffer, UpstreamBody,
};

/// Pause before asking again whether an app that refused a connection is ready: the reaper
/// may not have seen it die yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How many times a replayable request whose app connection broke after writing is sent
/// again (each after waiting for the app to be ready).
const APP_RESENDS: u32 = 3;

impl ProxyService {
    pub(super) async fn forward(
        &self,
        mut request: Request<RequestBody>,
        upstream: &Upstream,
        path_and_query: PathAndQuery,
        limits: &Limits<'_>,
        trusted: bool,
        trace: &mut Trace,
    ) -> Result<Response<ZooBody>, ProxyError> {
        // An absolute-form target's (or HTTP/2's `:authority`) host wins over the Host header
        // (RFC 9112 3.2.2).
        let client_host = match request.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => request.headers().get(header::HOST).cloned(),
        };
        let rules_host = limits
            .request_headers
            .as_ref()
            .and_then(|_| client_host.clone());
        let websocket = tunnel::wants_websocket(request.headers());
        let headers = request.headers_mut();
        headers::remove_hop_by_hop(headers);
        headers::join_cookies(headers);
        headers::set_forwarded(
            headers,
            self.forwarded_for.clone(),
            self.scheme,
            client_host.clone(),
            trusted,
        );
        let client_upgrade = websocket.then(|| {
            tunnel::mark_websocket(request.headers_mut());
            ClientUpgrade::of(&mut request)
        });

        match upstream {
            Upstream::App {
                app,
                h2c,
                authority,
                ..
            } => {
                // An app that starts on demand is started by this request (the same wait as
                // for a restart).
                if !app.is_ready() && {
                    app.demand();
                    !app.wait_ready(limits.wait).await
                } {
                    return Err(ProxyError::NotReady {
                        upstream: upstream.describe(),
                        waited: limits.wait,
                    });
                }
                let host = match client_host {
                    Some(host) => Some(host),
                    None if *h2c => None,
                    // HTTP/1.1 requires a Host; an HTTP/1.0 client may not have sent one.
                    None => {
                        HeaderValue::from_str(Upstream::app_authority(app, authority).as_str()).ok()
                    }
                };
                if let Some(host) = host {
                    request.headers_mut().insert(header::HOST, host);
                }
                if *h2c {
                    let authority = Upstream::app_authority(app, authority);
                    *request.uri_mut() = uri(UriScheme::HTTP, authority, path_and_query);
                    *request.version_mut() = Version::HTTP_2;
                } else {
                    *request.uri_mut() = Uri::from(path_and_query);
                    *request.version_mut() = Version::HTTP_11;
                }
            }
            Upstream::External(external) => {
                request
                    .headers_mut()
                    .insert(header::HOST, external.host.clone());
                let target = match route::join_path(&external.target.path, path_and_query.as_str())
                {
                    Cow::Borrowed(_) => path_and_query,
                    Cow::Owned(joined) => PathAndQuery::from_maybe_shared(Bytes::from(joined))
                        .map_err(|_| ProxyError::BadTarget)?,
                };
                *request.uri_mut() = Uri::from(target);
                *request.version_mut() = Version::HTTP_11;
            }
        }
        if let Some(rules) = &limits.request_headers {
            let (mut parts, body) = request.into_parts();
            let values = Values {
                path: rules.path,
                query: parts.uri.query().unwrap_or(""),
                method: parts.method.as_str(),
                host: rules_host
                    .as_ref()
                    .and_then(|host| host.to_str().ok())
                    .unwrap_or(""),
                client_ip: rules.client_ip,
                request_id: rules.request_id,
            };
            rules.steps.apply(&mut parts.headers, &values);
            request = Request::from_parts(parts, body);
        }
        let request = limit_body(request, limits)?;
        let sent = Instant::now();
        let (mut response, mut lease) =
            send(request, upstream, limits, &self.serving.metrics).await?;
        trace.upstream_time = Some(sent.elapsed());
        check_response(&response, upstream, client_upgrade.is_some())?;

        let headers = response.headers_mut();
        headers::remove_hop_by_hop(headers);
        if let Some(client_upgrade) = client_upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            tunnel::mark_websocket(response.headers_mut());
            let upstream_upgrade = match response.body_mut().take_upgrade() {
                Some(upgraded) => UpstreamUpgrade::Zoo(upgraded),
                None => UpstreamUpgrade::Hyper(hyper::upgrade::on(&mut response)),
            };
            let open_tunnels = self.serving.metrics.open_tunnels.clone();
            // An open tunnel counts as a request in flight to its instance.
            let tunnel_lease = lease.take();
            self.tunnels.spawn(async move {
                let _in_flight = tunnel_lease;
                client_upgrade.tunnel(upstream_upgrade, &open_tunnels).await;
            });
        }
        let (parts, mut body) = response.into_parts();
        if let Some(lease) = lease {
            body.hold(lease);
        }
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

/// Where the client's end of a WebSocket tunnel comes from once the `101` is written: hyper's
/// server connection, or zoo's own engine (which hands over its socket).
enum ClientUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Engine(EngineUpgrade),
}

impl ClientUpgrade {
    fn of(request: &mut Request<RequestBody>) -> Self {
        match request.extensions_mut().remove::<EngineUpgrade>() {
            Some(engine) => Self::Engine(engine),
            None => Self::Hyper(hyper::upgrade::on(request)),
        }
    }

    /// Runs the tunnel between the client and the upstream's upgraded connection.
    async fn tunnel(
        self,
        upstream: UpstreamUpgrade,
        open_tunnels: &prometheus_client::metrics::gauge::Gauge,
    ) {
        let upstream = async move {
            match upstream {
                UpstreamUpgrade::Hyper(upgrade) => upgrade.await.ok().map(tunnel::Upstream::Hyper),
                UpstreamUpgrade::Zoo(upgraded) => Some(tunnel::Upstream::Zoo(upgraded)),
            }
        };
        // A reset either way just ends the tunnel: nobody is left to tell.
        match self {
            Self::Hyper(client) => {
                if let (Ok(client), Some(upstream)) = tokio::join!(client, upstream) {
                    open_tunnels.inc();
                    let _ = tunnel::run(client, upstream).await;
                    open_tunnels.dec();
                }
            }
            Self::Engine(client) => {
                if let (Some((client, early)), Some(upstream)) =
                    tokio::join!(client.connection(), upstream)
                {
                    open_tunnels.inc();
                    let _ = tunnel::run_from_socket(client, early, upstream).await;
                    open_tunnels.dec();
                }
            }
        }
    }
}

/// The upstream's end of a tunnel once it answered `101`: from hyper's client, or the raw
/// connection zoo's client read the `101` on.
enum UpstreamUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Zoo(UpgradedUpstream),
}

/// Refuses (502) an upstream response that zoo cannot pass on as it decoded it: framing other
/// than what hyper's client decoded (RFC 9112 6.1: `Content-Length` beside
/// `Transfer-Encoding`, or a coding other than `chunked` that would reach the client unnamed;
/// zoo's client refused those while parsing) and a `101` nobody asked for (the client would be
/// left on a connection in an unknown protocol). A body that failed before any of it was sent
/// is `send`'s to resend or refuse.
fn check_response(
    response: &Response<ResponseBody>,
    upstream: &Upstream,
    client_asked_upgrade: bool,
) -> Result<(), ProxyError> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && !(client_asked_upgrade && tunnel::wants_websocket_answer(response.headers()))
    {
        return Err(ProxyError::UnsolicitedUpgrade {
            upstream: upstream.describe(),
        });
    }
    if response.body().framing_checked() {
        return Ok(());
    }
    if let Some(fault) = headers::response_framing_fault(response.headers()) {
        return Err(ProxyError::UpstreamFraming {
            upstream: upstream.describe(),
            fault,
        });
    }
    Ok(())
}

/// The HTTP/1.1 client that goes with a server `engine`: each engine uses its own, so that
/// `engine = "hyper"` is hyper's whole path, the one the zoo engine is compared with.
pub(super) fn http1_client(engine: Engine) -> Http1Client {
    match engine {
        Engine::Hyper => Http1Client::Hyper,
        Engine::Zoo => Http1Client::Zoo,
    }
}

/// The per-route limits a forwarded request is held to.
pub(super) struct Limits<'a> {
    pub(super) max_body: Option<u64>,
    pub(super) timeout: Duration,
    /// How long to wait for an app that is not ready (or refused a connection).
    pub(super) wait: Duration,
    /// `client_body_timeout`: the longest pause between two reads of the request body.
    pub(super) body_timeout: Duration,
    pub(super) route: &'a str,
    /// The client's address as zoo determined it (proxy/client.rs), for `balance =
    /// "client_ip"`.
    pub(super) client: IpAddr,
    /// hyper's HTTP/1.1 client or zoo's (the top-level `engine`).
    pub(super) http1_client: Http1Client,
    /// The request rules (top level, then the route's), applied last, so that they may
    /// replace what zoo set (`X-Forwarded-*`, `Host`); `None` edits nothing.
    pub(super) request_headers: Option<RequestRules<'a>>,
}

/// A route's request rules and the values of their templates that the request no longer
/// holds by the time they apply.
pub(super) struct RequestRules<'a> {
    pub(super) steps: &'a HeaderSteps,
    /// The normalised path, before any `strip_prefix`.
    pub(super) path: &'a str,
    pub(super) client_ip: &'a str,
    pub(super) request_id: &'a str,
}

/// The request with its body as sent upstream: none at all when it has none (so it can be
/// sent again), else held to `client_body_timeout` and cut at the route's `max_body`. A
/// declared length over the limit is refused before any of the body is read.
fn limit_body(
    request: Request<RequestBody>,
    limits: &Limits<'_>,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    if let Some(offer) = parts.extensions.get_mut::<UploadOffer>() {
        // A body spliced rather than read as frames (engine/upload.rs) is held to the same
        // timeout; its length, known, is within `max_body` once past the check below.
        offer.idle_timeout(limits.body_timeout);
    }
    let body = if body.is_end_stream() {
        Either::Right(Either::Right(Empty::new()))
    } else if let Some(limit) = limits.max_body {
        if body.size_hint().lower() > limit {
            return Err(ProxyError::BodyTooLarge {
                route: limits.route.to_owned(),
                limit,
            });
        }
        Either::Right(Either::Left(Limited::new(
            ClientBody::new(body, limits.body_timeout),
            usize::try_from(limit).unwrap_or(usize::MAX),
        )))
    } else {
        Either::Left(ClientBody::new(body, limits.body_timeout))
    };
    Ok(Request::from_parts(parts, body))
}

/// Whether sending a request given back once more is harmless even if it was written: an
/// idempotent method and no body.
fn harmless_twice(returned: &Returned) -> bool {
    match returned {
        Returned::Written(request) | Returned::Unsent(request) => {
            request.method().is_idempotent() && upstream::is_bodiless(request)
        }
    }
}

/// Sends `request` to its upstream's pool and waits for the response headers up to the
/// route's timeout; for an app, also gives the [`Lease`] on the instance that answered.
///
/// Each attempt to an app goes to the instance [`AppHandle::pick`] chooses, avoiding the one
/// that just failed when another is ready. A request that no connection took (refused: none
/// of it was written) goes again, whatever its method and body, for as long as the route's
/// `wait` lasts. A reused pooled connection that could not take it is retried inside the
/// pool. A request whose connection broke after it was written is sent once more only when
/// doing it twice is harmless: an idempotent method without a body, a few times to an app
/// (each after it is ready), once to an external target. Never a POST with its body. The
/// same holds for a response whose body failed before any of it was read (the connection
/// went away between head and body): the client has been sent nothing yet.
async fn send(
    request: Request<UpstreamBody>,
    upstream: &Upstream,
    limits: &Limits<'_>,
    metrics: &Metrics,
) -> Result<(Response<ResponseBody>, Option<Lease>), ProxyError> {
    let attempt = async {
        let waiting_until = crate::deadline::after(limits.wait);
        let mut request = request;
        let mut resent_after_writing = 0;
        // The instance the last attempt failed on, and why.
        let mut failed: Option<(usize, SendError)> = None;
        loop {
            let (pool, lease) = match upstream {
                Upstream::App { app, pool, .. } => {
                    let avoid = failed.as_ref().map(|(index, _)| *index);
                    match pick(app, avoid, limits.client, waiting_until).await {
                        Some(lease) => (pool, Some(lease)),
                        None => return Err(failed.map(|(_, error)| error)),
                    }
                }
                Upstream::External(external) => (&external.pool, None),
            };
            let app_addr = lease.as_ref().map(|lease| lease.instance().dial());
            let (error, returned) = match pool.send(app_addr, request, limits.http1_client).await {
                Ok(response) => return Ok((response, lease)),
                // A malformed response head is refused (502), not asked for again.
                Err((error @ SendError::Head(_), _)) => return Err(Some(error)),
                Err(failure) => failure,
            };
            let next = match returned {
                // Nothing of it was written: it may go to any instance again.
                Some(Returned::Unsent(unsent)) if lease.is_some() => unsent,
                // Written, or its response's body lost before any of it was read (an app
                // killed between writing its head and its body): the client has been sent
                // nothing yet, so it goes again when doing it twice is harmless.
                Some(returned) if harmless_twice(&returned) => {
                    let may_resend = match upstream {
                        Upstream::App { .. } => resent_after_writing < APP_RESENDS,
                        Upstream::External(_) => resent_after_writing == 0,
                    };
                    // A refused connect wrote nothing either (an external target's).
                    if !error.is_connect() {
                        if !may_resend {
                            return Err(Some(error));
                        }
                        resent_after_writing += 1;
                    } else if lease.is_none() {
                        return Err(Some(error));
                    }
                    returned.into_request()
                }
                _ => return Err(Some(error)),
            };
            if let Some(lease) = lease {
                if error.is_connect() {
                    lease.instance().eject();
                }
                failed = Some((lease.instance().index, error));
            }
            metrics.upstream_retry(upstream.label());
            request = next;
        }
    };
    match tokio::time::timeout(limits.timeout, attempt).await {
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(None)) => Err(ProxyError::NotReady {
            upstream: upstream.describe(),
            waited: limits.wait,
        }),
        Ok(Err(Some(SendError::Head(ResponseHeadError::Framing { fault })))) => {
            Err(ProxyError::UpstreamFraming {
                upstream: upstream.describe(),
                fault,
            })
        }
        Ok(Err(Some(source))) => Err(match error::body_fault(&source) {
            Some(BodyFault::TooLarge) => ProxyError::BodyTooLarge {
                route: limits.route.to_owned(),
                limit: limits.max_body.unwrap_or_default(),
            },
            Some(BodyFault::Stalled(after)) => ProxyError::BodyTimeout { after },
            Some(BodyFault::Unreadable) => ProxyError::BadBody {
                upstream: upstream.describe(),
                source,
            },
            None => ProxyError::Upstream {
                upstream: upstream.describe(),
                source,
            },
        }),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.describe(),
            after: limits.timeout,
        }),
    }
}

/// The instance of `app` for the next attempt: a ready one other than `avoid` (the one that
/// just failed) at once; else, after a short pause (the reaper may not have seen the failed
/// one die yet), whichever is ready first before `until`. `None` when none is.
async fn pick(
    app: &AppHandle,
    avoid: Option<usize>,
    client: IpAddr,
    until: Instant,
) -> Option<Lease> {
    loop {
        match app.pick(avoid, client) {
            Some(lease) if avoid.is_none() || avoid != Some(lease.instance().index) => {
                return Some(lease);
            }
            _ => {}
        }
        if avoid.is_some() {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || !app.wait_ready(left).await {
            return None;
        }
        if let Some(lease) = app.pick(None, client) {
            return Some(lease);
        }
    }
}

/// `path?query` as a request target; `path` is a normalised path, so only a byte that was
/// already invalid in the request can fail it (answered as a bad target, 400).
pub(super) fn with_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| ProxyError::BadTarget)
}

/// The upstream request URI.
fn uri(scheme: UriScheme, authority: Authority, path_and_query: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).expect("scheme, authority and path are all set")
}
