//! `replicas = N` (issue 18): N uvicorn instances of one app behind one route, balanced
//! across those that are ready; a crashed instance's requests go to the others; `zoo restart`
//! rolls through them one at a time. Every load here is bounded in count and time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::load::{Load, summary};
use crate::util::{self, READY_DEADLINE, Zoo, http};

const APP_PY: &str = include_str!("replicas/app.py");
const LOAD_DEADLINE: Duration = Duration::from_secs(60);
const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// zoo with `replicas` instances of `app.py` (`extra` lines in its table) routed at `/`.
fn start(replicas: usize, extra: &str) -> Zoo {
    start_with("", replicas, extra)
}

/// [`start`] with `top` lines at the top level of the config.
fn start_with(top: &str, replicas: usize, extra: &str) -> Zoo {
    util::require_uvicorn();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         {top}\
         [apps.web]\n\
         command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --log-level warning\"\n\
         replicas = {replicas}\n\
         ready = {{ http = \"/ping\" }}\n\
         env = {{ SLOW_REPLICA = \"0\" }}\n\
         {extra}\
         [routes]\n\
         \"/metrics\" = {{ builtin = \"metrics\" }}\n\
         \"/\" = {{ app = \"web\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[("app.py", APP_PY)]);
    zoo.wait_ready("/ping", READY_DEADLINE);
    assert!(
        util::poll_until(READY_DEADLINE, || ready_count(&zoo) == replicas),
        "all {replicas} instances ready\n{}",
        zoo.output()
    );
    zoo
}

/// The app's rows of `zoo status --json`.
fn rows(zoo: &Zoo) -> Vec<serde_json::Value> {
    let status = util::status_json(zoo.dir(), CLI_DEADLINE);
    status["apps"].as_array().cloned().unwrap_or_default()
}

/// The line of `zoo status --json` for the route `/`.
fn route_line(zoo: &Zoo) -> String {
    let status = util::status_json(zoo.dir(), CLI_DEADLINE);
    status["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .find(|line| line.starts_with("/ "))
        .unwrap_or_else(|| panic!("no route `/` in {status}"))
        .to_owned()
}

/// Every instance's `127.0.0.1:PORT` in `zoo status --json`.
fn addresses(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .map(|row| format!("127.0.0.1:{}", row["port"]))
        .collect()
}

fn ready_count(zoo: &Zoo) -> usize {
    rows(zoo).iter().filter(|row| row["ready"] == true).count()
}

/// `total` GETs of `target`, `concurrency` at a time: how many each replica answered, and
/// how many failed.
fn spread(
    zoo: &Zoo,
    target: &str,
    total: usize,
    concurrency: usize,
) -> (HashMap<String, usize>, usize) {
    let counts = Arc::new(Mutex::new((HashMap::new(), 0)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = std::time::Instant::now() + LOAD_DEADLINE;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (counts, next, addr, target) = (
                Arc::clone(&counts),
                Arc::clone(&next),
                zoo.addr(),
                target.to_owned(),
            );
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < total
                    && std::time::Instant::now() < until
                {
                    let answer = http::get(addr, &target)
                        .ok()
                        .filter(|response| response.status == 200)
                        .and_then(|response| {
                            response.text().split_whitespace().nth(1).map(str::to_owned)
                        });
                    let mut counts = counts.lock().unwrap();
                    match answer {
                        Some(replica) => *counts.0.entry(replica).or_insert(0) += 1,
                        None => counts.1 += 1,
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let counts = counts.lock().unwrap();
    (counts.0.clone(), counts.1)
}

#[test]
fn replicas_share_the_load_and_least_requests_spares_a_slow_one() {
    let zoo = start(3, "");
    let names: Vec<String> = rows(&zoo)
        .iter()
        .map(|row| row["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["web#0", "web#1", "web#2"], "{}", zoo.output());

    let (counts, failed) = spread(&zoo, "/", 3000, 32);
    eprintln!("replicas=3, 3000 GETs at 32: {counts:?}, {failed} failed");
    assert_eq!(failed, 0, "{}", zoo.output());
    for replica in ["0", "1", "2"] {
        let share = counts.get(replica).copied().unwrap_or(0);
        assert!(
            share >= 600,
            "instance {replica} got {share} of 3000: {counts:?}"
        );
    }

    // Instance 0 takes 50 ms over /slow, the others answer at once: it has requests in
    // flight longest, so least_requests gives it fewer.
    let (counts, failed) = spread(&zoo, "/slow", 600, 16);
    eprintln!("replicas=3, 600 GETs of /slow at 16 (instance 0 slow): {counts:?}, {failed} failed");
    assert_eq!(failed, 0, "{}", zoo.output());
    let slow = counts.get("0").copied().unwrap_or(0);
    let fast = counts
        .get("1")
        .copied()
        .unwrap_or(0)
        .min(counts.get("2").copied().unwrap_or(0));
    // Measured: about half (119 against 247 and 234); round_robin would give each 200.
    assert!(
        slow * 4 < fast * 3,
        "the slow instance got {slow}, the fast ones {counts:?}"
    );

    let metrics = zoo.get("/metrics").text();
    assert!(
        metrics.contains("zoo_app_requests_total{app=\"web\",instance=\"2\"}"),
        "per-instance request counts\n{metrics}"
    );
}

#[test]
fn round_robin_takes_each_instance_in_turn() {
    let zoo = start(2, "balance = \"round_robin\"\n");
    // One at a time, each in turn: an even split.
    let (counts, failed) = spread(&zoo, "/slow", 40, 1);
    assert_eq!(failed, 0, "{}", zoo.output());
    assert_eq!(
        (counts.get("0"), counts.get("1")),
        (Some(&20), Some(&20)),
        "{counts:?}"
    );
}

#[test]
fn client_ip_sends_each_client_to_one_instance() {
    // zoo trusts the test's address as a load balancer, so each `X-Forwarded-For` is a client.
    let zoo = start_with(
        "trust_forwarded = [\"127.0.0.1\"]\n",
        3,
        "balance = \"client_ip\"\n",
    );
    let mut placed: HashMap<String, String> = HashMap::new();
    for round in 0..4 {
        for client in 0..30 {
            let forwarded = format!("10.0.0.{client}");
            let request = format!(
                "GET / HTTP/1.1\r\nHost: zoo\r\nX-Forwarded-For: {forwarded}\r\n\
                 Connection: close\r\n\r\n"
            );
            let raw = http::exchange(zoo.addr(), request.as_bytes(), CLI_DEADLINE)
                .unwrap_or_else(|error| panic!("GET as {forwarded}: {error}\n{}", zoo.output()));
            let response = http::parse(&raw).expect("a response");
            assert_eq!(response.status, 200, "{}", zoo.output());
            let text = response.text();
            let replica = text.split_whitespace().nth(1).expect("PID REPLICA");
            let first = placed
                .entry(forwarded.clone())
                .or_insert(replica.to_owned());
            assert_eq!(
                first, replica,
                "client {forwarded} went to instance {first}, then in round {round} to {replica}"
            );
        }
    }
    let used: std::collections::HashSet<&String> = placed.values().collect();
    eprintln!("client_ip, 30 clients x 4: instances {placed:?}");
    assert_eq!(
        used.len(),
        3,
        "30 clients spread over the 3 instances: {placed:?}"
    );
}

#[test]
fn replica_killed_under_load_loses_no_get_and_restarts() {
    let zoo = start(3, "");
    let load = Load::start(zoo.addr(), "/", 3000, 32, LOAD_DEADLINE);
    assert!(
        load.wait_for_fraction(0.3, LOAD_DEADLINE),
        "load stalled\n{}",
        zoo.output()
    );
    let victim = rows(&zoo)[1]["pid"].as_u64().expect("web#1 has a pid");
    kill(
        Pid::from_raw(i32::try_from(victim).unwrap()),
        Signal::SIGKILL,
    )
    .expect("SIGKILL web#1");
    let outcomes = load.finish();
    eprintln!(
        "replicas=3, kill -9 of web#1 under load: {}",
        summary(&outcomes)
    );
    assert_eq!(outcomes.len(), 3000, "{}", zoo.output());
    assert!(
        outcomes.iter().all(|outcome| outcome.ok()),
        "0 failed GETs: {}\n{}",
        summary(&outcomes),
        zoo.output()
    );
    assert!(
        util::poll_until(READY_DEADLINE, || {
            let row = &rows(&zoo)[1];
            row["ready"] == true && row["pid"].as_u64().is_some_and(|pid| pid != victim)
        }),
        "web#1 restarted\n{}",
        zoo.output()
    );
}

#[test]
fn restart_rolls_one_instance_at_a_time_under_load() {
    rolling_restart_under_load("", 2);
}

#[test]
fn restart_with_replace_rolls_without_losing_capacity() {
    // Each instance's replacement gets ready before the old process stops: never below N.
    rolling_restart_under_load("restart_strategy = \"replace\"\n", 3);
}

/// `zoo restart web` of 3 instances (`extra` in the app's table) under load: no failed GET,
/// every pid replaced one at a time, never fewer than `min_ready` instances ready at a look.
fn rolling_restart_under_load(extra: &str, min_ready: usize) {
    let zoo = start(3, extra);
    let before: Vec<u64> = rows(&zoo)
        .iter()
        .filter_map(|row| row["pid"].as_u64())
        .collect();
    let load = Load::start(zoo.addr(), "/", 3000, 32, LOAD_DEADLINE);
    assert!(
        load.wait_for_fraction(0.1, LOAD_DEADLINE),
        "load stalled\n{}",
        zoo.output()
    );
    // Watch capacity while the restart runs: the fewest instances ready at once, and how
    // many of the old pids were gone at each look.
    let restarting = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (restarting, dir) = (Arc::clone(&restarting), zoo.dir().to_owned());
        let before = before.clone();
        thread::spawn(move || {
            let mut fewest = usize::MAX;
            let mut replaced_seen = Vec::new();
            while restarting.load(Ordering::Relaxed) {
                let run = util::run_to_end(&dir, &["status", "--json"], CLI_DEADLINE);
                if let Ok(status) = serde_json::from_str::<serde_json::Value>(&run.stdout) {
                    let apps = status["apps"].as_array().cloned().unwrap_or_default();
                    fewest = fewest.min(apps.iter().filter(|row| row["ready"] == true).count());
                    let replaced = apps
                        .iter()
                        .filter(|row| !row["pid"].as_u64().is_some_and(|pid| before.contains(&pid)))
                        .count();
                    replaced_seen.push(replaced);
                }
            }
            (fewest, replaced_seen)
        })
    };
    zoo.cli_ok(&["restart", "web"], Duration::from_secs(60));
    restarting.store(false, Ordering::Relaxed);
    let (fewest, replaced_seen) = watcher.join().unwrap();
    let outcomes = load.finish();
    let after: Vec<u64> = rows(&zoo)
        .iter()
        .filter_map(|row| row["pid"].as_u64())
        .collect();
    eprintln!(
        "replicas=3 {extra:?}, zoo restart under load: {}; fewest ready {fewest}; replaced seen {replaced_seen:?}",
        summary(&outcomes)
    );
    assert!(
        outcomes.iter().all(|outcome| outcome.ok()),
        "{}\n{}",
        summary(&outcomes),
        zoo.output()
    );
    assert_eq!(after.len(), 3, "{}", zoo.output());
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} -> {after:?}"
    );
    assert!(
        fewest >= min_ready,
        "never fewer than {min_ready} ready, saw {fewest}\n{}",
        zoo.output()
    );
    // One at a time: the count of new pids only ever grows by steps the watcher can see.
    assert!(
        replaced_seen.windows(2).all(|pair| pair[1] >= pair[0]),
        "{replaced_seen:?}"
    );
    assert!(
        replaced_seen
            .iter()
            .any(|replaced| (1..3).contains(replaced)),
        "some look saw the roll half done: {replaced_seen:?}"
    );
}

#[test]
fn scale_up_then_down_under_load_loses_no_request() {
    let zoo = start(2, "");
    let load = Load::start(zoo.addr(), "/", 3000, 32, LOAD_DEADLINE);
    assert!(
        load.wait_for_fraction(0.1, LOAD_DEADLINE),
        "load stalled\n{}",
        zoo.output()
    );
    zoo.cli_ok(&["scale", "web", "5"], Duration::from_secs(60));
    let up = rows(&zoo);
    assert_eq!(up.len(), 5, "{up:?}\n{}", zoo.output());
    assert!(up.iter().all(|row| row["ready"] == true), "{up:?}");
    // The route names every instance, not instance 0's address alone.
    let line = route_line(&zoo);
    assert!(
        line.contains("-> app `web` (5 instances at ")
            && addresses(&up)
                .iter()
                .all(|addr| line.contains(addr.as_str())),
        "{line}\n{up:?}"
    );
    assert!(
        load.wait_for_fraction(0.5, LOAD_DEADLINE),
        "load stalled\n{}",
        zoo.output()
    );
    zoo.cli_ok(&["scale", "web", "1"], Duration::from_secs(60));
    let down = rows(&zoo);
    let outcomes = load.finish();
    eprintln!("replicas 2 -> 5 -> 1 under load: {}", summary(&outcomes));
    assert!(
        outcomes.iter().all(|outcome| outcome.ok()),
        "{}\n{}",
        summary(&outcomes),
        zoo.output()
    );
    assert_eq!(down.len(), 1, "{down:?}\n{}", zoo.output());
    assert_eq!(
        down[0]["name"], "web",
        "a single instance is named as the app"
    );
    let line = route_line(&zoo);
    assert!(
        line.ends_with(&format!("-> app `web` at {}", addresses(&down)[0])),
        "{line}\n{down:?}"
    );
    // The new instances took requests too.
    let metrics = zoo.get("/metrics").text();
    assert!(
        metrics.contains("zoo_app_requests_total{app=\"web\"}"),
        "{metrics}"
    );
}

#[test]
fn reload_with_new_replicas_scales_without_restarting_the_others() {
    let mut zoo = start(1, "");
    let first = rows(&zoo)[0]["pid"].as_u64();
    let config = std::fs::read_to_string(zoo.dir().join("zoo.toml")).unwrap();
    std::fs::write(
        zoo.dir().join("zoo.toml"),
        config.replace("replicas = 1", "replicas = 3"),
    )
    .unwrap();
    zoo.cli_ok(&["reload"], Duration::from_secs(60));
    assert!(
        util::poll_until(READY_DEADLINE, || ready_count(&zoo) == 3),
        "3 ready after the reload\n{}",
        zoo.output()
    );
    let now = rows(&zoo);
    assert_eq!(now[0]["pid"].as_u64(), first, "instance 0 kept: {now:?}");
    assert_eq!(now[0]["name"], "web#0");
    zoo.wait_ready("/ping", READY_DEADLINE);
}
