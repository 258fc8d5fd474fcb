//! Host-based routing: the host part of a route key (`api.example.com/`, `*.example.com/docs`)
//! and the table that picks, per request, the path table of the host that asked. Pure: no
//! I/O, no allocation per request, unit-tested.
//!
//! Invariants:
//! - Hosts are compared in one form: ASCII lowercase, without a port or a trailing dot, an IDN
//!   in its ASCII (punycode) form. Keys are brought to it once, when the config is read
//!   ([`HostPattern::parse`]); a request's host is lowered into a stack buffer.
//! - [`HostRoutes::lookup`] tries the exact host's routes, then the wildcards from the longest
//!   suffix down, then the host-less routes; the first table with a path match answers, so a
//!   host route never hides a host-less path it does not itself route.
//! - A table without host routes never looks at the request's host.
//!
//! It does not validate the request's `Host` beyond what matching needs (the proxy does), and
//! does not look at TLS SNI: zoo serves one certificate, so SNI selects nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Entry, Match, RouteTable};

/// The longest host name DNS allows (RFC 1035: 253 characters without the trailing dot).
const MAX_HOST_LEN: usize = 253;

/// Why the host part of a route key is not one zoo can match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    /// `example.com` alone: a route key always has a path, even if only `/`.
    #[error("a route key is a path starting with `/`, or a host and a path, as in \"{host}/\"")]
    MissingPath { host: String },
    /// `example.com:8080/`: the port is not part of what is matched.
    #[error("a route host has no port: hosts match whatever port the client used")]
    Port,
    /// `*` anywhere but a leading `*.` label.
    #[error("`*` may only be the first label of a route host, as in \"*.example.com/\"")]
    MisplacedWildcard,
    /// Not a DNS name once in its ASCII form.
    #[error("\"{host}\" is not a host name: {reason}")]
    Invalid { host: String, reason: &'static str },
}

/// The host part of a route key, in the one form hosts are compared in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `api.example.com`: that host only.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: any host with one or more labels before it,
    /// not `example.com` itself (as nginx's `*.example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses the host part of a route key: lowercased, its trailing dot removed, an IDN turned
    /// into its ASCII form (UTS #46, as browsers do).
    ///
    /// # Errors
    /// Any [`HostKeyError`] but `MissingPath`.
    pub fn parse(text: &str) -> Result<Self, HostKeyError> {
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.contains('*') {
            return Err(HostKeyError::MisplacedWildcard);
        }
        if name.contains(':') {
            return Err(HostKeyError::Port);
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let invalid = |reason| HostKeyError::Invalid {
            host: text.to_owned(),
            reason,
        };
        let ascii = if name.is_ascii() {
            name.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(name).map_err(|_| invalid("not a valid international name"))?
        };
        check_name(&ascii).map_err(invalid)?;
        Ok(if wildcard {
            Self::Wildcard(format!(".{ascii}"))
        } else {
            Self::Exact(ascii)
        })
    }

    /// A name the pattern matches, for checking that the certificate covers it.
    #[must_use]
    pub fn example(&self) -> String {
        match self {
            Self::Exact(host) => host.clone(),
            Self::Wildcard(suffix) => format!("zoo-check{suffix}"),
        }
    }
}

/// As in a key: `api.example.com` or `*.example.com`.
impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Splits a route key into its host (none when it starts with `/`) and its path.
///
/// # Errors
/// The host part's [`HostKeyError`].
pub fn split_key(key: &str) -> Result<(Option<HostPattern>, &str), HostKeyError> {
    if key.starts_with('/') {
        return Ok((None, key));
    }
    let Some(slash) = key.find('/') else {
        return Err(HostKeyError::MissingPath {
            host: key.to_owned(),
        });
    };
    let host = HostPattern::parse(&key[..slash])?;
    Ok((Some(host), &key[slash..]))
}

/// A lowercase ASCII host name: labels of letters, digits, `-` and `_` (seen in internal
/// names), none empty or over 63 bytes, 253 bytes in all.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_HOST_LEN {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err("a label may only hold letters, digits, `-` and `_`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with `-`");
        }
    }
    Ok(())
}

/// Route tables by host: one per exact host, one per wildcard suffix, and the host-less one.
#[derive(Debug, Clone)]
pub struct HostRoutes<T> {
    /// Keyed by the host in its compared form.
    exact: HashMap<String, RouteTable<T>>,
    /// Suffixes with their leading dot, longest first: the most specific wildcard wins.
    wildcards: Vec<(String, RouteTable<T>)>,
    /// The routes whose key starts with `/`: for any host.
    any_host: RouteTable<T>,
}

impl<T> HostRoutes<T> {
    /// Builds the tables from `(host, path key, value)`; within one host, as [`RouteTable::new`].
    /// The routes are taken one at a time, each straight into its host's table: so that an
    /// iterator that makes them as it goes never has them all twice.
    pub fn new<K: Into<Arc<str>>>(
        routes: impl IntoIterator<Item = (Option<HostPattern>, K, T)>,
    ) -> Self {
        let routes = routes.into_iter();
        // Most tables have no hosts: the host-less one is sized for all (and shrunk after).
        let mut any_host = Vec::with_capacity(routes.size_hint().1.unwrap_or(0));
        let mut grouped: HashMap<HostPattern, Vec<Entry<T>>> = HashMap::new();
        for (host, path, value) in routes {
            let entry = Entry::new(path, value);
            match host {
                None => any_host.push(entry),
                Some(host) => grouped.entry(host).or_default().push(entry),
            }
        }
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        let any_host = RouteTable::sorted(any_host);
        for (host, routes) in grouped {
            let table = RouteTable::sorted(routes);
            match host {
                HostPattern::Exact(host) => {
                    exact.insert(host, table);
                }
                HostPattern::Wildcard(suffix) => wildcards.push((suffix, table)),
            }
        }
        wildcards.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Self {
            exact,
            wildcards,
            any_host,
        }
    }

    /// Whether any route names a host: without one, requests are routed by path alone.
    #[must_use]
    pub fn has_hosts(&self) -> bool {
        !self.exact.is_empty() || !self.wildcards.is_empty()
    }

    /// The route for `path` (normalised) asked for with `host` as the client sent it (`Host`,
    /// `:authority` or an absolute-form target's authority: port and trailing dot allowed,
    /// any case). `None` is a 404. Does not allocate.
    #[must_use]
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<Match<'_, T>> {
        if self.has_hosts() {
            let mut buffer = [0u8; MAX_HOST_LEN];
            if let Some(host) = host.and_then(|host| compared_form(host, &mut buffer)) {
                let exact = self.exact.get(host).into_iter();
                let wildcards = self
                    .wildcards
                    .iter()
                    .filter(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, table)| table);
                if let Some(found) = exact.chain(wildcards).find_map(|table| table.lookup(path)) {
                    return Some(found);
                }
            }
        }
        self.any_host.lookup(path)
    }

    /// The tables in the order `zoo check` shows them: exact hosts by name, wildcards in match
    /// order, then the host-less table (`None`).
    pub fn groups(&self) -> impl Iterator<Item = (Option<String>, &RouteTable<T>)> {
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by_key(|(host, _)| *host);
        let exact = exact
            .into_iter()
            .map(|(host, table)| (Some(host.clone()), table));
        let wildcards = self
            .wildcards
            .iter()
            .map(|(suffix, table)| (Some(format!("*{suffix}")), table));
        exact
            .chain(wildcards)
            .chain(std::iter::once((None, &self.any_host)))
    }
}

/// `host` in the compared form, written into `buffer`: the port and one trailing dot removed,
/// ASCII lowercased. `None` when it cannot name a host route (too long, not ASCII, empty).
fn compared_form<'b>(host: &str, buffer: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let name = if host.starts_with('[') {
        // An IPv6 literal: never a route host (they are DNS names).
        return None;
    } else {
        host.split_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN || !name.is_ascii() {
        return None;
    }
    let out = &mut buffer[..name.len()];
    for (to, from) in out.iter_mut().zip(name.bytes()) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(host: &str) -> Option<HostPattern> {
        Some(HostPattern::Exact(host.to_owned()))
    }

    fn wildcard(suffix: &str) -> Option<HostPattern> {
        Some(HostPattern::Wildcard(suffix.to_owned()))
    }

    #[test]
    fn parse_brings_hosts_to_the_compared_form() {
        let cases: &[(&str, Result<HostPattern, HostKeyError>)] = &[
            (
                "api.example.com",
                Ok(HostPattern::Exact("api.example.com".into())),
            ),
            (
                "API.Example.COM",
                Ok(HostPattern::Exact("api.example.com".into())),
            ),
            (
                "api.example.com.",
                Ok(HostPattern::Exact("api.example.com".into())),
            ),
            ("localhost", Ok(HostPattern::Exact("localhost".into()))),
            ("127.0.0.1", Ok(HostPattern::Exact("127.0.0.1".into()))),
            (
                "*.example.com",
                Ok(HostPattern::Wildcard(".example.com".into())),
            ),
            (
                "*.Example.com.",
                Ok(HostPattern::Wildcard(".example.com".into())),
            ),
            (
                "bücher.example",
                Ok(HostPattern::Exact("xn--bcher-kva.example".into())),
            ),
            (
                "BÜCHER.example",
                Ok(HostPattern::Exact("xn--bcher-kva.example".into())),
            ),
            (
                "*.bücher.example",
                Ok(HostPattern::Wildcard(".xn--bcher-kva.example".into())),
            ),
            ("example.com:8080", Err(HostKeyError::Port)),
            ("a.*.example.com", Err(HostKeyError::MisplacedWildcard)),
            ("*example.com", Err(HostKeyError::MisplacedWildcard)),
            ("*", Err(HostKeyError::MisplacedWildcard)),
        ];
        for (text, want) in cases {
            assert_eq!(&HostPattern::parse(text), want, "{text:?}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "a/b",
            "a\u{0}b",
            "-.",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(HostPattern::parse(bad), Err(HostKeyError::Invalid { .. })),
                "{bad:?}: {:?}",
                HostPattern::parse(bad)
            );
        }
    }

    #[test]
    fn split_key_separates_host_and_path() {
        assert_eq!(split_key("/a/b"), Ok((None, "/a/b")));
        assert_eq!(
            split_key("Api.example.com/v1*"),
            Ok((exact("api.example.com"), "/v1*"))
        );
        assert_eq!(
            split_key("*.example.com/"),
            Ok((wildcard(".example.com"), "/"))
        );
        assert_eq!(
            split_key("example.com"),
            Err(HostKeyError::MissingPath {
                host: "example.com".into()
            })
        );
    }

    fn table() -> HostRoutes<&'static str> {
        HostRoutes::new([
            (exact("api.example.com"), "/".to_owned(), "api /"),
            (exact("api.example.com"), "/v1".to_owned(), "api /v1"),
            (exact("xn--bcher-kva.example"), "/".to_owned(), "idn /"),
            (
                wildcard(".example.com"),
                "/docs".to_owned(),
                "*.example.com /docs",
            ),
            (
                wildcard(".eu.example.com"),
                "/docs".to_owned(),
                "*.eu.example.com /docs",
            ),
            (
                exact("static.example.com"),
                "/img".to_owned(),
                "static /img",
            ),
            (None, "/".to_owned(), "any /"),
            (None, "/docs".to_owned(), "any /docs"),
        ])
    }

    #[test]
    fn lookup_prefers_exact_then_wildcard_then_any_host() {
        let t = table();
        let cases: &[(Option<&str>, &str, Option<&str>)] = &[
            (Some("api.example.com"), "/x", Some("api /")),
            (Some("api.example.com"), "/v1/x", Some("api /v1")),
            (Some("API.Example.Com"), "/v1", Some("api /v1")),
            (Some("api.example.com."), "/v1", Some("api /v1")),
            (Some("api.example.com:8443"), "/v1", Some("api /v1")),
            (Some("API.EXAMPLE.COM.:80"), "/", Some("api /")),
            // The exact host routes everything, so its wildcard's /docs is not reached.
            (Some("api.example.com"), "/docs", Some("api /")),
            // Wildcards: one label or several before the suffix; the longest suffix wins.
            (
                Some("www.example.com"),
                "/docs/a",
                Some("*.example.com /docs"),
            ),
            (
                Some("a.b.c.example.com"),
                "/docs",
                Some("*.example.com /docs"),
            ),
            (
                Some("x.eu.example.com"),
                "/docs",
                Some("*.eu.example.com /docs"),
            ),
            (Some("eu.example.com"), "/docs", Some("*.example.com /docs")),
            // Not the bare suffix domain, nor a look-alike.
            (Some("example.com"), "/docs", Some("any /docs")),
            (Some("badexample.com"), "/docs", Some("any /docs")),
            // A host route without that path falls to the next table down.
            (
                Some("static.example.com"),
                "/img/a.png",
                Some("static /img"),
            ),
            (
                Some("static.example.com"),
                "/docs",
                Some("*.example.com /docs"),
            ),
            (Some("static.example.com"), "/other", Some("any /")),
            (Some("xn--bcher-kva.example"), "/", Some("idn /")),
            (Some("XN--BCHER-KVA.EXAMPLE"), "/", Some("idn /")),
            (Some("other.test"), "/", Some("any /")),
            (Some("[::1]:8000"), "/", Some("any /")),
            (Some(""), "/", Some("any /")),
            (None, "/v1", Some("any /")),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                t.lookup(*host, path).map(|m| *m.value),
                *want,
                "{host:?} {path:?}"
            );
        }
    }

    #[test]
    fn lookup_without_any_host_routes_is_none() {
        let t = HostRoutes::new([(exact("a.test"), "/".to_owned(), 1)]);
        assert_eq!(t.lookup(Some("a.test"), "/").map(|m| *m.value), Some(1));
        assert!(t.lookup(Some("b.test"), "/").is_none());
        assert!(t.lookup(None, "/").is_none());
    }

    #[test]
    fn groups_list_exact_hosts_wildcards_then_any_host() {
        let names: Vec<Option<String>> = table().groups().map(|(host, _)| host).collect();
        let names: Vec<Option<&str>> = names.iter().map(Option::as_deref).collect();
        assert_eq!(
            names,
            [
                Some("api.example.com"),
                Some("static.example.com"),
                Some("xn--bcher-kva.example"),
                Some("*.eu.example.com"),
                Some("*.example.com"),
                None,
            ]
        );
    }

    #[test]
    fn compared_form_rejects_what_no_route_host_can_be() {
        let mut buffer = [0u8; MAX_HOST_LEN];
        assert_eq!(compared_form("A.b:1", &mut buffer), Some("a.b"));
        assert_eq!(compared_form(&"a".repeat(254), &mut buffer), None);
        assert_eq!(compared_form("b\u{fc}cher", &mut buffer), None);
        assert_eq!(compared_form(".", &mut buffer), None);
    }
}
