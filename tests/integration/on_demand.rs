//! `start = "on-demand"` (issue 18): an app that is not started at boot, is started by the
//! first request to its route (which waits for it, as for a restart), and is stopped again
//! after `idle_stop` without requests.

use std::time::Duration;

use crate::util::{self, Zoo};

const APP_PY: &str = include_str!("replicas/app.py");
const CLI_DEADLINE: Duration = Duration::from_secs(30);

fn row(zoo: &Zoo) -> serde_json::Value {
    let run = util::run_to_end(zoo.dir(), &["status", "--json"], CLI_DEADLINE);
    let mut status: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("zoo status --json ({e})\n{}", run.output));
    status["apps"][0].take()
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

fn http_status(zoo: &Zoo, target: &str) -> Option<u16> {
    util::http::get(zoo.addr(), target)
        .ok()
        .map(|response| response.status)
}
