//! Body and `Location` templates of `respond` and `redirect` routes: `{path}`, `{query}`,
//! `{method}`, `{host}` and `{request_id}` are replaced per request; every other character, braces included,
//! is literal (so a JSON body needs no escaping). Parsed once when the table is built.

/// A template split into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As written in the config, for `zoo check` and `zoo status`.
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Path,
    Query,
    Method,
    Host,
    RequestId,
}

/// The request values a template can use.
pub struct Values<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// The request's ID; empty with `request_id = false`.
    pub request_id: &'a str,
}

const PLACEHOLDERS: [(&str, Part); 5] = [
    ("{path}", Part::Path),
    ("{query}", Part::Query),
    ("{method}", Part::Method),
    ("{host}", Part::Host),
    ("{request_id}", Part::RequestId),
];

impl Template {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some((token, part)) = PLACEHOLDERS
                .iter()
                .find(|(token, _)| rest.starts_with(token))
            {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part.clone());
                rest = &rest[token.len()..];
            } else {
                let next = rest.chars().next().map_or(1, char::len_utf8);
                literal.push_str(&rest[..next]);
                rest = &rest[next..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Self {
            source: text.to_owned(),
            parts,
        }
    }

    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    #[must_use]
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Literal(text) => text,
                Part::Path => values.path,
                Part::Query => values.query,
                Part::Method => values.method,
                Part::Host => values.host,
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
        request_id: "0190-id",
    };

    #[test]
    fn placeholders_are_replaced() {
        let template =
            Template::parse("I'm Go!\r\n[{path}] {method} {host}?{query} {request_id}\n");
        assert_eq!(
            template.render(&VALUES),
            "I'm Go!\r\n[/go/a] GET example.com?x=1 0190-id\n"
        );
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
