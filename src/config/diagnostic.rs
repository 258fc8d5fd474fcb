//! Rendering of config errors the way rustc and just show them: `file:line:col: error: ...`,
//! then the source line and a caret under the offending span. Pure: turns a byte span of the
//! source into a 1-based line and a 1-based column counted in characters.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// One problem found in a config file, located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line of the start of the span.
    pub line: usize,
    /// 1-based column of the start of the span, counted in characters.
    pub column: usize,
    /// What is wrong, starting with the dotted key path when there is one
    /// (`apps.web.port: expected an integer, found a string`).
    pub message: String,
    /// The source line with a caret under the span, ready to print under the headline.
    pub snippet: String,
}

/// Tabs are drawn as this many spaces so that the caret lines up under them.
const TAB: &str = "    ";

impl Diagnostic {
    /// Locates `span` (byte offsets into `source`) and renders its snippet.
    pub(super) fn new(source: &str, span: Range<usize>, message: String) -> Self {
        let start = floor_char_boundary(source, span.start);
        let end = floor_char_boundary(source, span.end.max(start));
        let line_start = source[..start].rfind('\n').map_or(0, |newline| newline + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |newline| start + newline);
        let line = source[..start].matches('\n').count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r');
        let before = &source[line_start..start];
        let column = before.chars().count() + 1;
        // Multi-line spans are underlined on their first line only.
        let underlined = &source[start..end.min(line_end)];
        let pad = width(before);
        let carets = width(underlined).max(1);
        let number = line.to_string();
        let gutter = " ".repeat(number.len());
        let snippet = format!(
            "{gutter} |\n{number} | {}\n{gutter} | {}{}",
            text.replace('\t', TAB),
            " ".repeat(pad),
            "^".repeat(carets),
        );
        Self {
            line,
            column,
            message,
            snippet,
        }
    }

    /// Renders the headline and snippet, naming the file as the user gave it.
    #[must_use]
    pub fn display<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        Rendered {
            diagnostic: self,
            path,
        }
    }
}

struct Rendered<'a> {
    diagnostic: &'a Diagnostic,
    path: &'a Path,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Diagnostic {
            line,
            column,
            message,
            snippet,
        } = self.diagnostic;
        write!(
            f,
            "{}:{line}:{column}: error: {message}\n{snippet}",
            self.path.display()
        )
    }
}

/// Display width in columns, counting a tab as [`TAB`] and every other character as one.
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| if c == '\t' { TAB.len() } else { 1 })
        .sum()
}

/// The largest char boundary at or below `index`, clamped to the source (spans from the TOML
/// parser are in range, but a bad span must not panic).
fn floor_char_boundary(source: &str, index: usize) -> usize {
    let mut index = index.min(source.len());
    while !source.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, span: Range<usize>) -> String {
        Diagnostic::new(
            source,
            span,
            "apps.web.port: expected an integer, found a string".into(),
        )
        .display(Path::new("zoo.toml"))
        .to_string()
    }

    #[test]
    fn diagnostic_renders_line_column_and_caret() {
        let source = "[apps.web]\nport = \"abc\"\n";
        let start = source.find("\"abc\"").unwrap();
        assert_eq!(
            render(source, start..start + 5),
            "zoo.toml:2:8: error: apps.web.port: expected an integer, found a string\n  |\n2 | port = \"abc\"\n  |        ^^^^^"
        );
    }

    #[test]
    fn diagnostic_gutter_widens_with_line_number() {
        let source = format!("{}port = \"abc\"\n", "\n".repeat(11));
        let start = source.find('"').unwrap();
        let rendered = render(&source, start..start + 5);
        assert_eq!(
            rendered,
            "zoo.toml:12:8: error: apps.web.port: expected an integer, found a string\n   |\n12 | port = \"abc\"\n   |        ^^^^^"
        );
    }

    #[test]
    fn diagnostic_counts_columns_in_characters() {
        let source = "é = \"x\"";
        let diagnostic = Diagnostic::new(source, 5..8, String::new());
        assert_eq!((diagnostic.line, diagnostic.column), (1, 5));
        assert!(diagnostic.snippet.ends_with("\n  |     ^^^"));
    }

    #[test]
    fn diagnostic_underlines_first_line_of_multiline_span() {
        let source = "body = \"\"\"\nab\"\"\"\n";
        let diagnostic = Diagnostic::new(source, 7..source.len() - 1, String::new());
        assert_eq!(diagnostic.snippet, "  |\n1 | body = \"\"\"\n  |        ^^^");
    }

    #[test]
    fn diagnostic_empty_span_gets_one_caret() {
        let diagnostic = Diagnostic::new("a = \n", 4..4, String::new());
        assert_eq!((diagnostic.line, diagnostic.column), (1, 5));
        assert_eq!(diagnostic.snippet, "  |\n1 | a = \n  |     ^");
    }

    #[test]
    fn diagnostic_out_of_range_span_does_not_panic() {
        let diagnostic = Diagnostic::new("é", 1..99, String::new());
        assert_eq!((diagnostic.line, diagnostic.column), (1, 1));
    }

    #[test]
    fn diagnostic_expands_tabs() {
        let diagnostic = Diagnostic::new("\tport = 1", 8..9, String::new());
        assert_eq!(
            diagnostic.snippet,
            "  |\n1 |     port = 1\n  |            ^"
        );
    }
}
