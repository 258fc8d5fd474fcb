//! A reload applies every top-level setting or refuses all of it by name: `tls` (new
//! handshakes present the new certificate, open connections keep theirs), a certificate
//! rotated on disk without a reload (Kubernetes' symlink swap), `listen` and `admin` moved
//! without a refused connection, `client_header_timeout`, `access_log`, `trust_forwarded`,
//! `grace` and `shutdown_delay`; an address that cannot be bound refuses the whole reload.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use rustls::pki_types::CertificateDer;

use crate::util::{self, Zoo};

const CLI_DEADLINE: Duration = Duration::from_secs(20);
/// Longest a rotated certificate may take to be used (zoo polls every 2 s).
const ROTATION_DEADLINE: Duration = Duration::from_secs(10);

/// An app (Python's http.server) that echoes the `X-Forwarded-For` it got, answers `/slow`
/// after 1.5 s, and ignores SIGTERM, so that only zoo's `grace` ends it.
const ECHO_APP: &str = r#"
import http.server, os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.5)
        body = ("xff=%s\n" % self.headers.get("X-Forwarded-For")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
"#;

fn echo_config(top: &str) -> String {
    format!(
        "{top}\n\
         [apps.echo]\n\
         command = [\"python3\", \"echo.py\"]\n\
         [routes]\n\
         \"/\" = {{ app = \"echo\" }}\n"
    )
}

fn rewrite(zoo: &Zoo, config: &str) {
    std::fs::write(zoo.dir().join("zoo.toml"), config).expect("rewrite zoo.toml");
}

fn reload(zoo: &Zoo) {
    zoo.cli_ok(&["reload"], CLI_DEADLINE);
}

/// A port nothing listens on now.
fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, util::free_port()))
}

/// `GET target` on a new connection to `addr`: the status and body, or the connect error.
fn get_at(addr: SocketAddr, target: &str) -> std::io::Result<(u16, String)> {
    let response = util::http::get(addr, target)?;
    Ok((response.status, response.text()))
}

/// One self-signed `localhost` certificate and its key, as PEM, plus the DER of the former.
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn new_pair() -> Pair {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Pair {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        der: certified.cert.der().clone(),
    }
}

/// The DER of the leaf certificate zoo presents at a new TLS handshake, trusting `roots`.
fn presented(addr: SocketAddr, roots: &[&Pair]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut store = rustls::RootCertStore::empty();
    for pair in roots {
        store.add(pair.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .expect("TLS handshake in time")
            .expect("TLS handshake with zoo");
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    })
}

/// Points `dir/..data` at `dir/version`, which holds `tls.crt` and `tls.key` of `pair`, the
/// way the kubelet updates a mounted secret: the new directory first, then one rename.
fn publish_secret(dir: &Path, version: &str, pair: &Pair) {
    let target = dir.join(version);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(target.join("tls.key"), &pair.key_pem).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(version, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
}

#[test]
fn reload_and_rotation_change_the_certificate_of_new_handshakes_only() {
    let (first, second, third, broken) = (new_pair(), new_pair(), new_pair(), new_pair());
    let config = |cert: &str, key: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n\
             tls = {{ cert = \"{cert}\", key = \"{key}\" }}\n\
             [routes]\n\
             \"/\" = {{ respond = \"hello\" }}\n"
        )
    };
    let zoo = Zoo::start(
        &config("first.crt", "first.key"),
        &[
            ("first.crt", &first.cert_pem),
            ("first.key", &first.key_pem),
        ],
    );
    let all = [&first, &second, &third, &broken];
    assert_eq!(
        presented(zoo.addr(), &all),
        first.der.to_vec(),
        "{}",
        zoo.output()
    );

    // A reload to a secret directory laid out as Kubernetes mounts it.
    let secret = zoo.dir().join("secret");
    publish_secret(&secret, "v2", &second);
    let cert = secret.join("tls.crt");
    let key = secret.join("tls.key");
    std::os::unix::fs::symlink("..data/tls.crt", &cert).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", &key).unwrap();
    rewrite(
        &zoo,
        &config(&cert.display().to_string(), &key.display().to_string()),
    );
    reload(&zoo);
    assert_eq!(
        presented(zoo.addr(), &all),
        second.der.to_vec(),
        "after the reload\n{}",
        zoo.output()
    );

    // The secret is updated in place: no reload, and the new pair is used within seconds.
    publish_secret(&secret, "v3", &third);
    assert!(
        util::poll_until(ROTATION_DEADLINE, || presented(zoo.addr(), &all)
            == third.der.to_vec()),
        "the rotated certificate is presented within {ROTATION_DEADLINE:?}\n{}",
        zoo.output()
    );
    assert!(
        zoo.wait_for_line(Duration::from_secs(1), |_, line| line
            .contains("changed on disk")),
        "zoo logs the rotation\n{}",
        zoo.output()
    );

    // A pair whose key does not match its certificate is refused: the one in use stays.
    let mismatched = Pair {
        cert_pem: broken.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
        der: broken.der.clone(),
    };
    publish_secret(&secret, "v4", &mismatched);
    assert!(
        zoo.wait_for_line(ROTATION_DEADLINE, |_, line| line
            .contains("the certificate in use is kept")),
        "zoo logs the broken pair\n{}",
        zoo.output()
    );
    assert_eq!(
        presented(zoo.addr(), &all),
        third.der.to_vec(),
        "the broken pair is not used\n{}",
        zoo.output()
    );
}

/// Sends `GET /slow` on a new connection to `addr` and returns the stream, the request
/// written (the app answers after 1.5 s).
fn start_slow_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect for /slow");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: zoo\r\nConnection: close\r\n\r\n")
        .unwrap();
    stream
}

fn read_to_end(mut stream: TcpStream) -> String {
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn reload_moves_listen_and_admin_addresses_and_refuses_one_it_cannot_bind() {
    let (first, second, third, admin) = (free_addr(), free_addr(), free_addr(), free_addr());
    let mut zoo = Zoo::start(
        &echo_config(&format!("listen = \"{first}\"")),
        &[("echo.py", ECHO_APP)],
    );
    zoo.wait_ready("/", util::READY_DEADLINE);

    // An added address serves as soon as the reload returns; the removed one stops accepting
    // while a request already on it completes.
    let slow = start_slow_request(first);
    std::thread::sleep(Duration::from_millis(300));
    rewrite(
        &zoo,
        &echo_config(&format!(
            "listen = [\"{second}\", \"{third}\"]\nadmin = \"{admin}\""
        )),
    );
    reload(&zoo);
    assert_eq!(get_at(second, "/").ok().map(|r| r.0), Some(200));
    assert_eq!(get_at(third, "/").ok().map(|r| r.0), Some(200));
    assert_eq!(get_at(admin, "/livez").ok().map(|r| r.0), Some(200));
    let refused = TcpStream::connect_timeout(&first, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "the removed address refuses new connections\n{}",
        zoo.output()
    );
    let reply = read_to_end(slow);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("xff=127.0.0.1\n"),
        "the request on the removed address completed: {reply:?}\n{}",
        zoo.output()
    );

    // `zoo status` shows the addresses bound now.
    let status = zoo.cli_ok(&["status", "--json"], CLI_DEADLINE);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        status["listen"],
        serde_json::json!([second.to_string(), third.to_string()]),
        "{status}"
    );

    // An address that cannot be bound refuses the whole reload: every other change is
    // dropped too (`admin` stays), and both old addresses keep serving.
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken_addr = taken.local_addr().unwrap();
    rewrite(
        &zoo,
        &echo_config(&format!("listen = [\"{second}\", \"{taken_addr}\"]")),
    );
    let refused = util::run_to_end(zoo.dir(), &["reload"], CLI_DEADLINE);
    assert_eq!(refused.code(), Some(1), "{}", refused.output);
    let reason = refused.stderr.trim();
    assert!(
        !reason.contains('\n')
            && reason.contains(&format!("`listen`: cannot listen on {taken_addr}"))
            && reason.contains("in use"),
        "one line naming the key, the address and the cause: {reason:?}"
    );
    assert_eq!(get_at(second, "/").ok().map(|r| r.0), Some(200));
    assert_eq!(get_at(third, "/").ok().map(|r| r.0), Some(200));
    assert_eq!(get_at(admin, "/livez").ok().map(|r| r.0), Some(200));

    // Removing `admin` closes it.
    drop(taken);
    rewrite(&zoo, &echo_config(&format!("listen = \"{second}\"")));
    reload(&zoo);
    assert!(TcpStream::connect_timeout(&admin, Duration::from_secs(2)).is_err());
    assert!(TcpStream::connect_timeout(&third, Duration::from_secs(2)).is_err());
    assert_eq!(get_at(second, "/").ok().map(|r| r.0), Some(200));
}

/// Time from writing a partial request head on a new connection until zoo closes it.
fn header_timeout_of(addr: SocketAddr) -> Duration {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: zoo\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    started.elapsed()
}

#[test]
fn reload_applies_timeouts_access_log_forwarding_grace_and_shutdown_delay() {
    let before = "listen = \"127.0.0.1:0\"\n\
                  grace = \"60s\"\n\
                  client_header_timeout = \"30s\"\n";
    let mut zoo = Zoo::start(&echo_config(before), &[("echo.py", ECHO_APP)]);
    zoo.wait_ready("/", util::READY_DEADLINE);
    let spoofed = |zoo: &Zoo| {
        let reply = zoo.send_raw(
            b"GET / HTTP/1.1\r\nHost: zoo\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
        );
        String::from_utf8_lossy(&reply).into_owned()
    };
    assert!(
        spoofed(&zoo).ends_with("xff=127.0.0.1\n"),
        "untrusted: replaced"
    );
    let mut marker = 0;
    let logged = |zoo: &Zoo, marker: &str| {
        zoo.wait_for_line(Duration::from_secs(3), |_, line| {
            line.starts_with('{') && line.contains(&format!("\"target\":\"/{marker}\""))
        })
    };
    marker += 1;
    let _ = zoo.get(&format!("/{marker}"));
    assert!(!logged(&zoo, &marker.to_string()), "no access log yet");

    let after = "listen = \"127.0.0.1:0\"\n\
                 grace = \"1s\"\n\
                 shutdown_delay = \"1s\"\n\
                 client_header_timeout = \"1s\"\n\
                 access_log = \"json\"\n\
                 trust_forwarded = [\"127.0.0.1/32\"]\n";
    rewrite(&zoo, &echo_config(after));
    reload(&zoo);
    assert_eq!(
        zoo.get("/").status,
        200,
        "the kept `listen` serves\n{}",
        zoo.output()
    );
    // `listen = "127.0.0.1:0"`: `zoo status` names the port the kernel chose, not 0.
    let status = zoo.cli_ok(&["status", "--json"], CLI_DEADLINE);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        status["listen"],
        serde_json::json!([zoo.addr().to_string()]),
        "{status}"
    );

    let waited = header_timeout_of(zoo.addr());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "the new client_header_timeout (1 s) closes a stalled head: {waited:?}\n{}",
        zoo.output()
    );
    marker += 1;
    let _ = zoo.get(&format!("/{marker}"));
    assert!(
        logged(&zoo, &marker.to_string()),
        "the access log is on, in JSON\n{}",
        zoo.output()
    );
    assert!(
        spoofed(&zoo).ends_with("xff=203.0.113.9, 127.0.0.1\n"),
        "trusted now: appended\n{}",
        zoo.output()
    );

    // The app ignores SIGTERM: the new grace (1 s, after the 1 s shutdown_delay), not the
    // old 60 s, decides when it is killed.
    let stopping = Instant::now();
    kill(zoo.pid(), Signal::SIGTERM).unwrap();
    let status = zoo
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("zoo still running 15 s after SIGTERM\n{}", zoo.output()));
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "shutdown_delay 1 s + grace 1 s: {took:?}\n{}",
        zoo.output()
    );
    assert_eq!(
        status.code(),
        Some(1),
        "an app had to be killed\n{}",
        zoo.output()
    );
    assert!(
        zoo.output()
            .contains("still serving for 1s (shutdown_delay)"),
        "{}",
        zoo.output()
    );
}

/// `POST /reload` on the admin listener at `admin` with `Authorization: Bearer token`.
fn admin_reload_status(admin: SocketAddr, token: &str) -> u16 {
    let request = format!(
        "POST /reload HTTP/1.1\r\nHost: zoo\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let reply = util::http::exchange(admin, request.as_bytes(), Duration::from_secs(20))
        .expect("admin exchange");
    util::http::parse(&reply).expect("admin reply").status
}

#[test]
fn reload_rotates_the_admin_token() {
    let admin = free_addr();
    let config = |token: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"{admin}\"\nadmin_token = \"{token}\"\n\
             [routes]\n\"/\" = {{ respond = \"hello\" }}\n"
        )
    };
    let zoo = Zoo::start(&config("first-token"), &[]);
    assert_eq!(
        admin_reload_status(admin, "first-token"),
        200,
        "{}",
        zoo.output()
    );
    rewrite(&zoo, &config("second-token"));
    reload(&zoo);
    assert_eq!(
        admin_reload_status(admin, "first-token"),
        401,
        "{}",
        zoo.output()
    );
    assert_eq!(
        admin_reload_status(admin, "second-token"),
        200,
        "{}",
        zoo.output()
    );
}
