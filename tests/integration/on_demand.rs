//! `start = "on-demand"` (issue 18): an app that is not started at boot, is started by the
//! first request to its route (which waits for it, as for a restart), and is stopped again
//! after `idle_stop` without requests (an open WebSocket counts as one); an app that depends on one starts it, and keeps it
//! from idling while it runs.

use std::time::Duration;

use super::websocket::{ws_open, ws_recv, ws_send};
use crate::util::{self, Zoo};

const APP_PY: &str = include_str!("replicas/app.py");
const FASTAPI_PY: &str = include_str!("../util/fastapi/app.py");
const CLI_DEADLINE: Duration = Duration::from_secs(30);

fn row(zoo: &Zoo) -> serde_json::Value {
    util::status_json(zoo.dir(), CLI_DEADLINE)["apps"][0].take()
}

#[test]
fn on_demand_app_starts_at_the_first_request_and_stops_after_idle_stop() {
    util::require_uvicorn();
    let config = "listen = \"127.0.0.1:0\"\n\
         [apps.web]\n\
         command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --log-level warning\"\n\
         start = \"on-demand\"\n\
         idle_stop = \"2s\"\n\
         ready = { http = \"/ping\" }\n\
         [routes]\n\
         \"/health\" = { builtin = \"health\" }\n\
         \"/\" = { app = \"web\" }\n";
    let zoo = Zoo::start(config, &[("app.py", APP_PY)]);
    // zoo is up (its own route answers) and the app is idle: no process.
    assert!(
        util::poll_until(Duration::from_secs(10), || http_status(&zoo, "/health")
            == Some(200)),
        "an idle on-demand app does not make zoo unhealthy\n{}",
        zoo.output()
    );
    let idle = row(&zoo);
    assert_eq!(
        (idle["state"].as_str(), idle["pid"].as_u64()),
        (Some("idle"), None),
        "{idle}"
    );
    let table = util::run_to_end(zoo.dir(), &["status"], CLI_DEADLINE).stdout;
    assert!(table.contains("idle (starts on demand)"), "{table}");

    // The first request starts it and gets its answer.
    let first = zoo.get("/a");
    assert_eq!(first.status, 200, "{}\n{}", first.text(), zoo.output());
    let first_pid = first.text().split_whitespace().next().map(str::to_owned);
    let running = row(&zoo);
    assert_eq!(running["state"], "ready", "{running}");

    // After 2 s without requests it is stopped.
    assert!(
        util::poll_until(Duration::from_secs(15), || {
            let now = row(&zoo);
            now["state"] == "idle" && now["pid"].is_null()
        }),
        "stopped after idle_stop\n{}",
        zoo.output()
    );
    let pid = first_pid
        .as_deref()
        .and_then(|pid| pid.parse::<i32>().ok())
        .expect("a pid");
    assert!(
        util::poll_until(Duration::from_secs(5), || !util::process_alive(pid)),
        "the process is gone\n{}",
        zoo.output()
    );

    // The next request starts it again.
    let again = zoo.get("/b");
    assert_eq!(again.status, 200, "{}\n{}", again.text(), zoo.output());
    let again_pid = again.text().split_whitespace().next().map(str::to_owned);
    assert_ne!(again_pid, first_pid, "a new process");
}

/// The row of the app `name` in `zoo status --json`.
fn row_of(zoo: &Zoo, name: &str) -> serde_json::Value {
    let status = util::status_json(zoo.dir(), CLI_DEADLINE);
    status["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no app {name} in {status}"))
}

#[test]
fn dependent_of_an_on_demand_app_starts_it_and_keeps_it_from_idling() {
    util::require_uvicorn();
    let uvicorn = "command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --log-level warning\"\n\
         start = \"on-demand\"\n\
         ready = { http = \"/ping\" }\n";
    // `back` idles after 1 s without requests, but `front`, which depends on it and talks to
    // it directly (no request of zoo's), runs for 4 s after its last request.
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         [apps.back]\n{uvicorn}idle_stop = \"1s\"\n\
         [apps.front]\n{uvicorn}idle_stop = \"4s\"\ndepends_on = [\"back\"]\n\
         [routes]\n\
         \"/\" = {{ app = \"front\" }}\n"
    );
    let zoo = Zoo::start(&config, &[("app.py", APP_PY)]);
    assert_eq!(row_of(&zoo, "back")["state"], "idle", "{}", zoo.output());

    let first = zoo.get("/a");
    assert_eq!(first.status, 200, "{}\n{}", first.text(), zoo.output());
    let back = row_of(&zoo, "back");
    assert_eq!(back["state"], "ready", "front's start started back: {back}");
    let back_pid = back["pid"].as_u64();
    // Well past back's own idle_stop, front still runs: back must still be up.
    let watched_until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < watched_until {
        let back = row_of(&zoo, "back");
        assert!(
            back["state"] == "ready" && back["pid"].as_u64() == back_pid,
            "back stopped while front ran: {back}\n{}",
            zoo.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(row_of(&zoo, "front")["state"], "ready");

    // front idles, then back, whose last dependent stopped.
    assert!(
        util::poll_until(Duration::from_secs(20), || {
            ["front", "back"]
                .iter()
                .all(|name| row_of(&zoo, name)["state"] == "idle")
        }),
        "both idle again\n{}",
        zoo.output()
    );
}

#[test]
fn on_demand_app_with_an_open_websocket_does_not_idle() {
    util::require_uvicorn();
    let config = "listen = \"127.0.0.1:0\"\n\
         [apps.py]\n\
         command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --ws wsproto --log-level warning\"\n\
         start = \"on-demand\"\n\
         idle_stop = \"1s\"\n\
         ready = { http = \"/ping\" }\n\
         [routes]\n\
         \"/\" = { app = \"py\" }\n";
    let zoo = Zoo::start(config, &[("app.py", FASTAPI_PY)]);
    // The handshake itself starts the app.
    let mut tunnel = ws_open(zoo.addr());
    ws_send(&mut tunnel, 0x1, b"first");
    assert_eq!(ws_recv(&mut tunnel), (0x1, b"first".to_vec()));
    let pid = row(&zoo)["pid"].as_u64();
    assert!(pid.is_some(), "{}", zoo.output());
    // Three idle_stops with the tunnel open and silent: still the same process.
    let watched_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watched_until {
        let now = row(&zoo);
        assert!(
            now["state"] == "ready" && now["pid"].as_u64() == pid,
            "stopped with a WebSocket open: {now}\n{}",
            zoo.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    ws_send(&mut tunnel, 0x1, b"still there");
    assert_eq!(ws_recv(&mut tunnel), (0x1, b"still there".to_vec()));
    drop(tunnel);
    assert!(
        util::poll_until(Duration::from_secs(15), || row(&zoo)["state"] == "idle"),
        "idle once the tunnel closed\n{}",
        zoo.output()
    );
}

fn http_status(zoo: &Zoo, target: &str) -> Option<u16> {
    util::http::get(zoo.addr(), target)
        .ok()
        .map(|response| response.status)
}
