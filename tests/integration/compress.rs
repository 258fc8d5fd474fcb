//! `compress = true` through the real binary, decoded by two real clients, `curl --compressed`
//! and Python's `httpx` (with the `brotli` and `zstandard` packages it decodes br and zstd
//! with): every coding zoo negotiates (zstd, br, gzip) gives back the exact original bytes for
//! bodies of 0 B, 1 KiB - 1, 1 MiB and a streamed 50 MB. The three small ones come both as
//! files (`static`, a known length: 0 B and 1 KiB - 1 are below the minimum and sent as they
//! are) and chunked from an app (unknown length: compressed, even when empty); the 50 MB body
//! is chunked from the app. `Accept-Encoding: identity` gets the raw body, and HEAD is never
//! compressed. Bodies are compared by length and SHA-256, streamed: the 50 MB one is never
//! held whole by the test or the clients.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ring::digest::{Context, SHA256};
use serde_json::Value;

use crate::util::{self, Zoo};

/// The streamed body's length: 50 MB.
const STREAMED_LEN: usize = 50_000_000;
/// The body sizes tested: 0 B, 1 KiB - 1, 1 MiB (files and app), and the streamed one (app).
const SMALL_LENS: [usize; 3] = [0, 1023, 1 << 20];
const CODINGS: [&str; 3] = ["zstd", "br", "gzip"];
/// How long one client run may take (50 MB through a debug build, compressed).
const CLIENT_DEADLINE: Duration = Duration::from_secs(180);

/// The app: `GET /stream?len=N` sends the first N bytes of [`body_blocks`]'s text, chunked,
/// one chunk per 1000 lines, generated as it goes.
const STREAMER: &str = r#"
import http.server, os, urllib.parse
def blocks(total):
    start = 0
    while total > 0:
        block = "".join(f"line {n} of the streamed body\n" for n in range(start, start + 1000)).encode()[:total]
        total -= len(block)
        start += 1000
        yield block
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for block in blocks(int(query.get("len", ["0"])[0])):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        self.wfile.write(b"0\r\n\r\n")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The httpx client: for each `URL ACCEPT` line of the file it is given, one streamed GET with that
/// `Accept-Encoding`; prints a JSON list of the `Content-Encoding`, decoded length and
/// SHA-256 of each.
const HTTPX_CLIENT: &str = r#"
import hashlib, json, sys
import httpx
results = []
with httpx.Client(timeout=120) as client:
    for line in open(sys.argv[1]):
        url, accept = line.rstrip("\n").split(" ", 1)
        digest, length = hashlib.sha256(), 0
        with client.stream("GET", url, headers={"Accept-Encoding": accept}) as response:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                length += len(chunk)
            results.append({"status": response.status_code,
                            "encoding": response.headers.get("content-encoding", ""),
                            "len": length, "sha256": digest.hexdigest()})
print(json.dumps(results))
"#;

/// Calls `sink` with the app's body of `len` bytes, block by block, as `STREAMER` makes it.
fn body_blocks(len: usize, mut sink: impl FnMut(&[u8])) {
    let mut left = len;
    let mut start = 0;
    while left > 0 {
        let block: String = (start..start + 1000)
            .map(|n| format!("line {n} of the streamed body\n"))
            .collect();
        let block = &block.as_bytes()[..left.min(block.len())];
        sink(block);
        left -= block.len();
        start += 1000;
    }
}

fn body(len: usize) -> String {
    let mut body = Vec::with_capacity(len);
    body_blocks(len, |block| body.extend_from_slice(block));
    String::from_utf8(body).unwrap()
}

/// (length, SHA-256 in hex) of the app's body of `len` bytes.
fn expected(len: usize) -> (u64, String) {
    let mut digest = Context::new(&SHA256);
    body_blocks(len, |block| digest.update(block));
    (len as u64, hex(digest.finish().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// (length, SHA-256 in hex) of a file, read in blocks.
fn file_digest(path: &Path) -> (u64, String) {
    let mut file = std::fs::File::open(path).unwrap();
    let mut digest = Context::new(&SHA256);
    let mut buffer = vec![0; 1 << 16];
    let mut len = 0;
    loop {
        let read = file.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        digest.update(&buffer[..read]);
        len += read as u64;
    }
    (len, hex(digest.finish().as_ref()))
}

/// One request a client makes: the path, the `Accept-Encoding`, and what must come back (the
/// `Content-Encoding`, empty for none, and the decoded body's length and SHA-256).
struct Case {
    path: String,
    accept: &'static str,
    encoding: &'static str,
    body: (u64, String),
}

/// Every coding for every body, then `identity` for the largest file and the streamed body.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let streamed = expected(STREAMED_LEN);
    for coding in CODINGS {
        for len in SMALL_LENS {
            cases.push(Case {
                path: format!("/files/{len}.txt"),
                accept: coding,
                encoding: if len >= 1024 { coding } else { "" },
                body: expected(len),
            });
            cases.push(Case {
                path: format!("/stream?len={len}"),
                accept: coding,
                encoding: coding,
                body: expected(len),
            });
        }
        cases.push(Case {
            path: format!("/stream?len={STREAMED_LEN}"),
            accept: coding,
            encoding: coding,
            body: streamed.clone(),
        });
    }
    for path in [
        format!("/files/{}.txt", 1 << 20),
        format!("/stream?len={STREAMED_LEN}"),
    ] {
        let len = if path.starts_with("/files") {
            1 << 20
        } else {
            STREAMED_LEN
        };
        cases.push(Case {
            path,
            accept: "identity",
            encoding: "",
            body: expected(len),
        });
    }
    cases
}

/// zoo with `compress = true` in front of the file tree and the streaming app.
fn compressing_zoo() -> Zoo {
    let files: Vec<(String, String)> = SMALL_LENS
        .iter()
        .map(|len| (format!("files/{len}.txt"), body(*len)))
        .chain([("stream.py".to_owned(), STREAMER.to_owned())])
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let config = "listen = \"127.0.0.1:0\"\ncompress = true\n\
                  [apps.stream]\ncommand = [\"python3\", \"stream.py\"]\n\
                  [routes]\n\"/files\" = { static = \"files\" }\n\"/stream\" = { app = \"stream\" }\n";
    let mut zoo = Zoo::start(config, &files);
    zoo.wait_ready("/stream", util::READY_DEADLINE);
    zoo
}

/// `curl --compressed` with `accept` as `Accept-Encoding`: (`Content-Encoding`, decoded
/// length and SHA-256), the body going through a file in `dir`.
fn curl(url: &str, accept: &str, dir: &Path) -> (String, (u64, String)) {
    let headers = dir.join("headers.txt");
    let body = dir.join("body.bin");
    let output = util::run_bounded(
        Command::new("curl")
            .args(["-sS", "--compressed", "--max-time", "170", "-H"])
            .arg(format!("Accept-Encoding: {accept}"))
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .arg(url),
        CLIENT_DEADLINE,
    );
    assert!(output.status.success(), "curl {url}: {output:?}");
    let head = std::fs::read_to_string(&headers).unwrap();
    let coding = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-encoding")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (coding, file_digest(&body))
}

#[test]
fn compress_round_trips_every_coding_through_curl() {
    let zoo = compressing_zoo();
    let base = format!("http://{}", zoo.addr());
    let scratch = tempfile::tempdir().unwrap();
    for case in cases() {
        let (coding, body) = curl(&format!("{base}{}", case.path), case.accept, scratch.path());
        assert_eq!(
            (coding.as_str(), &body),
            (case.encoding, &case.body),
            "curl: {} with Accept-Encoding: {} (Content-Encoding, decoded length and sha256)\n{}",
            case.path,
            case.accept,
            zoo.output()
        );
    }
    let preferred = curl(
        &format!("{base}/files/{}.txt", 1 << 20),
        "gzip, br, zstd",
        scratch.path(),
    );
    assert_eq!(preferred.0, "zstd", "zoo's order breaks ties");
    let head = util::run_bounded(
        Command::new("curl")
            .args(["-sS", "-I", "-H", "Accept-Encoding: gzip"])
            .arg(format!("{base}/files/{}.txt", 1 << 20)),
        Duration::from_secs(30),
    );
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
}

#[test]
fn compress_round_trips_every_coding_through_httpx() {
    let zoo = compressing_zoo();
    let cases = cases();
    let requests: String = cases
        .iter()
        .map(|case| format!("http://{}{} {}\n", zoo.addr(), case.path, case.accept))
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("httpx_client.py");
    std::fs::write(&script, HTTPX_CLIENT).unwrap();
    let input = scratch.path().join("requests.txt");
    std::fs::write(&input, requests).unwrap();
    let output = util::run_bounded(
        Command::new(util::venv_bin().join("python"))
            .arg(&script)
            .arg(&input),
        CLIENT_DEADLINE * 3,
    );
    assert!(
        output.status.success(),
        "the httpx client failed (scripts/setup installs httpx, brotli and zstandard into the \
         venv): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("the client's JSON");
    assert_eq!(results.len(), cases.len());
    for (case, result) in cases.iter().zip(&results) {
        let got = (
            result["status"].as_u64().unwrap(),
            result["encoding"].as_str().unwrap(),
            result["len"].as_u64().unwrap(),
            result["sha256"].as_str().unwrap(),
        );
        assert_eq!(
            got,
            (200, case.encoding, case.body.0, case.body.1.as_str()),
            "httpx: {} with Accept-Encoding: {} (status, Content-Encoding, decoded length and \
             sha256)\n{}",
            case.path,
            case.accept,
            zoo.output()
        );
    }
}
