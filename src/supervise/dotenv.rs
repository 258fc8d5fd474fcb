//! `env_file` parsing: the dotenv subset docker compose accepts. `KEY=VALUE` per line, blank
//! lines and `#` comments skipped, an optional `export ` prefix, values optionally in single
//! quotes (taken literally) or double quotes (with `\n`, `\t`, `\\` and `\"` escapes). No
//! variable expansion: the file is data, not a script.

/// A line that is not `KEY=VALUE`; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    pub line: usize,
    pub message: &'static str,
}

/// The variables of a dotenv file, in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let mut vars = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let error = |message| DotenvError {
            line: index + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or(error("expected KEY=VALUE"))?;
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(error("invalid variable name"));
        }
        vars.push((key.to_owned(), value_of(value.trim()).map_err(error)?));
    }
    Ok(vars)
}

fn value_of(value: &str) -> Result<String, &'static str> {
    if let Some(rest) = value.strip_prefix('\'') {
        let (inner, _) = rest.split_once('\'').ok_or("unterminated single quote")?;
        return Ok(inner.to_owned());
    }
    let Some(rest) = value.strip_prefix('"') else {
        // An unquoted value ends at ` #`, like a shell comment.
        let end = value.find(" #").unwrap_or(value.len());
        return Ok(value[..end].trim_end().to_owned());
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    Err("unterminated double quote")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn keys_values_comments_and_quotes() {
        let text = "# comment\n\nA=1\nexport B = two words # note\nC='$NOT ${EXPANDED}'\n\
                    D=\"line\\nnext \\\"q\\\"\"\nE=\n";
        let expected = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "$NOT ${EXPANDED}"),
            ("D", "line\nnext \"q\""),
            ("E", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs(text), expected);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        assert_eq!(
            parse("A=1\nnot a pair\n"),
            Err(DotenvError {
                line: 2,
                message: "expected KEY=VALUE"
            })
        );
        assert_eq!(parse("1A=x").unwrap_err().message, "invalid variable name");
        assert_eq!(
            parse("A=\"open").unwrap_err().message,
            "unterminated double quote"
        );
    }
}
