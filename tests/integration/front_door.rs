//! The front door through real clients: host-keyed routes (`curl --resolve`, `Host:` headers
//! in any case, with a port or a trailing dot, wildcards of any depth, an IDN, HTTP/2's
//! `:authority` from curl and nghttp, the host-less fallback and the 404 past it), `zoo
//! check`'s table grouped by host and its warning about route hosts the TLS certificate does
//! not name, and request IDs (made, kept from a trusted client,
//! replaced from an untrusted one or when malformed; the same value at the app, in the
//! response and in the JSON access log). The apps are `recorder.py`, which answers each
//! request with a JSON echo of what it received.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::util::{self, READY_DEADLINE, Zoo, http};

/// How long one client run may take.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// An app that answers every GET with `{"app", "path", "headers"}` as it received them.
pub(super) const RECORDER_PY: &str = r#"
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]

class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        seen = {"app": NAME, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()}}
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Powered-By", "recorder")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Recorder).serve_forever()
"#;

/// `[apps.NAME]` running the recorder under `NAME`.
pub(super) fn recorder_app(name: &str) -> String {
    format!("[apps.{name}]\ncommand = [\"python3\", \"recorder.py\", \"{name}\"]\n\n")
}

/// The host table of these tests: two exact hosts, two wildcards, an IDN, and host-less
/// routes for `/any` only (so that a request past them is a 404).
fn host_config(extra_root: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         access_log = \"json\"\n\
         {extra_root}\n\
         {api}{docs}{web}\
         [routes]\n\
         \"api.example.com/\" = {{ app = \"api\" }}\n\
         \"*.example.com/docs\" = {{ app = \"docs\" }}\n\
         \"*.eu.example.com/docs\" = {{ respond = \"eu docs\" }}\n\
         \"bücher.example/\" = {{ respond = \"idn {{host}}\" }}\n\
         \"/any\" = {{ app = \"web\" }}\n\
         \"/ready\" = {{ respond = \"ok\" }}\n",
        api = recorder_app("api"),
        docs = recorder_app("docs"),
        web = recorder_app("web"),
    )
}

/// A zoo on [`host_config`] whose three apps answer.
fn host_zoo(extra_root: &str) -> Zoo {
    let mut zoo = Zoo::start(&host_config(extra_root), &[("recorder.py", RECORDER_PY)]);
    zoo.wait_ready("/ready", READY_DEADLINE);
    for host in ["api.example.com", "a.example.com", "x.test"] {
        let target = if host == "x.test" { "/any" } else { "/docs" };
        assert!(
            util::poll_until(READY_DEADLINE, || get_with_host(&zoo, host, target).status
                == 200),
            "{host}{target} never answered 200\n{}",
            zoo.output()
        );
    }
    zoo
}

/// `GET target` with `Host: host` (HTTP/1.1, raw).
fn get_with_host(zoo: &Zoo, host: &str, target: &str) -> http::Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let raw = zoo.send_raw(request.as_bytes());
    http::parse(&raw).unwrap_or_else(|e| panic!("{e}\n{}", zoo.output()))
}

/// What the recorder echoed, or `None` when zoo answered itself (not JSON).
pub(super) fn echoed(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body).ok()
}

/// What a client got: its status, its headers (lowercase names) and its body.
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `curl -s -D - ARGS` and splits what it printed (the last head, then the body).
fn curl(zoo: &Zoo, args: &[&str]) -> Seen {
    let output = util::run_bounded(
        Command::new("curl").args(["-s", "-D", "-"]).args(args),
        CLIENT_DEADLINE,
    );
    assert!(
        output.status.success(),
        "curl {args:?}: {}\n{}\n{}",
        util::describe(output.status),
        String::from_utf8_lossy(&output.stderr),
        zoo.output()
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Seen {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `--resolve HOST:PORT:127.0.0.1` and the URL for `host` and `target`. curl looks an IDN up
/// in its ASCII form, so that is the name it must be told.
fn resolved(addr: SocketAddr, host: &str, target: &str) -> [String; 3] {
    let port = addr.port();
    let lookup = if host == "bücher.example" {
        "xn--bcher-kva.example"
    } else {
        host
    };
    [
        "--resolve".to_owned(),
        format!("{lookup}:{port}:127.0.0.1"),
        format!("http://{host}:{port}{target}"),
    ]
}

/// Which app (or zoo's own answer) served `host` `target`, through curl.
fn served_by(zoo: &Zoo, extra: &[&str], host: &str, target: &str) -> (u16, String) {
    let resolve = resolved(zoo.addr(), host, target);
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(resolve.iter().map(String::as_str))
        .collect();
    let seen = curl(zoo, &args);
    let who = match echoed(seen.body.as_bytes()) {
        Some(echo) => echo["app"].as_str().unwrap_or("?").to_owned(),
        None => seen.body.trim().to_owned(),
    };
    (seen.status, who)
}

#[test]
fn host_routes_pick_by_host_through_curl_resolve() {
    let zoo = host_zoo("");
    let cases: &[(&str, &str, (u16, &str))] = &[
        ("api.example.com", "/", (200, "api")),
        ("api.example.com", "/docs", (200, "api")),
        ("www.example.com", "/docs/a", (200, "docs")),
        ("a.b.c.example.com", "/docs", (200, "docs")),
        ("x.eu.example.com", "/docs", (200, "eu docs")),
        // The bare domain is not under its wildcard; nor is a look-alike.
        ("example.com", "/docs", (404, "")),
        ("badexample.com", "/docs", (404, "")),
        // curl (libidn2) sends the ASCII form, which the key's IDN was brought to.
        ("bücher.example", "/", (200, "")),
        // Host-less routes answer any other host, and past them is 404.
        ("other.test", "/any", (200, "web")),
        ("www.example.com", "/any", (200, "web")),
        ("other.test", "/", (404, "")),
    ];
    for (host, target, (status, who)) in cases {
        let (got_status, got_who) = served_by(&zoo, &[], host, target);
        assert_eq!(got_status, *status, "{host}{target}\n{}", zoo.output());
        if *status == 200 && !who.is_empty() {
            assert_eq!(got_who, *who, "{host}{target}\n{}", zoo.output());
        }
    }
    let (_, idn) = served_by(&zoo, &[], "bücher.example", "/");
    assert!(
        idn.starts_with("idn xn--bcher-kva.example:"),
        "the IDN route sees the ASCII host: {idn:?}"
    );
}

#[test]
fn host_headers_match_in_any_case_with_port_or_trailing_dot() {
    let zoo = host_zoo("");
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "Api.Example.Com:8443",
        "api.example.com.",
        "API.example.com.:80",
    ] {
        let response = get_with_host(&zoo, host, "/v1");
        let echo = echoed(&response.body).unwrap_or_default();
        assert_eq!(
            (response.status, echo["app"].as_str()),
            (200, Some("api")),
            "Host: {host}: {}\n{}",
            response.text(),
            zoo.output()
        );
        // The app gets the Host the client sent, untouched.
        assert_eq!(echo["headers"]["host"].as_str(), Some(host));
    }
    let response = get_with_host(&zoo, "XN--BCHER-KVA.EXAMPLE", "/");
    assert_eq!(
        (response.status, response.text()),
        (200, "idn XN--BCHER-KVA.EXAMPLE".to_owned())
    );
    // An absolute-form target's authority wins over Host (RFC 9112 3.2.2).
    let raw = zoo.send_raw(
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    );
    let response = http::parse(&raw).unwrap();
    assert_eq!(
        echoed(&response.body).unwrap_or_default()["app"].as_str(),
        Some("api"),
        "{}",
        response.text()
    );
}

#[test]
fn host_routes_follow_the_http2_authority() {
    let zoo = host_zoo("");
    let h2 = ["--http2-prior-knowledge"];
    assert_eq!(served_by(&zoo, &h2, "api.example.com", "/").1, "api");
    assert_eq!(
        served_by(&zoo, &h2, "deep.er.example.com", "/docs").1,
        "docs"
    );
    assert_eq!(served_by(&zoo, &h2, "other.test", "/").0, 404);
    // Over HTTP/2 too, the request ID the app got is the one the client got.
    let url = format!("http://{}/any/h2", zoo.addr());
    let seen = curl(&zoo, &["--http2-prior-knowledge", &url]);
    let id = seen.header("x-request-id").unwrap_or_default();
    assert!(is_uuid_v7(id), "h2 request ID {id:?}\n{}", zoo.output());
    let echo = echoed(seen.body.as_bytes()).unwrap_or_default();
    assert_eq!(echo["headers"]["x-request-id"].as_str(), Some(id));
    // nghttp with its own `:authority`, in upper case.
    let base = format!("http://{}", zoo.addr());
    let output = util::run_bounded(
        Command::new("nghttp").args([
            "-H",
            ":authority: API.Example.COM",
            &format!("{base}/from-nghttp"),
        ]),
        CLIENT_DEADLINE,
    );
    let body = String::from_utf8_lossy(&output.stdout);
    let echo = echoed(body.as_bytes()).unwrap_or_default();
    assert_eq!(
        echo["app"].as_str(),
        Some("api"),
        "nghttp: {body} {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        zoo.output()
    );
}

#[test]
fn check_groups_the_route_table_by_host() {
    let dir = util::prepare_dir(&host_config(""), &[("recorder.py", RECORDER_PY)]);
    let finished = util::run_to_end(dir.path(), &["check"], CLIENT_DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.output);
    let table: Vec<&str> = finished
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("routes"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(str::trim_end)
        .collect();
    let shape: Vec<String> = table
        .iter()
        .map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            match first {
                "host" | "any" => line.trim().to_owned(),
                key => key.to_owned(),
            }
        })
        .collect();
    assert_eq!(
        shape,
        [
            "host api.example.com:",
            "/",
            "host xn--bcher-kva.example:",
            "/",
            "host *.eu.example.com:",
            "/docs",
            "host *.example.com:",
            "/docs",
            "any other host:",
            "/ready",
            "/any",
        ],
        "{}",
        finished.stdout
    );
}

#[test]
fn check_reports_host_routes_that_are_the_same_route() {
    let config = "[routes]\n\
                  \"api.example.com/\" = { respond = \"a\" }\n\
                  \"API.Example.com./\" = { respond = \"b\" }\n";
    let dir = util::prepare_dir(config, &[]);
    let finished = util::run_to_end(dir.path(), &["check"], CLIENT_DEADLINE);
    assert_ne!(finished.code(), Some(0), "{}", finished.output);
    assert!(
        finished.stderr.contains(
            "zoo.toml:3:1: error: routes.\"API.Example.com./\": the same route as \
             `api.example.com/`"
        ),
        "{}",
        finished.output
    );
}

/// The JSON access log line of the request whose target is `target`.
pub(super) fn access_line(zoo: &Zoo, target: &str) -> serde_json::Value {
    let mut found = None;
    let logged = util::poll_until(READY_DEADLINE, || {
        found = zoo
            .output()
            .lines()
            .filter_map(|line| line.find('{').map(|at| &line[at..]))
            .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .find(|line| line["source"] == "access" && line["target"] == target);
        found.is_some()
    });
    assert!(logged, "no access log line for {target}\n{}", zoo.output());
    found.unwrap_or_default()
}

/// `GET target` with `Host: x.test` and extra header lines, and what the app echoed.
pub(super) fn get_with(
    zoo: &Zoo,
    target: &str,
    extra: &str,
) -> (http::Response, serde_json::Value) {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: x.test\r\n{extra}Connection: close\r\n\r\n");
    let response = http::parse(&zoo.send_raw(request.as_bytes())).unwrap();
    let echo = echoed(&response.body).unwrap_or_default();
    (response, echo)
}

pub(super) fn is_uuid_v7(id: &str) -> bool {
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && id.as_bytes()[14] == b'7'
}

#[test]
fn request_id_is_made_and_the_same_at_the_app_the_client_and_the_log() {
    let zoo = host_zoo("");
    let (response, echo) = get_with(&zoo, "/any/made", "X-Request-ID: from-a-stranger\r\n");
    let id = response
        .header("x-request-id")
        .unwrap_or_default()
        .to_owned();
    assert!(is_uuid_v7(&id), "made ID {id:?}\n{}", zoo.output());
    assert_eq!(echo["headers"]["x-request-id"].as_str(), Some(id.as_str()));
    assert_eq!(access_line(&zoo, "/any/made")["request_id"], id.as_str());
    // Another request, another ID; zoo's own answers carry one too.
    let (second, _) = get_with(&zoo, "/any/made", "");
    assert_ne!(second.header("x-request-id"), Some(id.as_str()));
    let (not_found, _) = get_with(&zoo, "/nowhere", "");
    assert_eq!(not_found.status, 404);
    let id = not_found.header("x-request-id").unwrap_or_default();
    assert!(is_uuid_v7(id), "404's ID {id:?}");
    assert_eq!(access_line(&zoo, "/nowhere")["request_id"], id);
}

#[test]
fn request_id_from_a_trusted_client_is_kept_unless_malformed() {
    let zoo = host_zoo("trust_forwarded = [\"127.0.0.1\", \"::1\"]");
    let (response, echo) = get_with(&zoo, "/any/kept", "X-Request-ID: lb-7f3a/9\r\n");
    assert_eq!(response.header("x-request-id"), Some("lb-7f3a/9"));
    assert_eq!(echo["headers"]["x-request-id"].as_str(), Some("lb-7f3a/9"));
    assert_eq!(access_line(&zoo, "/any/kept")["request_id"], "lb-7f3a/9");
    let too_long = format!("X-Request-ID: {}\r\n", "a".repeat(201));
    for malformed in ["X-Request-ID: has space\r\n", too_long.as_str()] {
        let (response, echo) = get_with(&zoo, "/any/malformed", malformed);
        let id = response.header("x-request-id").unwrap_or_default();
        assert!(is_uuid_v7(id), "{malformed:?} gave {id:?}");
        assert_eq!(echo["headers"]["x-request-id"].as_str(), Some(id));
    }
}

#[test]
fn request_id_can_be_renamed_or_turned_off() {
    let zoo = host_zoo("request_id_header = \"X-Trace-Id\"");
    let (response, echo) = get_with(&zoo, "/any/renamed", "");
    let id = response.header("x-trace-id").unwrap_or_default();
    assert!(is_uuid_v7(id), "{id:?}");
    assert_eq!(echo["headers"]["x-trace-id"].as_str(), Some(id));
    assert_eq!(response.header("x-request-id"), None);
    drop(zoo);
    let zoo = host_zoo("request_id = false");
    let (response, echo) = get_with(&zoo, "/any/off", "X-Request-ID: passed-through\r\n");
    assert_eq!(response.header("x-request-id"), None);
    assert_eq!(
        echo["headers"]["x-request-id"].as_str(),
        Some("passed-through"),
        "with IDs off, zoo leaves the header alone"
    );
    assert_eq!(
        access_line(&zoo, "/any/off")["request_id"],
        serde_json::Value::Null
    );
}

#[test]
fn check_warns_about_route_hosts_the_certificate_does_not_name() {
    let names = ["api.example.com", "*.docs.example.com"].map(str::to_owned);
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).unwrap();
    let config = "listen = \"127.0.0.1:0\"\n\
                  tls = { cert = \"cert.pem\", key = \"key.pem\" }\n\
                  [routes]\n\
                  \"API.example.com/\" = { respond = \"api\" }\n\
                  \"shop.example.com/\" = { respond = \"shop\" }\n\
                  \"*.docs.example.com/\" = { respond = \"docs\" }\n\
                  \"*.example.org/x\" = { respond = \"org\" }\n\
                  \"/\" = { respond = \"any\" }\n";
    let dir = util::prepare_dir(
        config,
        &[
            ("cert.pem", &certified.cert.pem()),
            ("key.pem", &certified.signing_key.serialize_pem()),
        ],
    );
    let finished = util::run_to_end(dir.path(), &["check"], CLIENT_DEADLINE);
    assert_eq!(
        finished.code(),
        Some(0),
        "warnings only: {}",
        finished.output
    );
    let warnings: Vec<&str> = finished
        .stdout
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: route `shop.example.com/`: the certificate in cert.pem does not name \
             shop.example.com",
            "warning: route `*.example.org/x`: the certificate in cert.pem does not name \
             *.example.org",
        ],
        "{}",
        finished.output
    );
    // Without TLS there is no certificate to cover anything: no warning.
    let plain = config.replace("tls = { cert = \"cert.pem\", key = \"key.pem\" }\n", "");
    let dir = util::prepare_dir(&plain, &[]);
    let finished = util::run_to_end(dir.path(), &["check"], CLIENT_DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.output);
    assert!(!finished.stdout.contains("warning"), "{}", finished.output);
}
