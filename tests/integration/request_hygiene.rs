//! Raw-socket requests through zoo: limits and upstream failures get their status
//! (414/431/413/504/502, slowloris), ambiguous framing is refused and never forwarded,
//! hop-by-hop and forwarded headers are cleaned, and a broken connection retries a GET but
//! never duplicates a POST. The upstreams are in-test recorders (`util::recorder`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::util::raw::{IO_TIMEOUT, connect};
use crate::util::recorder::{raw_zoo, raw_zoo_with};
use crate::util::{self, Zoo, http};

/// How long a forward that must not happen is given to show up at the upstream.
const QUIET: Duration = Duration::from_millis(500);

fn send(addr: SocketAddr, raw: &str) -> http::Response {
    let bytes =
        http::exchange(addr, raw.as_bytes(), IO_TIMEOUT).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    http::parse(&bytes).unwrap_or_else(|e| panic!("{raw:?}: {e}: {bytes:?}"))
}

/// Sends `raw` and fails the test (with zoo's output) unless the answer has `status`.
fn expect_status(zoo: &Zoo, raw: &str, status: u16) -> http::Response {
    let response = send(zoo.addr(), raw);
    let start: String = raw.chars().take(60).collect();
    assert_eq!(
        response.status,
        status,
        "{start:?}: {}\n{}",
        response.text(),
        zoo.output()
    );
    response
}

#[test]
fn limits_and_upstream_failures_get_their_status() {
    let (zoo, _ok, silent) = raw_zoo();
    let long_target = format!("/ok?{}", "a".repeat(9000));
    let big_header = "b".repeat(300 * 1024);
    let cases = [
        (
            format!("GET {long_target} HTTP/1.1\r\nHost: z\r\n\r\n"),
            414,
        ),
        (
            format!("GET /ok HTTP/1.1\r\nHost: z\r\nX-Big: {big_header}\r\n\r\n"),
            431,
        ),
        (
            "POST /small HTTP/1.1\r\nHost: z\r\nContent-Length: 100\r\n\r\n".to_owned(),
            413,
        ),
        (
            "GET /slow HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n".to_owned(),
            504,
        ),
        (
            "GET /refused HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n".to_owned(),
            502,
        ),
    ];
    for (raw, status) in &cases {
        let response = expect_status(&zoo, raw, *status);
        let first_line: String = raw.chars().take(40).collect();
        // hyper answers an over-long head itself, before zoo sees it: no body to check.
        if *status != 431 {
            let body = response.text();
            assert_eq!(
                body.trim_end().lines().count(),
                1,
                "{first_line:?}: {body:?}"
            );
            assert!(body.starts_with(&status.to_string()), "{body:?}");
        }
    }
    // A forward racing the 413 would reach the upstream within this quiet period.
    let forwarded_posts = || {
        silent
            .heads()
            .iter()
            .any(|head| head.starts_with("POST /small"))
    };
    assert!(
        !util::poll_until(QUIET, forwarded_posts),
        "a body over max_body was forwarded: {:?}",
        silent.heads()
    );

    // Slowloris: half a head, then nothing; zoo closes after client_header_timeout (1 s), not
    // before (the timer started when zoo accepted, a moment before `started`).
    let mut slow = connect(zoo.addr());
    slow.write_all(b"GET /ok HTTP/1.1\r\nHost: z\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let result = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        result.is_ok() && (Duration::from_millis(900)..Duration::from_secs(5)).contains(&took),
        "a stalled head should be closed after 1 s: {result:?} after {took:?}"
    );
    zoo.assert_body("/ok", "ok\n");
}

#[test]
fn a_chunked_body_growing_past_max_body_is_cut_and_answered_413() {
    let (zoo, _ok, _silent) = raw_zoo();
    let chunk = "a".repeat(100);
    let response = expect_status(
        &zoo,
        &format!(
            "POST /small HTTP/1.1\r\nHost: z\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             64\r\n{chunk}\r\n0\r\n\r\n"
        ),
        413,
    );
    assert!(response.text().starts_with("413"), "{:?}", response.text());
    zoo.assert_body("/ok", "ok\n");
}

#[test]
fn ambiguous_framing_is_rejected_and_never_forwarded() {
    // Each engine, named in the config (so ZOO_TEST_ENGINE does not choose): where they
    // differ is pinned for each.
    for engine in ["hyper", "zoo"] {
        let (zoo, ok, _silent) = raw_zoo_with(&format!("engine = \"{engine}\""));
        let cl_te = "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 3\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        if engine == "hyper" {
            // Content-Length with Transfer-Encoding: hyper (>= 1.11) lets chunked win, drops
            // the Content-Length and closes the connection after (RFC 9112 6.3), so what zoo
            // forwards is unambiguous: chunked only.
            expect_status(&zoo, cl_te, 200);
            let forwarded = ok.heads().remove(0).to_ascii_lowercase();
            assert!(!forwarded.contains("content-length"), "{forwarded}");
            ok.heads.lock().unwrap().clear();
        } else {
            // zoo's engine refuses the pair, as nginx does (the shape requests are smuggled in).
            expect_status(&zoo, cl_te, 400);
        }

        let cases = [
            "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "GET /rec HTTP/1.1\r\nHost: z\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET /rec HTTP/1.1\r\nHost: z\rX-Bare: cr\r\n\r\n",
            "GET /rec/%00 HTTP/1.1\r\nHost: z\r\n\r\n",
        ];
        for raw in cases {
            expect_status(&zoo, raw, 400);
        }
        // A coding zoo does not decode would reach the app unnamed: refused like nginx does
        // (501). `chunked` twice is 501 on hyper's engine, 400 (malformed framing) on zoo's.
        let twice = if engine == "hyper" { 501 } else { 400 };
        for (coding, status) in [
            ("gzip, chunked", 501),
            ("chunked\r\nTransfer-Encoding: chunked", twice),
        ] {
            let raw = format!(
                "POST /rec HTTP/1.1\r\nHost: z\r\nTransfer-Encoding: {coding}\r\n\r\n0\r\n\r\n"
            );
            expect_status(&zoo, &raw, status);
        }
        assert_eq!(
            ok.heads(),
            Vec::<String>::new(),
            "{engine}: nothing ambiguous may be forwarded"
        );

        // A bad chunk size is found while the body streams, after the head went upstream: the
        // request is cut there (the app never sees a complete one) and the client gets 400.
        expect_status(
            &zoo,
            "POST /rec HTTP/1.1\r\nHost: z\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        );
        zoo.assert_body("/ok", "ok\n");
    }
}

#[test]
fn hop_by_hop_headers_are_removed_both_ways_and_forwarded_is_replaced() {
    let (zoo, ok, _silent) = raw_zoo();
    let response = expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nX-Forwarded-For: 6.6.6.6\r\n\
         Forwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
         TE: gzip\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\n\r\n",
        200,
    );
    assert_eq!(
        response.header("x-resp-secret"),
        None,
        "{:?}",
        response.headers
    );
    assert_eq!(
        response.header("keep-alive"),
        None,
        "{:?}",
        response.headers
    );
    let heads = ok.heads();
    let head = heads[0].to_ascii_lowercase();
    for gone in [
        "x-secret",
        "upgrade",
        "6.6.6.6",
        "\r\nforwarded: ",
        "\r\nte:",
        "proxy-connection",
        "evil.example",
        "https",
    ] {
        assert!(!head.contains(gone), "`{gone}` was forwarded:\n{head}");
    }
    // An untrusted client's forwarding headers are replaced with what zoo saw.
    for kept in [
        "x-kept: 1",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-proto: http\r\n",
        "x-forwarded-host: z\r\n",
    ] {
        assert!(head.contains(kept), "no `{kept}`:\n{head}");
    }
}

#[test]
fn a_trusted_load_balancer_has_its_forwarded_chain_appended_to_and_its_headers_kept() {
    let (zoo, ok, _silent) = raw_zoo_with("trust_forwarded = [\"127.0.0.0/8\"]");
    expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nX-Forwarded-For: 203.0.113.9\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: lb.example\r\nForwarded: for=203.0.113.9\r\n\
         Connection: close\r\n\r\n",
        200,
    );
    let head = ok.heads()[0].to_ascii_lowercase();
    for kept in [
        "x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n",
        "x-forwarded-proto: https\r\n",
        "x-forwarded-host: lb.example\r\n",
        "\r\nforwarded: for=203.0.113.9",
    ] {
        assert!(head.contains(kept), "no `{kept}`:\n{head}");
    }
}

#[test]
fn a_broken_connection_retries_get_but_never_duplicates_post() {
    let (zoo, ok, _silent) = raw_zoo();

    ok.drops.store(1, Ordering::SeqCst);
    expect_status(
        &zoo,
        "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        502,
    );
    let posts = ok.heads().iter().filter(|h| h.starts_with("POST")).count();
    assert_eq!(posts, 1, "the POST must reach the app exactly once");

    ok.drops.store(1, Ordering::SeqCst);
    expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n",
        200,
    );
    let gets = ok.heads().iter().filter(|h| h.starts_with("GET")).count();
    assert_eq!(gets, 2, "the GET is sent again once, on a fresh connection");
}
