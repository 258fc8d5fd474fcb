//! Errors zoo answers itself: an app that never gets ready (503 with `Retry-After` after the
//! route's `wait`, and the `health` built-in says so), one that refuses connections after it
//! was ready (502), each with a body naming the app; and a malformed request (400) that does
//! not stop zoo from serving the next connection.

use std::time::{Duration, Instant};

use crate::util::{self, READY_DEADLINE, Zoo};

/// How long the `app` routes below wait for their app: short, so the tests are quick, yet long
/// enough that an answer which did not wait is told apart.
const WAIT: Duration = Duration::from_millis(500);
/// Upper bound of a request that waits [`WAIT`]: well under the default `wait` (10 s), so an
/// answer after the default still fails, with room for a busy machine.
const WAITED_AT_MOST: Duration = Duration::from_secs(5);

/// zoo with the app `dead` (command `command`, on a known port, ready when it accepts a TCP
/// connection: the default, written out) at `/x`, its route waiting
/// [`WAIT`], the `health` built-in at `/health` and a `respond` route at `/ok`.
fn zoo_with_app(command: &str) -> Zoo {
    let port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [apps.dead]\n\
         command = {command}\n\
         port = {port}\n\
         ready = {{ tcp = true }}\n\
         \n\
         [routes]\n\
         \"/x\" = {{ app = \"dead\", wait = \"{}ms\" }}\n\
         \"/health\" = {{ builtin = \"health\" }}\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n",
        WAIT.as_millis()
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);
    zoo
}

/// Asserts that `response` is zoo's own one-line text/plain error with `status`, naming `dead`.
fn assert_error_naming_the_app(zoo: &Zoo, response: &util::Response, status: u16) {
    let body = response.text();
    assert_eq!(
        response.status,
        status,
        "GET /x/y: {body:?}\n{}",
        zoo.output()
    );
    assert!(
        body.contains("dead") && body.trim_end().lines().count() == 1,
        "the error body should be one line naming the app `dead`: {body:?}\n{}",
        zoo.output()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "the error should be text/plain: {:?}\n{}",
        response.headers,
        zoo.output()
    );
}

/// `GET target` and how long it took.
fn timed_get(zoo: &Zoo, target: &str) -> (util::Response, Duration) {
    let started = Instant::now();
    let response = zoo.get(target);
    (response, started.elapsed())
}

#[test]
fn an_app_that_never_gets_ready_gets_503_with_retry_after_once_the_wait_is_over() {
    // The app runs but never listens on its port: never ready.
    let zoo = zoo_with_app("\"sleep 600\"");
    let (response, took) = timed_get(&zoo, "/x/y");
    assert_error_naming_the_app(&zoo, &response, 503);
    assert!(
        response
            .header("retry-after")
            .is_some_and(|value| value.parse::<u64>().is_ok()),
        "503 needs a Retry-After in seconds: {:?}\n{}",
        response.headers,
        zoo.output()
    );
    assert!(
        (WAIT..WAITED_AT_MOST).contains(&took),
        "the request should wait the route's {WAIT:?}, took {took:?}\n{}",
        zoo.output()
    );
}

#[test]
fn health_builtin_answers_503_naming_an_app_that_is_not_ready() {
    let zoo = zoo_with_app("\"sleep 600\"");
    let health = zoo.get("/health");
    let parsed: serde_json::Value = serde_json::from_str(&health.text())
        .unwrap_or_else(|e| panic!("/health is not JSON: {e}: {:?}", health.text()));
    assert_eq!(
        (health.status, &parsed["status"], &parsed["apps"]["dead"]),
        (
            503,
            &serde_json::json!("unavailable"),
            &serde_json::json!("not ready")
        ),
        "{parsed}\n{}",
        zoo.output()
    );
}

#[test]
fn an_app_that_refuses_connections_after_readiness_gets_502_naming_the_app() {
    // The app accepts the readiness probe's connection, then closes its listener and lives on:
    // ready, but every later connection is refused.
    let zoo = zoo_with_app(
        "[\"python3\", \"-c\", \"import os, socket, time\\n\
         s = socket.create_server(('127.0.0.1', int(os.environ['PORT'])))\\n\
         s.accept()[0].close()\\n\
         s.close()\\n\
         print('closed', flush=True)\\n\
         time.sleep(600)\"]",
    );
    assert!(
        zoo.wait_for_line(READY_DEADLINE, |_, line| line
            .contains("dead ready on port")),
        "{}",
        zoo.output()
    );
    assert!(
        zoo.wait_for_line(READY_DEADLINE, |_, line| line.contains("dead | closed")),
        "{}",
        zoo.output()
    );
    let (response, took) = timed_get(&zoo, "/x/y");
    assert_error_naming_the_app(&zoo, &response, 502);
    // A request without a body waits for the app after a refusal, up to the route's `wait`.
    assert!(
        (WAIT..WAITED_AT_MOST).contains(&took),
        "a refused GET should wait the route's {WAIT:?}, took {took:?}\n{}",
        zoo.output()
    );
}

#[test]
fn garbage_request_gets_400_and_next_request_works() {
    let config = "listen = \"127.0.0.1:0\"\n\
                  \n\
                  [routes]\n\
                  \"/ok\" = { respond = \"ok\\n\" }\n";
    let mut zoo = Zoo::start(config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);

    // A TLS record header on a plain-HTTP port, then junk.
    let raw = zoo.send_raw(b"\x16\x03\x01garbage\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "garbage should get `HTTP/1.1 400`, got {:?}\n{}",
        String::from_utf8_lossy(&raw),
        zoo.output()
    );
    // A path that climbs above the root is a client error too.
    let climbing = zoo.get("/../../etc/passwd");
    assert_eq!(
        climbing.status,
        400,
        "GET /../../etc/passwd: {:?}\n{}",
        climbing.text(),
        zoo.output()
    );

    zoo.assert_body("/ok", "ok\n");
    assert!(zoo.try_status().is_none(), "zoo exited\n{}", zoo.output());
}
