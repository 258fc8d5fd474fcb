//! Cron jobs (`schedule`): ticks of a seconds schedule, overlapping ticks skipped and counted,
//! `timeout`, `zoo run` outside the schedule, the job metrics and `zoo status`, and a shutdown
//! that lets a running job finish within its grace. Real `sh` jobs, loopback only, every wait
//! bounded; ticks are checked against the wall clock with a tolerance, counts against zoo's
//! logged events.

use std::time::{Duration, SystemTime};

use super::supervise::config;
use crate::util::{Zoo, poll_until};

/// Bound for zoo's (or a job's) line to show up.
const LINE_DEADLINE: Duration = Duration::from_secs(15);
/// Bound for `zoo status` and `zoo run`.
const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// How many lines of zoo's output contain `text`.
fn count(zoo: &Zoo, text: &str) -> usize {
    zoo.output()
        .lines()
        .filter(|line| line.contains(text))
        .count()
}

/// Waits until at least `n` lines of zoo's output contain `text`.
fn wait_count(zoo: &Zoo, text: &str, n: usize) {
    assert!(
        poll_until(LINE_DEADLINE, || count(zoo, text) >= n),
        "fewer than {n} lines with {text:?}\n{}",
        zoo.output()
    );
}

/// The value of the sample `name{app="APP"}` in `/metrics`.
fn sample(zoo: &Zoo, name: &str, app: &str) -> Option<f64> {
    let text = zoo.get("/metrics").text();
    let prefix = format!("{name}{{app=\"{app}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
}

const METRICS_ROUTE: &str = "[routes]\n\"/metrics\" = { builtin = \"metrics\" }\n";

#[test]
fn seconds_schedule_runs_at_its_ticks() {
    // Each run appends its start time (seconds since the epoch, with fractions).
    let apps = format!(
        "[apps.tick]\n\
         command = \"date +%s.%N >> ticks\"\n\
         schedule = \"*/2 * * * * *\"\n\n{METRICS_ROUTE}"
    );
    let zoo = Zoo::start(&config(&apps), &[]);
    wait_count(&zoo, "tick run done (exit code 0", 3);
    let ticks: Vec<f64> = std::fs::read_to_string(zoo.dir().join("ticks"))
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert!(ticks.len() >= 3, "{ticks:?}\n{}", zoo.output());
    for tick in &ticks {
        // On an even second, give or take the start of `sh` and `date` on a busy machine.
        let late = tick - (tick / 2.0).floor() * 2.0;
        assert!(
            late < 1.0,
            "a run started {late:.3}s after its tick: {ticks:?}"
        );
    }
    for pair in ticks.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (1.0..3.0).contains(&gap),
            "ticks {gap:.3}s apart: {ticks:?}"
        );
    }
    let status = zoo.cli_ok(&["status"], CLI_DEADLINE).stdout;
    assert!(
        status.contains("scheduled (next ") || status.contains("running (next "),
        "{status}"
    );
    assert!(sample(&zoo, "zoo_job_runs_total", "tick").is_some_and(|runs| runs >= 3.0));
    assert_eq!(sample(&zoo, "zoo_job_failures_total", "tick"), Some(0.0));
    let last = sample(&zoo, "zoo_job_last_success_timestamp_seconds", "tick").unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 10.0, "last success {last}, now {now}");
}

#[test]
fn a_long_run_skips_overlapping_ticks_and_counts_them() {
    let apps = format!(
        "[apps.slow]\n\
         command = \"echo slow run; sleep 3\"\n\
         schedule = \"* * * * * *\"\n\n{METRICS_ROUTE}"
    );
    let zoo = Zoo::start(&config(&apps), &[]);
    wait_count(&zoo, "slow run done (exit code 0", 1);
    wait_count(
        &zoo,
        "slow: run for its schedule skipped: the previous run",
        2,
    );
    let skipped = sample(&zoo, "zoo_job_skipped_total", "slow").unwrap();
    assert!(skipped >= 2.0, "{skipped}\n{}", zoo.output());
    // Never two at once: every start follows the end of the run before it.
    let output = zoo.output();
    let events: Vec<&str> = output
        .lines()
        .filter_map(|line| {
            if line.contains("slow started (pid ") {
                Some("start")
            } else if line.contains("slow run done") {
                Some("done")
            } else {
                None
            }
        })
        .collect();
    for pair in events.windows(2) {
        assert_ne!(pair, ["start", "start"], "two runs at once\n{output}");
    }
}

#[test]
fn zoo_run_runs_a_job_now_and_a_timeout_counts_as_failed() {
    let apps = format!(
        "[apps.report]\n\
         command = \"echo report for $REPORT\"\n\
         env = {{ REPORT = \"today\" }}\n\
         schedule = \"@yearly\"\n\
         \n\
         [apps.stuck]\n\
         command = \"sleep 30\"\n\
         schedule = \"@yearly\"\n\
         timeout = \"300ms\"\n\n{METRICS_ROUTE}"
    );
    let zoo = Zoo::start(&config(&apps), &[]);
    let ran = zoo.cli_ok(&["run", "report"], CLI_DEADLINE).stdout;
    assert!(ran.starts_with("report done (exit 0 after "), "{ran}");
    assert_eq!(count(&zoo, "report for today"), 1, "{}", zoo.output());

    let timed_out = crate::util::run_to_end(zoo.dir(), &["run", "stuck"], CLI_DEADLINE);
    assert_eq!(timed_out.code(), Some(1), "{}", timed_out.output);
    assert!(
        timed_out.stderr.contains("stuck failed (exit 124 after "),
        "{}",
        timed_out.output
    );
    assert!(
        zoo.output()
            .contains("stuck run timed out (signal 15 (SIGTERM)): counted as exit code 124")
    );
    assert_eq!(sample(&zoo, "zoo_job_failures_total", "stuck"), Some(1.0));
    let status = zoo.cli_ok(&["status"], CLI_DEADLINE).stdout;
    let row = status
        .lines()
        .find(|line| line.starts_with("stuck"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains("scheduled (next "), "{row}");
    assert!(row.contains("1 runs, 1 failed, 0 skipped"), "{row}");
}

#[test]
fn shutdown_lets_a_running_job_finish_within_its_grace() {
    let apps = "[apps.backup]\n\
                command = \"trap 'sleep 0.3; echo backup flushed; exit 0' TERM; echo backup running; sleep 30 & wait\"\n\
                schedule = \"@yearly\"\n\
                grace = \"3s\"\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    let started = std::thread::spawn({
        let dir = zoo.dir().to_path_buf();
        move || crate::util::run_to_end(&dir, &["run", "backup"], CLI_DEADLINE)
    });
    assert!(
        zoo.wait_for_line(LINE_DEADLINE, |_, line| line.contains("backup running")),
        "{}",
        zoo.output()
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    assert!(zoo.output().contains("backup flushed"), "{}", zoo.output());
    assert!(
        zoo.output().contains("backup run done (exit code 0"),
        "{}",
        zoo.output()
    );
    // `zoo run` lost its zoo; it only must not hang.
    let _ = started.join();
}

#[test]
fn overlap_true_lets_runs_overlap() {
    // Each run takes 3 s and the schedule ticks every second: with `overlap`, a second run
    // starts while the first still runs (no tick is skipped).
    let apps = format!(
        "[apps.slow]\n\
         command = \"echo slow run; sleep 3\"\n\
         schedule = \"* * * * * *\"\n\
         overlap = true\n\n{METRICS_ROUTE}"
    );
    let zoo = Zoo::start(&config(&apps), &[]);
    wait_count(&zoo, "slow started (pid ", 3);
    let output = zoo.output();
    let starts_before_first_end = output
        .lines()
        .take_while(|line| !line.contains("slow run done"))
        .filter(|line| line.contains("slow started (pid "))
        .count();
    assert!(
        starts_before_first_end >= 2,
        "a run started before the first ended\n{output}"
    );
    assert_eq!(count(&zoo, "skipped: the previous run"), 0, "{output}");
}

#[test]
fn timezone_names_an_iana_zone_or_fails_zoo_check_at_its_place() {
    let config_with = |zone: &str| {
        format!(
            "[apps.report]\ncommand = \"true\"\nschedule = \"0 9 * * *\"\ntimezone = \"{zone}\"\n"
        )
    };
    let dir = crate::util::prepare_dir(&config_with("Europe/Paris"), &[]);
    let ok = crate::util::run_to_end(dir.path(), &["check"], CLI_DEADLINE);
    assert_eq!(ok.code(), Some(0), "{}", ok.output);
    let dir = crate::util::prepare_dir(&config_with("Mars/Olympus_Mons"), &[]);
    let refused = crate::util::run_to_end(dir.path(), &["check"], CLI_DEADLINE);
    assert_eq!(refused.code(), Some(2), "{}", refused.output);
    assert!(
        refused.output.contains("zoo.toml:4:12"),
        "the error names the value's place\n{}",
        refused.output
    );
}
