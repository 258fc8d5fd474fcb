//! Parsing of `proxy = "https://host:port/base"` into a [`ProxyTarget`]. Accepts only what zoo
//! can forward to: an http or https URL with a host, an optional port and an optional base path;
//! no user info, query or fragment (the request supplies those).

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::net::Ipv6Addr;

use super::{ProxyTarget, Scheme};

/// Parses a proxy URL; the error explains what is wrong with it.
pub(super) fn parse(url: &str) -> Result<ProxyTarget, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "expected an absolute URL like https://example.com, found \"{url}\""
        ));
    };
    let Some(scheme) = Scheme::ALL
        .iter()
        .copied()
        .find(|known| scheme.eq_ignore_ascii_case(known.as_str()))
    else {
        return Err(format!(
            "unsupported scheme `{scheme}`: expected http:// or https://"
        ));
    };
    if rest.contains(['?', '#']) {
        return Err(
            "a proxy URL cannot have a query or fragment: the request's own query is forwarded"
                .to_owned(),
        );
    }
    let (authority, path) = rest
        .find('/')
        .map_or((rest, ""), |slash| rest.split_at(slash));
    if authority.contains('@') {
        return Err("a proxy URL cannot contain user info (`user@`)".to_owned());
    }
    if let Some(bad) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid character {bad:?} in the URL path"));
    }
    let (host, port) = split_host_port(authority)?;
    let default_port = match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    Ok(ProxyTarget {
        scheme,
        host: host.to_owned(),
        port: port.unwrap_or(default_port),
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Splits `host[:port]` or `[v6][:port]`, returning the host without brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    if authority.is_empty() {
        return Err("missing host: expected a URL like https://example.com".to_owned());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("unclosed `[` in host `{authority}`"));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address `{host}`"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("expected `:port` after `]` in `{authority}`"))?,
            ),
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("missing host: expected a URL like https://example.com".to_owned());
        }
        if let Some(bad) = host
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!(
                "invalid character {bad:?} in host `{host}` (IPv6 addresses go in brackets: [::1])"
            ));
        }
        (host, port)
    };
    let port = match port {
        None => None,
        // `u16::from_str` accepts a leading `+`, which a URL port may not have.
        Some(port) => match port.parse::<u16>() {
            Ok(number) if number > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Some(number),
            _ => return Err(format!("invalid port `{port}`: expected 1 to 65535")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scheme: Scheme, host: &str, port: u16, authority: &str, path: &str) -> ProxyTarget {
        ProxyTarget {
            scheme,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn parse_applies_default_ports() {
        assert_eq!(
            parse("https://google.com"),
            Ok(target(Scheme::Https, "google.com", 443, "google.com", ""))
        );
        assert_eq!(
            parse("http://example.com"),
            Ok(target(Scheme::Http, "example.com", 80, "example.com", ""))
        );
    }

    #[test]
    fn parse_keeps_explicit_port_and_path() {
        assert_eq!(
            parse("http://127.0.0.1:8080/base/x"),
            Ok(target(
                Scheme::Http,
                "127.0.0.1",
                8080,
                "127.0.0.1:8080",
                "/base/x"
            ))
        );
        assert_eq!(
            parse("HTTPS://Example.com/"),
            Ok(target(
                Scheme::Https,
                "Example.com",
                443,
                "Example.com",
                "/"
            ))
        );
    }

    #[test]
    fn parse_strips_ipv6_brackets() {
        assert_eq!(
            parse("http://[::1]:9000"),
            Ok(target(Scheme::Http, "::1", 9000, "[::1]:9000", ""))
        );
        assert_eq!(
            parse("https://[::1]/"),
            Ok(target(Scheme::Https, "::1", 443, "[::1]", "/"))
        );
    }

    #[test]
    fn parse_rejects_other_schemes() {
        assert_eq!(
            parse("ftp://example.com"),
            Err("unsupported scheme `ftp`: expected http:// or https://".to_owned())
        );
        assert_eq!(
            parse("example.com"),
            Err(
                "expected an absolute URL like https://example.com, found \"example.com\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn parse_rejects_missing_host() {
        let message = Err("missing host: expected a URL like https://example.com".to_owned());
        assert_eq!(parse("https://"), message);
        assert_eq!(parse("https:///path"), message);
        assert_eq!(parse("https://:80"), message);
    }

    #[test]
    fn parse_rejects_query_and_fragment() {
        let message = Err(
            "a proxy URL cannot have a query or fragment: the request's own query is forwarded"
                .to_owned(),
        );
        assert_eq!(parse("https://a.com/?q=1"), message);
        assert_eq!(parse("https://a.com#top"), message);
    }

    #[test]
    fn parse_rejects_bad_ports() {
        assert_eq!(
            parse("http://a.com:99999"),
            Err("invalid port `99999`: expected 1 to 65535".to_owned())
        );
        assert!(parse("http://a.com:").is_err());
        assert!(parse("http://a.com:0").is_err());
        assert!(parse("http://a.com:+80").is_err());
        assert!(parse("http://[::1]x").is_err());
        assert!(parse("http://[zz]").is_err());
        assert!(parse("http://::1").is_err());
    }

    #[test]
    fn parse_rejects_userinfo() {
        assert_eq!(
            parse("https://user:pw@a.com"),
            Err("a proxy URL cannot contain user info (`user@`)".to_owned())
        );
    }
}
