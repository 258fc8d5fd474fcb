//! What the platform sees of a running zoo (issue 8): `/metrics` read by a real Prometheus
//! parser (PyPI `prometheus_client`) after a bounded load, the counters equal to the requests
//! sent; the restart counter and `/readyz` following an app that is killed; `/livez` steady.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::load::Load;
use crate::util::{self, READY_DEADLINE, Zoo};

const DEADLINE: Duration = Duration::from_secs(30);

/// Every sample of `text`, as `name{label="value",...}` -> value, parsed by prometheus_client.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    const PARSER: &str = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}=\"{v}\"' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = Command::new(util::venv_bin().join("python"))
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse:\n{text}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(sample, value)| (sample.to_owned(), value.parse().unwrap()))
        .collect()
}

fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let response = util::http::get(admin, "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200);
    parse_metrics(&response.text())
}

#[test]
fn metrics_count_every_request_and_follow_an_app_through_a_crash() {
    util::require_uvicorn();
    let admin_port = util::free_port();
    let main_py = std::fs::read_to_string(util::repo_root().join("examples/zoo/main.py")).unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\n\
         [apps.python]\ncommand = \"uvicorn main:app --host 127.0.0.1 --port $PORT\"\n\
         ready = {{ http = \"/\" }}\nbackoff = {{ first = \"500ms\" }}\n\
         [routes]\n\"/counted\" = {{ app = \"python\" }}\n\"/go\" = {{ respond = \"go\" }}\n\
         \"/\" = {{ app = \"python\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[("main.py", &main_py)]);
    zoo.wait_ready("/", READY_DEADLINE);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));

    let app_load = Load::start(zoo.addr(), "/counted/x", 400, 8, DEADLINE);
    let zoo_load = Load::start(zoo.addr(), "/go", 300, 8, DEADLINE);
    let (app_outcomes, zoo_outcomes) = (app_load.finish(), zoo_load.finish());
    assert!(
        app_outcomes
            .iter()
            .chain(&zoo_outcomes)
            .all(|outcome| outcome.ok())
    );
    for _ in 0..5 {
        assert_eq!(zoo.get("/nowhere/../../x").status, 400);
    }

    let samples = scrape(admin);
    let sample = |key: &str| {
        samples
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
    };
    assert_eq!(
        sample("zoo_requests_total{method=\"GET\",route=\"/counted\",status=\"2xx\"}"),
        400.0
    );
    assert_eq!(
        sample("zoo_requests_total{method=\"GET\",route=\"/go\",status=\"2xx\"}"),
        300.0
    );
    assert_eq!(
        sample("zoo_requests_total{method=\"GET\",route=\"\",status=\"4xx\"}"),
        5.0
    );
    assert_eq!(
        sample("zoo_request_duration_seconds_count{route=\"/counted\"}"),
        400.0
    );
    assert_eq!(
        sample("zoo_request_duration_seconds_bucket{le=\"+Inf\",route=\"/go\"}"),
        300.0
    );
    assert_eq!(sample("zoo_app_restarts_total{app=\"python\"}"), 0.0);
    assert_eq!(sample("zoo_app_ready{app=\"python\"}"), 1.0);

    let status = |path: &str| {
        util::http::get(admin, path)
            .map(|response| response.status)
            .unwrap_or(0)
    };
    let run = zoo.cli_ok(&["status", "--json"], DEADLINE);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let python_pid = json["apps"][0]["pid"].as_i64().expect("python pid");
    kill(
        Pid::from_raw(i32::try_from(python_pid).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        util::poll_until(DEADLINE, || status("/readyz") == 503),
        "/readyz turns 503 while python is down\n{}",
        zoo.output()
    );
    assert_eq!(status("/livez"), 200, "zoo itself still serves");
    assert!(
        util::poll_until(DEADLINE, || status("/readyz") == 200),
        "/readyz is 200 again once python is ready\n{}",
        zoo.output()
    );
    let samples = scrape(admin);
    assert_eq!(
        samples["zoo_app_restarts_total{app=\"python\"}"], 1.0,
        "{samples:#?}"
    );
    assert_eq!(
        samples["zoo_app_last_exit_code{app=\"python\"}"], 137.0,
        "killed by SIGKILL: 128+9"
    );
    assert_eq!(samples["zoo_app_up{app=\"python\"}"], 1.0);
}

#[test]
fn access_log_lines_are_dropped_and_counted_when_stdout_blocks() {
    // zoo's stdout is a pipe that zoo itself holds the read end of (fd 9) and nobody reads:
    // once its 64 KiB buffer and the access log queue are full, every further line is dropped.
    let stdout_never_read = [
        "python3",
        "-c",
        "import os, sys\n\
         r, w = os.pipe()\n\
         os.dup2(r, 9)\n\
         os.dup2(w, 1)\n\
         os.execvp(sys.argv[1], sys.argv[1:])\n",
    ];
    let admin_port = util::free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{admin_port}\"\naccess_log = \"common\"\n\
         [routes]\n\"/x\" = {{ respond = \"x\" }}\n"
    );
    let zoo = Zoo::start_wrapped(&stdout_never_read, &config, &[]);
    // The 4096-line queue plus the pipe hold well under 6 batches of 1000 lines.
    const BATCH: usize = 1000;
    let mut answered = 0;
    let mut dropped = 0.0;
    for _ in 0..10 {
        answered += pipelined_gets(zoo.addr(), "/x", BATCH);
        dropped = scrape(admin)
            .get("zoo_access_log_dropped_total{}")
            .copied()
            .unwrap_or_else(|| panic!("no zoo_access_log_dropped_total\n{}", zoo.output()));
        if dropped > 0.0 {
            break;
        }
    }
    // Every request was answered (a blocked log never holds one), and drops were counted.
    assert_eq!(answered % BATCH, 0, "{}", zoo.output());
    assert!(
        dropped > 0.0,
        "{answered} requests with stdout blocked, none dropped\n{}",
        zoo.output()
    );
    assert!(
        dropped <= answered as f64,
        "{dropped} dropped of {answered}"
    );
}

/// Sends `count` pipelined `GET target` on one connection (written by a thread while this one
/// reads) and returns how many were answered 200.
fn pipelined_gets(addr: SocketAddr, target: &str, count: usize) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut writer = stream.try_clone().unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: z\r\n\r\n");
    let last = format!("GET {target} HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n");
    let sending = std::thread::spawn(move || {
        writer
            .write_all((request.repeat(count - 1) + &last).as_bytes())
            .expect("write the pipelined requests");
    });
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers).expect("read the answers");
    sending.join().unwrap();
    String::from_utf8_lossy(&answers)
        .matches("HTTP/1.1 200 OK\r\n")
        .count()
}
