//! zoo's keep-alive pools of upstream connections, seen from a raw upstream that counts the
//! connections it accepts: requests from many client connections share one upstream
//! connection, and a connection the upstream closed (at once, or while it sat idle) is never
//! used again, so even a POST, which zoo never sends twice, gets its 200; and a GET that races
//! the upstream's idle close is sent again on a fresh connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::util::{self, READY_DEADLINE, Zoo};

/// How the counting upstream treats a connection after answering a request on it.
#[derive(Clone, Copy)]
enum AfterResponse {
    KeepOpen,
    /// Answers with `Connection: close`, then closes.
    Close,
    /// Keeps it open, but closes it once idle for this long (uvicorn does so after 5 s).
    CloseWhenIdle(Duration),
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    requests: AtomicUsize,
    closed_idle: AtomicUsize,
}

/// An HTTP/1.1 upstream answering every request `200 ok`, counting what it sees. Returns its
/// port; it serves until the test process ends.
fn start_counting_upstream(after: AfterResponse, counts: Arc<Counts>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(stream) = stream else { continue };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let counts = Arc::clone(&counts);
            thread::spawn(move || serve(stream, after, &counts));
        }
    });
    port
}

fn serve(stream: TcpStream, after: AfterResponse, counts: &Counts) {
    let idle_limit = match after {
        AfterResponse::CloseWhenIdle(idle) => idle,
        _ => Duration::from_secs(30),
    };
    stream.set_read_timeout(Some(idle_limit)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..10_000 {
        let mut content_length = 0;
        let mut line = String::new();
        let mut head_lines = 0;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) => {
                    // Idle past the limit with no request in progress: closed, then counted.
                    if head_lines == 0 {
                        let _ = writer.shutdown(std::net::Shutdown::Both);
                        counts.closed_idle.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
            }
            head_lines += 1;
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).unwrap();
        counts.requests.fetch_add(1, Ordering::SeqCst);
        let close = matches!(after, AfterResponse::Close);
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{connection}\r\nok");
        writer.write_all(response.as_bytes()).unwrap();
        if close {
            return;
        }
    }
}

fn zoo_to(port: u16) -> Zoo {
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [routes]\n\
         \"/\" = {{ proxy = \"http://127.0.0.1:{port}\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/", READY_DEADLINE);
    zoo
}

/// `POST /upload` with a 5-byte body on a new client connection: its status and body.
fn post(zoo: &Zoo) -> (u16, String) {
    exchange(
        zoo,
        "POST /upload HTTP/1.1\r\nHost: z\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
}

/// `GET /page` on a new client connection: its status and body.
fn get(zoo: &Zoo) -> (u16, String) {
    exchange(
        zoo,
        "GET /page HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n",
    )
}

fn exchange(zoo: &Zoo, request: &str) -> (u16, String) {
    let response = util::http::parse(&zoo.send_raw(request.as_bytes())).unwrap();
    (response.status, response.text())
}

#[test]
fn requests_from_many_client_connections_share_one_upstream_connection() {
    let counts = Arc::new(Counts::default());
    let zoo = zoo_to(start_counting_upstream(
        AfterResponse::KeepOpen,
        Arc::clone(&counts),
    ));
    for _ in 0..50 {
        zoo.assert_body("/", "ok");
        assert_eq!(post(&zoo), (200, "ok".to_owned()), "{}", zoo.output());
    }
    // wait_ready's request came first, on the same pool.
    assert_eq!(counts.requests.load(Ordering::SeqCst), 101);
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        1,
        "101 sequential requests should all go on one pooled upstream connection\n{}",
        zoo.output()
    );
}

#[test]
fn a_connection_the_upstream_closes_after_its_response_is_not_reused() {
    let counts = Arc::new(Counts::default());
    let zoo = zoo_to(start_counting_upstream(
        AfterResponse::Close,
        Arc::clone(&counts),
    ));
    for round in 0..20 {
        assert_eq!(
            post(&zoo),
            (200, "ok".to_owned()),
            "POST {round}\n{}",
            zoo.output()
        );
    }
    assert_eq!(counts.requests.load(Ordering::SeqCst), 21);
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 21);
}

#[test]
fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    let counts = Arc::new(Counts::default());
    let zoo = zoo_to(start_counting_upstream(
        AfterResponse::CloseWhenIdle(Duration::from_millis(100)),
        Arc::clone(&counts),
    ));
    for round in 1..=5 {
        // The upstream closes the pooled connection; then the next request comes.
        assert!(
            util::poll_until(Duration::from_secs(5), || {
                counts.closed_idle.load(Ordering::SeqCst) == round
            }),
            "the upstream did not close its idle connection {round}"
        );
        // The scenario is a connection closed a while before the next request, as uvicorn
        // closes its idle ones; a request racing the close itself is the resend's business.
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            post(&zoo),
            (200, "ok".to_owned()),
            "POST after idle close {round}\n{}",
            zoo.output()
        );
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 6);
}

#[test]
fn a_get_racing_the_upstreams_idle_close_is_resent_and_answered() {
    let counts = Arc::new(Counts::default());
    let zoo = zoo_to(start_counting_upstream(
        AfterResponse::CloseWhenIdle(Duration::from_millis(100)),
        Arc::clone(&counts),
    ));
    const ROUNDS: usize = 10;
    for round in 1..=ROUNDS {
        assert!(
            util::poll_until(Duration::from_secs(5), || {
                counts.closed_idle.load(Ordering::SeqCst) == round
            }),
            "the upstream did not close its idle connection {round}"
        );
        // No pause: the GET races the close, and may be written on the connection just
        // closed; nothing of it was answered, so zoo sends it again on a fresh one.
        assert_eq!(
            get(&zoo),
            (200, "ok".to_owned()),
            "GET racing idle close {round}\n{}",
            zoo.output()
        );
    }
    assert_eq!(counts.requests.load(Ordering::SeqCst), ROUNDS + 1);
}
