//! No request lost to zoo's own lifecycle events (issue 5): a bounded load through zoo to the
//! demo's real uvicorn app while the app is SIGKILLed, restarted with `zoo restart`, and the
//! config is reloaded (validly and not). Requests in flight when the app is killed may fail
//! (their bytes are gone); every other request must succeed.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::load::{Load, Outcome, summary};
use crate::util::{self, READY_DEADLINE, Zoo};

const TOTAL: usize = 3000;
const CONCURRENCY: usize = 32;
const LOAD_DEADLINE: Duration = Duration::from_secs(60);
const CLI_DEADLINE: Duration = Duration::from_secs(30);

fn config(go_body: &str) -> String {
    config_with(go_body, "")
}

/// The config with `extra` lines in the python app's table.
fn config_with(go_body: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         [apps.python]\n\
         command = \"uvicorn main:app --host 127.0.0.1 --port $PORT\"\n\
         ready = {{ http = \"/\" }}\n\
         {extra}\
         [routes]\n\
         \"/go\" = {{ respond = \"{go_body}\" }}\n\
         \"/metrics\" = {{ builtin = \"metrics\" }}\n\
         \"/\" = {{ app = \"python\" }}\n"
    )
}

fn start() -> Zoo {
    start_with(&config("v0"))
}

fn start_with(config: &str) -> Zoo {
    util::require_uvicorn();
    let main_py = std::fs::read_to_string(util::repo_root().join("examples/zoo/main.py")).unwrap();
    let mut zoo = Zoo::start(config, &[("main.py", &main_py)]);
    zoo.wait_ready("/", READY_DEADLINE);
    zoo
}

/// The python app's pid and state, from `zoo status --json`.
fn python(zoo: &Zoo) -> (Option<u64>, String) {
    let app = python_status(zoo);
    (
        app["pid"].as_u64(),
        app["state"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The python app's entry of `zoo status --json`.
fn python_status(zoo: &Zoo) -> serde_json::Value {
    let run = util::run_to_end(zoo.dir(), &["status", "--json"], CLI_DEADLINE);
    let mut status: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("zoo status --json ({e})\n{}", run.output));
    status["apps"][0].take()
}

fn assert_all_ran(outcomes: &[Outcome], zoo: &Zoo) {
    assert_eq!(
        outcomes.len(),
        TOTAL,
        "every request ran within {LOAD_DEADLINE:?}\n{}",
        zoo.output()
    );
}

#[test]
fn app_killed_three_times_fails_only_requests_in_flight() {
    let zoo = start();
    let load = Load::start(zoo.addr(), "/a/b", TOTAL, CONCURRENCY, LOAD_DEADLINE);
    let mut kills = Vec::new();
    for round in 1..=3 {
        assert!(
            load.wait_for_fraction(f64::from(round) / 4.0, LOAD_DEADLINE),
            "load stalled\n{}",
            zoo.output()
        );
        let (Some(pid), _) = python(&zoo) else {
            panic!("python has no pid\n{}", zoo.output());
        };
        let before = Instant::now();
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).expect("SIGKILL python");
        kills.push((before, Instant::now()));
        assert!(
            util::poll_until(READY_DEADLINE, || {
                let (now, state) = python(&zoo);
                now.is_some_and(|now| now != pid) && state == "ready"
            }),
            "python came back after kill {round}\n{}",
            zoo.output()
        );
    }
    let outcomes = load.finish();
    assert_all_ran(&outcomes, &zoo);
    let (in_flight, after): (Vec<Outcome>, Vec<Outcome>) = outcomes
        .into_iter()
        .partition(|outcome| kills.iter().any(|&(from, to)| outcome.overlaps(from, to)));
    let failed_in_flight = in_flight.iter().filter(|outcome| !outcome.ok()).count();
    eprintln!(
        "kill -9 x3: {TOTAL} requests; {} open at a kill ({failed_in_flight} of them failed); others: {}",
        in_flight.len(),
        summary(&after)
    );
    assert!(
        after.iter().all(Outcome::ok),
        "every request not in flight at a kill succeeds: {}\n{}",
        summary(&after),
        zoo.output()
    );
    // The requests whose connection the crash broke were sent again, and counted.
    let metrics = zoo.get("/metrics").text();
    let retries = metrics
        .lines()
        .find_map(|line| line.strip_prefix("zoo_upstream_retries_total{upstream=\"python\"} "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    eprintln!("kill -9 x3: {retries} requests sent again");
    assert!(
        retries > 0,
        "zoo_upstream_retries_total counts the resends\n{metrics}"
    );
}

/// Runs the bounded load while `zoo restart python` runs 3 times, calling `after_restart` with
/// the round after each: zero failed requests.
fn restart_three_times_under_load(zoo: &Zoo, label: &str, mut after_restart: impl FnMut(u32)) {
    let load = Load::start(zoo.addr(), "/a/b", TOTAL, CONCURRENCY, LOAD_DEADLINE);
    for round in 1..=3 {
        assert!(
            load.wait_for_fraction(f64::from(round) / 4.0, LOAD_DEADLINE),
            "load stalled\n{}",
            zoo.output()
        );
        zoo.cli_ok(&["restart", "python"], READY_DEADLINE);
        after_restart(round);
    }
    let outcomes = load.finish();
    assert_all_ran(&outcomes, zoo);
    let slowest = outcomes
        .iter()
        .map(|outcome| outcome.ended - outcome.started)
        .max();
    eprintln!("{label}: slowest {slowest:?}; {}", summary(&outcomes));
    assert!(
        outcomes.iter().all(Outcome::ok),
        "{}\n{}",
        summary(&outcomes),
        zoo.output()
    );
}

#[test]
fn zoo_restart_three_times_loses_nothing() {
    restart_three_times_under_load(&start(), "zoo restart x3", |_| {});
}

#[test]
fn replace_restart_three_times_loses_nothing_and_moves_pid_and_port() {
    let zoo = start_with(&config_with("v0", "restart_strategy = \"replace\"\n"));
    let mut seen = vec![python_status(&zoo)];
    restart_three_times_under_load(&zoo, "zoo restart x3 (replace)", |round| {
        let now = python_status(&zoo);
        let before = seen.last().unwrap();
        assert!(
            now["pid"].as_u64().is_some() && now["pid"] != before["pid"],
            "round {round}: pid changed: {before} -> {now}\n{}",
            zoo.output()
        );
        assert_ne!(now["port"], before["port"], "round {round}: port changed");
        assert_eq!(now["state"], "ready", "round {round}: {now}");
        seen.push(now);
    });
    let ports: Vec<_> = seen.iter().filter_map(|app| app["port"].as_u64()).collect();
    eprintln!("replace: python's ports {ports:?}");
}

#[test]
fn reloads_valid_and_invalid_lose_nothing() {
    let zoo = start();
    let config_path = zoo.dir().join("zoo.toml");
    let load = Load::start(zoo.addr(), "/a/b", TOTAL, CONCURRENCY, LOAD_DEADLINE);
    for round in 1..=5 {
        assert!(
            load.wait_for_fraction(f64::from(round) / 7.0, LOAD_DEADLINE),
            "load stalled\n{}",
            zoo.output()
        );
        let body = format!("v{round}");
        std::fs::write(&config_path, config(&body)).unwrap();
        zoo.cli_ok(&["reload"], CLI_DEADLINE);
        // The reload has returned: the new body is what is served now.
        zoo.assert_body("/go", &body);
    }
    assert!(
        load.wait_for_fraction(6.0 / 7.0, LOAD_DEADLINE),
        "load stalled\n{}",
        zoo.output()
    );
    std::fs::write(&config_path, config("v6").replace("respond", "respnd")).unwrap();
    let rejected = util::run_to_end(zoo.dir(), &["reload"], CLI_DEADLINE);
    assert_eq!(rejected.code(), Some(1), "{}", rejected.output);
    zoo.assert_body("/go", "v5");
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| line
            .contains("zoo.toml:6:11: error: routes.\"/go\": unknown key `respnd`")),
        "the rejected reload is logged with line:col\n{}",
        zoo.output()
    );
    let outcomes = load.finish();
    assert_all_ran(&outcomes, &zoo);
    eprintln!("reload x5 + 1 invalid: {}", summary(&outcomes));
    assert!(
        outcomes.iter().all(Outcome::ok),
        "{}\n{}",
        summary(&outcomes),
        zoo.output()
    );
}
