//! `compress = true` through the real binary, decoded by `curl --compressed`: every coding
//! zoo negotiates gives back the exact original bytes for files of 0 B, 1 KiB - 1 and 1 MiB
//! and for a streamed (chunked) 20 MB body from an app; `identity` and a too-small body are
//! sent as they are, and HEAD is never compressed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{self, Zoo};

/// An app that streams a chunked body of `STREAMED_LINES` numbered lines.
const STREAMER: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, 400000, 1000):
            chunk = "".join(f"line {n} of the streamed body\n" for n in range(start, start + 1000)).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn streamed_body() -> Vec<u8> {
    (0..400_000)
        .map(|n| format!("line {n} of the streamed body\n"))
        .collect::<String>()
        .into_bytes()
}

/// `text` repeated to exactly `len` bytes.
fn sized(len: usize) -> String {
    "zoo compresses what it is told to. "
        .chars()
        .cycle()
        .take(len)
        .collect()
}

/// `curl --compressed` with `accept` as `Accept-Encoding`: (`Content-Encoding`, decoded body).
fn curl(url: &str, accept: &str, dir: &Path) -> (String, Vec<u8>) {
    let headers = dir.join("headers.txt");
    let body = dir.join("body.bin");
    let output = util::run_bounded(
        Command::new("curl")
            .args(["-sS", "--compressed", "--max-time", "60", "-H"])
            .arg(format!("Accept-Encoding: {accept}"))
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .arg(url),
        Duration::from_secs(90),
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
    (coding, std::fs::read(&body).unwrap())
}

#[test]
fn compress_round_trips_every_coding_through_curl() {
    let small = sized(1023);
    let large = sized(1024 * 1024);
    let files = [
        ("files/empty.txt", ""),
        ("files/small.txt", small.as_str()),
        ("files/large.json", large.as_str()),
        ("stream.py", STREAMER),
    ];
    let config = "listen = \"127.0.0.1:0\"\ncompress = true\n\
                  [apps.stream]\ncommand = [\"python3\", \"stream.py\"]\n\
                  [routes]\n\"/files\" = { static = \"files\" }\n\"/stream\" = { app = \"stream\" }\n";
    let mut zoo = Zoo::start(config, &files);
    zoo.wait_ready("/stream", util::READY_DEADLINE);
    let base = format!("http://{}", zoo.addr());
    let scratch = tempfile::tempdir().unwrap();
    let streamed = streamed_body();
    let cases: [(&str, &[u8], bool); 4] = [
        ("/files/empty.txt", b"", false),
        ("/files/small.txt", small.as_bytes(), false),
        ("/files/large.json", large.as_bytes(), true),
        ("/stream", &streamed, true),
    ];
    for coding in ["zstd", "br", "gzip"] {
        for (path, expected, compressed) in cases {
            let (got_coding, body) = curl(&format!("{base}{path}"), coding, scratch.path());
            let want = if compressed { coding } else { "" };
            assert_eq!(got_coding, want, "{path} with {coding}\n{}", zoo.output());
            assert!(
                body == expected,
                "{path} with {coding}: {} bytes, expected {}",
                body.len(),
                expected.len()
            );
        }
    }
    let (identity, body) = curl(
        &format!("{base}/files/large.json"),
        "identity",
        scratch.path(),
    );
    assert_eq!((identity.as_str(), body.len()), ("", large.len()));
    let preferred = curl(
        &format!("{base}/files/large.json"),
        "gzip, br, zstd",
        scratch.path(),
    );
    assert_eq!(preferred.0, "zstd", "zoo's order breaks ties");
    let head = util::run_bounded(
        Command::new("curl")
            .args(["-sS", "-I", "-H", "Accept-Encoding: gzip"])
            .arg(format!("{base}/files/large.json")),
        Duration::from_secs(30),
    );
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
}
