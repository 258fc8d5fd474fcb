//! The walk of the front-door settings that apply to every route: `request_id` and
//! `request_id_header`; the top-level `headers` rules (headers.rs); and the one list of header names zoo itself owns, which no setting
//! may name (they describe the connection or the message's framing, not the request).

use http::HeaderName;

use super::read::{Fields, Walker};

/// `X-Request-ID`: what load balancers and most frameworks use.
const DEFAULT_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Header names no setting may name, each with why (lowercase, as `HeaderName` is).
const OWNED_BY_ZOO: &[(&str, &str)] = &[
    (
        "connection",
        "it describes one connection and is removed at each hop",
    ),
    (
        "keep-alive",
        "it describes one connection and is removed at each hop",
    ),
    (
        "te",
        "it describes one connection and is removed at each hop",
    ),
    (
        "upgrade",
        "it describes one connection and is removed at each hop",
    ),
    (
        "transfer-encoding",
        "it frames the body, which zoo does for each hop",
    ),
    (
        "content-length",
        "it frames the body, which zoo does for each hop",
    ),
    ("trailer", "it announces the trailers the body really has"),
    (
        "host",
        "it names the route's host; zoo sets it for each upstream",
    ),
];

/// Why zoo does not let a setting name `name`, if it does not. Every `Proxy-*` header is
/// for the proxy that reads it (`Proxy-Authorization` carries a client's credentials for
/// one hop), never to be passed on or made up.
pub(super) fn owned_by_zoo(name: &HeaderName) -> Option<&'static str> {
    if name.as_str().starts_with("proxy-") {
        return Some("a `Proxy-*` header is meant for the one proxy that reads it");
    }
    OWNED_BY_ZOO
        .iter()
        .find(|(owned, _)| *owned == name.as_str())
        .map(|(_, why)| *why)
}

impl Walker<'_> {
    /// `request_id` (default true) and `request_id_header`: the header the ID travels in,
    /// `None` when IDs are off.
    pub(super) fn request_id(&mut self, fields: &Fields<'_, '_>) -> Option<Option<HeaderName>> {
        let enabled = fields
            .get("request_id")
            .map_or(Some(true), |value| self.boolean("request_id", value));
        let header = match fields.get("request_id_header") {
            None => Some(DEFAULT_REQUEST_ID_HEADER),
            Some(value) => {
                let text = self.non_empty_string("request_id_header", value)?;
                match HeaderName::from_bytes(text.as_bytes()) {
                    Ok(name) => match owned_by_zoo(&name) {
                        None => Some(name),
                        Some(why) => {
                            let message = format!("cannot carry the request ID: {why}");
                            self.error(value.span(), "request_id_header", message);
                            None
                        }
                    },
                    Err(_) => {
                        let message = format!("invalid header name \"{text}\"");
                        self.error(value.span(), "request_id_header", message);
                        None
                    }
                }
            }
        };
        if enabled == Some(false)
            && let Some(span) = fields.key_span("request_id_header")
        {
            let message = "has no effect with `request_id = false`";
            self.error(span, "request_id_header", message);
            return None;
        }
        Some(enabled?.then_some(header?))
    }
}
