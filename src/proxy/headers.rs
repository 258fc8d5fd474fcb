//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 7.6.1, as Go's
//! httputil and nginx), the forwarded-header family (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`
//! and the other names frameworks read a client's address or URL from), the framing check of
//! upstream responses, and `Host` syntax. Pure functions over a `HeaderMap` or bytes.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message: dropped both ways.
///
/// `Trailer` is not among them (RFC 9110 6.6.2: it announces end-to-end fields): hyper writes
/// trailers to an HTTP/1.1 peer only for the names it announces, so dropping it would drop the
/// trailers. Go's httputil drops it and then re-announces the same names: the same result.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Joins several `Cookie` fields into one, `; `-separated, as RFC 9113 8.2.3 requires before
/// a request goes on over HTTP/1.1: an HTTP/2 client may send each cookie as a field of its
/// own (for better header compression), and an app (or a proxy behind zoo) counting fields
/// would see hundreds. One field, as RFC 6265 5.4 says a client sends it, is left as it is.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for field in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(field.as_bytes());
    }
    // Valid: each part was a valid value, and `; ` is too.
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, joined);
    }
}

/// Headers a proxy sets to tell an app about the client or the URL it asked for, which
/// frameworks trust (chi `RealIP`, Werkzeug `ProxyFix`, Spring `ForwardedHeaderFilter`, IIS
/// URL rewriting). From a client outside `trust_forwarded` each is dropped (the four zoo sets
/// itself are then set afresh); docs/proxy.md lists the same names.
static FORWARDED_FAMILY: [HeaderName; 22] = [
    header::FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-path"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("front-end-https"),
];

/// Removes the hop-by-hop headers and every header the `Connection` header names. `TE:
/// trailers` survives as the one `TE` value that is end to end in meaning.
///
/// Runs twice per proxied request, so it first finds in one pass over the fields (standard
/// names compare by tag, no hashing) which hop-by-hop headers are there, usually none in a
/// request and only `Connection` in a response, and reads what `Connection` names and
/// whether `TE` lists `trailers` in the same pass (a lookup of each and an iterator over
/// `str` cost 1.1k instructions per response: issue 19).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    let mut named: Vec<HeaderName> = Vec::new();
    let mut te_trailers = false;
    for (name, value) in headers.iter() {
        let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) else {
            continue;
        };
        present |= 1 << index;
        if *name == header::CONNECTION {
            named.extend(connection_names(value));
        } else if *name == header::TE {
            te_trailers |= list_tokens(value).any(|token| token.eq_ignore_ascii_case(b"trailers"));
        }
    }
    if present == 0 {
        return;
    }
    // A `TE` the `Connection` header names goes whole, `trailers` too.
    let wants_trailers = te_trailers && !named.contains(&header::TE);
    for name in named {
        headers.remove(name);
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The trimmed comma-separated tokens of a value that is visible ASCII (any other value
/// lists none), empty ones too.
fn list_tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    let text = value.to_str().map_or(&b""[..], str::as_bytes);
    text.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

/// The header names a `Connection` value lists. `close` names no header, and `keep-alive`
/// (what most upstreams send) names one removed anyway: neither is parsed into a name.
fn connection_names(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    list_tokens(value)
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"close")
                && !token.eq_ignore_ascii_case(b"keep-alive")
        })
        .filter_map(|token| HeaderName::from_bytes(token).ok())
}

/// What is wrong with an upstream response's framing, if it cannot be forwarded as hyper
/// decoded it. hyper reads a `chunked` body when `Transfer-Encoding` ends in `chunked` and to
/// EOF for any other coding; zoo then drops `Transfer-Encoding` (hop-by-hop), so a
/// `Content-Length` beside it would reframe the body to the client (truncated, looking
/// complete), and any coding but `chunked` would reach the client undecoded and unnamed.
/// nginx answers both with 502.
#[must_use]
pub fn response_framing_fault(headers: &HeaderMap) -> Option<&'static str> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let first = codings.next()?;
    if codings.next().is_some()
        || !first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Some("a Transfer-Encoding other than `chunked`");
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    None
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `X-Real-IP` from what zoo saw. From an untrusted
/// client every header of the forwarded family is dropped first, so it cannot spoof its
/// address or URL to the apps; from a trusted one (`trust_forwarded`: a load balancer) zoo
/// appends its peer to `X-Forwarded-For` and keeps the rest, which describe the original
/// client. `client` is [`forwarded_for`] of the connection's peer, made once per connection.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
    trusted: bool,
) {
    if trusted {
        let chain = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes)
            .chain(std::iter::once(client.as_bytes()))
            .collect::<Vec<_>>()
            .join(&b", "[..]);
        if let Ok(chain) = HeaderValue::from_bytes(&chain) {
            headers.insert(X_FORWARDED_FOR, chain);
        }
        headers
            .entry(X_FORWARDED_PROTO)
            .or_insert(HeaderValue::from_static(proto));
        if let Some(host) = host {
            headers.entry(X_FORWARDED_HOST).or_insert(host);
        }
        headers.entry(X_REAL_IP).or_insert(client);
        return;
    }
    remove_forwarded_family(headers);
    headers.insert(X_REAL_IP, client.clone());
    headers.insert(X_FORWARDED_FOR, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// Whether `name` starts as a name of [`FORWARDED_FAMILY`] may (a test keeps the two in step).
fn family_initial(name: &HeaderName) -> bool {
    matches!(
        name.as_str().as_bytes().first(),
        Some(b'x' | b'f' | b't' | b'c')
    )
}

/// Drops every header of [`FORWARDED_FAMILY`]: one pass over the names finds which are there
/// (usually none), so a request without them costs no lookup.
fn remove_forwarded_family(headers: &mut HeaderMap) {
    let mut present = 0u32;
    for name in headers.keys() {
        // Every name of the family starts with one of these bytes (names are lowercase):
        // `host`, `accept`, `user-agent` and most others are passed over without comparing.
        if !family_initial(name) {
            continue;
        }
        if let Some(index) = FORWARDED_FAMILY.iter().position(|family| family == name) {
            present |= 1 << index;
        }
    }
    for (index, name) in FORWARDED_FAMILY.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether `host` is a `Host` value zoo passes on: `host[:port]` as RFC 9110 7.2 and RFC 3986
/// 3.2.2 write it, without userinfo: a bracketed IPv6 (or IPvFuture) literal, or a name or IPv4
/// address of unreserved characters, sub-delims and `%XX`, then at most a port of up to 65535.
/// Empty is refused (nginx does too): an HTTP/1.1 request needs a host to be routed to an app.
#[must_use]
pub fn is_valid_host(host: &[u8]) -> bool {
    let (name, port) = if let Some(literal) = host.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&byte| byte == b']') else {
            return false;
        };
        let inside = &literal[..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|byte| byte.is_ascii_hexdigit() || b":.vV".contains(byte))
        {
            return false;
        }
        (&b"x"[..], &literal[end + 1..])
    } else {
        match host.iter().position(|&byte| byte == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &b""[..]),
        }
    };
    is_reg_name(name) && is_port(port)
}

/// The bytes a reg-name takes as they are: unreserved and sub-delims (RFC 3986 3.2.2). A table,
/// since every request's host is checked byte by byte.
static REG_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        byte += 1;
    }
    table
};

/// RFC 3986 reg-name (which covers IPv4 addresses), not empty.
fn is_reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = if byte == b'%' {
            match tail {
                [high, low, after @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    after
                }
                _ => return false,
            }
        } else if REG_NAME_BYTES[usize::from(byte)] {
            tail
        } else {
            return false;
        };
    }
    !name.is_empty()
}

/// Empty, or `:` and at most five digits making at most 65535.
fn is_port(port: &[u8]) -> bool {
    let Some(digits) = port.strip_prefix(b":") else {
        return port.is_empty();
    };
    digits.len() <= 5
        && digits.iter().all(u8::is_ascii_digit)
        && digits
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
            <= 65535
}

/// The `X-Forwarded-For` value for a client address (IPv4-mapped IPv6 written as IPv4).
#[must_use]
pub fn forwarded_for(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    HeaderValue::try_from(text).expect("an IP address is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_cookie_fields_become_one_and_one_stays_as_it_is() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.insert(header::HOST, HeaderValue::from_static("x"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1");
        for value in ["b=2; c=3", "d=4"] {
            headers.append(header::COOKIE, HeaderValue::from_static(value));
        }
        join_cookies(&mut headers);
        let cookies: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3; d=4"]);
        assert_eq!(headers[header::HOST], "x");
    }

    #[test]
    fn every_forwarded_family_name_passes_the_initial_filter() {
        for name in &FORWARDED_FAMILY {
            assert!(family_initial(name), "{name}");
        }
        assert!(!family_initial(&header::HOST));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-checksum"),
            ("te", "gzip"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut map);
        let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["trailer", "x-kept"]);
    }

    #[test]
    fn response_framing_faults_are_found() {
        for (pairs, fault) in [
            (&[("transfer-encoding", "chunked")][..], None),
            (&[("content-length", "3")][..], None),
            (&[("Transfer-Encoding", "Chunked ")][..], None),
            (
                &[("transfer-encoding", "chunked"), ("content-length", "3")][..],
                Some("both Content-Length and Transfer-Encoding"),
            ),
            (
                &[("transfer-encoding", "gzip, chunked")][..],
                Some("a Transfer-Encoding other than `chunked`"),
            ),
            (
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ][..],
                Some("a Transfer-Encoding other than `chunked`"),
            ),
            (
                &[("transfer-encoding", "identity")][..],
                Some("a Transfer-Encoding other than `chunked`"),
            ),
        ] {
            assert_eq!(response_framing_fault(&headers(pairs)), fault, "{pairs:?}");
        }
    }

    #[test]
    fn te_trailers_survives() {
        let mut map = headers(&[("te", "gzip, trailers")]);
        remove_hop_by_hop(&mut map);
        assert_eq!(map.get("te").unwrap(), "trailers");
    }

    #[test]
    fn what_connection_names_goes_from_every_field_te_too() {
        let mut map = headers(&[
            ("te", "trailers"),
            ("connection", " TE ,, keep-alive"),
            ("connection", "x-b, close"),
            ("x-b", "2"),
            ("x-c", "3"),
        ]);
        // Not visible ASCII: names nothing, not even `x-c`.
        map.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-c, caf\xc3\xa9").unwrap(),
        );
        remove_hop_by_hop(&mut map);
        let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-c"], "a TE that Connection names goes whole");
    }

    #[test]
    fn forwarded_headers_from_the_client_are_replaced() {
        let mut map = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
        ]);
        let client: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        set_forwarded(
            &mut map,
            forwarded_for(client),
            "http",
            Some(HeaderValue::from_static("example.com")),
            false,
        );
        assert!(map.get("forwarded").is_none());
        assert_eq!(map.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(map["x-forwarded-for"], "10.0.0.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "example.com");
    }

    #[test]
    fn the_whole_forwarded_family_from_an_untrusted_client_is_dropped() {
        let mut pairs = vec![("x-kept", "1")];
        pairs.extend(
            FORWARDED_FAMILY
                .iter()
                .map(|name| (name.as_str(), "6.6.6.6")),
        );
        let mut map = headers(&pairs);
        set_forwarded(
            &mut map,
            forwarded_for("10.0.0.7".parse().unwrap()),
            "http",
            None,
            false,
        );
        let left: Vec<(&str, &str)> = map
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            left,
            [
                ("x-kept", "1"),
                ("x-real-ip", "10.0.0.7"),
                ("x-forwarded-for", "10.0.0.7"),
                ("x-forwarded-proto", "http"),
            ]
        );
    }

    #[test]
    fn hosts_are_plain_host_and_port() {
        for valid in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:18103",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
            "a_b.internal:0",
            "host:",
            "%41b",
        ] {
            assert!(is_valid_host(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "",
            "u:p@127.0.0.1:18103",
            "u@example.com",
            "a/b@c:99999",
            "example.com:99999",
            "example.com:65536",
            "example.com:123456",
            "example.com:8o",
            "example.com:80:80",
            "a/b",
            "a\\b",
            "a b",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:99999",
            "[g::1]",
            "%4",
            "%zz",
            ":80",
            "exa\"mple",
        ] {
            assert!(!is_valid_host(invalid.as_bytes()), "{invalid}");
        }
    }

    #[test]
    fn a_trusted_client_is_appended_and_its_claims_kept() {
        let mut map = headers(&[
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example.com"),
        ]);
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        set_forwarded(
            &mut map,
            forwarded_for(lb),
            "http",
            Some(HeaderValue::from_static("zoo.internal")),
            true,
        );
        assert_eq!(map["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(map["forwarded"], "for=203.0.113.9");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "example.com");
    }

    #[test]
    fn ipv6_clients_are_written_plainly() {
        let mut map = HeaderMap::new();
        set_forwarded(
            &mut map,
            forwarded_for("::1".parse().unwrap()),
            "http",
            None,
            false,
        );
        assert_eq!(map["x-forwarded-for"], "::1");
        assert!(map.get("x-forwarded-host").is_none());
    }
}
