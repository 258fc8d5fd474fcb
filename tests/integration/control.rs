//! Driving a running zoo: `zoo reload` and SIGHUP swap the config or reject it with
//! file:line:col while the old one keeps serving; `zoo status` shows the apps and routes; the
//! optional admin listener serves the probes; the CLI says plainly when no zoo is running.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};

use crate::util::{self, Zoo};

const CLI_DEADLINE: Duration = Duration::from_secs(10);

/// One app, `web` (Python's http.server), routed at `/`.
const WEB_APP: &str = "listen = \"127.0.0.1:0\"\n\
                       [apps.web]\n\
                       command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
                       [routes]\n\
                       \"/\" = { app = \"web\" }\n";

fn config_with_body(body: &str) -> String {
    format!("listen = \"127.0.0.1:0\"\n[routes]\n\"/hello\" = {{ respond = \"{body}\" }}\n")
}

fn write_config(zoo: &Zoo, config: &str) {
    std::fs::write(zoo.dir().join("zoo.toml"), config).expect("rewrite zoo.toml");
}

#[test]
fn reload_swaps_the_config_and_rejects_an_invalid_one() {
    let zoo = Zoo::start(&config_with_body("v1"), &[]);
    zoo.assert_body("/hello", "v1");

    write_config(&zoo, &config_with_body("v2"));
    zoo.cli_ok(&["reload"], CLI_DEADLINE);
    // The reload has returned, so the new table is already the one serving.
    zoo.assert_body("/hello", "v2");

    write_config(
        &zoo,
        "listen = \"127.0.0.1:0\"\n[routes]\n\"/hello\" = { respnd = \"v3\" }\n",
    );
    let rejected = util::run_to_end(zoo.dir(), &["reload"], CLI_DEADLINE);
    assert_eq!(
        rejected.code(),
        Some(1),
        "zoo reload of a broken config\n{}",
        rejected.output
    );
    assert!(
        rejected.stderr.contains(
            "zoo.toml:3:14: error: routes.\"/hello\": unknown key `respnd`; did you mean `respond`?"
        ),
        "the CLI shows the error with line:col\n{}",
        rejected.output
    );
    zoo.assert_body("/hello", "v2");
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| line
            .contains("zoo.toml:3:14: error")),
        "zoo's log names the error with line:col\n{}",
        zoo.output()
    );

    write_config(&zoo, &config_with_body("v4"));
    kill(zoo.pid(), Signal::SIGHUP).expect("send SIGHUP");
    assert!(
        util::poll_until(CLI_DEADLINE, || zoo.get("/hello").body == b"v4"),
        "SIGHUP reloads the config\n{}",
        zoo.output()
    );
}

#[test]
fn status_shows_apps_and_routes() {
    let mut zoo = Zoo::start(WEB_APP, &[]);
    zoo.wait_ready("/", util::READY_DEADLINE);

    let status = util::run_to_end(zoo.dir(), &["status"], CLI_DEADLINE);
    assert_eq!(status.code(), Some(0), "zoo status\n{}", status.output);
    let app_line = status
        .stdout
        .lines()
        .find(|line| line.starts_with("web "))
        .unwrap_or_else(|| panic!("a line for app `web`\n{}", status.output));
    assert!(app_line.contains(" ready "), "web is ready: {app_line:?}");
    assert!(
        status.stdout.contains("-> app `web`"),
        "routes listed\n{}",
        status.output
    );

    let json = util::run_to_end(zoo.dir(), &["status", "--json"], CLI_DEADLINE);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("status --json is JSON ({e})\n{}", json.output));
    assert_eq!(parsed["apps"][0]["name"], "web", "{parsed}");
    assert_eq!(parsed["apps"][0]["ready"], true, "{parsed}");
}

#[test]
fn admin_listener_serves_probes_off_the_public_port() {
    let admin_port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\n[routes]\n\"/x\" = {{ respond = \"x\" }}\n"
    );
    let zoo = Zoo::start(&config, &[]);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let get = |target: &str| {
        util::http::get(admin, target)
            .unwrap_or_else(|e| panic!("GET {target} on admin: {e}\n{}", zoo.output()))
    };
    let livez = get("/livez");
    assert_eq!((livez.status, livez.text().as_str()), (200, "ok\n"));
    let readyz = get("/readyz");
    assert_eq!(
        (readyz.status, readyz.text().as_str()),
        (200, "{\"status\":\"ok\",\"apps\":{}}\n")
    );
    let status = get("/status");
    assert_eq!(status.status, 200, "{}", status.text());
    let parsed: serde_json::Value = serde_json::from_str(&status.text())
        .unwrap_or_else(|e| panic!("/status is not JSON: {e}: {}", status.text()));
    assert_eq!(
        (
            &parsed["listen"],
            &parsed["apps"],
            &parsed["routes"],
            &parsed["config"]
        ),
        (
            &serde_json::json!([zoo.addr().to_string()]),
            &serde_json::json!([]),
            &serde_json::json!(["/x               respond 200 \"x\""]),
            &serde_json::json!(zoo.dir().join("zoo.toml"))
        ),
        "{parsed}"
    );
    assert_eq!(get("/nope").status, 404);
    // The public port answers only what routes name.
    assert_eq!(zoo.get("/livez").status, 404, "{}", zoo.output());
}

#[test]
fn admin_post_reload_with_the_token_swaps_the_config() {
    let admin_port = util::free_port();
    let config = |body: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\n\
             admin_token = \"s3cret\"\n\
             [routes]\n\"/hello\" = {{ respond = \"{body}\" }}\n"
        )
    };
    let zoo = Zoo::start(&config("v1"), &[]);
    zoo.assert_body("/hello", "v1");
    write_config(&zoo, &config("v2"));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let raw = util::http::exchange(
        admin,
        b"POST /reload HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n",
        CLI_DEADLINE,
    )
    .unwrap_or_else(|e| panic!("POST /reload on admin: {e}\n{}", zoo.output()));
    let answer = util::http::parse(&raw).unwrap();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "reloaded\n"),
        "{}",
        zoo.output()
    );
    // The answer came after the swap: the new table is the one serving.
    zoo.assert_body("/hello", "v2");
}

#[test]
fn cli_says_when_no_zoo_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let status = util::run_to_end(dir.path(), &["status"], CLI_DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", status.output);
    assert!(
        status.stderr.contains("no zoo is running at"),
        "{}",
        status.output
    );
}

#[test]
fn metrics_are_served_on_admin_and_where_a_route_names_them() {
    let admin_port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\n\
         [apps.web]\ncommand = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
         [routes]\n\"/metrics\" = {{ builtin = \"metrics\" }}\n\"/\" = {{ app = \"web\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/", util::READY_DEADLINE);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let scraped = util::http::get(admin, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics on admin: {e}\n{}", zoo.output()));
    assert_eq!(scraped.status, 200);
    let text = scraped.text();
    for needle in [
        "zoo_app_ready{app=\"web\"} 1\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        // wait_ready's requests, counted by route, method class and status class.
        "zoo_requests_total{route=\"/\",method=\"GET\",status=\"2xx\"} ",
        "zoo_request_duration_seconds_count{route=\"/\"} ",
    ] {
        assert!(
            text.contains(needle),
            "admin /metrics has {needle:?}\n{text}"
        );
    }
    let public = zoo.get("/metrics");
    assert_eq!(public.status, 200, "{}", zoo.output());
    assert!(
        public.text().contains("zoo_app_ready{app=\"web\"} 1\n"),
        "{}",
        public.text()
    );
}

#[test]
fn shutdown_delay_keeps_serving_while_readyz_says_draining() {
    let admin_port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\nshutdown_delay = \"2s\"\n\
         [routes]\n\"/x\" = {{ respond = \"still here\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let readyz =
        || util::http::get(admin, "/readyz").map(|response| (response.status, response.text()));
    assert_eq!(readyz().unwrap().0, 200);

    kill(zoo.pid(), Signal::SIGTERM).expect("send SIGTERM");
    assert!(
        util::poll_until(CLI_DEADLINE, || readyz()
            .is_ok_and(|(status, _)| status == 503)),
        "/readyz turns 503 at SIGTERM\n{}",
        zoo.output()
    );
    assert_eq!(
        readyz().unwrap().1,
        "{\"status\":\"draining\",\"apps\":{}}\n"
    );
    zoo.assert_body("/x", "still here");
    let status = zoo
        .wait_exit(CLI_DEADLINE)
        .unwrap_or_else(|| panic!("zoo exits after the delay\n{}", zoo.output()));
    assert_eq!(status.code(), Some(0), "{}", zoo.output());
}

#[test]
fn restart_stop_start_and_logs_drive_one_app() {
    let mut zoo = Zoo::start(WEB_APP, &[]);
    zoo.wait_ready("/", util::READY_DEADLINE);
    let pid_of_web = |zoo: &Zoo| {
        let json = util::run_to_end(zoo.dir(), &["status", "--json"], CLI_DEADLINE);
        let parsed: serde_json::Value = serde_json::from_str(&json.stdout)
            .unwrap_or_else(|e| panic!("status --json ({e})\n{}", json.output));
        (
            parsed["apps"][0]["pid"].as_u64(),
            parsed["apps"][0]["state"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (first_pid, _) = pid_of_web(&zoo);

    let restart = util::run_to_end(zoo.dir(), &["restart", "web"], util::READY_DEADLINE);
    assert_eq!(
        restart.code(),
        Some(0),
        "{}\n{}",
        restart.output,
        zoo.output()
    );
    assert!(
        restart.stdout.starts_with("web restarted (pid "),
        "{}",
        restart.output
    );
    let (second_pid, state) = pid_of_web(&zoo);
    assert_ne!(first_pid, second_pid, "a new instance");
    assert_eq!(state, "ready");
    assert_eq!(
        zoo.get("/").status,
        200,
        "served right after `zoo restart` returns"
    );

    let stop = util::run_to_end(zoo.dir(), &["stop", "web"], CLI_DEADLINE);
    assert_eq!(stop.code(), Some(0), "{}", stop.output);
    assert_eq!(pid_of_web(&zoo), (None, "stopped".to_owned()));
    assert!(
        zoo.try_status().is_none(),
        "a stopped app does not take zoo down\n{}",
        zoo.output()
    );

    let start = util::run_to_end(zoo.dir(), &["start", "web"], util::READY_DEADLINE);
    assert_eq!(start.code(), Some(0), "{}", start.output);
    assert_eq!(zoo.get("/").status, 200);

    let logs = util::run_to_end(zoo.dir(), &["logs", "web"], CLI_DEADLINE);
    assert_eq!(logs.code(), Some(0), "{}", logs.output);
    // http.server's access lines (its stderr) are among the kept lines.
    assert!(
        logs.stdout.contains("\"GET / HTTP/1.1\" 200"),
        "{}",
        logs.output
    );

    let unknown = util::run_to_end(zoo.dir(), &["restart", "nope"], CLI_DEADLINE);
    assert_eq!(unknown.code(), Some(1), "{}", unknown.output);
    assert!(unknown.stderr.contains("`nope`"), "{}", unknown.output);
}

#[test]
fn access_log_writes_one_line_per_request() {
    let config = "listen = \"127.0.0.1:0\"\naccess_log = \"common\"\n\
                  [routes]\n\"/x\" = { respond = \"hi\" }\n";
    let mut zoo = Zoo::start(config, &[]);
    assert_eq!(zoo.get("/x/y?q=1").status, 200);
    assert_eq!(zoo.get("/nowhere").status, 404);
    assert_eq!(zoo.get("/x/y?q=1").status, 200);
    // Stopping zoo flushes its access log: every line that will ever be written is in.
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    let access: Vec<String> = zoo
        .all_lines(CLI_DEADLINE)
        .into_iter()
        .filter(|(stream, line)| *stream == util::Stream::Stdout && line.contains(" HTTP/1.1\" "))
        .map(|(_, line)| line)
        .collect();
    let count = |request: &str| access.iter().filter(|line| line.contains(request)).count();
    assert_eq!(
        (
            access.len(),
            count("\"GET /x/y?q=1 HTTP/1.1\" 200 2 route=/x upstream=-"),
            count("\"GET /nowhere HTTP/1.1\" 404 ")
        ),
        (3, 2, 1),
        "one access line per request: {access:#?}\n{}",
        zoo.output()
    );
}

#[test]
fn json_log_format_makes_every_line_one_object() {
    let config = "listen = \"127.0.0.1:0\"\n\
                  [apps.echo]\n\
                  command = [\"sh\", \"-c\", \"echo 'hello \\\"quoted\\\"'; exec sleep 600\"]\n\
                  ready = { exec = \"true\" }\n";
    let mut zoo = Zoo::start_wrapped(&["env", "ZOO_LOG_FORMAT=json"], config, &[]);
    let parsed = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok();
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| parsed(line).is_some_and(|value| {
            value["source"] == "echo"
                && value["stream"] == "stdout"
                && value["message"] == "hello \"quoted\""
        })),
        "the app's line as JSON with its name in `source`\n{}",
        zoo.output()
    );
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| parsed(line).is_some_and(|value| {
            value["source"] == "zoo"
                && value["level"] == "INFO"
                && value["message"]
                    .as_str()
                    .is_some_and(|message| message.starts_with("listening on http://"))
        })),
        "zoo's own line as JSON\n{}",
        zoo.output()
    );
    // Through the shutdown too: every line zoo ever wrote, on either stream.
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    let lines = zoo.all_lines(CLI_DEADLINE);
    assert!(lines.len() >= 5, "{}", zoo.output());
    for (stream, line) in &lines {
        assert!(
            parsed(line).is_some_and(|value| value.is_object()
                && value["source"].is_string()
                && value["message"].is_string()),
            "{stream:?} line is not one JSON object with source and message: {line:?}\n{}",
            zoo.output()
        );
    }
}

/// Answers every GET with its `NAME` and `FLAVOR` environment variables.
const ENV_APP: &str = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    \
    def do_GET(self):\n        \
        body = (os.environ.get('NAME', '') + ' ' + os.environ.get('FLAVOR', '')).encode()\n        \
        self.send_response(200)\n        \
        self.send_header('Content-Length', str(len(body)))\n        \
        self.end_headers()\n        \
        self.wfile.write(body)\n    \
    def log_message(self, *args):\n        \
        pass\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";

/// A config of env apps, each `(name, flavor, extra lines)`, with a route `/NAME` to each.
fn env_apps_config(apps: &[(&str, &str, &str)]) -> String {
    let mut config = "listen = \"127.0.0.1:0\"\n".to_owned();
    for (name, flavor, extra) in apps {
        config.push_str(&format!(
            "[apps.{name}]\ncommand = \"python3 env_app.py\"\n\
             env = {{ NAME = \"{name}\", FLAVOR = \"{flavor}\" }}\n{extra}"
        ));
    }
    config.push_str("[routes]\n");
    for (name, _, _) in apps {
        config.push_str(&format!("\"/{name}\" = {{ app = \"{name}\" }}\n"));
    }
    config
}

/// Each app's (pid, port) by name, from `zoo status --json`.
fn pids_and_ports(zoo: &Zoo) -> std::collections::HashMap<String, (Option<u64>, u64)> {
    let json = util::run_to_end(zoo.dir(), &["status", "--json"], CLI_DEADLINE);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e})\n{}", json.output));
    parsed["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|app| {
            (
                app["name"].as_str().unwrap_or_default().to_owned(),
                (app["pid"].as_u64(), app["port"].as_u64().unwrap_or(0)),
            )
        })
        .collect()
}

#[test]
fn reload_adds_removes_and_restarts_changed_apps_only() {
    const REPLACE: &str = "restart_strategy = \"replace\"\n";
    let before = env_apps_config(&[
        ("keep", "same", ""),
        ("gone", "old", ""),
        ("change", "old", ""),
        ("swap", "old", REPLACE),
    ]);
    let mut zoo = Zoo::start(&before, &[("env_app.py", ENV_APP)]);
    for name in ["keep", "gone", "change", "swap"] {
        zoo.wait_ready(&format!("/{name}"), util::READY_DEADLINE);
    }
    zoo.assert_body("/change", "change old");
    let old = pids_and_ports(&zoo);
    let pid = |apps: &std::collections::HashMap<String, (Option<u64>, u64)>, name: &str| {
        apps.get(name)
            .and_then(|(pid, _)| *pid)
            .unwrap_or_else(|| panic!("{name} has a pid: {apps:?}"))
    };

    write_config(
        &zoo,
        &env_apps_config(&[
            ("added", "fresh", ""),
            ("keep", "same", ""),
            ("change", "new", ""),
            ("swap", "new", REPLACE),
        ]),
    );
    zoo.cli_ok(&["reload"], util::READY_DEADLINE);
    // The reload has returned: the new apps serve, the removed one has no route.
    zoo.assert_body("/added", "added fresh");
    zoo.assert_body("/change", "change new");
    zoo.assert_body("/swap", "swap new");
    zoo.assert_body("/keep", "keep same");
    assert_eq!(zoo.get("/gone").status, 404, "{}", zoo.output());

    let new = pids_and_ports(&zoo);
    assert!(!new.contains_key("gone"), "{new:?}");
    let gone_pid = i32::try_from(pid(&old, "gone")).unwrap();
    assert!(
        util::poll_until(CLI_DEADLINE, || !util::process_alive(gone_pid)),
        "the removed app's process is gone\n{}",
        zoo.output()
    );
    assert_eq!(
        pid(&new, "keep"),
        pid(&old, "keep"),
        "unchanged: not touched"
    );
    assert_ne!(
        pid(&new, "change"),
        pid(&old, "change"),
        "changed env: restarted"
    );
    assert_ne!(
        pid(&new, "swap"),
        pid(&old, "swap"),
        "changed env: replaced"
    );
    assert_ne!(new["swap"].1, old["swap"].1, "replaced on a fresh port");
    let swap_pid = i32::try_from(pid(&old, "swap")).unwrap();
    assert!(
        util::poll_until(CLI_DEADLINE, || !util::process_alive(swap_pid)),
        "the replaced instance is stopped\n{}",
        zoo.output()
    );
    let _ = zoo.terminate();
}
