//! An in-test HTTP/1.1 upstream that records every request's bytes as they arrived (head and
//! body, framing included) and answers by path with a scripted response, for comparing what
//! two proxies forward and answer (tests/integration/engines.rs).
//!
//! | path starts with | answer |
//! | --- | --- |
//! | `/chunked` | `200`, chunked, `Trailer: x-sum`, one chunk and a trailer |
//! | `/204` | `204` with a field |
//! | `/close` | `200` without a length, the body ended by closing |
//! | `/ws` | `101` to WebSocket, then echoes bytes |
//! | `/conn-close` | `200` with `Connection: close` and a length, then closes |
//! | `/http10` | an `HTTP/1.0` `200` with a length, then closes |
//! | `/cl-te` | `200` with both `Content-Length` and chunked |
//! | `/bad-chunk-first` | `200` chunked, then a bad chunk size at once |
//! | `/bad-chunk-later` | `200` chunked, one good chunk, then a bad chunk size |
//! | `/unasked-101` | `101` to WebSocket whatever was asked |
//! | `/early` | `200` as soon as the head is in, before the body is read |
//! | `/idle-close` | `200` with a length, then closes the idle connection 100 ms later |
//! | `/big-N` | `200` with a `Content-Length` of N, then 20 ms later N bytes of [`big_body`] |
//! | `/big-cut-N` | `200` with a `Content-Length` of N, half of [`big_body`], then closes |
//! | anything else | `200`, `echo PATH LENGTH` (the body's framed length) |
//!
//! [`Scripted::accepts`] counts the connections it accepted, to see keep-alive reuse.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::raw::IO_TIMEOUT;

pub struct Scripted {
    pub port: u16,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve(stream, &seen));
            }
        });
        Scripted {
            port,
            requests,
            accepted,
        }
    }

    /// How many connections it has accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The requests received since the last call, each as its bytes.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Vec<u8>>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut pending = Vec::new();
    // Bounded: one connection carries at most this many requests in a test.
    for _ in 0..1000 {
        let Some(head_end) = fill_until(&mut stream, &mut pending, |bytes| {
            find(bytes, b"\r\n\r\n").map(|at| at + 4)
        }) else {
            return;
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_lowercase();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok());
        let chunked = head.contains("\r\ntransfer-encoding: chunked");
        let early = path.starts_with("/early");
        if early
            && stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                .is_err()
        {
            return;
        }
        let end = if chunked {
            fill_until(&mut stream, &mut pending, |bytes| {
                let body = &bytes[head_end..];
                let last = if body.starts_with(b"0\r\n") {
                    Some(0)
                } else {
                    find(body, b"\r\n0\r\n").map(|at| at + 2)
                };
                last.and_then(|at| {
                    find(&body[at..], b"\r\n\r\n").map(|end| head_end + at + end + 4)
                })
            })
        } else {
            let want = head_end + length.unwrap_or(0);
            fill_until(&mut stream, &mut pending, |bytes| {
                (bytes.len() >= want).then_some(want)
            })
        };
        let Some(end) = end else { return };
        let request: Vec<u8> = pending.drain(..end).collect();
        seen.lock().unwrap().push(request);
        let body_length = end - head_end;
        if early {
            continue;
        }
        // Answers after which the upstream closes the connection.
        let closing: Option<&[u8]> = if path.starts_with("/conn-close") {
            Some(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        } else if path.starts_with("/http10") {
            Some(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        } else if path.starts_with("/idle-close") {
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nidle")
        } else {
            None
        };
        if let Some(answer) = closing {
            let _ = stream.write_all(answer);
            // Long enough for the connection to be back in zoo's pool, idle.
            thread::sleep(Duration::from_millis(100));
            return;
        }
        if let Some(size) = path.strip_prefix("/big-") {
            let cut = size.starts_with("cut-");
            let size: usize = size.trim_start_matches("cut-").parse().unwrap_or(0);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
            let body = big_body(size);
            let sent = if cut { &body[..size / 2] } else { &body[..] };
            // The head alone first, then, a little later, pieces: the body comes after the
            // head has been read (else a body of 70 KB may come whole with it, and zoo has
            // nothing left to splice).
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
            for piece in sent.chunks(64 * 1024) {
                if stream.write_all(piece).is_err() {
                    return;
                }
            }
            if cut {
                return;
            }
            continue;
        }
        let answer = if path.starts_with("/chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
              5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n"
                .to_vec()
        } else if path.starts_with("/cl-te") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n"
                .to_vec()
        } else if path.starts_with("/bad-chunk-first") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n".to_vec()
        } else if path.starts_with("/bad-chunk-later") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n".to_vec()
        } else if path.starts_with("/unasked-101") {
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec()
        } else if path.starts_with("/204") {
            b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec()
        } else if path.starts_with("/close") {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil close");
            return;
        } else if path.starts_with("/ws") {
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            );
            echo(&mut stream, &pending);
            return;
        } else {
            let body = format!("echo {path} {body_length}");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// The body of `/big-N`: N bytes that differ from their neighbours' (no 251-byte period
/// lines up with a 64 KiB piece), so a byte out of place shows.
pub fn big_body(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Reads into `pending` until `done` finds where the message ends; `None` at EOF first.
fn fill_until(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = [0u8; 16 * 1024];
    // Bounded by the read timeout and by this count of reads.
    for _ in 0..100_000 {
        if let Some(end) = done(pending) {
            return Some(end);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => pending.extend_from_slice(&chunk[..read]),
        }
    }
    None
}

/// Echoes what follows a `101` until the tunnel closes.
fn echo(stream: &mut TcpStream, early: &[u8]) {
    if stream.write_all(early).is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    for _ in 0..10_000 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if stream.write_all(&chunk[..read]).is_err() {
                    return;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
