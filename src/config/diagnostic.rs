//! Rendering of config errors the way rustc and just show them: `file:line:col: error: ...`,
//! then the source line and a caret under the offending span. Pure: turns a byte span of the
//! source into a 1-based line and a 1-based column counted in characters.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

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
/// Characters of the offending line shown before the span's start; more are cut to `...`.
const EXCERPT_BEFORE: usize = 40;
/// Characters shown from the span's start on; more are cut to `...`. With
/// [`EXCERPT_BEFORE`], a diagnostic stays a few lines long whatever the line's length (a
/// 10 MB one-line file would otherwise be printed whole, with as many carets).
const EXCERPT_FROM: usize = 80;
/// Characters of a long message kept before the cut (see [`shortened`]): enough for the
/// longest list of expected keys zoo writes (a route's, ~330), so that only a message quoting
/// a huge value is cut.
const MESSAGE_HEAD: usize = 600;
/// Characters of a long message kept after the cut.
const MESSAGE_TAIL: usize = 60;

impl Diagnostic {
    /// Locates `span` (byte offsets into `source`) and renders its snippet.
    #[cfg(test)]
    fn new(source: &str, span: Range<usize>, message: String) -> Self {
        Self::locate_all(source, vec![(span, message)])
            .pop()
            .expect("one problem gives one diagnostic")
    }

    /// Locates every problem (a byte span into `source` and its message) and renders its
    /// snippet, in source order. Linear in the source plus the problems: one cursor moves
    /// forward through the source, and each snippet reads only its window of the line.
    pub(super) fn locate_all(source: &str, mut problems: Vec<(Range<usize>, String)>) -> Vec<Self> {
        problems.sort_by_key(|(span, _)| span.start);
        let mut cursor = Cursor::default();
        problems
            .into_iter()
            .map(|(span, message)| {
                let start = floor_char_boundary(source, span.start);
                let end = floor_char_boundary(source, span.end.max(start));
                cursor.advance(source, start);
                let snippet = snippet(source, &cursor, start, end);
                Self {
                    line: cursor.line,
                    column: cursor.column,
                    message: shortened(message),
                    snippet,
                }
            })
            .collect()
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

/// `message` with its middle cut to `...` when it is longer than [`MESSAGE_HEAD`] plus
/// [`MESSAGE_TAIL`] characters: messages quote what the file says (`found "..."`), which may
/// be megabytes long, and both ends say what matters (the key, then a suggestion).
fn shortened(message: String) -> String {
    const CUT: &str = "...";
    const SHORTENED_PAST: usize = MESSAGE_HEAD + CUT.len() + MESSAGE_TAIL;
    const TAIL_FROM_END: usize = MESSAGE_TAIL - 1;
    if message.chars().count() <= SHORTENED_PAST {
        return message;
    }
    let head_end = message
        .char_indices()
        .nth(MESSAGE_HEAD)
        .map_or(message.len(), |(index, _)| index);
    let tail_start = message
        .char_indices()
        .rev()
        .nth(TAIL_FROM_END)
        .map_or(0, |(index, _)| index);
    format!("{}{CUT}{}", &message[..head_end], &message[tail_start..])
}

/// Where the diagnostics' scan of the source has got to.
struct Cursor {
    /// Byte offset reached.
    at: usize,
    /// 1-based line of `at`.
    line: usize,
    /// Byte offset where that line starts.
    line_start: usize,
    /// 1-based column of `at`, in characters.
    column: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            at: 0,
            line: 1,
            line_start: 0,
            column: 1,
        }
    }
}

impl Cursor {
    /// Moves forward to `to` (a char boundary at or after `at`).
    fn advance(&mut self, source: &str, to: usize) {
        let passed = &source[self.at..to];
        match passed.rsplit_once('\n') {
            Some((_, last_line)) => {
                let newlines = passed.bytes().filter(|&byte| byte == b'\n').count();
                self.line = self.line.saturating_add(newlines);
                // `last_line` ends at `to`, so this never saturates.
                self.line_start = to.saturating_sub(last_line.len());
                self.column = last_line.chars().count().saturating_add(1);
            }
            None => self.column = self.column.saturating_add(passed.chars().count()),
        }
        self.at = to;
    }
}

/// The gutter, the window of the line around `start` and a caret under the span (its first
/// line only, and only as far as the window shows it).
fn snippet(source: &str, cursor: &Cursor, start: usize, end: usize) -> String {
    let line = &source[cursor.line_start..];
    let before_all = &source[cursor.line_start..start];
    let shown_from = before_all
        .char_indices()
        .rev()
        .nth(EXCERPT_BEFORE - 1)
        .map_or(0, |(index, _)| index);
    let before = &before_all[shown_from..];
    let from_start = &line[before_all.len()..];
    let line_rest = from_start
        .find('\n')
        .map_or(from_start, |newline| &from_start[..newline]);
    let shown_to = line_rest
        .char_indices()
        .nth(EXCERPT_FROM)
        .map_or(line_rest.len(), |(index, _)| index);
    let after = line_rest[..shown_to].trim_end_matches('\r');
    let underlined = &after[..floor_char_boundary(after, end.saturating_sub(start))];
    let (lead, pad_lead) = if shown_from > 0 { ("...", 3) } else { ("", 0) };
    let trail = if shown_to < line_rest.len() {
        "..."
    } else {
        ""
    };
    let number = cursor.line.to_string();
    let gutter = " ".repeat(number.len());
    format!(
        "{gutter} |\n{number} | {lead}{}{}{trail}\n{gutter} | {}{}",
        before.replace('\t', TAB),
        after.replace('\t', TAB),
        " ".repeat(width(before).saturating_add(pad_lead)),
        "^".repeat(width(underlined).max(1)),
    )
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
    (0..=index.min(source.len()))
        .rev()
        .find(|&index| source.is_char_boundary(index))
        .unwrap_or(0)
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
        let inside = Diagnostic::new("a = \"ééé\"", 5..8, String::new());
        assert_eq!(inside.snippet, "  |\n1 | a = \"ééé\"\n  |      ^");
    }

    #[test]
    fn diagnostic_of_a_huge_line_shows_a_window_around_the_column() {
        let source = format!(
            "a = \"{}\" {}\n",
            "x".repeat(5_000_000),
            "y".repeat(5_000_000)
        );
        let start = source.find(" y").unwrap() + 1;
        let diagnostic = Diagnostic::new(&source, start..source.len() - 1, String::new());
        assert_eq!((diagnostic.line, diagnostic.column), (1, start + 1));
        let shown = format!("...{}\" {}...", "x".repeat(38), "y".repeat(80));
        let carets = format!("{}{}", " ".repeat(3 + 40), "^".repeat(80));
        assert_eq!(
            diagnostic.snippet,
            format!("  |\n1 | {shown}\n  | {carets}")
        );
    }

    #[test]
    fn long_messages_keep_both_ends() {
        let short = "routes.\"/\": no app named `x`".to_owned();
        assert_eq!(shortened(short.clone()), short);
        let long = format!(
            "listen: found \"{}\"; did you mean `y`?",
            "9".repeat(1_000_000)
        );
        let cut = shortened(long);
        assert_eq!(cut.chars().count(), MESSAGE_HEAD + 3 + MESSAGE_TAIL);
        assert!(cut.starts_with("listen: found \"999"), "{cut}");
        assert!(cut.ends_with("999\"; did you mean `y`?"), "{cut}");
        let exact = "é".repeat(MESSAGE_HEAD + 3 + MESSAGE_TAIL);
        assert_eq!(shortened(exact.clone()), exact);
    }

    #[test]
    fn many_diagnostics_are_located_in_one_pass_in_source_order() {
        let source = "a = 1\nbb = 2\n\tc = 3\n";
        let problems = [("c", 2), ("bb", 1), ("a", 0)]
            .into_iter()
            .map(|(key, _)| {
                let start = source.find(key).unwrap();
                (start..start + key.len(), key.to_owned())
            })
            .collect();
        let located: Vec<(usize, usize, String)> = Diagnostic::locate_all(source, problems)
            .into_iter()
            .map(|diagnostic| (diagnostic.line, diagnostic.column, diagnostic.message))
            .collect();
        assert_eq!(
            located,
            [
                (1, 1, "a".to_owned()),
                (2, 1, "bb".to_owned()),
                (3, 2, "c".to_owned())
            ]
        );
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
