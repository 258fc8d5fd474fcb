//! Real HTTP/2 clients against zoo's h2c (prior knowledge, sniffed on its one plain port):
//! `nghttp` and `h2load` (Debian's nghttp2-client) and `curl --http2-prior-knowledge`, with zoo
//! routing to the FastAPI app (`util/fastapi/app.py`). uvicorn speaks only HTTP/1.1, so the
//! direct comparisons are the same requests to the app over HTTP/1.1: equal bodies, and
//! h2load's figures side by side. Run with `--nocapture` to see them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::fastapi::fastapi_zoo;
use crate::util::{self, Zoo, http};

/// How long one client run may take (2000 requests to uvicorn take a few seconds).
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `program ARGS` (bounded) and returns its stdout; fails the test on a non-zero exit.
fn client(zoo: &Zoo, program: &str, args: &[&str]) -> Vec<u8> {
    let output: Output = util::run_bounded(Command::new(program).args(args), CLIENT_DEADLINE);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}\n{}",
        util::describe(output.status),
        String::from_utf8_lossy(&output.stderr),
        zoo.output()
    );
    output.stdout
}

/// [`client`]'s stdout as text.
fn client_text(zoo: &Zoo, program: &str, args: &[&str]) -> String {
    String::from_utf8(client(zoo, program, args)).expect("text output")
}

/// The app's body for `target` over HTTP/1.1, straight from the app.
fn direct_body(app: SocketAddr, target: &str) -> Vec<u8> {
    let response = http::get(app, target).expect("GET from the app");
    assert_eq!(response.status, 200, "{target}: {}", response.text());
    response.body
}

#[test]
fn nghttp_speaks_h2c_with_prior_knowledge_to_zoo() {
    let (zoo, port) = fastapi_zoo("");
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://{}", zoo.addr());
    // Three streams on one connection: a small body, 1 MiB (beyond the 64 KiB initial flow
    // control window, so WINDOW_UPDATEs must flow), and an SSE stream.
    let verbose = client_text(
        &zoo,
        "nghttp",
        &[
            "-nv",
            &format!("{base}/ping"),
            &format!("{base}/bytes?n=1048576"),
            &format!("{base}/sse/timed?count=3&interval_ms=10"),
        ],
    );
    for expected in [
        "send SETTINGS frame",
        "recv SETTINGS frame",
        "recv SETTINGS frame <length=0, flags=0x01, stream_id=0>",
        "content-type: text/event-stream",
        "send GOAWAY frame",
    ] {
        assert!(
            verbose.contains(expected),
            "nghttp -nv: no `{expected}` in\n{verbose}\n{}",
            zoo.output()
        );
    }
    assert_eq!(
        verbose.matches(":status: 200").count(),
        3,
        "three 200 responses in\n{verbose}"
    );
    assert!(
        !verbose.contains("HTTP Upgrade"),
        "nghttp upgraded instead of prior knowledge"
    );
    for target in ["/ping", "/bytes?n=1048576"] {
        let through = client(&zoo, "nghttp", &[&format!("{base}{target}")]);
        let direct = direct_body(app, target);
        assert!(
            through == direct,
            "{target}: nghttp through zoo got {} bytes, the app directly {}",
            through.len(),
            direct.len()
        );
    }
    let frames = verbose.matches(" frame ").count();
    eprintln!(
        "nghttp -nv, 3 streams on one h2c connection through zoo: {frames} frames, all 200; \
         /ping and 1 MiB bodies equal to the app's over HTTP/1.1"
    );
}

/// The lines of an h2load summary that the test asserts on or reports.
fn h2load_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|line| {
            [
                "finished in",
                "requests:",
                "status codes:",
                "Application protocol:",
                "time for request:",
            ]
            .iter()
            .any(|key| line.trim_start().starts_with(key))
        })
        .collect()
}

/// Runs h2load with `args` against `url` and asserts that all 2000 requests succeeded with a
/// 2xx over `protocol`; returns the summary lines.
fn h2load_all_succeed(zoo: &Zoo, url: &str, args: &[&str], protocol: &str) -> String {
    let mut all = vec!["-n", "2000", "-c", "4"];
    all.extend_from_slice(args);
    all.push(url);
    let out = client_text(zoo, "h2load", &all);
    let lines = h2load_lines(&out);
    for expected in [
        "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, \
         0 timeout",
        "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx",
        &format!("Application protocol: {protocol}"),
    ] {
        assert!(
            lines.iter().any(|line| line.trim() == expected),
            "h2load {all:?}: no `{expected}` in\n{out}\n{}",
            zoo.output()
        );
    }
    lines.join("\n    ")
}

#[test]
fn h2load_2000_requests_over_h2c_through_zoo_all_succeed() {
    let (zoo, port) = fastapi_zoo("");
    let through = format!("http://{}/ping", zoo.addr());
    let h2c = h2load_all_succeed(&zoo, &through, &["-m", "10"], "h2c");
    let h1_zoo = h2load_all_succeed(&zoo, &through, &["--h1"], "http/1.1");
    let direct = format!("http://127.0.0.1:{port}/ping");
    let h1_direct = h2load_all_succeed(&zoo, &direct, &["--h1"], "http/1.1");
    eprintln!(
        "h2load -n 2000 -c 4 -m 10, h2c through zoo:\n    {h2c}\n\
         h2load --h1 -n 2000 -c 4, HTTP/1.1 through zoo:\n    {h1_zoo}\n\
         h2load --h1 -n 2000 -c 4, HTTP/1.1 to the app directly:\n    {h1_direct}"
    );
}

/// `curl -sS ARGS -o BODY -w '%{http_version} %{http_code} %{size_download}'`: that line and
/// the body.
fn curl(zoo: &Zoo, dir: &Path, args: &[&str]) -> (String, Vec<u8>) {
    let body = dir.join("body");
    let mut all = vec!["-sS", "--max-time", "30", "-o", body.to_str().unwrap()];
    all.extend_from_slice(&["-w", "%{http_version} %{http_code} %{size_download}"]);
    all.extend_from_slice(args);
    let line = client_text(zoo, "curl", &all);
    (line, std::fs::read(&body).expect("curl's body file"))
}

#[test]
fn curl_http2_prior_knowledge_gets_and_uploads_through_zoo_as_directly() {
    let (zoo, port) = fastapi_zoo("");
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload");
    std::fs::write(&upload, vec![b'z'; 8 << 20]).unwrap();
    let upload_arg = format!("@{}", upload.display());
    let cases: [(&str, &[&str], &str, &str); 3] = [
        ("/ping", &[], "200 4", "pong"),
        ("/bytes?n=4194304", &[], "200 4194304", ""),
        (
            "/upload",
            &["--data-binary", &upload_arg],
            "200 7",
            "8388608",
        ),
    ];
    for (target, extra, status_and_size, text) in cases {
        let fetch = |version: &str, origin: String| {
            let url = format!("http://{origin}{target}");
            let mut args = vec![version];
            args.extend_from_slice(extra);
            args.push(&url);
            curl(&zoo, dir.path(), &args)
        };
        let (h2_line, through) = fetch("--http2-prior-knowledge", zoo.addr().to_string());
        let (h1_line, direct) = fetch("--http1.1", format!("127.0.0.1:{port}"));
        assert_eq!(
            h2_line,
            format!("2 {status_and_size}"),
            "{target} through zoo\n{}",
            zoo.output()
        );
        assert_eq!(h1_line, format!("1.1 {status_and_size}"), "{target} direct");
        assert!(
            through == direct,
            "{target}: the body through zoo over h2c ({} bytes) differs from the app's over \
             HTTP/1.1 ({} bytes)",
            through.len(),
            direct.len()
        );
        if !text.is_empty() {
            assert_eq!(String::from_utf8_lossy(&through), text, "{target}");
        }
        eprintln!("curl {target}: through zoo `{h2_line}`, direct `{h1_line}`, bodies equal");
    }
}
