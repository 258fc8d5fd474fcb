//! `static` routes through the real binary: methods, index and redirect, fallback, dotfiles,
//! symlinks out of the root, conditional requests, ranges and precompressed siblings; then a
//! differential table against nginx (`root`, `try_files $uri /index.html`, `gzip_static on`,
//! `etag on`) serving the same directory, where status and the headers that matter agree or
//! the difference is named with its reason (the same reasons are in docs/config.md).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{self, Zoo, http};

const INDEX: &str = "<!doctype html><title>spa</title><script src=\"/assets/app.js\"></script>\n";

/// The site every test serves: an SPA's `dist/` with a hashed asset and a dotfile.
fn site_files() -> Vec<(String, String)> {
    let app_js = "console.log('zoo static');\n".repeat(200);
    vec![
        ("site/index.html".to_owned(), INDEX.to_owned()),
        ("site/assets/app.js".to_owned(), app_js),
        (
            "site/assets/style.css".to_owned(),
            "body { margin: 0 }\n".to_owned(),
        ),
        ("site/docs/index.html".to_owned(), "docs\n".to_owned()),
        ("site/empty.txt".to_owned(), String::new()),
        ("site/.env".to_owned(), "SECRET=1\n".to_owned()),
        ("outside.txt".to_owned(), "outside the root\n".to_owned()),
    ]
}

/// Writes the binary siblings and the symlink that text files cannot express.
fn finish_site(dir: &Path) {
    let app_js = std::fs::read(dir.join("site/assets/app.js")).unwrap();
    std::fs::write(dir.join("site/assets/app.js.gz"), gzip(&app_js)).unwrap();
    std::fs::write(dir.join("site/assets/app.js.br"), b"br-bytes").unwrap();
    std::os::unix::fs::symlink(dir.join("outside.txt"), dir.join("site/escape.txt")).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn start_zoo(options: &str) -> Zoo {
    let files = site_files();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[routes]\n\"/\" = {{ static = \"site\", fallback = \"index.html\"{options} }}\n\
         \"/assets\" = {{ static = \"site/assets\", cache = \"immutable\" }}\n"
    );
    let zoo = Zoo::start(&config, &borrowed);
    finish_site(zoo.dir());
    zoo
}

/// One request on its own connection: `METHOD target` with extra header lines.
fn ask(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> http::Response {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    let raw = http::exchange(addr, request.as_bytes(), http::READ_TIMEOUT).expect("exchange");
    if method == "HEAD" {
        return head_only(&raw);
    }
    http::parse(&raw).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&raw)))
}

/// A HEAD answer: no body follows whatever `Content-Length` says, so that header is renamed
/// `x-head-length` for the parser (which would wait for the body).
fn head_only(raw: &[u8]) -> http::Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert_eq!(end, raw.len(), "a HEAD answer has no body");
    let head: String = String::from_utf8_lossy(raw)
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                format!("x-head-length:{value}\r\n")
            }
            _ => format!("{line}\r\n"),
        })
        .collect();
    http::parse(head.trim_end_matches("\r\n").as_bytes())
        .or_else(|_| http::parse(format!("{}\r\n\r\n", head.trim_end()).as_bytes()))
        .expect("a parsable head")
}

#[test]
fn static_serves_files_with_validators_types_and_cache() {
    let zoo = start_zoo("");
    let addr = zoo.addr();
    let index = ask(addr, "GET", "/", &[]);
    assert_eq!(index.status, 200, "{}", zoo.output());
    assert_eq!(index.text(), INDEX);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("accept-ranges"), Some("bytes"));
    assert!(index.header("etag").is_some_and(|tag| tag.starts_with('"')));
    assert!(index.header("last-modified").is_some());
    let css = ask(addr, "GET", "/assets/style.css", &[]);
    assert_eq!(
        css.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let empty = ask(addr, "GET", "/empty.txt", &[]);
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    let head = ask(addr, "HEAD", "/assets/app.js", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-head-length"), Some("5400"));
    let post = ask(addr, "POST", "/index.html", &[("Content-Length", "0")]);
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
}

#[test]
fn static_fallback_redirect_dotfiles_and_symlinks() {
    let zoo = start_zoo("");
    let addr = zoo.addr();
    let deep = ask(addr, "GET", "/settings/profile", &[]);
    assert_eq!((deep.status, deep.text().as_str()), (200, INDEX));
    assert_eq!(deep.header("cache-control"), Some("no-cache"));
    assert_eq!(ask(addr, "GET", "/missing.js", &[]).status, 404);
    let dir = ask(addr, "GET", "/docs?x=1", &[]);
    assert_eq!(
        (dir.status, dir.header("location")),
        (301, Some("/docs/?x=1"))
    );
    assert_eq!(ask(addr, "GET", "/docs/", &[]).text(), "docs\n");
    assert_eq!(ask(addr, "GET", "/.env", &[]).status, 404);
    assert_eq!(ask(addr, "GET", "/escape.txt", &[]).status, 404);
    assert_eq!(ask(addr, "GET", "/..%2F..%2Fetc%2Fpasswd", &[]).status, 404);

    let open = start_zoo(", dotfiles = true, follow_symlinks = true");
    assert_eq!(ask(open.addr(), "GET", "/.env", &[]).text(), "SECRET=1\n");
    assert_eq!(
        ask(open.addr(), "GET", "/escape.txt", &[]).text(),
        "outside the root\n"
    );
}

#[test]
fn static_conditional_requests_and_ranges() {
    let zoo = start_zoo("");
    let addr = zoo.addr();
    let first = ask(addr, "GET", "/index.html", &[]);
    let etag = first.header("etag").unwrap().to_owned();
    let modified = first.header("last-modified").unwrap().to_owned();
    let not_modified = ask(addr, "GET", "/index.html", &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    let weak = format!("W/{etag}");
    assert_eq!(
        ask(addr, "GET", "/index.html", &[("If-None-Match", &weak)]).status,
        304
    );
    assert_eq!(
        ask(
            addr,
            "GET",
            "/index.html",
            &[("If-Modified-Since", &modified)]
        )
        .status,
        304
    );
    assert_eq!(
        ask(addr, "GET", "/index.html", &[("If-Match", "\"other\"")]).status,
        412
    );
    assert_eq!(
        ask(addr, "GET", "/index.html", &[("If-Match", &etag)]).status,
        200
    );
    let old = "Mon, 01 Jan 1990 00:00:00 GMT";
    assert_eq!(
        ask(addr, "GET", "/index.html", &[("If-Unmodified-Since", old)]).status,
        412
    );

    let part = ask(addr, "GET", "/index.html", &[("Range", "bytes=0-8")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), &INDEX[..9]);
    let total = INDEX.len();
    let expected_range = format!("bytes 0-8/{total}");
    assert_eq!(part.header("content-range"), Some(expected_range.as_str()));
    let suffix = ask(addr, "GET", "/index.html", &[("Range", "bytes=-3")]);
    assert_eq!(suffix.text(), &INDEX[total - 3..]);
    let beyond = ask(addr, "GET", "/index.html", &[("Range", "bytes=99999-")]);
    let unsatisfied = format!("bytes */{total}");
    assert_eq!(
        (beyond.status, beyond.header("content-range")),
        (416, Some(unsatisfied.as_str()))
    );
    let multi = ask(addr, "GET", "/index.html", &[("Range", "bytes=0-1,4-5")]);
    assert_eq!((multi.status, multi.body.len()), (200, total));
    let stale = ask(
        addr,
        "GET",
        "/index.html",
        &[("Range", "bytes=0-1"), ("If-Range", "\"old\"")],
    );
    assert_eq!(stale.status, 200);
}

#[test]
fn static_serves_the_precompressed_sibling_the_client_prefers() {
    let zoo = start_zoo("");
    let addr = zoo.addr();
    let plain = ask(addr, "GET", "/assets/app.js", &[]);
    let gz = ask(
        addr,
        "GET",
        "/assets/app.js",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("content-type"), plain.header("content-type"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert_ne!(gz.header("etag"), plain.header("etag"));
    assert_eq!(
        gz.body,
        std::fs::read(zoo.dir().join("site/assets/app.js.gz")).unwrap()
    );
    let br = ask(
        addr,
        "GET",
        "/assets/app.js",
        &[("Accept-Encoding", "gzip;q=0.5, br")],
    );
    assert_eq!(
        (br.header("content-encoding"), br.body.as_slice()),
        (Some("br"), &b"br-bytes"[..])
    );
    let refused = ask(
        addr,
        "GET",
        "/assets/app.js",
        &[("Accept-Encoding", "br;q=0, gzip;q=0")],
    );
    assert_eq!(refused.header("content-encoding"), None);
    assert_eq!(refused.body, plain.body);
}

// ---------------------------------------------------------------------------------------------
// The differential table against nginx.

/// nginx serving `root` as the issue's peer does: `try_files $uri /index.html`,
/// `gzip_static on`, `etag on`.
fn nginx_serving(root: &Path) -> util::peers::Daemon {
    let root = root.display().to_string();
    util::peers::nginx("zoo-static-nginx-", |_, port| {
        format!(
            "    include /etc/nginx/mime.types;\n    etag on;\n    gzip_static on;\n    \
             server {{\n        listen 127.0.0.1:{port};\n        root {root};\n        \
             location / {{ try_files $uri /index.html; }}\n    }}\n"
        )
    })
}

/// What is compared of one answer: status and the headers that matter to a client or cache.
/// An error's page is each server's own, so for 4xx only the status (and a 416's range)
/// is compared.
fn summary(response: &http::Response) -> String {
    if response.status >= 400 {
        return format!(
            "{} range={}",
            response.status,
            response.header("content-range").unwrap_or("-")
        );
    }
    let essence = |name: &str| {
        response.header(name).map_or("-".to_owned(), |value| {
            value.split(';').next().unwrap_or("").trim().to_owned()
        })
    };
    let location = response.header("location").map_or("-".to_owned(), |value| {
        // nginx makes it absolute; the path is what matters.
        value
            .split_once("//")
            .map_or(value, |(_, rest)| &rest[rest.find('/').unwrap_or(0)..])
            .to_owned()
    });
    format!(
        "{} type={} len={} enc={} range={} loc={}",
        response.status,
        essence("content-type"),
        if response.status == 304 {
            "-".to_owned()
        } else {
            response.body.len().to_string()
        },
        essence("content-encoding"),
        essence("content-range"),
        location
    )
}

#[test]
fn static_differential_against_nginx() {
    let zoo = start_zoo("");
    let nginx = nginx_serving(&zoo.dir().join("site"));
    let zoo_addr = zoo.addr();
    let nginx_addr = nginx.addr();
    // Each server's own validators, for the conditional cases.
    let validators = |addr| {
        let first = ask(addr, "GET", "/index.html", &[]);
        (
            first.header("etag").unwrap().to_owned(),
            first.header("last-modified").unwrap().to_owned(),
        )
    };
    let (zoo_tag, zoo_date) = validators(zoo_addr);
    let (nginx_tag, nginx_date) = validators(nginx_addr);
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, String)>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("index", "GET", "/", vec![], None),
        ("file", "GET", "/index.html", vec![], None),
        ("HEAD", "HEAD", "/index.html", vec![], None),
        (
            "if-none-match",
            "GET",
            "/index.html",
            vec![("If-None-Match", "TAG".into())],
            None,
        ),
        (
            "if-modified-since",
            "GET",
            "/index.html",
            vec![("If-Modified-Since", "DATE".into())],
            None,
        ),
        (
            "if-match wrong",
            "GET",
            "/index.html",
            vec![("If-Match", "\"nope\"".into())],
            None,
        ),
        (
            "if-unmodified-since old",
            "GET",
            "/index.html",
            vec![(
                "If-Unmodified-Since",
                "Mon, 01 Jan 1990 00:00:00 GMT".into(),
            )],
            None,
        ),
        (
            "range",
            "GET",
            "/index.html",
            vec![("Range", "bytes=0-9".into())],
            None,
        ),
        (
            "suffix range",
            "GET",
            "/index.html",
            vec![("Range", "bytes=-5".into())],
            None,
        ),
        (
            "unsatisfiable range",
            "GET",
            "/index.html",
            vec![("Range", "bytes=99999-".into())],
            None,
        ),
        (
            "multi range",
            "GET",
            "/index.html",
            vec![("Range", "bytes=0-1,4-5".into())],
            Some(
                "zoo answers several ranges with the whole file (200); nginx sends multipart/byteranges",
            ),
        ),
        (
            "gzip sibling",
            "GET",
            "/assets/app.js",
            vec![("Accept-Encoding", "gzip".into())],
            Some(
                "type only: text/javascript is RFC 9239's (mime_guess); Debian's mime.types still says application/javascript",
            ),
        ),
        (
            "br sibling",
            "GET",
            "/assets/app.js",
            vec![("Accept-Encoding", "br".into())],
            Some("zoo also serves .br and .zst siblings; gzip_static knows only .gz"),
        ),
        (
            "dotfile",
            "GET",
            "/.env",
            vec![],
            Some("zoo hides dotfiles (404) unless `dotfiles = true`; nginx serves them"),
        ),
        (
            "symlink out of root",
            "GET",
            "/escape.txt",
            vec![],
            Some(
                "zoo refuses symlinks leaving the root unless `follow_symlinks = true`; nginx follows them",
            ),
        ),
        ("traversal", "GET", "/../outside.txt", vec![], None),
        (
            "encoded traversal",
            "GET",
            "/%2e%2e/outside.txt",
            vec![],
            None,
        ),
        (
            "dir without slash",
            "GET",
            "/docs",
            vec![],
            Some(
                "try_files $uri does not match a directory, so nginx answers /index.html; zoo redirects as nginx's index module does",
            ),
        ),
        (
            "dir with slash",
            "GET",
            "/docs/",
            vec![],
            Some(
                "try_files $uri does not match a directory, so nginx answers /index.html; zoo its index.html",
            ),
        ),
        (
            "missing asset",
            "GET",
            "/missing.js",
            vec![],
            Some(
                "zoo's fallback answers only extension-less paths, so a missing asset stays 404; try_files answers everything",
            ),
        ),
        (
            "fallback deep link",
            "GET",
            "/settings/profile",
            vec![],
            None,
        ),
        (
            "POST",
            "POST",
            "/index.html",
            vec![("Content-Length", "0".into())],
            None,
        ),
    ];
    let mut table = String::from("| case | zoo | nginx | note |\n|---|---|---|---|\n");
    let mut unexplained = Vec::new();
    for (name, method, target, headers, differs) in &cases {
        let with = |tag: &str, date: &str| -> Vec<(&str, String)> {
            headers
                .iter()
                .map(|(header, value)| (*header, value.replace("TAG", tag).replace("DATE", date)))
                .collect()
        };
        let run = |addr, tag: &str, date: &str| {
            let headers = with(tag, date);
            let borrowed: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            summary(&ask(addr, method, target, &borrowed))
        };
        let ours = run(zoo_addr, &zoo_tag, &zoo_date);
        let theirs = run(nginx_addr, &nginx_tag, &nginx_date);
        let note = match (ours == theirs, differs) {
            (true, _) => "same".to_owned(),
            (false, Some(why)) => (*why).to_owned(),
            (false, None) => {
                unexplained.push(*name);
                "UNEXPLAINED".to_owned()
            }
        };
        let _ = writeln!(table, "| {name} | {ours} | {theirs} | {note} |");
    }
    println!("{table}");
    assert!(
        unexplained.is_empty(),
        "unexplained differences {unexplained:?}:\n{table}\n{}",
        zoo.output()
    );
}
