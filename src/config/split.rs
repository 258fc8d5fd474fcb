//! Finds the `[routes]` table of a config written in the plain form that large configs take
//! (one `[routes]` header, each route one `KEY = VALUE` entry under it), so that its routes
//! can be parsed a batch at a time instead of as one tree: toml's tree, tokens and events
//! cost ~1.5 KB a route, 450 MB for 300,000 routes (issue 13).
//!
//! Only a lexer pass, which allocates one offset per route. Any other shape (`[routes."/a"]`,
//! a dotted key, a second `routes` anywhere at the root, a key spelt with escapes) is left to
//! toml's whole-document parse, which stays the one authority on TOML: so is any document in
//! which a batch turns out not to parse (the caller falls back then), so that every syntax
//! error reads the same whichever way the routes were read.

use std::ops::Range;

use toml_parser::Source;
use toml_parser::lexer::{Token, TokenKind};

/// The `[routes]` table of a document, by byte offsets into it.
pub(super) struct RoutesRegion {
    /// The `[routes]` header and everything under it, up to the next header or the end.
    pub(super) cut: Range<usize>,
    /// Where each entry (`"/a" = { ... }`) starts; it runs to the next start, or to the end
    /// of `cut`, so that each slice from one start to a later one is a TOML document.
    pub(super) entries: Vec<usize>,
}

impl RoutesRegion {
    /// The source of entries `range` (indexes into [`Self::entries`]): a TOML document.
    pub(super) fn span_of(&self, range: Range<usize>) -> Range<usize> {
        let start = self
            .entries
            .get(range.start)
            .copied()
            .unwrap_or(self.cut.end);
        let end = self.entries.get(range.end).copied().unwrap_or(self.cut.end);
        start..end
    }

    /// Where a span of the document without `cut` (the rest) is in the whole document.
    pub(super) fn unshift(&self, span: Range<usize>) -> Range<usize> {
        let shift = |offset: usize, after: bool| {
            if offset > self.cut.start || (after && offset == self.cut.start) {
                offset + self.cut.len()
            } else {
                offset
            }
        };
        shift(span.start, true)..shift(span.end, false).max(shift(span.start, true))
    }
}

/// The plain `[routes]` table of `source`, or `None` when its routes are anywhere else or
/// written in another shape.
pub(super) fn find(source: &str) -> Option<RoutesRegion> {
    let mut tokens = Source::new(source)
        .lex()
        .filter(|token| token.kind() != TokenKind::Whitespace);
    let mut region: Option<RoutesRegion> = None;
    let mut inside = false;
    let mut under_header = false;
    while let Some(first) = tokens.next() {
        let start = first.span().start();
        match first.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline | TokenKind::Comment => continue,
            TokenKind::LeftSquareBracket => {
                if inside && let Some(region) = region.as_mut() {
                    region.cut.end = start;
                }
                inside = false;
                under_header = true;
                match header(source, &mut tokens)? {
                    Header::Routes if region.is_none() => {
                        inside = true;
                        region = Some(RoutesRegion {
                            cut: start..source.len(),
                            entries: Vec::new(),
                        });
                    }
                    Header::Routes => return None,
                    Header::Other => {}
                }
            }
            _ => {
                let key = first;
                let raw = text(source, &key);
                if inside {
                    if !matches!(
                        key.kind(),
                        TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString
                    ) || tokens.next()?.kind() != TokenKind::Equals
                    {
                        return None;
                    }
                    region.as_mut()?.entries.push(start);
                } else if !under_header && might_be_routes(raw) {
                    return None;
                }
                rest_of_statement(&mut tokens)?;
            }
        }
    }
    region
}

enum Header {
    Routes,
    Other,
}

/// Reads a table header after its `[`, up to the end of its line.
fn header(source: &str, tokens: &mut impl Iterator<Item = Token>) -> Option<Header> {
    let mut keys = Vec::new();
    loop {
        let token = tokens.next()?;
        match token.kind() {
            TokenKind::RightSquareBracket => break,
            TokenKind::Newline | TokenKind::Eof => return None,
            _ => keys.push(text(source, &token)),
        }
    }
    let array = keys.first() == Some(&"[");
    if array && tokens.next()?.kind() != TokenKind::RightSquareBracket {
        return None;
    }
    // A header ends its line: `[a] [routes]` is not a `[routes]` header (nor TOML).
    let mut after = tokens.next()?.kind();
    if after == TokenKind::Comment {
        after = tokens.next()?.kind();
    }
    if !matches!(after, TokenKind::Newline | TokenKind::Eof) {
        return None;
    }
    match &keys[usize::from(array)..] {
        [key] if !array && is_routes(key) => Some(Header::Routes),
        // `[[routes]]`, `[routes."/a"]`: routes in a shape the batches cannot read.
        [first, ..] if might_be_routes(first) => None,
        _ => Some(Header::Other),
    }
}

/// Skips the rest of a key-value statement: to the newline outside any brackets.
fn rest_of_statement(tokens: &mut impl Iterator<Item = Token>) -> Option<()> {
    let mut depth = 0usize;
    loop {
        match tokens.next()?.kind() {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.checked_sub(1)?;
            }
            TokenKind::Newline if depth == 0 => return Some(()),
            TokenKind::Eof => return (depth == 0).then_some(()),
            _ => {}
        }
    }
}

fn text<'s>(source: &'s str, token: &Token) -> &'s str {
    source
        .get(token.span().start()..token.span().end())
        .unwrap_or_default()
}

fn is_routes(raw: &str) -> bool {
    matches!(raw, "routes" | "\"routes\"" | "'routes'")
}

/// Whether a key token could name `routes`: it does, or it is a quoted key with escapes.
fn might_be_routes(raw: &str) -> bool {
    is_routes(raw) || (raw.starts_with('"') && raw.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries of `source`'s plain `[routes]` table, each as its source text.
    fn entries(source: &str) -> Option<Vec<&str>> {
        let region = find(source)?;
        Some(
            (0..region.entries.len())
                .map(|index| &source[region.span_of(index..index + 1)])
                .collect(),
        )
    }

    #[test]
    fn plain_routes_table_is_found_with_each_entry() {
        let source = "listen = \"x\"\n[routes]\n\"/a\" = { app = \"w\" }\n# c\n\
                      '/b' = [\n 1,\n]\nc = 2\n[apps.w]\ncommand = \"x\"\n";
        assert_eq!(
            entries(source).unwrap(),
            [
                "\"/a\" = { app = \"w\" }\n# c\n",
                "'/b' = [\n 1,\n]\n",
                "c = 2\n"
            ]
        );
        let region = find(source).unwrap();
        assert!(source[region.cut.clone()].starts_with("[routes]\n"));
        assert!(source[region.cut.end..].starts_with("[apps.w]"));
    }

    #[test]
    fn routes_to_the_end_of_the_document() {
        let source = "[ \"routes\" ]\n\"/a\" = 1";
        assert_eq!(entries(source).unwrap(), ["\"/a\" = 1"]);
    }

    #[test]
    fn other_shapes_are_left_to_toml() {
        for source in [
            "routes = { \"/a\" = 1 }\n",
            "routes.\"/a\" = 1\n",
            "[routes]\n\"/a\".app = \"w\"\n",
            "[routes.\"/a\"]\napp = \"w\"\n",
            "[[routes]]\n",
            "[routes]\n\"/a\" = 1\n[routes]\n",
            "[\"rout\\u0065s\"]\n\"/a\" = 1\n",
            "[routes]\n\"/a\" = { app = \"w\"\n",
            "[routes]\n\"/a\" = }\n",
            "no routes = 1\n",
            "[routes] \"/a\" = 1\n",
            "[apps.w] [routes]\n\"/a\" = 1\n",
        ] {
            assert!(find(source).is_none(), "{source:?}");
        }
    }

    #[test]
    fn documents_without_a_routes_header_have_no_region() {
        assert!(find("listen = \"x\"\n[apps.w]\nroutes = 1\n").is_none());
    }
}
