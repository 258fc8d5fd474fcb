//! Access control on a route through the real binary: `allow` and `deny` from 127.0.0.1 and
//! ::1 (both listeners of one zoo), matched against the client zoo determined: the peer, or
//! with `trust_forwarded` the address the trusted `X-Forwarded-For` chain reports, which is
//! also what `{client_ip}` renders and the access log names. `basic_auth` has its own file.

use std::net::SocketAddr;

use super::front_door::access_line;
use crate::util::{self, READY_DEADLINE, Zoo, http};

/// The address zoo logged it listens on for `ip` (`127.0.0.1` or `[::1]`).
fn listening_on(zoo: &Zoo, ip: &str) -> SocketAddr {
    let mut found = None;
    let seen = util::poll_until(READY_DEADLINE, || {
        found = zoo.output().lines().find_map(|line| {
            let at = line.find(&format!("listening on http://{ip}:"))?;
            line[at + "listening on http://".len()..]
                .trim()
                .parse()
                .ok()
        });
        found.is_some()
    });
    assert!(seen, "zoo did not say it listens on {ip}\n{}", zoo.output());
    found.unwrap_or_else(|| zoo.addr())
}

#[test]
fn allow_and_deny_refuse_by_client_address_with_a_one_line_403() {
    let config = "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
                  trust_forwarded = [\"127.0.0.1\"]\n\
                  [routes]\n\
                  \"/admin\" = { respond = \"admin\", allow = [\"::1\"] }\n\
                  \"/open\" = { respond = \"open\", deny = [\"127.0.0.0/8\"] }\n\
                  \"/both\" = { respond = \"both\", allow = [\"::/0\", \"0.0.0.0/0\"], deny = [\"::1\"] }\n\
                  \"/ready\" = { respond = \"ok\" }\n";
    let mut zoo = Zoo::start(config, &[]);
    zoo.wait_ready("/ready", READY_DEADLINE);
    let v4 = listening_on(&zoo, "127.0.0.1");
    let v6 = listening_on(&zoo, "[::1]");
    let get = |addr: SocketAddr, target: &str, extra: &str| {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: x.test\r\n{extra}Connection: close\r\n\r\n");
        let raw = http::exchange(addr, request.as_bytes(), http::READ_TIMEOUT).unwrap();
        http::parse(&raw).unwrap()
    };
    let cases: &[(SocketAddr, &str, u16)] = &[
        (v4, "/admin", 403),
        (v6, "/admin", 200),
        (v4, "/open", 403),
        (v6, "/open", 200),
        (v4, "/both", 200),
        (v6, "/both", 403),
    ];
    for (addr, target, status) in cases {
        let response = get(*addr, target, "");
        assert_eq!(
            response.status,
            *status,
            "{addr} {target}: {}",
            response.text()
        );
        if *status == 403 {
            let body = response.text();
            assert!(
                body.starts_with(&format!("403 Forbidden: route `{target}` does not admit "))
                    && body.ends_with('\n')
                    && body.lines().count() == 1,
                "{body:?}"
            );
        }
    }
}

/// `GET target` from `addr` with extra header lines.
fn get_from(addr: SocketAddr, target: &str, extra: &str) -> http::Response {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: x.test\r\n{extra}Connection: close\r\n\r\n");
    let raw = http::exchange(addr, request.as_bytes(), http::READ_TIMEOUT).unwrap();
    http::parse(&raw).unwrap()
}

#[test]
fn allow_and_deny_match_the_client_that_trusted_proxies_report() {
    let config = |trusted: &str| {
        format!(
            "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
             access_log = \"json\"\n\
             {trusted}\n\
             [routes]\n\
             \"/admin\" = {{ respond = \"admin\", allow = [\"203.0.113.0/24\"] }}\n\
             \"/open\" = {{ respond = \"open\", deny = [\"198.51.100.7\"] }}\n\
             \"/who\" = {{ respond = \"{{client_ip}}\" }}\n"
        )
    };
    let from_denied = "X-Forwarded-For: 198.51.100.7\r\n";
    // Each listener's peer trusted in turn, then neither.
    for trusted in ["127.0.0.1", "::1", ""] {
        let root = if trusted.is_empty() {
            String::new()
        } else {
            format!("trust_forwarded = [\"{trusted}\"]")
        };
        let mut zoo = Zoo::start(&config(&root), &[]);
        zoo.wait_ready("/who", READY_DEADLINE);
        for (ip, peer) in [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1")] {
            let addr = listening_on(&zoo, ip);
            let at = format!("from {peer}, trust_forwarded = [{trusted}]");
            // A chain whose right end is the peer itself: skipped when it is trusted.
            let from_lan = format!("X-Forwarded-For: 203.0.113.5, {peer}\r\n");
            let who = get_from(addr, "/who", &from_lan).text();
            let admin = get_from(addr, "/admin", &from_lan).status;
            let open = get_from(addr, "/open", from_denied);
            if peer == trusted {
                assert_eq!(who, "203.0.113.5", "{at}");
                assert_eq!(admin, 200, "{at}");
                assert_eq!(open.status, 403, "{at}: {}", open.text());
                assert_eq!(
                    open.text(),
                    "403 Forbidden: route `/open` does not admit 198.51.100.7\n"
                );
            } else {
                // An untrusted peer's claims change nothing.
                assert_eq!(who, peer, "{at}");
                assert_eq!(admin, 403, "{at}");
                assert_eq!(open.status, 200, "{at}: {}", open.text());
            }
        }
        if trusted == "127.0.0.1" {
            let v4 = listening_on(&zoo, "127.0.0.1");
            let untrusted_hop = "X-Forwarded-For: 203.0.113.9, 192.0.2.1\r\n";
            let refused = get_from(v4, "/admin", untrusted_hop);
            assert_eq!(refused.status, 403, "the first untrusted hop is the client");
            assert!(refused.text().ends_with("does not admit 192.0.2.1\n"));
            assert_eq!(get_from(v4, "/admin", "").status, 403, "no chain: the peer");
            get_from(v4, "/who?logged", "X-Forwarded-For: 203.0.113.5\r\n");
            assert_eq!(access_line(&zoo, "/who?logged")["client"], "203.0.113.5");
        }
    }
}
