//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 7.6.1, as Go's
//! httputil and nginx) and the `X-Forwarded-*` set. Pure functions over a `HeaderMap`.

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

/// Removes the hop-by-hop headers and every header the `Connection` header names. `TE:
/// trailers` survives as the one `TE` value that is end to end in meaning.
///
/// Runs twice per proxied request, so it first finds in one pass over the names (standard
/// names compare by tag, no hashing) which hop-by-hop headers are there: usually none in a
/// request and only `Connection` in a response.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    let is_present = |name: &HeaderName| {
        HOP_BY_HOP
            .iter()
            .position(|hop| hop == name)
            .is_some_and(|index| present & (1 << index) != 0)
    };
    if is_present(&header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            // `close` names no header, and `keep-alive` (what most upstreams send) names one
            // removed below anyway: neither is worth parsing into a name.
            .filter(|token| {
                !token.is_empty()
                    && !token.eq_ignore_ascii_case("close")
                    && !token.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let wants_trailers = is_present(&header::TE)
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("trailers"));
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
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

/// Sets `X-Forwarded-For/-Proto/-Host` from what zoo saw. From an untrusted client whatever it
/// claimed in them (and in `Forwarded`) is replaced, so it cannot spoof its address to the apps;
/// from a trusted one (`trust_forwarded`: a load balancer) zoo appends its peer to
/// `X-Forwarded-For` and keeps the rest, which describe the original client. `client` is
/// [`forwarded_for`] of the connection's peer, made once per connection.
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
        return;
    }
    headers.remove(header::FORWARDED);
    headers.insert(X_FORWARDED_FOR, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
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
