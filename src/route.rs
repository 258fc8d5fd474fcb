//! Routing: turns a request path into the route that serves it. Pure: no I/O, no allocation
//! on the common path, unit-tested. Owns path normalisation (RFC 3986 dot-segments, unreserved
//! percent-decoding, `%2F` never a separator), longest-prefix matching on segment boundaries,
//! `strip_prefix` and the Go-style joining of a target's base path.
//!
//! Invariants:
//! - Every function here is total: no input panics, every rejection is a [`PathError`] (a 400).
//! - [`normalize`] returns `Cow::Borrowed` when the path is already normal, and its output is a
//!   fixed point (`normalize(normalize(p)) == normalize(p)`), so what matched is what is forwarded.
//! - [`RouteTable::lookup`] does not allocate and its result never depends on insertion order.
//!
//! Which host a route answers for is the business of [`host`] (`api.example.com/` keys),
//! which picks one of the path tables here per request.
//!
//! It does not see the query string (the proxy forwards it byte for byte), does not validate
//! route keys (config validation does) and does not decide what a route does.

mod host;

use std::borrow::Cow;
use std::sync::Arc;

pub use host::{HostKeyError, HostPattern, HostRoutes, split_key};

/// Why a request path cannot be routed; every variant maps to 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is not empty and does not start with `/` (e.g. `*` or an absolute URL).
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// A `..` segment would climb above `/`; rejected rather than silently clamped.
    #[error("request path climbs above '/'")]
    AboveRoot,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding at byte {offset} of the request path")]
    BadPercentEncoding {
        /// Byte offset of the `%` in the path as received.
        offset: usize,
    },
    /// A raw byte below 0x20 or 0x7F, or its percent-encoded form (`%00`..`%1F`, `%7F`).
    #[error("control character at byte {offset} of the request path")]
    ControlCharacter {
        /// Byte offset of the byte (or of the `%` that encodes it) in the path as received.
        offset: usize,
    },
}

/// Normalises a request path (the part of the request target before `?`).
///
/// Empty becomes `/`; percent-encoded unreserved characters are decoded, other escapes kept
/// with uppercase hex (`%2F` is never a separator); runs of `/` are merged *before* dot-segments
/// are removed (so `/a//../b` is `/b`, as nginx does); a trailing `.` or `..` segment leaves a
/// trailing `/`. Non-ASCII characters are kept as they are.
///
/// # Errors
/// See [`PathError`]; when a path has several faults, the leftmost one is reported.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_slow(path).map(Cow::Owned)
}

/// Single-pass check that `path` (non-empty, starting with `/`) is its own normal form.
/// Conservative: anything unusual (including every error case) returns `false` and is left to
/// [`normalize_slow`], which is the definitive implementation.
fn is_normal(bytes: &[u8]) -> bool {
    let mut seg_start = 1;
    let mut pos = 1;
    while pos < bytes.len() {
        match bytes[pos] {
            b'/' => {
                if is_dot_segment(&bytes[seg_start..pos]) || pos == seg_start {
                    return false;
                }
                seg_start = pos + 1;
            }
            b'%' => match (bytes.get(pos + 1), bytes.get(pos + 2)) {
                (Some(&hi), Some(&lo)) if is_upper_hex(hi) && is_upper_hex(lo) => {
                    let byte = (hex_val(hi) << 4) | hex_val(lo);
                    if is_unreserved(byte) || is_control(byte) {
                        return false;
                    }
                    pos += 2;
                }
                _ => return false,
            },
            raw if is_control(raw) => return false,
            _ => {}
        }
        pos += 1;
    }
    !is_dot_segment(&bytes[seg_start..])
}

/// The definitive normaliser; see [`normalize`]. `path` is non-empty and starts with `/`.
///
/// `out` holds `/seg1/seg2...` without a trailing slash; since decoded segments never contain a
/// raw `/` (`%2F` stays encoded), popping a segment is truncating at the last `/`.
fn normalize_slow(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    let mut seg_offset = 1;
    for seg in path[1..].split('/') {
        let start = out.len();
        out.push('/');
        decode_segment(seg, seg_offset, &mut out)?;
        seg_offset += seg.len() + 1;
        match &out[start + 1..] {
            "" | "." => {
                out.truncate(start);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(start);
                let parent = out.rfind('/').ok_or(PathError::AboveRoot)?;
                out.truncate(parent);
                trailing_slash = true;
            }
            _ => trailing_slash = false,
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends `seg` to `out`, decoding unreserved escapes and uppercasing the others.
/// `offset` is the byte offset of `seg` in the original path, for error reports.
fn decode_segment(seg: &str, offset: usize, out: &mut String) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut run_start = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let raw = bytes[pos];
        if raw == b'%' {
            // Every index sliced at below is that of an ASCII byte, hence a char boundary.
            out.push_str(&seg[run_start..pos]);
            let err = PathError::BadPercentEncoding {
                offset: offset + pos,
            };
            let hi = bytes
                .get(pos + 1)
                .copied()
                .and_then(hex_digit)
                .ok_or(err.clone())?;
            let lo = bytes.get(pos + 2).copied().and_then(hex_digit).ok_or(err)?;
            let byte = (hi << 4) | lo;
            if is_control(byte) {
                return Err(PathError::ControlCharacter {
                    offset: offset + pos,
                });
            }
            if is_unreserved(byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(hi)]));
                out.push(char::from(HEX_UPPER[usize::from(lo)]));
            }
            pos += 3;
            run_start = pos;
        } else if is_control(raw) {
            return Err(PathError::ControlCharacter {
                offset: offset + pos,
            });
        } else {
            pos += 1;
        }
    }
    out.push_str(&seg[run_start..]);
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_upper_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'A'..=b'F').contains(&c)
}

/// Value of a digit already known to satisfy [`is_upper_hex`].
fn hex_val(c: u8) -> u8 {
    if c.is_ascii_digit() {
        c - b'0'
    } else {
        c - b'A' + 10
    }
}

/// RFC 3986 unreserved: ALPHA DIGIT `-` `.` `_` `~`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_control(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

/// A table of route keys -> values, built once per config, looked up per request.
///
/// Entries are kept sorted in match-priority order: matched length descending, then the exact
/// key before the `*` key of the same length, then by key (so the order is fully determined).
/// The first entry that matches is therefore the longest match; a lookup finds it without a
/// scan (300,000 routes took 5 ms a request), by the index below.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Sorted in match-priority order; keys are unique.
    entries: Vec<Entry<T>>,
    /// Indexes of `entries` in key order. The only keys that can match a path with a prefix
    /// length `n` are its first `n` bytes and those with a `*`: two binary searches.
    by_key: Vec<usize>,
    /// The distinct prefix lengths of the keys, longest first: the `n` worth trying.
    prefix_lens: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    /// Shared: the runtime counts a route of any host under the same string.
    key: Arc<str>,
    value: T,
    /// The key ends in `*`: a plain string prefix, not a segment-boundary prefix.
    wildcard: bool,
}

impl<T> Entry<T> {
    /// `key` without its trailing `*`, as a byte length: the length that ranks matches.
    /// Worked out, not stored: 8 bytes of each of 300,000 entries (issue 13).
    fn prefix_len(&self) -> usize {
        self.key.len() - usize::from(self.wildcard)
    }

    fn matches(&self, path: &str) -> bool {
        if self.wildcard {
            return path
                .as_bytes()
                .starts_with(&self.key.as_bytes()[..self.prefix_len()]);
        }
        path.starts_with(&*self.key)
            && (path.len() == self.key.len()
                || self.key.ends_with('/')
                || path.as_bytes()[self.key.len()] == b'/')
    }
}

impl<T> Entry<T> {
    fn new(key: impl Into<Arc<str>>, value: T) -> Self {
        let key = key.into();
        let wildcard = key.ends_with('*');
        Self {
            key,
            value,
            wildcard,
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds the table. Keys are validated elsewhere (start with `/`, `*` only at the end);
    /// any string is accepted here without panicking. Duplicate keys: the last one wins, as
    /// when a map is written twice.
    pub fn new<K: Into<Arc<str>>>(routes: impl IntoIterator<Item = (K, T)>) -> Self {
        Self::sorted(
            routes
                .into_iter()
                .map(|(key, value)| Entry::new(key, value))
                .collect(),
        )
    }

    /// Sorts `entries` in place (a table of 300,000 routes is not copied on the way).
    fn sorted(mut entries: Vec<Entry<T>>) -> Self {
        if has_duplicate_keys(&entries) {
            // Stable: equal keys stay in insertion order, so the kept one can take the last
            // value. Rare (a validated config has no two routes alike), as its scratch space
            // is half the table again.
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            entries.dedup_by(|later, kept| {
                let same = later.key == kept.key;
                if same {
                    std::mem::swap(&mut later.value, &mut kept.value);
                }
                same
            });
        }
        // The keys are unique, so the order is total and an unstable sort (in place) gives it.
        entries.sort_unstable_by(|a, b| {
            b.prefix_len()
                .cmp(&a.prefix_len())
                .then(a.wildcard.cmp(&b.wildcard))
                .then_with(|| a.key.cmp(&b.key))
        });
        entries.shrink_to_fit();
        let mut by_key: Vec<usize> = (0..entries.len()).collect();
        by_key.sort_unstable_by(|a, b| entries[*a].key.cmp(&entries[*b].key));
        let mut prefix_lens: Vec<usize> = entries.iter().map(Entry::prefix_len).collect();
        prefix_lens.dedup();
        Self {
            entries,
            by_key,
            prefix_lens,
        }
    }

    /// The entry whose key is `prefix`, followed by `*` if `wildcard`.
    fn entry(&self, prefix: &str, wildcard: bool) -> Option<&Entry<T>> {
        let star = wildcard.then_some(b'*');
        let found = self.by_key.binary_search_by(|index| {
            let key = self.entries.get(*index).map_or("", |entry| &*entry.key);
            key.bytes().cmp(prefix.bytes().chain(star))
        });
        self.entries.get(*self.by_key.get(found.ok()?)?)
    }

    /// The longest key matching `path` (already normalised), or `None` (a 404 from zoo).
    ///
    /// A key without `*` matches on segment boundaries (`/node` matches `/node`, `/node/x`, not
    /// `/nodejs`); a key ending in `/` matches paths starting with it, so `/` matches everything;
    /// a key ending in `*` is a plain string prefix. Does not allocate.
    #[must_use]
    pub fn lookup(&self, path: &str) -> Option<Match<'_, T>> {
        // Longest first, and at each length the exact key before the `*` one: the order of
        // `entries`, so the same entry as the first of them that matches.
        self.prefix_lens
            .iter()
            .filter_map(|len| path.get(..*len))
            .find_map(|prefix| {
                self.entry(prefix, false)
                    .filter(|entry| !entry.wildcard && entry.matches(path))
                    .or_else(|| self.entry(prefix, true))
            })
            .map(|e| Match {
                key: &e.key,
                value: &e.value,
                prefix_len: e.prefix_len(),
            })
    }

    /// Keys and values in match-priority order (for `zoo check`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().map(|e| (&*e.key, &e.value))
    }

    /// Number of distinct keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no routes (every lookup is `None`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether two entries have the same key: sorts the keys alone (16 bytes each).
fn has_duplicate_keys<T>(entries: &[Entry<T>]) -> bool {
    let mut keys: Vec<&str> = entries.iter().map(|entry| &*entry.key).collect();
    keys.sort_unstable();
    keys.windows(2).any(|pair| pair[0] == pair[1])
}

/// A successful [`RouteTable::lookup`].
#[derive(Debug)]
pub struct Match<'a, T> {
    /// The key as configured, including any trailing `*`.
    pub key: &'a str,
    /// The value stored under `key`.
    pub value: &'a T,
    /// The matched prefix length in bytes (the key's length without `*`), for [`strip_prefix`].
    pub prefix_len: usize,
}

impl<T> Clone for Match<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Match<'_, T> {}

/// The path after removing the matched prefix; always starts with `/`.
///
/// `/google/` and `/google` with `prefix_len` 7 both give `/`; `/google/a` gives `/a`; a `*`
/// key `/node*` matched on `/nodejs/x` gives `/js/x`. Borrows unless a `/` must be added
/// (only after a `*` key). A `prefix_len` past the end or off a char boundary gives `/`.
#[must_use]
pub fn strip_prefix(path: &str, prefix_len: usize) -> Cow<'_, str> {
    if prefix_len > 0 && path.as_bytes().get(prefix_len - 1) == Some(&b'/') {
        // The key ended in '/': keep that slash as the remainder's leading one.
        if let Some(rest) = path.get(prefix_len - 1..) {
            return Cow::Borrowed(rest);
        }
    }
    match path.get(prefix_len..) {
        None | Some("") => Cow::Borrowed("/"),
        Some(rest) if rest.starts_with('/') => Cow::Borrowed(rest),
        Some(rest) => Cow::Owned(format!("/{rest}")),
    }
}

/// Joins a proxy target's base path with the request path like Go's `singleJoiningSlash`:
/// exactly one `/` between them. Base `""` leaves `path` unchanged; `/api` or `/api/` with
/// `/x` give `/api/x`; `/api` with `/` gives `/api/` (as Go does).
#[must_use]
pub fn join_path<'a>(base: &'a str, path: &'a str) -> Cow<'a, str> {
    if base.is_empty() {
        return Cow::Borrowed(path);
    }
    match (base.ends_with('/'), path.strip_prefix('/')) {
        (true, Some(_)) if base == "/" => Cow::Borrowed(path),
        (true, Some(rest)) => Cow::Owned([base, rest].concat()),
        (false, None) => Cow::Owned([base, "/", path].concat()),
        _ => Cow::Owned([base, path].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Result<String, PathError> {
        Ok(s.to_owned())
    }

    #[test]
    fn normalize_table() {
        let pct = |offset| Err(PathError::BadPercentEncoding { offset });
        let ctl = |offset| Err(PathError::ControlCharacter { offset });
        let cases: &[(&str, Result<String, PathError>)] = &[
            ("", ok("/")),
            ("/", ok("/")),
            ("/go", ok("/go")),
            ("/node/", ok("/node/")),
            ("/node/x/y", ok("/node/x/y")),
            ("node", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
            ("http://h/x", Err(PathError::NotAbsolute)),
            // Merged slashes.
            ("//node", ok("/node")),
            ("//", ok("/")),
            ("/a//b///c//", ok("/a/b/c/")),
            ("/a//../b", ok("/b")),
            // Dot-segments.
            ("/node/../x", ok("/x")),
            ("/./a", ok("/a")),
            ("/a/./b", ok("/a/b")),
            ("/a/.", ok("/a/")),
            ("/a/..", ok("/")),
            ("/.", ok("/")),
            ("/a/b/..", ok("/a/")),
            ("/a/b/../", ok("/a/")),
            ("/a/.b/..c/...", ok("/a/.b/..c/...")),
            ("/node/%2e%2E/x", ok("/x")),
            ("/%2E", ok("/")),
            ("/a/.%2e", ok("/")),
            ("/..", Err(PathError::AboveRoot)),
            ("/../x", Err(PathError::AboveRoot)),
            ("/a/../../b", Err(PathError::AboveRoot)),
            ("/%2e%2e/x", Err(PathError::AboveRoot)),
            ("//..", Err(PathError::AboveRoot)),
            // %2F is data, never a separator.
            ("/node%2F..", ok("/node%2F..")),
            ("/node%2f..", ok("/node%2F..")),
            ("/a%2F../..", ok("/")),
            ("/a/%2F", ok("/a/%2F")),
            // Percent-encoding.
            ("/%41", ok("/A")),
            ("/%7e", ok("/~")),
            ("/%7E%2D%5f%30", ok("/~-_0")),
            ("/%3a", ok("/%3A")),
            ("/%3A", ok("/%3A")),
            ("/%25", ok("/%25")),
            ("/%2541", ok("/%2541")),
            ("/%c3%a9", ok("/%C3%A9")),
            ("/%20", ok("/%20")),
            ("/%zz", pct(1)),
            ("/%4", pct(1)),
            ("/%", pct(1)),
            ("/a/b%", pct(4)),
            ("/%4g", pct(1)),
            ("/%\u{e9}", pct(1)),
            ("/%4\u{e9}", pct(1)),
            ("/%%41", pct(1)),
            ("/%00", ctl(1)),
            ("/%1f", ctl(1)),
            ("/%7F", ctl(1)),
            ("/a\0", ctl(2)),
            ("/a/\nb", ctl(3)),
            ("/\x7f", ctl(1)),
            ("/\t", ctl(1)),
            // Leftmost fault wins.
            ("/%zz/\n", pct(1)),
            ("/\n/../..", ctl(1)),
            ("/../%zz", Err(PathError::AboveRoot)),
            // Non-ASCII is kept.
            ("/caf\u{e9}/./x", ok("/caf\u{e9}/x")),
            ("/\u{e9}", ok("/\u{e9}")),
        ];
        for (input, want) in cases {
            let got = normalize(input).map(Cow::into_owned);
            assert_eq!(&got, want, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_borrows_normal_paths() {
        for p in [
            "/",
            "/go",
            "/node/",
            "/a/b%2Fc/",
            "/%3A",
            "/caf\u{e9}",
            "/.a/..b",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(s)) if s == p),
                "normalize({p:?}) should borrow"
            );
        }
        for p in ["//a", "/a/.", "/%3a", "/%41"] {
            assert!(
                matches!(normalize(p), Ok(Cow::Owned(_))),
                "normalize({p:?}) should allocate"
            );
        }
    }

    /// Exhaustive over short strings of a tricky alphabet: never panics, the fast path agrees
    /// with the slow one, and the output is a normal fixed point.
    #[test]
    fn normalize_exhaustive_small_inputs() {
        const ALPHABET: &[&str] = &["/", ".", "%", "2", "e", "F", "a", "\u{e9}", "\n"];
        let mut idx = Vec::new();
        let mut s = String::new();
        for len in 0..=6 {
            idx.clear();
            idx.resize(len, 0usize);
            loop {
                s.clear();
                s.push('/');
                for &i in &idx {
                    s.push_str(ALPHABET[i]);
                }
                let slow = normalize_slow(&s);
                let got = normalize(&s);
                assert_eq!(got.clone().map(Cow::into_owned), slow, "{s:?}");
                if let Ok(n) = got {
                    assert!(
                        matches!(normalize(&n), Ok(Cow::Borrowed(_))),
                        "{s:?} -> {n:?}"
                    );
                    assert!(n.starts_with('/'));
                }
                // Odometer increment.
                let mut k = 0;
                while k < len && idx[k] + 1 == ALPHABET.len() {
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
                idx[k] += 1;
            }
        }
    }

    type LookupCase<'t> = (&'t RouteTable<&'t str>, &'t str, Option<(&'t str, usize)>);

    fn table(keys: &[&'static str]) -> RouteTable<&'static str> {
        RouteTable::new(keys.iter().map(|k| ((*k).to_owned(), *k)))
    }

    #[test]
    fn lookup_table() {
        let all = table(&["/", "/node", "/node*", "/nodejs", "/google/", "/go", "/a/b"]);
        let no_root = table(&["/node", "/node*", "/api/"]);
        let cases: &[LookupCase] = &[
            (&all, "/node", Some(("/node", 5))),
            (&all, "/node/", Some(("/node", 5))),
            (&all, "/node/x", Some(("/node", 5))),
            (&all, "/nodejs", Some(("/nodejs", 7))),
            (&all, "/nodejs/x", Some(("/nodejs", 7))),
            (&all, "/nodejsx", Some(("/node*", 5))),
            (&all, "/nodes", Some(("/node*", 5))),
            (&all, "/node%2F..", Some(("/node*", 5))),
            (&all, "/go", Some(("/go", 3))),
            (&all, "/gopher", Some(("/", 1))),
            (&all, "/google/", Some(("/google/", 8))),
            (&all, "/google/a", Some(("/google/", 8))),
            (&all, "/google", Some(("/", 1))),
            (&all, "/a/b/c", Some(("/a/b", 4))),
            (&all, "/a/bc", Some(("/", 1))),
            (&all, "/", Some(("/", 1))),
            (&all, "/x", Some(("/", 1))),
            (&no_root, "/nodejs", Some(("/node*", 5))),
            (&no_root, "/node", Some(("/node", 5))),
            (&no_root, "/api/v1", Some(("/api/", 5))),
            (&no_root, "/api", None),
            (&no_root, "/", None),
            (&no_root, "/other", None),
            (&no_root, "", None),
        ];
        for (t, path, want) in cases {
            let got = t.lookup(path).map(|m| {
                assert_eq!(m.key, *m.value);
                (m.key, m.prefix_len)
            });
            assert_eq!(got, *want, "lookup({path:?})");
        }
    }

    #[test]
    fn lookup_routes_normalized_paths() {
        let t = table(&["/", "/node", "/x"]);
        let cases = [
            ("/node/../x", "/x"),
            ("//node", "/node"),
            ("/node%2F..", "/"),
            ("/node/%2e%2E/x", "/x"),
            ("/go", "/"),
            ("", "/"),
        ];
        for (raw, want) in cases {
            let path = normalize(raw).unwrap();
            assert_eq!(t.lookup(&path).map(|m| m.key), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn lookup_independent_of_insertion_order() {
        let keys = ["/", "/a", "/a/b", "/a*", "/a/b/", "/ab"];
        let forward = table(&keys);
        let mut rev = keys;
        rev.reverse();
        let backward = table(&rev);
        assert!(forward.iter().eq(backward.iter()));
        for path in [
            "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/ab", "/abc", "/b",
        ] {
            assert_eq!(
                forward.lookup(path).map(|m| m.key),
                backward.lookup(path).map(|m| m.key),
                "{path:?}"
            );
        }
        let order: Vec<&str> = forward.iter().map(|(k, _)| k).collect();
        assert_eq!(order, ["/a/b/", "/a/b", "/ab", "/a", "/a*", "/"]);
    }

    #[test]
    fn new_duplicate_keys_last_wins() {
        let t = RouteTable::new([
            ("/a".to_owned(), 1),
            ("/".to_owned(), 2),
            ("/a".to_owned(), 3),
            ("/a".to_owned(), 4),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("/a").map(|m| *m.value), Some(4));
        assert_eq!(t.lookup("/b").map(|m| *m.value), Some(2));
    }

    #[test]
    fn lookup_odd_keys_do_not_panic() {
        let t = table(&["", "*", "/\u{e9}", "/\u{e9}*", "**"]);
        for path in ["", "/", "/\u{e9}", "/\u{e9}x", "*", "x"] {
            let _ = t.lookup(path);
        }
        assert!(table(&[]).lookup("/").is_none());
        assert!(table(&[]).is_empty());
    }

    #[test]
    fn strip_prefix_table() {
        let cases: &[(&str, usize, &str, bool)] = &[
            // (path, prefix_len, want, borrowed)
            ("/google/", 7, "/", true),
            ("/google", 7, "/", true),
            ("/google/a", 7, "/a", true),
            ("/google/a", 8, "/a", true),
            ("/google/", 8, "/", true),
            ("/nodejs/x", 5, "/js/x", false),
            ("/node/x", 5, "/x", true),
            ("/x", 1, "/x", true),
            ("/", 1, "/", true),
            ("/x", 0, "/x", true),
            ("x", 0, "/x", false),
            ("", 0, "/", true),
            ("/x", 99, "/", true),
            ("/\u{e9}", 2, "/", true),
        ];
        for &(path, len, want, borrowed) in cases {
            let got = strip_prefix(path, len);
            assert_eq!(got, want, "strip_prefix({path:?}, {len})");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{path:?} {len}");
        }
    }

    #[test]
    fn join_path_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "/x", "/x"),
            ("", "/", "/"),
            ("/", "/x", "/x"),
            ("/api", "/x", "/api/x"),
            ("/api/", "/x", "/api/x"),
            ("/api", "/", "/api/"),
            ("/api/", "/", "/api/"),
            ("/api", "x", "/api/x"),
            ("/api/", "x", "/api/x"),
            ("/api//", "/x", "/api//x"),
        ];
        for &(base, path, want) in cases {
            assert_eq!(join_path(base, path), want, "join_path({base:?}, {path:?})");
        }
        assert!(matches!(join_path("", "/x"), Cow::Borrowed(_)));
        assert!(matches!(join_path("/", "/x"), Cow::Borrowed(_)));
    }

    #[test]
    fn path_error_messages_name_the_offset() {
        let e = normalize("/ab%zz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad percent-encoding at byte 3 of the request path"
        );
    }

    /// Property tests (proptest, 256 cases each) over paths built from tokens chosen to hit
    /// the tricky cases (dot-segments, escapes of `.`/`/`/unreserved bytes, bad escapes, control
    /// and non-ASCII characters) plus fully arbitrary strings.
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Tokens for generated paths. Deliberately without `%3A`/`%3a`: the `%2F` property
        /// uses `%3A` as its stand-in for "some escape that is plainly not a separator".
        const TOKENS: &[&str] = &[
            "/", "/", "/", ".", "..", "a", "b", "ab", "%2F", "%2f", "%2e", "%2E", "%41", "%7e",
            "%25", "%C3%A9", "\u{e9}", "~", "-", "?", "*", "%", "%z", "%0", "%00", "\n",
        ];

        /// The tokens that are never a fault on their own (the first 21 of [`TOKENS`]).
        const VALID_TOKENS: usize = 21;

        fn token_path() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(TOKENS), 0..24),
                prop::collection::vec(prop::sample::select(&TOKENS[..VALID_TOKENS]), 0..24),
            ]
            .prop_map(|tokens| format!("/{}", tokens.concat()))
        }

        /// Any string, a token path, or an arbitrary string after a `/`.
        fn any_path() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                token_path(),
                any::<String>().prop_map(|s| format!("/{s}")),
            ]
        }

        fn keys_table() -> RouteTable<&'static str> {
            table(&[
                "/", "/a", "/a/", "/a/b", "/a/b/", "/a*", "/a/b*", "/ab", "/A", "/b", "/b/a",
                "/\u{e9}",
            ])
        }

        /// The reference model of normalisation for paths made only of the segments `""`, `.`,
        /// `..` and plain names: a stack of segments.
        fn model(segments: &[&str]) -> Result<String, PathError> {
            let mut stack: Vec<&str> = Vec::new();
            let mut trailing = false;
            for &seg in segments {
                trailing = true;
                match seg {
                    "" | "." => {}
                    ".." => {
                        stack.pop().ok_or(PathError::AboveRoot)?;
                    }
                    name => {
                        stack.push(name);
                        trailing = false;
                    }
                }
            }
            let mut out = String::new();
            for seg in &stack {
                out.push('/');
                out.push_str(seg);
            }
            if trailing || out.is_empty() {
                out.push('/');
            }
            Ok(out)
        }

        proptest! {
            /// The indexed lookup finds the first entry in match-priority order that matches,
            /// whatever the keys (any string, `*` anywhere) and the path.
            #[test]
            fn lookup_is_the_first_match_in_priority_order(
                keys in prop::collection::vec(
                    prop_oneof![token_path(), any::<String>(), token_path().prop_map(|k| k + "*")],
                    0..12,
                ),
                p in any_path(),
            ) {
                let table = RouteTable::new(keys.iter().map(|key| (key.as_str(), ())));
                let scanned = table.entries.iter().find(|e| e.matches(&p)).map(|e| &*e.key);
                prop_assert_eq!(table.lookup(&p).map(|found| found.key), scanned);
            }

            /// Never panics, on anything; the fast path agrees with the definitive one.
            #[test]
            fn never_panics(p in any_path()) {
                let got = normalize(&p).map(Cow::into_owned);
                if p.starts_with('/') {
                    prop_assert_eq!(got, normalize_slow(&p));
                }
            }

            /// `normalize(normalize(p)) == normalize(p)`, and the second call borrows.
            #[test]
            fn idempotent(p in any_path()) {
                if let Ok(n) = normalize(&p) {
                    let again = normalize(&n);
                    prop_assert!(
                        matches!(&again, Ok(Cow::Borrowed(s)) if *s == n),
                        "{:?} -> {:?} -> {:?}", p, n, again
                    );
                }
            }

            /// A result starts with `/` and has no `.` or `..` segment, not even encoded
            /// (the escapes of unreserved bytes are decoded, so `%2E` cannot survive).
            #[test]
            fn never_above_root(p in any_path()) {
                if let Ok(n) = normalize(&p) {
                    prop_assert!(n.starts_with('/'), "{:?} -> {:?}", p, n);
                    for seg in n.split('/') {
                        prop_assert!(seg != "." && seg != "..", "{:?} -> {:?}", p, n);
                        prop_assert!(!seg.to_ascii_uppercase().contains("%2E"), "{:?} -> {:?}", p, n);
                    }
                    prop_assert!(!n.contains("//"), "{:?} -> {:?}", p, n);
                }
            }

            /// Paths of plain, empty and dot segments normalise exactly as a segment stack
            /// says, and a `..` that would pop an empty stack is `AboveRoot`, never clamped.
            #[test]
            fn dot_segments_follow_the_stack_model(
                segs in prop::collection::vec(
                    prop::sample::select(&["", ".", "..", "a", "b", "%2e", "%2E%2e", "a%2F.."][..]),
                    0..16,
                )
            ) {
                let path = format!("/{}", segs.join("/"));
                // The model works on decoded segments; `a%2F..` is one plain segment.
                let decoded: Vec<String> = segs
                    .iter()
                    .map(|s| s.replace("%2e", ".").replace("%2E", "."))
                    .collect();
                let decoded: Vec<&str> = decoded.iter().map(String::as_str).collect();
                prop_assert_eq!(normalize(&path).map(Cow::into_owned), model(&decoded), "{:?}", path);
            }

            /// `%2F` is data, never a separator: it behaves exactly like `%3A`, an escape that
            /// plainly is not one. Replacing every `%2F` (either case) by `%3A` gives the same
            /// result (or error, at the same offset) with `%3A` in place of `%2F`, the same
            /// segments, and the same route matched in a table without escapes in its keys.
            #[test]
            fn encoded_slash_is_never_a_separator(p in token_path()) {
                let q = p.replace("%2F", "%3A").replace("%2f", "%3A");
                let np = normalize(&p).map(Cow::into_owned);
                let nq = normalize(&q).map(|n| n.replace("%3A", "%2F"));
                prop_assert_eq!(&np, &nq, "{:?} vs {:?}", p, q);
                if let (Ok(np), Ok(nq)) = (normalize(&p), normalize(&q)) {
                    prop_assert_eq!(np.split('/').count(), nq.split('/').count());
                    let t = keys_table();
                    prop_assert_eq!(
                        t.lookup(&np).map(|m| (m.key, m.prefix_len)),
                        t.lookup(&nq).map(|m| (m.key, m.prefix_len)),
                        "{:?} vs {:?}", np, nq
                    );
                }
            }

            /// Turning a real `/` inside a path into `%2F` never lets it match a
            /// segment-boundary key that needs that `/`: whatever key matches the encoded
            /// path is a wildcard key, or a key whose match ends before the encoded slash.
            #[test]
            fn encoded_slash_never_matches_a_deeper_key(
                segs in prop::collection::vec(prop::sample::select(&["a", "b", "ab", "A"][..]), 1..5),
                at in any::<prop::sample::Index>(),
            ) {
                let t = keys_table();
                let real = format!("/{}", segs.join("/"));
                // Encode one of the inner separators (if there is one).
                let inner: Vec<usize> = real.match_indices('/').skip(1).map(|(i, _)| i).collect();
                prop_assume!(!inner.is_empty());
                let i = inner[at.index(inner.len())];
                let encoded = format!("{}%2F{}", &real[..i], &real[i + 1..]);
                let n = normalize(&encoded).unwrap();
                prop_assert_eq!(&*n, encoded.as_str());
                if let Some(m) = t.lookup(&n) {
                    prop_assert!(
                        m.key.ends_with('*') || m.prefix_len <= i,
                        "{:?} matched {:?} across the encoded slash at {}", encoded, m.key, i
                    );
                }
            }

            /// Lookup never panics and what it returns really is a prefix of the path.
            #[test]
            fn lookup_total(p in any_path()) {
                let t = keys_table();
                let _ = t.lookup(&p);
                if let Ok(n) = normalize(&p)
                    && let Some(m) = t.lookup(&n)
                {
                    prop_assert!(n.as_bytes().starts_with(&m.key.as_bytes()[..m.prefix_len]));
                    let rest = strip_prefix(&n, m.prefix_len);
                    prop_assert!(rest.starts_with('/'));
                }
            }
        }
    }
}
