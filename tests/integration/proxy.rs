//! `proxy` routes to an external HTTPS server: the prefix is stripped, the query kept byte for
//! byte, `Host` is the target's authority and the TLS SNI is the target's host; `ca_file` adds a
//! trusted CA, and without it an untrusted certificate is a 502 naming the route or target.

use crate::util::https::{HttpsUpstream, Seen, UPSTREAM_BODY};
use crate::util::{READY_DEADLINE, Zoo, poll_until};

fn config(port: u16, ca_file: bool) -> String {
    let ca = if ca_file {
        ", ca_file = \"ca.pem\""
    } else {
        ""
    };
    format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [routes]\n\
         \"/google\" = {{ proxy = \"https://localhost:{port}\", strip_prefix = true{ca} }}\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n"
    )
}

#[test]
fn proxy_https_target_gets_stripped_path_host_and_sni() {
    let upstream = HttpsUpstream::start();
    let port = upstream.port;
    let mut zoo = Zoo::start(&config(port, true), &[("ca.pem", &upstream.ca_pem)]);
    zoo.wait_ready("/ok", READY_DEADLINE);

    for target in ["/google/?q=abc", "/google?q=abc"] {
        let before = upstream.seen().len();
        let response = zoo.get(target);
        assert!(
            response.status == 200 && response.body == UPSTREAM_BODY.as_bytes(),
            "GET {target}: expected 200 {UPSTREAM_BODY:?}, got {} {:?}\nupstream saw {:?}, failed handshakes {:?}\n{}",
            response.status,
            response.text(),
            upstream.seen(),
            upstream.failed_handshakes(),
            zoo.output()
        );
        let seen = upstream.seen();
        assert_eq!(
            seen.get(before..),
            Some(
                &[Seen {
                    method: "GET".into(),
                    target: "/?q=abc".into(),
                    host: Some(format!("localhost:{port}")),
                    sni: Some("localhost".into()),
                }][..]
            ),
            "what the upstream saw for GET {target}\n{}",
            zoo.output()
        );
    }
}

#[test]
fn proxy_https_target_with_untrusted_certificate_gives_502() {
    let upstream = HttpsUpstream::start();
    let port = upstream.port;
    let mut zoo = Zoo::start(&config(port, false), &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);

    let response = zoo.get("/google/?q=abc");
    let body = response.text();
    assert_eq!(
        response.status,
        502,
        "a target whose certificate no trusted CA signed: body {body:?}\n{}",
        zoo.output()
    );
    assert!(
        body.contains("/google") || body.contains(&format!("localhost:{port}")),
        "the 502 body should name the route or the target: {body:?}\n{}",
        zoo.output()
    );
    assert!(
        upstream.seen().is_empty(),
        "no request may pass an untrusted TLS session: {:?}\n{}",
        upstream.seen(),
        zoo.output()
    );
    assert!(
        poll_until(std::time::Duration::from_secs(5), || !upstream
            .failed_handshakes()
            .is_empty()),
        "the upstream should have seen the handshake fail\n{}",
        zoo.output()
    );
}

#[test]
fn listens_on_ipv4_and_ipv6_at_once() {
    let config = "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
                  [routes]\n\"/\" = { respond = \"{host}\" }\n";
    let zoo = crate::util::Zoo::start(config, &[]);
    const V6_LINE: &str = "listening on http://[::1]:";
    assert!(
        zoo.wait_for_line(std::time::Duration::from_secs(10), |_, line| line
            .contains(V6_LINE)),
        "a listening line for [::1]\n{}",
        zoo.output()
    );
    let output = zoo.output();
    let v6 = output
        .lines()
        .find_map(|line| line.split_once(V6_LINE))
        .and_then(|(_, port)| port.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the [::1] port\n{output}"));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6));
    for addr in [zoo.addr(), v6] {
        let response = crate::util::http::get(addr, "/").expect("GET /");
        assert_eq!(
            (response.status, response.text()),
            (200, addr.to_string()),
            "{}",
            zoo.output()
        );
    }
}
