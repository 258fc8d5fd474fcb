//! Header rules compiled for the request path: the top-level and the route's `set`, `add` and
//! `remove` of one side (request or response) flattened, once when the runtime is built, into
//! one list of steps in the order they apply (top-level set, add, remove, then the route's),
//! with parsed names, fixed values made once and templates pre-split. Applying them parses
//! nothing; a route and a top level without rules have no steps at all (`None`), which the
//! request path checks with one branch.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::template::{Template, Values};
use crate::config::HeaderEdits;

/// One side's rules, in the order they apply.
#[derive(Debug)]
pub(crate) struct HeaderSteps {
    steps: Vec<Step>,
    /// Whether a value reads `{path}`, `{query}` or `{host}`: only then does the response
    /// side keep a copy of them from the request.
    reads_target: bool,
    /// Whether any value is a template: without one, the request's values are not gathered.
    renders: bool,
}

#[derive(Debug)]
enum Step {
    Set(HeaderName, Content),
    Add(HeaderName, Content),
    Remove(HeaderName),
}

#[derive(Debug)]
enum Content {
    /// Made once; each use clones a reference-counted value.
    Fixed(HeaderValue),
    Template(Template),
}

impl Content {
    fn of(text: &str) -> Self {
        let template = Template::parse(text);
        match template.literal() {
            // Owned by `Bytes` from the start, so that its clones only count references.
            Some(text) => HeaderValue::from_maybe_shared(Bytes::from_owner(text.to_owned()))
                .map_or(Self::Template(template), Self::Fixed),
            None => Self::Template(template),
        }
    }

    /// The value for this request; `None` when what a placeholder brought in cannot be a
    /// header value (the header is then left as it was).
    fn value(&self, values: &Values<'_>) -> Option<HeaderValue> {
        match self {
            Self::Fixed(value) => Some(value.clone()),
            Self::Template(template) => HeaderValue::try_from(template.render(values)).ok(),
        }
    }
}

impl HeaderSteps {
    /// The steps of `sides` applied one after the other; `None` when none has any.
    pub(crate) fn compile(sides: &[&HeaderEdits]) -> Option<Self> {
        let mut steps = Vec::new();
        for edits in sides {
            let content = |(name, text): &(HeaderName, String)| (name.clone(), Content::of(text));
            steps.extend(edits.set.iter().map(content).map(|(n, c)| Step::Set(n, c)));
            steps.extend(edits.add.iter().map(content).map(|(n, c)| Step::Add(n, c)));
            steps.extend(edits.remove.iter().cloned().map(Step::Remove));
        }
        let templates = || {
            steps.iter().filter_map(|step| match step {
                Step::Set(_, Content::Template(template))
                | Step::Add(_, Content::Template(template)) => Some(template),
                _ => None,
            })
        };
        let reads_target = templates().any(Template::reads_target);
        let renders = templates().next().is_some();
        (!steps.is_empty()).then_some(Self {
            steps,
            reads_target,
            renders,
        })
    }

    pub(crate) fn reads_target(&self) -> bool {
        self.reads_target
    }

    pub(crate) fn renders(&self) -> bool {
        self.renders
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap, values: &Values<'_>) {
        for step in &self.steps {
            match step {
                Step::Set(name, content) => {
                    if let Some(value) = content.value(values) {
                        headers.insert(name.clone(), value);
                    }
                }
                Step::Add(name, content) => {
                    if let Some(value) = content.value(values) {
                        headers.append(name.clone(), value);
                    }
                }
                Step::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }

    /// `set a, b; add c; remove d`, for `zoo check`.
    pub(crate) fn describe(&self) -> String {
        let mut words: Vec<(&str, Vec<&str>)> = Vec::new();
        for step in &self.steps {
            let (verb, name) = match step {
                Step::Set(name, _) => ("set", name),
                Step::Add(name, _) => ("add", name),
                Step::Remove(name) => ("remove", name),
            };
            match words.last_mut() {
                Some((last, names)) if *last == verb => names.push(name.as_str()),
                _ => words.push((verb, vec![name.as_str()])),
            }
        }
        let parts: Vec<String> = words
            .into_iter()
            .map(|(verb, names)| format!("{verb} {}", names.join(", ")))
            .collect();
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: Values<'static> = Values {
        path: "/api/x",
        query: "",
        method: "GET",
        host: "example.com",
        client_ip: "192.0.2.7",
        request_id: "id-1",
    };

    fn edits(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderEdits {
        let named = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(name, value)| {
                    (
                        HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        (*value).to_owned(),
                    )
                })
                .collect()
        };
        HeaderEdits {
            set: named(set),
            add: named(add),
            remove: remove
                .iter()
                .map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap())
                .collect(),
        }
    }

    fn seen(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn nothing_configured_is_no_steps() {
        let none = edits(&[], &[], &[]);
        assert!(HeaderSteps::compile(&[&none, &none]).is_none());
    }

    #[test]
    fn set_add_remove_apply_in_order_top_level_first() {
        let top = edits(
            &[("x-a", "top"), ("x-gone", "1")],
            &[("x-a", "more")],
            &["x-route"],
        );
        let route = edits(
            &[("x-route", "{method} {path} {client_ip}")],
            &[("x-b", "{host}")],
            &["x-gone", "server"],
        );
        let steps = HeaderSteps::compile(&[&top, &route]).unwrap();
        assert!(steps.reads_target());
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("old"));
        headers.append("x-a", HeaderValue::from_static("older"));
        headers.insert("server", HeaderValue::from_static("app"));
        headers.insert("x-b", HeaderValue::from_static("first"));
        steps.apply(&mut headers, &VALUES);
        assert_eq!(seen(&headers, "x-a"), ["top", "more"]);
        assert_eq!(seen(&headers, "x-b"), ["first", "example.com"]);
        assert_eq!(seen(&headers, "x-route"), ["GET /api/x 192.0.2.7"]);
        assert!(seen(&headers, "x-gone").is_empty());
        assert!(seen(&headers, "server").is_empty());
        assert_eq!(
            steps.describe(),
            "set x-a, x-gone; add x-a; remove x-route; set x-route; add x-b; remove x-gone, server"
        );
    }

    #[test]
    fn a_value_a_placeholder_spoils_leaves_the_header_alone() {
        let steps = HeaderSteps::compile(&[&edits(&[("x-path", "{path}")], &[], &[])]).unwrap();
        let mut headers = HeaderMap::new();
        let values = Values {
            path: "/a\nb",
            ..VALUES
        };
        steps.apply(&mut headers, &values);
        assert!(headers.is_empty());
        let fixed = HeaderSteps::compile(&[&edits(&[("x-fixed", "1")], &[], &[])]).unwrap();
        assert!(!fixed.reads_target() && !fixed.renders());
        assert!(steps.renders());
    }
}
