//! Errors zoo answers itself: an app that is not answering (502, or 503 once readiness gating
//! waits for it) with a body naming the app, and a malformed request (400) that does not stop
//! zoo from serving the next connection.

use crate::util::{self, READY_DEADLINE, Zoo};

#[test]
fn app_down_gives_502_naming_the_app() {
    // The app runs but never listens on its port. Today zoo forwards and gets a refused
    // connection: 502. With readiness gating (DESIGN.md) the request waits for the app, which
    // never becomes ready, and gets a 503 with Retry-After instead. Both name the app.
    let port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [apps.dead]\n\
         command = \"sleep 600\"\n\
         port = {port}\n\
         \n\
         [routes]\n\
         \"/x\" = {{ app = \"dead\" }}\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);

    let response = zoo.get("/x/y");
    let body = response.text();
    assert!(
        matches!(response.status, 502 | 503),
        "GET /x/y to an app that does not listen: expected 502 or 503, got {} {body:?}\n{}",
        response.status,
        zoo.output()
    );
    assert!(
        body.contains("dead"),
        "the error body should name the app `dead`: {body:?}\n{}",
        zoo.output()
    );
    assert!(
        body.trim_end().lines().count() == 1,
        "the error body should be one line: {body:?}\n{}",
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
