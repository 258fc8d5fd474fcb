//! The walk of a route's `basic_auth = { users_file, realm, forward_auth_header }`, and the
//! users file it names: read here, at check time and at every reload, so that a missing or
//! malformed file is a config error (and a refused reload) rather than a surprise at the
//! first request. Only slow, salted hashes are accepted (bcrypt `$2y$`, `$2b$`, `$2a$`):
//! plaintext, DES crypt, `$apr1$` (Apache MD5), `{SHA}` and the `$1$`/`$5$`/`$6$` crypt
//! families are refused at their line, since a leaked file of them is cracked in hours.

use std::str::FromStr as _;

use super::read::{Value, Walker, join, optional};
use crate::config::BasicAuth;

const BASIC_AUTH_KEYS: &[&str] = &["users_file", "realm", "forward_auth_header"];
/// What browsers show when the config names no realm (Caddy's default too).
const DEFAULT_REALM: &str = "restricted";
/// Above this cost one verification takes seconds (each step doubles it): a config that
/// asks for it would let a few wrong passwords occupy the verifier for minutes.
const MAX_BCRYPT_COST: u32 = 16;

impl Walker<'_> {
    pub(super) fn basic_auth(&mut self, at: &str, value: &Value<'_>) -> Option<BasicAuth> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, BASIC_AUTH_KEYS);
        let realm = fields.get("realm").map_or_else(
            || Some(DEFAULT_REALM.to_owned()),
            |value| {
                let realm_at = join(at, "realm");
                let realm = self.non_empty_string(&realm_at, value)?;
                // It goes inside `realm="..."` unescaped: a quote or a backslash would end or
                // bend the quoted string.
                if realm
                    .bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
                {
                    return Some(realm);
                }
                let message = "the realm must be printable ASCII without `\"` or `\\`";
                self.error(value.span(), &realm_at, message);
                None
            },
        );
        let forward_auth_header = optional(fields.get("forward_auth_header"), |value| {
            self.boolean(&join(at, "forward_auth_header"), value)
        });
        let Some(file_value) = fields.get("users_file") else {
            let message = "missing `users_file` (an htpasswd file of bcrypt entries)";
            self.error(value.span(), at, message);
            return None;
        };
        let file_at = join(at, "users_file");
        let written = self.non_empty_string(&file_at, file_value)?;
        let users_file = self.base.join(&written);
        let users = match std::fs::read_to_string(&users_file) {
            Ok(text) => parse_users(&text)
                .map_err(|(line, message)| {
                    let message = format!("{written}:{line}: {message}");
                    self.error(file_value.span(), &file_at, message);
                })
                .ok(),
            Err(error) => {
                let message = format!("cannot read {}: {error}", users_file.display());
                self.error(file_value.span(), &file_at, message);
                None
            }
        };
        Some(BasicAuth {
            users_file,
            realm: realm?,
            forward_auth_header: forward_auth_header?.unwrap_or(false),
            users: users?,
        })
    }
}

/// The `user:hash` lines of an htpasswd file (blank lines and `#` comments skipped), or the
/// first bad line's number and why it is bad.
fn parse_users(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((number, "expected `user:hash`".to_owned()));
        };
        if user.is_empty() {
            return Err((number, "the user name is empty".to_owned()));
        }
        if users.iter().any(|(seen, _)| seen == user) {
            return Err((number, format!("user `{user}` is listed twice")));
        }
        check_hash(hash).map_err(|why| (number, format!("user `{user}`: {why}")))?;
        users.push((user.to_owned(), hash.to_owned()));
    }
    if users.is_empty() {
        return Err((1, "no users: the route would refuse everyone".to_owned()));
    }
    Ok(users)
}

/// Accepts a well-formed bcrypt hash of a bearable cost; names what any other entry is.
fn check_hash(hash: &str) -> Result<(), String> {
    const REMAKE: &str = "make the entry again with `htpasswd -B`";
    let refused = |kind: &str| Err(format!("{kind} is not accepted (fast to crack); {REMAKE}"));
    if ["$2y$", "$2b$", "$2a$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
    {
        let parts = bcrypt::HashParts::from_str(hash)
            .map_err(|error| format!("not a valid bcrypt hash ({error}); {REMAKE}"))?;
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(format!(
                "bcrypt cost {} is above {MAX_BCRYPT_COST}: each check would take seconds",
                parts.get_cost()
            ));
        }
        return Ok(());
    }
    if hash.starts_with("$apr1$") {
        refused("Apache MD5 (`$apr1$`)")
    } else if hash.starts_with("{SHA}") {
        refused("SHA-1 (`{SHA}`)")
    } else if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
        refused("crypt MD5/SHA (`$1$`, `$5$`, `$6$`)")
    } else if hash.starts_with('$') {
        Err(format!("unknown hash scheme; {REMAKE}"))
    } else {
        refused("a plaintext or DES crypt entry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `htpasswd -nbB alice secret` (cost 5).
    const ALICE: &str = "alice:$2y$05$qzDxjhyFwzWyONqqLlg8HefgWaBq4JXkx3xRhu3Hfu5UG0UCQ0THK";

    #[test]
    fn bcrypt_entries_comments_and_blank_lines_are_read() {
        let text = format!(
            "# users\n\n{ALICE}\r\nbob:$2y$04$BgcTnDk2BltVNBdTZG93quIf8ZXE2LjX9QGidToS5Mg6kW3PvSAfq\n"
        );
        let users = parse_users(&text).unwrap();
        let names: Vec<&str> = users.iter().map(|(user, _)| user.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn weak_or_broken_entries_are_refused_at_their_line() {
        let cases = [
            ("bob:secret", "plaintext"),
            ("bob:$apr1$abc$def", "Apache MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:$6$salt$hash", "crypt"),
            ("bob:$2y$05$short", "not a valid bcrypt"),
            (
                "bob:$2y$31$qzDxjhyFwzWyONqqLlg8HefgWaBq4JXkx3xRhu3Hfu5UG0UCQ0THK",
                "cost 31",
            ),
            ("no colon", "expected `user:hash`"),
            (":$2y$05$x", "empty"),
            (ALICE, "listed twice"),
        ];
        for (line, expected) in cases {
            let text = format!("{ALICE}\n{line}\n");
            let (number, message) = parse_users(&text).unwrap_err();
            assert_eq!(number, 2, "{line}: {message}");
            assert!(message.contains(expected), "{line}: {message}");
        }
        assert_eq!(parse_users("# nobody\n").unwrap_err().0, 1);
    }
}
