//! The walk of `headers`: the header rules at the top level and on a route (`request` and
//! `response`, each with `set`, `add` and `remove`), and a `respond` route's own response
//! headers, which share the route's `headers` table. Names are parsed and checked against
//! the headers zoo owns (front.rs); values are templates whose literal text must be a valid
//! header value.

use http::{HeaderName, HeaderValue, header};
use toml::de::DeValue;

use super::front::owned_by_zoo;
use super::read::{Value, Walker, join};
use crate::config::{HeaderEdits, HeaderRules};

const RULE_SIDES: &[&str] = &["request", "response"];
const EDIT_KEYS: &[&str] = &["set", "add", "remove"];

/// A route's `headers` table: its rules and, on a `respond` route, the plain
/// `Name = "value"` headers of its answer.
#[derive(Default)]
pub(super) struct RouteHeaders {
    pub(super) rules: HeaderRules,
    pub(super) respond: Vec<(HeaderName, HeaderValue)>,
}

/// Which way a side's edits go: `Host` may be set on a request (the upstream's virtual
/// host), never added or removed (a request has exactly one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Which edit a name is read for, for its messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edit {
    Set,
    Add,
    Remove,
}

impl Walker<'_> {
    /// The top-level `headers = { request = {...}, response = {...} }`.
    pub(super) fn header_rules(&mut self, at: &str, value: &Value<'_>) -> Option<HeaderRules> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, RULE_SIDES);
        self.rule_sides(at, fields.get("request"), fields.get("response"))
    }

    /// A route's `headers`: `request` and `response` are rules; any other key is a header of
    /// a `respond` route's answer (`respond` says whether the route is one).
    pub(super) fn route_headers(
        &mut self,
        at: &str,
        value: &Value<'_>,
        respond: bool,
    ) -> Option<RouteHeaders> {
        let table = self.table(at, value)?;
        let mut request = None;
        let mut response = None;
        let mut plain = Some(Vec::new());
        for (key, value) in table {
            let name: &str = key.get_ref();
            match name {
                "request" => request = Some(value),
                "response" => response = Some(value),
                _ if respond => match (self.respond_header(at, key, value), plain.as_mut()) {
                    (Some(header), Some(plain)) => plain.push(header),
                    _ => plain = None,
                },
                _ => {
                    let message = format!(
                        "unknown key `{name}`; expected `request` or `response` (a header of \
                         the answer itself is for `respond` routes: use \
                         `response = {{ set = {{ {name} = \"...\" }} }}`)"
                    );
                    self.error(key.span(), at, message);
                    plain = None;
                }
            }
        }
        let rules = self.rule_sides(at, request, response);
        Some(RouteHeaders {
            rules: rules?,
            respond: plain?,
        })
    }

    fn rule_sides(
        &mut self,
        at: &str,
        request: Option<&Value<'_>>,
        response: Option<&Value<'_>>,
    ) -> Option<HeaderRules> {
        let mut side = |key: &str, value: Option<&Value<'_>>, side: Side| match value {
            None => Some(HeaderEdits::default()),
            Some(value) => self.header_edits(&join(at, key), value, side),
        };
        let request = side("request", request, Side::Request);
        let response = side("response", response, Side::Response);
        Some(HeaderRules {
            request: request?,
            response: response?,
        })
    }

    fn header_edits(&mut self, at: &str, value: &Value<'_>, side: Side) -> Option<HeaderEdits> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, EDIT_KEYS);
        let mut named = |key: &str, edit: Edit| match fields.get(key) {
            None => Some(Vec::new()),
            Some(value) => self.header_templates(&join(at, key), value, side, edit),
        };
        let set = named("set", Edit::Set);
        let add = named("add", Edit::Add);
        let remove = match fields.get("remove") {
            None => Some(Vec::new()),
            Some(value) => self.removed_headers(&join(at, "remove"), value, side),
        };
        Some(HeaderEdits {
            set: set?,
            add: add?,
            remove: remove?,
        })
    }

    /// `{ Name = "template", ... }` of `set` or `add`.
    fn header_templates(
        &mut self,
        at: &str,
        value: &Value<'_>,
        side: Side,
        edit: Edit,
    ) -> Option<Vec<(HeaderName, String)>> {
        let table = self.table(at, value)?;
        let mut headers = Some(Vec::with_capacity(table.len()));
        for (key, value) in table {
            let name = self.rule_name(at, key.get_ref(), key.span(), side, edit);
            let header_at = join(at, key.get_ref());
            let template = self.string(&header_at, value).and_then(|text| {
                // Placeholders are plain ASCII, so the text is valid exactly when its literal
                // parts are: what a request puts in them is checked when it is rendered.
                if HeaderValue::from_str(&text).is_ok() {
                    return Some(text);
                }
                let message = "invalid header value: control characters are not allowed";
                self.error(value.span(), &header_at, message);
                None
            });
            match (name, template, headers.as_mut()) {
                (Some(name), Some(template), Some(headers)) => headers.push((name, template)),
                _ => headers = None,
            }
        }
        headers
    }

    /// `remove = ["Name", ...]`.
    fn removed_headers(
        &mut self,
        at: &str,
        value: &Value<'_>,
        side: Side,
    ) -> Option<Vec<HeaderName>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(at, value, "an array of header names");
            return None;
        };
        let names: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let item_at = format!("{at}[{index}]");
                let text = self.string(&item_at, item)?;
                self.rule_name(&item_at, &text, item.span(), side, Edit::Remove)
            })
            .collect();
        names.into_iter().collect()
    }

    /// A header name a rule may edit: valid, and not one zoo owns (but a request's `Host`
    /// may be set).
    fn rule_name(
        &mut self,
        at: &str,
        text: &str,
        span: std::ops::Range<usize>,
        side: Side,
        edit: Edit,
    ) -> Option<HeaderName> {
        let Ok(name) = HeaderName::from_bytes(text.as_bytes()) else {
            self.error(span, at, format!("invalid header name \"{text}\""));
            return None;
        };
        if name == header::HOST {
            return match (side, edit) {
                (Side::Request, Edit::Set) => Some(name),
                (Side::Request, _) => {
                    let message = "`Host` can only be set: a request names exactly one host";
                    self.error(span, at, message);
                    None
                }
                (Side::Response, _) => {
                    self.error(span, at, "`Host` is a request header");
                    None
                }
            };
        }
        if let Some(why) = owned_by_zoo(&name) {
            let verb = match edit {
                Edit::Set => "set",
                Edit::Add => "added",
                Edit::Remove => "removed",
            };
            self.error(span, at, format!("`{text}` cannot be {verb}: {why}"));
            return None;
        }
        Some(name)
    }

    /// One `Name = "value"` header of a `respond` route's answer.
    fn respond_header(
        &mut self,
        at: &str,
        key: &toml::Spanned<std::borrow::Cow<'_, str>>,
        value: &Value<'_>,
    ) -> Option<(HeaderName, HeaderValue)> {
        let name: &str = key.get_ref();
        let header_at = join(at, name);
        let header_name = HeaderName::from_bytes(name.as_bytes()).ok();
        let header_name = match header_name {
            None => {
                self.error(key.span(), at, format!("invalid header name \"{name}\""));
                None
            }
            Some(header_name) => match owned_by_zoo(&header_name) {
                Some(why) => {
                    let message = format!("`{name}` cannot be set: {why}");
                    self.error(key.span(), at, message);
                    None
                }
                None => Some(header_name),
            },
        };
        let header_value = self.string(&header_at, value).and_then(|text| {
            let header_value = HeaderValue::from_bytes(text.as_bytes()).ok();
            if header_value.is_none() {
                let message = "invalid header value: control characters are not allowed";
                self.error(value.span(), &header_at, message);
            }
            header_value
        });
        Some((header_name?, header_value?))
    }
}
