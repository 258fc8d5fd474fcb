//! Who a request's client is: the connection's peer, or, when the peer is in
//! `trust_forwarded` (a load balancer), the address the proxy chain reports in
//! `X-Forwarded-For`. That one address is what `allow`/`deny` match, what `{client_ip}`
//! renders, and what the access log names.
//!
//! The chain is read as nginx's `real_ip_recursive on` reads it: from its right end (the
//! entry the nearest proxy wrote), past every address `trust_forwarded` names (the proxies
//! themselves); the first address it does not name is the client. An entry that is no address
//! stops the walk at the last trusted one: nothing left of it was vouched for. When every
//! entry is trusted, the leftmost is the client.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};

use super::headers::forwarded_for;
use crate::config::Network;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// A request's client as zoo determined it.
pub(super) struct Client<'c> {
    pub(super) ip: IpAddr,
    /// `ip` as text (IPv4-mapped IPv6 as IPv4), for `{client_ip}`: the connection's
    /// `X-Forwarded-For` value when it is the peer, so nothing is formatted or copied.
    pub(super) text: Cow<'c, HeaderValue>,
    /// Whether the peer is in `trust_forwarded`: its forwarded headers and request ID are
    /// kept.
    pub(super) trusted: bool,
}

impl<'c> Client<'c> {
    /// The client of a request from `peer` (whose text is `peer_text`) with `headers`.
    pub(super) fn of(
        peer: IpAddr,
        peer_text: &'c HeaderValue,
        headers: &HeaderMap,
        trust_forwarded: &[Network],
    ) -> Self {
        let trusts = |ip: IpAddr| trust_forwarded.iter().any(|network| network.contains(ip));
        // Without `trust_forwarded` (the default) nothing is read from the request at all.
        let trusted = !trust_forwarded.is_empty() && trusts(peer);
        match trusted.then(|| reported_client(headers, trusts)).flatten() {
            Some(ip) if ip != peer => Self {
                ip,
                text: Cow::Owned(forwarded_for(ip)),
                trusted,
            },
            _ => Self {
                ip: peer,
                text: Cow::Borrowed(peer_text),
                trusted,
            },
        }
    }
}

/// The client the `X-Forwarded-For` chain reports (see the module doc); `None` without one.
fn reported_client(headers: &HeaderMap, trusts: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let values: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .collect();
    let mut last_trusted = None;
    for entry in values.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Some(ip) = address(entry.trim()) else {
            return last_trusted;
        };
        if !trusts(ip) {
            return Some(ip);
        }
        last_trusted = Some(ip);
    }
    last_trusted
}

/// `1.2.3.4`, `2001:db8::1`, and the forms with a port some proxies write (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`) or brackets alone.
fn address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inside| inside.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, chain: &[&str], trusted: &[&str]) -> (String, bool) {
        let mut headers = HeaderMap::new();
        for value in chain {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        let networks: Vec<Network> = trusted.iter().map(|n| Network::parse(n).unwrap()).collect();
        let peer: IpAddr = peer.parse().unwrap();
        let peer_text = forwarded_for(peer);
        let found = Client::of(peer, &peer_text, &headers, &networks);
        assert_eq!(*found.text, forwarded_for(found.ip));
        (found.ip.to_string(), found.trusted)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            client("192.0.2.1", &["203.0.113.9"], &[]),
            ("192.0.2.1".into(), false)
        );
        let other = client("192.0.2.1", &["203.0.113.9"], &["10.0.0.0/8"]);
        assert_eq!(other, ("192.0.2.1".into(), false));
    }

    #[test]
    fn a_trusted_chain_is_read_from_the_right_past_the_proxies() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        let seen = |chain: &[&str]| client("127.0.0.1", chain, &trusted).0;
        assert_eq!(seen(&["203.0.113.9"]), "203.0.113.9");
        assert_eq!(
            seen(&["198.51.100.1, 203.0.113.9, 10.0.0.2"]),
            "203.0.113.9"
        );
        assert_eq!(
            seen(&["198.51.100.1", "203.0.113.9", "10.0.0.2, 10.0.0.3"]),
            "203.0.113.9"
        );
        assert_eq!(seen(&["[2001:db8::7]:443"]), "2001:db8::7");
        assert_eq!(seen(&["203.0.113.9:5678"]), "203.0.113.9");
        assert_eq!(seen(&["[2001:db8::8]"]), "2001:db8::8");
        // Every entry a proxy: the leftmost.
        assert_eq!(seen(&["10.0.0.5, 10.0.0.2"]), "10.0.0.5");
        // Garbage stops the walk at the last trusted address.
        assert_eq!(seen(&["203.0.113.9, junk, 10.0.0.2"]), "10.0.0.2");
        assert_eq!(seen(&["junk"]), "127.0.0.1");
        // No chain: the peer.
        assert_eq!(
            client("127.0.0.1", &[], &trusted),
            ("127.0.0.1".into(), true)
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_matched_and_shown_as_ipv4() {
        let (ip, trusted) = client("::ffff:127.0.0.1", &["203.0.113.9"], &["127.0.0.1"]);
        assert_eq!((ip.as_str(), trusted), ("203.0.113.9", true));
    }
}
