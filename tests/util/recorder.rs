//! An in-test HTTP/1.1 upstream that records the request heads zoo forwards and answers per a
//! script (`ok`, close without answering, or hold the connection silent), and a zoo routed to
//! such upstreams and to a closed port: for the raw-socket request tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::raw::IO_TIMEOUT;
use super::{READY_DEADLINE, Zoo};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `200 ok`, with a hop-by-hop header the proxy must drop.
    Ok,
    /// Read the head, then close without answering.
    Drop,
    /// Read the head, then hold the connection open without answering.
    Silent,
}

pub struct Recorder {
    pub port: u16,
    pub heads: Arc<Mutex<Vec<String>>>,
    /// How many of the next connections get `Reply::Drop` before the default reply.
    pub drops: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn start(default: Reply) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let drops = Arc::new(AtomicUsize::new(0));
        let (seen, to_drop) = (Arc::clone(&heads), Arc::clone(&drops));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let reply = if to_drop
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    Reply::Drop
                } else {
                    default
                };
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve_one(&mut stream, reply, &seen));
            }
        });
        Recorder { port, heads, drops }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve_one(stream: &mut TcpStream, reply: Reply, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if !matches!(stream.read(&mut byte), Ok(1)) {
            return;
        }
        head.push(byte[0]);
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    match reply {
        Reply::Ok => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nConnection: close, X-Resp-Secret\r\nX-Resp-Secret: 1\r\n\
                  Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
            );
        }
        Reply::Drop => {}
        Reply::Silent => {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
    }
}

/// zoo with routes to a recorder that answers `ok`, one that never answers, and a closed port.
pub fn raw_zoo() -> (Zoo, Recorder, Recorder) {
    raw_zoo_with("")
}

/// [`raw_zoo`] with `root` added to the top-level keys.
pub fn raw_zoo_with(root: &str) -> (Zoo, Recorder, Recorder) {
    let (ok, silent) = (Recorder::start(Reply::Ok), Recorder::start(Reply::Silent));
    let closed = super::free_port();
    let config = format!(
        // The raw exchanges read until zoo closes: keepalive_timeout closes an idle
        // connection after its response (client_header_timeout no longer does).
        "listen = \"127.0.0.1:0\"\n\
         client_header_timeout = \"1s\"\n\
         keepalive_timeout = \"1s\"\n\
         {root}\n\
         \n\
         [routes]\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n\
         \"/rec\" = {{ proxy = \"http://127.0.0.1:{ok}\" }}\n\
         \"/small\" = {{ proxy = \"http://127.0.0.1:{silent}\", max_body = 10 }}\n\
         \"/slow\" = {{ proxy = \"http://127.0.0.1:{silent}\", timeout = \"300ms\" }}\n\
         \"/refused\" = {{ proxy = \"http://127.0.0.1:{closed}\" }}\n",
        ok = ok.port,
        silent = silent.port,
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);
    (zoo, ok, silent)
}
