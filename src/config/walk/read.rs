//! The primitive readers of the walk: the [`Walker`] that collects every problem, the
//! [`Fields`] of a table checked against its allowed keys, and typed readers of one value
//! (strings with `${VAR}` expanded, integers, booleans, durations, ports) plus the helpers that
//! name a key's dotted path and quote lists in messages. Each reader reports its own problem
//! and returns `None`; none knows which key of the config it reads.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problem;
use crate::config::{ProxyTarget, duration, expand, suggest};

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

pub(super) struct Walker<'e> {
    pub(super) env: &'e dyn Fn(&str) -> Option<String>,
    /// The config file's directory, which relative `dir` and `ca_file` are joined to.
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Problem>,
    /// Set when a batch of routes read apart from the rest of the document is no TOML
    /// document on its own (or repeats a key): the whole document is then read again as one.
    pub(super) unbatchable: bool,
    /// The `proxy` targets read so far: routes to one target share it (300,000 routes to a
    /// few targets each held a copy, ~190 bytes with its strings).
    pub(super) proxy_targets: HashSet<Arc<ProxyTarget>>,
}

/// The entries of one table whose keys were all checked against an allowed list.
pub(super) struct Fields<'t, 'i> {
    pub(super) entries: Vec<(&'t str, Range<usize>, &'t Value<'i>)>,
    /// The keys offered as "did you mean" for unknown ones: a "missing `command`" error after
    /// "unknown key `comand`; did you mean `command`?" would report the same typo twice.
    pub(super) suggested: Vec<&'static str>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub(super) fn get(&self, name: &str) -> Option<&'t Value<'i>> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, _, value)| *value)
    }

    pub(super) fn key_span(&self, name: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, span, _)| span.clone())
    }
}

impl Walker<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, at: &str, message: impl Into<String>) {
        let message = message.into();
        let message = if at.is_empty() {
            message
        } else {
            format!("{at}: {message}")
        };
        self.problems.push(Problem { span, message });
    }

    pub(super) fn mismatch(&mut self, at: &str, value: &Value<'_>, expected: &str) {
        let found = found(value.get_ref());
        self.error(
            value.span(),
            at,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Checks the keys of `table` against `allowed`, reporting each unknown one.
    pub(super) fn fields<'t, 'i>(
        &mut self,
        at: &str,
        table: &'t DeTable<'i>,
        allowed: &[&'static str],
    ) -> Fields<'t, 'i> {
        let mut entries = Vec::with_capacity(table.len());
        let mut suggested = Vec::new();
        for (key, value) in table {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                entries.push((name, key.span(), value));
                continue;
            }
            let hint = match suggest::closest(name, allowed.iter().copied()) {
                Some(close) => {
                    suggested.push(close);
                    format!("did you mean `{close}`?")
                }
                None => format!("expected one of {}", list(allowed)),
            };
            self.error(key.span(), at, format!("unknown key `{name}`; {hint}"));
        }
        Fields { entries, suggested }
    }

    pub(super) fn table<'t, 'i>(
        &mut self,
        at: &str,
        value: &'t Value<'i>,
    ) -> Option<&'t DeTable<'i>> {
        if let DeValue::Table(table) = value.get_ref() {
            Some(table)
        } else {
            self.mismatch(at, value, "a table");
            None
        }
    }

    pub(super) fn expand(&mut self, at: &str, span: Range<usize>, text: &str) -> Option<String> {
        match expand::expand(text, self.env) {
            Ok(expanded) => Some(expanded),
            Err(message) => {
                self.error(span, at, message);
                None
            }
        }
    }

    /// A string value, `${VAR}`-expanded.
    pub(super) fn string(&mut self, at: &str, value: &Value<'_>) -> Option<String> {
        if let DeValue::String(text) = value.get_ref() {
            self.expand(at, value.span(), text)
        } else {
            self.mismatch(at, value, "a string");
            None
        }
    }

    pub(super) fn non_empty_string(&mut self, at: &str, value: &Value<'_>) -> Option<String> {
        let text = self.string(at, value)?;
        if text.is_empty() {
            self.error(value.span(), at, "must not be empty");
            return None;
        }
        Some(text)
    }

    pub(super) fn integer(&mut self, at: &str, value: &Value<'_>) -> Option<i64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.mismatch(at, value, "an integer");
            return None;
        };
        let parsed = i64::from_str_radix(integer.as_str(), integer.radix()).ok();
        if parsed.is_none() {
            self.error(value.span(), at, "integer out of range");
        }
        parsed
    }

    pub(super) fn boolean(&mut self, at: &str, value: &Value<'_>) -> Option<bool> {
        if let DeValue::Boolean(boolean) = value.get_ref() {
            Some(*boolean)
        } else {
            self.mismatch(at, value, "a boolean (true or false)");
            None
        }
    }

    /// A string that must spell a variant of a config enum (`from_name`); `unknown` words
    /// the problem with a string that does not.
    pub(super) fn keyword<T>(
        &mut self,
        at: &str,
        value: &Value<'_>,
        from_name: fn(&str) -> Option<T>,
        unknown: impl FnOnce(&str) -> String,
    ) -> Option<T> {
        let text = self.string(at, value)?;
        let variant = from_name(&text);
        if variant.is_none() {
            self.error(value.span(), at, unknown(&text));
        }
        variant
    }

    /// `"250ms"`, `"1m30s"`, or an integer number of seconds.
    pub(super) fn duration(&mut self, at: &str, value: &Value<'_>) -> Option<Duration> {
        match value.get_ref() {
            DeValue::String(text) => {
                let text = self.expand(at, value.span(), text)?;
                duration::parse(&text)
                    .map_err(|message| self.error(value.span(), at, message))
                    .ok()
            }
            DeValue::Integer(_) => {
                let seconds = self.integer(at, value)?;
                let seconds = u64::try_from(seconds)
                    .map_err(|_| self.error(value.span(), at, "a duration cannot be negative"))
                    .ok()?;
                duration::from_secs(seconds)
                    .map_err(|message| self.error(value.span(), at, message))
                    .ok()
            }
            _ => {
                self.mismatch(at, value, "a duration like \"10s\" or \"250ms\"");
                None
            }
        }
    }

    /// A duration that must not be zero (a zero probe interval would spin).
    pub(super) fn positive_duration(&mut self, at: &str, value: &Value<'_>) -> Option<Duration> {
        let duration = self.duration(at, value)?;
        if duration.is_zero() {
            self.error(value.span(), at, "must be greater than zero");
            return None;
        }
        Some(duration)
    }

    /// An app port: an integer, or a string that is one after expansion (`"${P:-9100}"`).
    pub(super) fn port(&mut self, at: &str, value: &Value<'_>) -> Option<u16> {
        let number = match value.get_ref() {
            DeValue::Integer(_) => self.integer(at, value)?,
            DeValue::String(text) => {
                let text = self.expand(at, value.span(), text)?;
                if let Ok(number) = text.trim().parse::<i64>() {
                    number
                } else {
                    self.error(
                        value.span(),
                        at,
                        format!("expected an integer port, found \"{text}\""),
                    );
                    return None;
                }
            }
            _ => {
                self.mismatch(at, value, "an integer");
                return None;
            }
        };
        match u16::try_from(number) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.error(
                    value.span(),
                    at,
                    format!("port must be between 1 and 65535, found {number}"),
                );
                None
            }
        }
    }
}

/// `Some(None)` when the key is absent, `None` when it is present but invalid.
pub(super) fn optional<'t, 'i, T>(
    value: Option<&'t Value<'i>>,
    check: impl FnOnce(&'t Value<'i>) -> Option<T>,
) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(value) => check(value).map(Some),
    }
}

/// The dotted path of `key` under `parent`, quoting keys that are not bare TOML keys.
pub(super) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

pub(super) fn found(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
