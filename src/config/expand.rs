//! `${VAR}` expansion of config string values. Owns the expansion grammar: `${NAME}`,
//! `${NAME:-default}` (default used when NAME is unset or empty, like sh), `$$` for a literal
//! `$`. A bare `$NAME` is left as written so that the app's shell expands it at run time (zoo
//! sets `PORT` there). Pure: the environment is a lookup function, never the process's own.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

/// Expands every `${...}` in `text`; the error is a message for the whole string's span.
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((plain, after)) = rest.split_once('$') {
        out.push_str(plain);
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_and_tail) = after.strip_prefix('{') {
            let Some((inner, tail)) = inner_and_tail.split_once('}') else {
                return Err(
                    "unterminated `${`: add a closing `}`, or write `$${` for a literal `${`"
                        .to_owned(),
                );
            };
            out.push_str(&substitute(inner, env)?);
            rest = tail;
        } else {
            // A bare `$NAME` (or a lone `$`) belongs to the app's shell, not to zoo.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the text between `${` and `}`.
fn substitute(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !is_name(name) {
        return Err(format!(
            "invalid `${{{inner}}}`: expected `${{NAME}}` or `${{NAME:-default}}`, where NAME is \
             letters, digits and `_`, not starting with a digit"
        ));
    }
    match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (use ${{{name}:-default}} to give a default)"
        )),
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, &env).unwrap()
    }

    fn err(text: &str) -> String {
        expand(text, &env).unwrap_err()
    }

    #[test]
    fn expand_replaces_set_variables() {
        assert_eq!(ok("0.0.0.0:${PORT}"), "0.0.0.0:8080");
        assert_eq!(ok("${PORT}${PORT}"), "80808080");
    }

    #[test]
    fn expand_uses_default_when_unset_or_empty() {
        assert_eq!(ok("${NOPE:-9100}"), "9100");
        assert_eq!(ok("${EMPTY:-x}"), "x");
        assert_eq!(ok("${PORT:-1}"), "8080");
        assert_eq!(ok("a${NOPE:-}b"), "ab");
    }

    #[test]
    fn expand_keeps_empty_value_without_default() {
        assert_eq!(ok("[${EMPTY}]"), "[]");
    }

    #[test]
    fn expand_leaves_bare_dollar_names_alone() {
        assert_eq!(ok("uvicorn --port $PORT"), "uvicorn --port $PORT");
        assert_eq!(ok("cost: 5$"), "cost: 5$");
    }

    #[test]
    fn expand_double_dollar_is_literal() {
        assert_eq!(ok("$${PORT}"), "${PORT}");
        assert_eq!(ok("$$$$"), "$$");
    }

    #[test]
    fn expand_unset_variable_is_an_error() {
        assert_eq!(
            err("x${FOO}"),
            "environment variable `FOO` is not set (use ${FOO:-default} to give a default)"
        );
    }

    #[test]
    fn expand_unterminated_is_an_error() {
        assert_eq!(
            err("${PORT"),
            "unterminated `${`: add a closing `}`, or write `$${` for a literal `${`"
        );
    }

    #[test]
    fn expand_invalid_name_is_an_error() {
        assert!(err("${1X}").starts_with("invalid `${1X}`: expected `${NAME}`"));
        assert!(err("${}").starts_with("invalid `${}`"));
        assert!(err("${A-b}").starts_with("invalid `${A-b}`"));
    }
}
