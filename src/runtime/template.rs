//! Templates of `respond` bodies, `redirect` locations and header rule values: `{path}`,
//! `{query}`, `{method}`, `{host}`, `{client_ip}` and `{request_id}` are replaced per request;
//! every other character, braces included, is literal (so a JSON body needs no escaping).
//! Parsed once when the table is built.

use std::ops::Range;

/// A template split into literal text and placeholders. One pointer wide, and its literal
/// parts are ranges of its source: a table of 300,000 `respond` and `redirect` routes held
/// each template's text twice, in up to four allocations (issue 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Box<Parsed>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    /// As written in the config, for `zoo check` and `zoo status`.
    source: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// A range of the source.
    Literal(Range<usize>),
    Path,
    Query,
    Method,
    Host,
    ClientIp,
    RequestId,
}

/// The request values a template can use.
pub struct Values<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// The client's address as zoo determined it (after `trust_forwarded`).
    pub client_ip: &'a str,
    /// The request's ID; empty with `request_id = false`.
    pub request_id: &'a str,
}

impl Values<'_> {
    /// For what renders no placeholder.
    pub const NONE: Values<'static> = Values {
        path: "",
        query: "",
        method: "",
        host: "",
        client_ip: "",
        request_id: "",
    };
}

const PLACEHOLDERS: [(&str, Part); 6] = [
    ("{path}", Part::Path),
    ("{query}", Part::Query),
    ("{method}", Part::Method),
    ("{host}", Part::Host),
    ("{client_ip}", Part::ClientIp),
    ("{request_id}", Part::RequestId),
];

impl Template {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        // Where the literal text being read started.
        let mut literal = 0;
        let mut at = 0;
        while let Some(rest) = text.get(at..)
            && !rest.is_empty()
        {
            if let Some((token, part)) = PLACEHOLDERS
                .iter()
                .find(|(token, _)| rest.starts_with(token))
            {
                if literal < at {
                    parts.push(Part::Literal(literal..at));
                }
                parts.push(part.clone());
                at += token.len();
                literal = at;
            } else {
                at += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        if literal < text.len() {
            parts.push(Part::Literal(literal..text.len()));
        }
        Self(Box::new(Parsed {
            source: Box::from(text),
            parts: parts.into_boxed_slice(),
        }))
    }

    #[must_use]
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The text of a literal part.
    fn text(&self, range: &Range<usize>) -> &str {
        self.0.source.get(range.clone()).unwrap_or_default()
    }

    /// Its text when it has no placeholder at all (the same for every request).
    #[must_use]
    pub fn literal(&self) -> Option<&str> {
        match &*self.0.parts {
            [] => Some(""),
            [Part::Literal(range)] => Some(self.text(range)),
            _ => None,
        }
    }

    /// Whether it reads the request's target or host, which are gone once the request was
    /// sent on (the method, client and ID are kept anyway).
    #[must_use]
    pub fn reads_target(&self) -> bool {
        self.0
            .parts
            .iter()
            .any(|part| matches!(part, Part::Path | Part::Query | Part::Host))
    }

    #[must_use]
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.0.parts {
            out.push_str(match part {
                Part::Literal(range) => self.text(range),
                Part::Path => values.path,
                Part::Query => values.query,
                Part::Method => values.method,
                Part::Host => values.host,
                Part::ClientIp => values.client_ip,
                Part::RequestId => values.request_id,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: Values<'static> = Values {
        path: "/go/a",
        query: "x=1",
        method: "GET",
        host: "example.com",
        client_ip: "192.0.2.7",
        request_id: "0190-id",
    };

    #[test]
    fn placeholders_are_replaced() {
        let template = Template::parse(
            "I'm Go!\r\n[{path}] {method} {host}?{query} {request_id} {client_ip}\n",
        );
        assert_eq!(
            template.render(&VALUES),
            "I'm Go!\r\n[/go/a] GET example.com?x=1 0190-id 192.0.2.7\n"
        );
        assert!(template.reads_target());
        assert_eq!(template.literal(), None);
    }

    #[test]
    fn templates_say_what_they_read() {
        assert_eq!(Template::parse("max-age=1").literal(), Some("max-age=1"));
        assert_eq!(Template::parse("").literal(), Some(""));
        let kept = Template::parse("{method} {client_ip} {request_id}");
        assert!(!kept.reads_target());
    }

    #[test]
    fn other_braces_are_literal() {
        let template = Template::parse("{\"ok\": true, \"p\": \"{path}\", \"x\": {nope}}");
        assert_eq!(
            template.render(&VALUES),
            "{\"ok\": true, \"p\": \"/go/a\", \"x\": {nope}}"
        );
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(Template::parse("é{path}ü").render(&VALUES), "é/go/aü");
    }
}
