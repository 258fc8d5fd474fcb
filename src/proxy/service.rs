//! The per-connection hyper service: checks each request's target and head, normalises its
//! path, finds its route in the runtime in use, and acts: forwards it (forward.rs), answers it
//! from a template, a built-in or files (crate::files), or redirects; compresses the response
//! where the route says so (crate::compress); then records it (metrics, access log).

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Body;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use bytes::Bytes;

use super::client::Client;
use super::forward::{Limits, RequestRules, with_query};
use super::{ProxyError, ServedBody, ZooBody, h2_websocket, headers, request_id};
use crate::access::Verdict;
use crate::compress::{self, Wanted};
use crate::config::AccessLog as AccessLogFormat;
use crate::log::AccessEntry;
use crate::route;
use crate::runtime::{Forward, HeaderSteps, RouteAction, RouteStats, Runtime, Serving, Values};
use crate::upstream::RequestBody;

/// Longest request target accepted (nginx's default large header buffer); longer is 414.
const MAX_URI_BYTES: usize = 8 * 1024;

/// The per-connection service: shared state plus who the client is.
#[derive(Clone)]
pub(super) struct ProxyService {
    pub(super) serving: Arc<Serving>,
    pub(super) client_addr: SocketAddr,
    /// `X-Forwarded-For` for this client, made once per connection rather than per request.
    pub(super) forwarded_for: HeaderValue,
    /// Where upgraded tunnels are tracked, so graceful shutdown waits for them.
    pub(super) tunnels: TaskTracker,
    /// `http` or `https`: what the client connected with, for `X-Forwarded-Proto`.
    pub(super) scheme: &'static str,
}

/// The answer to one request, on its way.
pub(super) type Answer = Pin<Box<dyn Future<Output = Response<ServedBody>> + Send>>;

impl ProxyService {
    /// Answers one request, whichever engine read it (its body says which).
    pub(super) fn answer(&self, mut request: Request<RequestBody>) -> Answer {
        let service = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let serving = Arc::clone(&service.serving);
            // The one load of the runtime for this request: all of it is read from this one.
            let runtime = serving.load_full();
            serving.metrics.in_flight.inc();
            let method = request.method().clone();
            let access_log = runtime.config.access_log;
            // Copied only when an access log wants it.
            let logged = (access_log != AccessLogFormat::Off).then(|| {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or("", PathAndQuery::as_str);
                (target.to_owned(), request.version())
            });
            let client = Client::of(
                service.client_addr.ip(),
                &service.forwarded_for,
                request.headers(),
                &runtime.config.trust_forwarded,
            );
            // Sent on to the app as it is in the request, and returned to the client below.
            let request_id = runtime.config.request_id.as_ref().map(|name| {
                let id = request_id::request_id(request.headers(), name, || client.trusted);
                request.headers_mut().insert(name.clone(), id.clone());
                id
            });
            let mut trace = Trace {
                target: runtime
                    .response_headers_read_target
                    .then(|| Target::of(&request)),
                ..Trace::default()
            };
            // RFC 8441: an h2 extended CONNECT goes to the app as an HTTP/1.1 WebSocket upgrade.
            let handled = match h2_websocket::translate_request(&mut request) {
                Ok(handshake) => service
                    .handle(request, &runtime, &client, &mut trace)
                    .await
                    .and_then(|response| h2_websocket::finish(response, handshake)),
                Err(error) => Err(error),
            };
            let mut response = match handled {
                Ok(response) => response,
                Err(error) => {
                    if let Some(kind) = error.upstream_kind() {
                        let label = trace.route.as_ref().map_or("-", |route| &*route.upstream);
                        serving.metrics.upstream_error(label, kind);
                    }
                    error
                        .into_response()
                        .map(|body| Either::Left(Either::Left(body)))
                }
            };
            if let (Some(name), Some(id)) = (&runtime.config.request_id, &request_id) {
                response.headers_mut().insert(name.clone(), id.clone());
            }
            // The route's rules once routed (they start with the top level's), else the top
            // level's: zoo's own error answers get them too.
            let rules = match &trace.route {
                Some(_) => trace.response_headers.as_deref(),
                None => runtime.response_headers.as_deref(),
            };
            if let Some(rules) = rules {
                apply_response_rules(
                    rules,
                    &mut response,
                    &trace,
                    &method,
                    &client,
                    request_id.as_ref(),
                );
            }
            let duration = started.elapsed();
            serving.metrics.in_flight.dec();
            let route = trace.route.as_ref().unwrap_or(&runtime.unrouted);
            route.metrics.observe(&method, response.status(), duration);
            if let Some((target, version)) = logged {
                serving.access_log.record(
                    access_log,
                    &AccessEntry {
                        client: client.ip,
                        method: method.as_str(),
                        target: &target,
                        version,
                        status: response.status().as_u16(),
                        bytes: response.body().size_hint().exact(),
                        duration,
                        route: route.key(),
                        upstream: &route.upstream,
                        upstream_time: trace.upstream_time,
                        request_id: request_id.as_ref().and_then(|id| id.to_str().ok()),
                    },
                );
            }
            response
        })
    }
}

/// What handling a request found out, for its metrics, access log line and response rules.
#[derive(Default)]
pub(super) struct Trace {
    pub(super) route: Option<Arc<RouteStats>>,
    pub(super) upstream_time: Option<Duration>,
    /// The matched route's response rules.
    response_headers: Option<Arc<HeaderSteps>>,
    /// The request's path, query and host, kept only when a response rule reads them.
    target: Option<Target>,
}

/// What response rules can read of a request that is gone by the time its response is.
struct Target {
    /// Normalised once the request was routed.
    path: String,
    query: String,
    host: String,
}

impl Target {
    fn of(request: &Request<RequestBody>) -> Self {
        Self {
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
            host: request_host(request).unwrap_or("").to_owned(),
        }
    }
}

/// Applies `rules` to the response of a request (see [`Trace::target`]).
fn apply_response_rules(
    rules: &HeaderSteps,
    response: &mut Response<ServedBody>,
    trace: &Trace,
    method: &Method,
    client: &Client<'_>,
    request_id: Option<&HeaderValue>,
) {
    if !rules.renders() {
        rules.apply(response.headers_mut(), &Values::NONE);
        return;
    }
    let target = trace.target.as_ref();
    let values = Values {
        path: target.map_or("", |target| &target.path),
        query: target.map_or("", |target| &target.query),
        host: target.map_or("", |target| &target.host),
        method: method.as_str(),
        client_ip: client.text.to_str().unwrap_or(""),
        request_id: request_id.and_then(|id| id.to_str().ok()).unwrap_or(""),
    };
    rules.apply(response.headers_mut(), &values);
}

impl ProxyService {
    async fn handle(
        &self,
        request: Request<RequestBody>,
        runtime: &Runtime,
        client: &Client<'_>,
        trace: &mut Trace,
    ) -> Result<Response<ServedBody>, ProxyError> {
        if request
            .uri()
            .path_and_query()
            .is_some_and(|target| target.as_str().len() > MAX_URI_BYTES)
        {
            return Err(ProxyError::UriTooLong {
                limit: MAX_URI_BYTES,
            });
        }
        // Not a forward proxy: CONNECT would tunnel to wherever the client names (an h2
        // extended CONNECT for WebSocket was made a GET before this), and TRACE echoes the
        // request, cookies and all, back to a script (nginx answers 405 to it too).
        match *request.method() {
            Method::CONNECT => return Err(ProxyError::MethodNotAllowed { method: "CONNECT" }),
            Method::TRACE => return Err(ProxyError::MethodNotAllowed { method: "TRACE" }),
            _ => {}
        }
        // hyper decodes `chunked` and nothing else; another coding would reach the app
        // without its name (Transfer-Encoding is hop-by-hop). nginx answers 501 as well.
        let mut codings = request.headers().get_all(header::TRANSFER_ENCODING).iter();
        if let Some(first) = codings.next()
            && (codings.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked"))
        {
            return Err(ProxyError::TransferCoding);
        }
        // RFC 9112 3.2: an HTTP/1.1 request names exactly one host; two could route one way
        // here and another way at the app.
        let mut hosts = request.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if request.version() == Version::HTTP_11 => {
                return Err(ProxyError::Host("no Host header"));
            }
            (Some(_), Some(_)) => return Err(ProxyError::Host("more than one Host header")),
            (host, _) => {
                // The host the request is for (RFC 9112 3.2.2: an absolute-form target's wins)
                // reaches the app as Host and X-Forwarded-Host: it must be a plain
                // `host[:port]`, never userinfo (`u:p@`) nor a path.
                let named = match request.uri().authority() {
                    Some(authority) => Some(authority.as_str().as_bytes()),
                    None => host.map(HeaderValue::as_bytes),
                };
                if named.is_some_and(|named| !headers::is_valid_host(named)) {
                    return Err(ProxyError::Host("the host is not a valid host[:port]"));
                }
            }
        }
        let path = route::normalize(request.uri().path())?;
        if let (Some(target), Cow::Owned(normalized)) = (&mut trace.target, &path) {
            target.path.clone_from(normalized);
        }
        // Only read when some route names a host: a path-only table never looks at it.
        let host = runtime
            .routes
            .has_hosts()
            .then(|| request_host(&request))
            .flatten();
        let Some(matched) = runtime.routes.lookup(host, &path) else {
            return Err(ProxyError::NoRoute {
                path: path.into_owned(),
            });
        };
        trace.route = Some(Arc::clone(&matched.value.stats));
        trace
            .response_headers
            .clone_from(&matched.value.options.response_headers);
        if let Some(access) = &matched.value.options.access
            && !access.admits(client.ip)
        {
            return Err(ProxyError::Forbidden {
                route: matched.value.stats.key().to_string(),
                client: client.ip,
            });
        }
        // The `Authorization` it checks is removed by the route's request rules (the
        // runtime made that their first step), unless `forward_auth_header`.
        if let Some(gate) = &matched.value.options.basic_auth {
            let route = || matched.value.stats.key().to_string();
            match gate.check(request.headers()).await {
                Verdict::Admitted => {}
                Verdict::Refused => {
                    return Err(ProxyError::Unauthorized {
                        route: route(),
                        challenge: gate.challenge().clone(),
                    });
                }
                Verdict::Busy => return Err(ProxyError::AuthBusy { route: route() }),
            }
        }
        // Taken before the request moves on; `None` (the default) skips compression whole.
        let wanted = Wanted::of(
            request.method(),
            request.headers(),
            &matched.value.options.compress,
        );
        let answered = match &matched.value.action {
            RouteAction::Static(files) => {
                // Boxed, so the forwarding path's future does not carry the file lookup's space.
                let response = Box::pin(files.serve(&request, &path, matched.prefix_len)).await;
                Ok(response.map(|body| Either::Right(Box::new(body))))
            }
            RouteAction::Forward(forward) => {
                let Forward {
                    upstream,
                    strip_prefix,
                    max_body,
                    timeout,
                    wait,
                } = &**forward;
                let forwarded_path = if *strip_prefix {
                    route::strip_prefix(&path, matched.prefix_len)
                } else {
                    Cow::Borrowed(&*path)
                };
                // The common case, a normal path forwarded as it came, reuses the request's
                // own target (no allocation); anything else is rebuilt around the query.
                let target = match (&forwarded_path, request.uri().path_and_query()) {
                    (Cow::Borrowed(forwarded), Some(original))
                        if matches!(path, Cow::Borrowed(_))
                            && forwarded.len() == original.path().len() =>
                    {
                        original.clone()
                    }
                    _ => with_query(&forwarded_path, request.uri().query())?,
                };
                // Owned, and only with rules: the request moves on while they still need them.
                let rules = matched.value.options.request_headers.as_ref();
                let request_id = rules
                    .and(runtime.config.request_id.as_ref())
                    .and_then(|name| request.headers().get(name))
                    .cloned();
                let rules_path = rules
                    .filter(|steps| steps.reads_target())
                    .map(|_| path.clone().into_owned());
                let limits = Limits {
                    max_body: *max_body,
                    timeout: *timeout,
                    wait: *wait,
                    body_timeout: runtime.config.client_body_timeout,
                    route: matched.value.stats.key(),
                    client: client.ip,
                    http1_client: super::forward::http1_client(runtime.config.engine),
                    request_headers: rules.map(|steps| RequestRules {
                        steps,
                        path: rules_path.as_deref().unwrap_or(""),
                        client_ip: client.text.to_str().unwrap_or(""),
                        request_id: request_id
                            .as_ref()
                            .and_then(|id| id.to_str().ok())
                            .unwrap_or(""),
                    }),
                };
                self.forward(request, upstream, target, &limits, client.trusted, trace)
                    .await
                    .map(|response| response.map(Either::Left))
            }
            RouteAction::Respond {
                status,
                headers,
                body,
            } => {
                let body = body.render(&template_values(&request, &path, runtime, client));
                let mut response = full_response(*status, HeaderMap::clone(headers), body);
                response
                    .headers_mut()
                    .entry(header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
                Ok(response.map(Either::Left))
            }
            RouteAction::Redirect { status, location } => {
                let location = location.render(&template_values(&request, &path, runtime, client));
                let mut headers = HeaderMap::new();
                // Validated at load time; a placeholder could still bring in a bad byte.
                if let Ok(location) = HeaderValue::try_from(location) {
                    headers.insert(header::LOCATION, location);
                }
                Ok(full_response(*status, headers, String::new()).map(Either::Left))
            }
            RouteAction::Health => {
                let (status, body) = self.serving.health.answer(&runtime.apps);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(full_response(status, headers, body).map(Either::Left))
            }
            RouteAction::Metrics => Ok(crate::telemetry::metrics_response(&self.serving.metrics)
                .map(|body| Either::Left(Either::Right(body)))),
        };
        let response = answered?;
        Ok(match &wanted {
            None => response.map(Either::Left),
            Some(wanted) => compress::apply(response, wanted),
        })
    }
}

fn full_response(status: StatusCode, headers: HeaderMap, body: String) -> Response<ZooBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn template_values<'a>(
    request: &'a Request<RequestBody>,
    path: &'a str,
    runtime: &Runtime,
    client: &'a Client<'a>,
) -> Values<'a> {
    Values {
        path,
        client_ip: client.text.to_str().unwrap_or(""),
        request_id: runtime
            .config
            .request_id
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .and_then(|id| id.to_str().ok())
            .unwrap_or(""),
        query: request.uri().query().unwrap_or(""),
        method: request.method().as_str(),
        host: request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| request.uri().authority().map(Authority::as_str))
            .unwrap_or(""),
    }
}

/// The host a request names, for host routes: an absolute-form target's authority or HTTP/2's
/// `:authority` wins over `Host` (RFC 9112 3.2.2), as when forwarding.
fn request_host(request: &Request<RequestBody>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok()),
    }
}
