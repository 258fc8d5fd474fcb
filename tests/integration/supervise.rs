//! Supervision as a container's init: exit codes, restarts with backoff, reaping (as a
//! subreaper and as PID 1 in a new PID namespace), process-group shutdown, dependency order,
//! forwarded signals, start failures, env files and output flushing. Scenarios after tini's
//! `test/run_inner_tests.py` and process-compose's `src/app/system_test.go`; real processes,
//! loopback only, every wait bounded.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Finished, Zoo, describe, poll_until, prepare_dir, process_alive, run_to_end};

/// Runs a zoo from a new PID namespace, where it is PID 1 as in a container.
const PID_NAMESPACE: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc"];
/// Bound for a zoo whose apps exit at once to exit itself.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Bound for short waits on an app's own output.
const LINE_DEADLINE: Duration = Duration::from_secs(10);
/// The top-level `grace` of [`config`]: a shutdown that waited for it was not quick.
const GRACE: Duration = Duration::from_secs(5);
/// Upper bound of a shutdown that should not wait for any grace period: well under [`GRACE`],
/// so a stop that waited for it still fails, yet loose enough for a busy 2-core machine
/// running the rest of the suite.
const QUICK_STOP: Duration = Duration::from_secs(3);

pub(super) fn config(apps: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ngrace = \"{}s\"\n\n{apps}",
        GRACE.as_secs()
    )
}

/// Runs zoo on `apps` until it exits by itself.
pub(super) fn run_until_exit(apps: &str, files: &[(&str, &str)]) -> Finished {
    let dir = prepare_dir(&config(apps), files);
    let path = dir.path().join("zoo.toml");
    run_to_end(
        dir.path(),
        &["--config", path.to_str().unwrap()],
        EXIT_DEADLINE,
    )
}

/// `(pid, state)` of every process whose parent is `parent`, from the host's `/proc`.
fn children_of(parent: i32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.to_owned();
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

fn zombies_of(parent: i32) -> Vec<i32> {
    children_of(parent)
        .into_iter()
        .filter(|(_, state)| state == "Z")
        .map(|(pid, _)| pid)
        .collect()
}

/// zoo's host pid: the harness's child, or that child's only child under `unshare --fork`.
fn zoo_pid(zoo: &Zoo, wrapped: bool) -> i32 {
    let pid = zoo.pid().as_raw();
    if !wrapped {
        return pid;
    }
    let mut inner = None;
    poll_until(LINE_DEADLINE, || {
        inner = children_of(pid).first().map(|(child, _)| *child);
        inner.is_some()
    });
    inner.unwrap_or_else(|| panic!("unshare {pid} has no child\n{}", zoo.output()))
}

/// The text of a `name | text` line (names are padded to one width), if `line` is `app`'s.
fn said<'l>(line: &'l str, app: &str) -> Option<&'l str> {
    let (name, text) = line.split_once(" | ")?;
    (name.trim_end() == app).then_some(text)
}

/// The number `app` printed after `label ` (a pid, say).
fn number_after(zoo: &Zoo, app: &str, label: &str) -> i32 {
    let found = std::cell::Cell::new(None);
    zoo.wait_for_line(LINE_DEADLINE, |_, line| {
        found.set(
            said(line, app)
                .and_then(|text| text.strip_prefix(label))
                .and_then(|rest| rest.trim().parse().ok()),
        );
        found.get().is_some()
    });
    found
        .get()
        .unwrap_or_else(|| panic!("no `{app} | {label} N` line\n{}", zoo.output()))
}

/// Waits for a line of `app` (`"zoo"` for zoo's own) containing `text`.
fn wait_line(zoo: &Zoo, app: &str, text: &str) {
    assert!(
        zoo.wait_for_line(LINE_DEADLINE, |_, line| said(line, app)
            .is_some_and(|said| said.contains(text))),
        "no `{app} | ...{text}...` line\n{}",
        zoo.output()
    );
}

fn signal(pid: i32, signal: Signal) {
    kill(Pid::from_raw(pid), signal).unwrap_or_else(|e| panic!("send {signal} to {pid}: {e}"));
}

/// Sends SIGTERM to zoo and returns its exit status and how long it took to exit.
fn terminate_timed(zoo: &mut Zoo, pid: i32) -> (Option<i32>, Duration) {
    stop_timed(zoo, pid, Signal::SIGTERM)
}

/// Sends `stop` to zoo and returns its exit status and how long it took to exit.
fn stop_timed(zoo: &mut Zoo, pid: i32, stop: Signal) -> (Option<i32>, Duration) {
    let started = Instant::now();
    signal(pid, stop);
    let status = zoo
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("zoo did not exit after {stop}\n{}", zoo.output()));
    (status.code(), started.elapsed())
}

#[test]
fn exit_codes_of_a_never_restarted_app_become_zoos() {
    for wrapper in [&[][..], PID_NAMESPACE] {
        for (command, expected) in [
            ("exit 0", 0),
            ("exit 3", 3),
            ("exit 255", 255),
            ("kill -TERM $$$$", 143),
            ("kill -KILL $$$$", 137),
        ] {
            let apps = format!(
                "[apps.app]\ncommand = \"sleep 0.1; {command}\"\nrestart = \"never\"\n\
                 [apps.other]\ncommand = \"sleep 30\"\n"
            );
            let mut zoo = Zoo::start_wrapped(wrapper, &config(&apps), &[]);
            let status = zoo
                .wait_exit(EXIT_DEADLINE)
                .unwrap_or_else(|| panic!("zoo did not exit\n{}", zoo.output()));
            assert_eq!(
                status.code(),
                Some(expected),
                "`{command}` under {wrapper:?}: zoo ended with {}\n{}",
                describe(status),
                zoo.output()
            );
            wait_line(&zoo, "zoo", "other stopped");
        }
    }
}

#[test]
fn exec_probes_gate_readiness_and_failed_liveness_restarts_the_app() {
    let apps = "[apps.web]\n\
        command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
        ready = { exec = \"test -e go\", interval = \"50ms\" }\n\
        live = { exec = \"test ! -e dead\", interval = \"100ms\", failures = 2 }\n\
        backoff = { first = \"100ms\" }\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    wait_line(&zoo, "zoo", "web started");
    let ready = |zoo: &Zoo, deadline| {
        zoo.wait_for_line(deadline, |_, line| {
            said(line, "zoo").is_some_and(|text| text.starts_with("web ready on"))
        })
    };
    assert!(
        !ready(&zoo, Duration::from_millis(500)),
        "ready before `go`\n{}",
        zoo.output()
    );
    std::fs::write(zoo.dir().join("go"), "").unwrap();
    assert!(
        ready(&zoo, LINE_DEADLINE),
        "not ready after `go`\n{}",
        zoo.output()
    );
    std::fs::write(zoo.dir().join("dead"), "").unwrap();
    wait_line(
        &zoo,
        "zoo",
        "web failed 2 liveness probes in a row: stopping it",
    );
    wait_line(
        &zoo,
        "zoo",
        "web exited with signal 15 (SIGTERM); restarting in 100ms",
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn failed_liveness_of_a_replace_app_swaps_in_a_new_instance() {
    // Each instance's liveness file is named after its own port, so the new one is healthy.
    let apps = "[apps.web]\n\
        command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
        restart_strategy = \"replace\"\n\
        live = { exec = \"test ! -e dead-$PORT\", interval = \"100ms\", failures = 2 }\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    wait_line(&zoo, "zoo", "web ready on");
    // `web started (pid P, port N)`
    let (first, port) = zoo
        .output()
        .lines()
        .find_map(|line| {
            let rest = line.split_once("web started (pid ")?.1;
            let (pid, port) = rest.strip_suffix(')')?.split_once(", port ")?;
            Some((pid.parse::<i32>().ok()?, port.parse::<u16>().ok()?))
        })
        .unwrap_or_else(|| panic!("no start line with pid and port\n{}", zoo.output()));
    std::fs::write(zoo.dir().join(format!("dead-{port}")), "").unwrap();
    wait_line(
        &zoo,
        "zoo",
        "web failed 2 liveness probes in a row: replacing it",
    );
    wait_line(&zoo, "zoo", "web switched to pid");
    assert!(
        poll_until(LINE_DEADLINE, || !process_alive(first)),
        "the unhealthy instance is stopped\n{}",
        zoo.output()
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn crash_loop_follows_backoff_then_exits_with_the_apps_code() {
    let apps = "[apps.crash]\n\
                command = [\"sh\", \"-c\", \"date +%s%N >> starts; exit 7\"]\n\
                restart = \"on-failure\"\n\
                backoff = { first = \"100ms\", max = \"400ms\" }\n\
                max_restarts = 4\n";
    let dir = prepare_dir(&config(apps), &[]);
    let path = dir.path().join("zoo.toml");
    let run = run_to_end(
        dir.path(),
        &["--config", path.to_str().unwrap()],
        EXIT_DEADLINE,
    );
    assert_eq!(run.code(), Some(7), "{}", run.output);
    for logged in [
        "restarting in 100ms (1/4)",
        "restarting in 200ms (2/4)",
        "restarting in 400ms (3/4)",
        "restarting in 400ms (4/4)",
        "restarted 4 times within 60s: giving up",
    ] {
        assert!(run.output.contains(logged), "{logged:?}\n{}", run.output);
    }
    let starts: Vec<u128> = std::fs::read_to_string(dir.path().join("starts"))
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) / 1_000_000)
        .collect();
    assert_eq!(gaps.len(), 4, "five starts expected\n{}", run.output);
    // The logged delays above pin the sequence; the gaps prove zoo waited at least that long.
    // Their upper bound only catches a stall: a busy machine (CI's two cores running the
    // suite's other tests) may start a process late, by more than a second now and then.
    for (gap, expected) in gaps.iter().zip([100, 200, 400, 400]) {
        assert!(
            (expected..expected + 3000).contains(gap),
            "restart gaps {gaps:?} ms should follow 100, 200, 400, 400\n{}",
            run.output
        );
    }
}

#[test]
fn a_run_that_lasted_reset_after_starts_the_backoff_over_at_first() {
    // Each run lasts 400 ms, longer than `reset_after`: every delay is `first` again, where
    // the crash loop above (runs of no time) doubles it.
    let apps = "[apps.crash]\n\
                command = \"sleep 0.4; exit 3\"\n\
                restart = \"on-failure\"\n\
                backoff = { first = \"100ms\", max = \"1s\", reset_after = \"200ms\" }\n\
                max_restarts = 3\n";
    let run = run_until_exit(apps, &[]);
    assert_eq!(run.code(), Some(3), "{}", run.output);
    for logged in [
        "restarting in 100ms (1/3)",
        "restarting in 100ms (2/3)",
        "restarting in 100ms (3/3)",
        "restarted 3 times within 60s: giving up",
    ] {
        assert!(run.output.contains(logged), "{logged:?}\n{}", run.output);
    }
}

#[test]
fn restarts_older_than_restart_window_do_not_count_against_max_restarts() {
    // One restart allowed per 200 ms, and each run lasts 400 ms: the budget never runs out.
    let apps = "[apps.crash]\n\
                command = \"sleep 0.4; exit 3\"\n\
                restart = \"on-failure\"\n\
                backoff = { first = \"100ms\" }\n\
                max_restarts = 1\n\
                restart_window = \"200ms\"\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    assert!(
        poll_until(Duration::from_secs(15), || {
            zoo.output().matches(" (1/1)\n").count() >= 4
        }),
        "four restarts, each the first in its window\n{}",
        zoo.output()
    );
    assert!(
        zoo.try_status().is_none() && !zoo.output().contains("giving up"),
        "{}",
        zoo.output()
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

/// An app that double-forks 100 short-lived orphans, then keeps running.
const ORPHAN_STORM: &str = "[apps.storm]\n\
    command = [\"sh\", \"-c\", \"for i in $(seq 100); do (sleep 0.2 &); done; echo storm done; exec sleep 30\"]\n";

fn orphan_storm_leaves_no_zombie(wrapper: &[&str]) {
    let mut zoo = Zoo::start_wrapped(wrapper, &config(ORPHAN_STORM), &[]);
    let pid = zoo_pid(&zoo, !wrapper.is_empty());
    wait_line(&zoo, "storm", "storm done");
    // The orphans are zoo's children until they exit; then only the app itself is left.
    let settled = poll_until(Duration::from_secs(10), || children_of(pid).len() == 1);
    let children = children_of(pid);
    assert!(
        settled && zombies_of(pid).is_empty(),
        "zoo {pid} should have reaped every orphan; its children: {children:?}\n{}",
        zoo.output()
    );
    eprintln!("zombie check: children of zoo {pid} after the storm: {children:?}");
    let (code, took) = terminate_timed(&mut zoo, pid);
    assert_eq!(code, Some(0), "{}", zoo.output());
    eprintln!("shutdown took {took:?}");
}

#[test]
fn orphan_storm_is_reaped_by_zoo_as_a_subreaper() {
    orphan_storm_leaves_no_zombie(&[]);
}

#[test]
fn orphan_storm_is_reaped_by_zoo_as_pid_1() {
    orphan_storm_leaves_no_zombie(PID_NAMESPACE);
}

#[test]
fn zombie_check_sees_an_unreaped_child() {
    // Negative control: a child this test never waits for is seen as a zombie.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let me = i32::try_from(std::process::id()).unwrap();
    let child_pid = i32::try_from(child.id()).unwrap();
    let seen = poll_until(LINE_DEADLINE, || zombies_of(me).contains(&child_pid));
    child.wait().unwrap();
    assert!(seen, "the zombie check missed zombie {child_pid}");
}

#[test]
fn shutdown_is_quick_for_apps_that_stop_and_kills_at_grace_for_those_that_do_not() {
    let mut zoo = Zoo::start(&config("[apps.polite]\ncommand = \"sleep 30\"\n"), &[]);
    wait_line(&zoo, "zoo", "polite started");
    let pid = zoo_pid(&zoo, false);
    let (code, took) = terminate_timed(&mut zoo, pid);
    assert_eq!(code, Some(0), "{}", zoo.output());
    assert!(took < QUICK_STOP, "took {took:?}\n{}", zoo.output());
    eprintln!("well-behaved app: shutdown took {took:?}");

    // The leader exits on SIGTERM, its child ignores it: the whole group must still go. The
    // leader says `child N` only once its own TERM is back to the default, so the test's
    // SIGTERM cannot land while the leader still ignores it (then zoo rightly waits the grace).
    let apps = "[apps.stubborn]\n\
        command = [\"sh\", \"-c\", \"trap '' TERM; sleep 60 & child=$!; trap - TERM; echo child $child; wait\"]\n\
        [apps.deaf]\n\
        command = [\"sh\", \"-c\", \"trap '' TERM; echo deaf; while :; do sleep 0.05; done\"]\n\
        grace = \"1s\"\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    let child = number_after(&zoo, "stubborn", "child");
    wait_line(&zoo, "deaf", "deaf");
    let pid = zoo_pid(&zoo, false);
    let (code, took) = terminate_timed(&mut zoo, pid);
    assert_eq!(
        code,
        Some(1),
        "a killed app is not a clean stop\n{}",
        zoo.output()
    );
    // At least the app's 1 s grace (the meaning), and clearly before the top-level 5 s one
    // (SIGKILL at the app's grace, not at zoo's).
    assert!(
        (Duration::from_secs(1)..GRACE - Duration::from_secs(1)).contains(&took),
        "shutdown should take the 1s grace plus a little, took {took:?}\n{}",
        zoo.output()
    );
    eprintln!("app ignoring SIGTERM with grace 1s: shutdown took {took:?}");
    assert!(
        !process_alive(child),
        "child {child} outlived its group\n{}",
        zoo.output()
    );
    wait_line(&zoo, "zoo", "deaf did not stop in time: sending SIGKILL");
}

#[test]
fn setsid_grandchild_holding_stdout_does_not_hang_shutdown() {
    let apps = "[apps.leaky]\n\
        command = [\"sh\", \"-c\", \"setsid sh -c 'echo grandchild $$$$; exec sleep 30' & exec sleep 30\"]\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    let grandchild = number_after(&zoo, "leaky", "grandchild");
    let pid = zoo_pid(&zoo, false);
    let (code, took) = terminate_timed(&mut zoo, pid);
    let _ = kill(Pid::from_raw(grandchild), Signal::SIGKILL);
    assert_eq!(code, Some(0), "{}", zoo.output());
    assert!(took < QUICK_STOP, "took {took:?}\n{}", zoo.output());
}

const HTTP_APP: &str = "python3 -m http.server $PORT --bind 127.0.0.1";

#[test]
fn depends_on_starts_after_ready_and_stops_first() {
    let apps = format!(
        "[apps.web]\ncommand = \"{HTTP_APP}\"\ndepends_on = [\"db\"]\n\
         [apps.db]\ncommand = \"sleep 0.3; exec {HTTP_APP}\"\n"
    );
    let mut zoo = Zoo::start(&config(&apps), &[]);
    wait_line(&zoo, "zoo", "web ready on");
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    let output = zoo.output();
    let at = |text: &str| {
        output
            .find(text)
            .unwrap_or_else(|| panic!("no {text:?}\n{output}"))
    };
    assert!(
        at("web waiting for db to be ready") < at("db ready on"),
        "{output}"
    );
    assert!(at("db ready on") < at("web started"), "{output}");
    assert!(at("web stopped") < at("db stopped"), "{output}");
}

#[test]
fn dependency_cycle_is_a_config_error_with_its_position() {
    let apps = "[apps.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                [apps.b]\ncommand = \"x\"\ndepends_on = [\"a\"]\n";
    let dir = prepare_dir(&config(apps), &[]);
    let path = dir.path().join("zoo.toml");
    let run = run_to_end(
        dir.path(),
        &["--config", path.to_str().unwrap(), "check"],
        EXIT_DEADLINE,
    );
    assert_eq!(run.code(), Some(2), "{}", run.output);
    assert!(
        run.stderr
            .contains("zoo.toml:6:15: error: apps.a.depends_on: dependency cycle: a -> b -> a"),
        "{}",
        run.output
    );
}

/// An app that reports each of `signals` it gets (`got USR1`), ignores SIGTERM, prints its pid
/// and then `armed`.
fn signal_reporter(name: &str, signals: &[&str]) -> String {
    let traps: String = signals
        .iter()
        .map(|signal| format!("trap 'echo got {signal}' {signal}; "))
        .collect();
    format!(
        "[apps.{name}]\n\
         command = [\"sh\", \"-c\", \"{traps}trap '' TERM; echo pid $$$$; echo armed; while :; do sleep 0.05; done\"]\n\
         grace = \"1s\"\n"
    )
}

#[test]
fn sigusr1_sigusr2_and_sigwinch_reach_every_app() {
    let signals = [
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGWINCH, "WINCH"),
    ];
    let names: Vec<&str> = signals.iter().map(|(_, name)| *name).collect();
    let apps = signal_reporter("one", &names) + &signal_reporter("two", &names);
    let mut zoo = Zoo::start(&config(&apps), &[]);
    wait_line(&zoo, "one", "armed");
    wait_line(&zoo, "two", "armed");
    let pid = zoo_pid(&zoo, false);
    for (signal_sent, name) in signals {
        signal(pid, signal_sent);
        wait_line(
            &zoo,
            "zoo",
            &format!("forwarding {signal_sent} to the apps"),
        );
        wait_line(&zoo, "one", &format!("got {name}"));
        wait_line(&zoo, "two", &format!("got {name}"));
    }
    assert!(
        zoo.try_status().is_none(),
        "a forwarded signal stopped zoo\n{}",
        zoo.output()
    );
}

#[test]
fn sighup_reaches_no_app_and_a_second_sigterm_keeps_the_grace() {
    let apps = signal_reporter("listener", &["USR1", "HUP"]);
    let mut zoo = Zoo::start(&config(&apps), &[]);
    wait_line(&zoo, "listener", "armed");
    let app_pid = number_after(&zoo, "listener", "pid");
    let pid = zoo_pid(&zoo, false);
    signal(pid, Signal::SIGHUP);
    // SIGHUP is zoo's own: it reloads the config and reaches no app.
    wait_line(&zoo, "zoo", "received SIGHUP: reloading");
    // The app handles signals in order: once it reports the USR1 sent after the HUP, a
    // forwarded HUP would have been reported (or killed it) already.
    signal(pid, Signal::SIGUSR1);
    wait_line(&zoo, "listener", "got USR1");
    let output = zoo.output();
    assert!(
        !output.contains("got HUP"),
        "SIGHUP was forwarded to the app\n{output}"
    );
    assert_eq!(
        output.matches("listener started").count(),
        1,
        "the app was restarted\n{output}"
    );
    assert!(process_alive(app_pid), "the app {app_pid} died\n{output}");
    assert!(zoo.try_status().is_none(), "SIGHUP killed zoo\n{output}");

    let started = Instant::now();
    signal(pid, Signal::SIGTERM);
    wait_line(&zoo, "zoo", "shutting down");
    signal(pid, Signal::SIGTERM);
    wait_line(&zoo, "zoo", "received SIGTERM again");
    let status = zoo.wait_exit(Duration::from_secs(15)).expect("zoo exits");
    let took = started.elapsed();
    // The app ignores SIGTERM: killed at its 1 s grace, not sooner (the second SIGTERM does not
    // cut the grace short) and not at the top-level grace.
    assert!(
        (Duration::from_secs(1)..GRACE - Duration::from_secs(1)).contains(&took),
        "shutdown took {took:?} ({})\n{}",
        describe(status),
        zoo.output()
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a killed app is not a clean stop: {}\n{}",
        describe(status),
        zoo.output()
    );
    wait_line(
        &zoo,
        "zoo",
        "listener did not stop in time: sending SIGKILL",
    );
}

#[test]
fn sigint_and_sigquit_stop_the_apps_and_exit_0_like_sigterm() {
    for (signal_sent, name) in [(Signal::SIGINT, "SIGINT"), (Signal::SIGQUIT, "SIGQUIT")] {
        let mut zoo = Zoo::start(&config("[apps.polite]\ncommand = \"sleep 30\"\n"), &[]);
        wait_line(&zoo, "zoo", "polite started");
        let pid = zoo_pid(&zoo, false);
        let (code, took) = stop_timed(&mut zoo, pid, signal_sent);
        assert_eq!(code, Some(0), "{name}\n{}", zoo.output());
        assert!(took < QUICK_STOP, "{name}: took {took:?}\n{}", zoo.output());
        wait_line(&zoo, "zoo", &format!("received {name}"));
        wait_line(&zoo, "zoo", "polite stopped");
    }
}

#[test]
fn stop_signal_is_sent_instead_of_sigterm() {
    let apps = "[apps.app]\n\
        command = [\"sh\", \"-c\", \"trap 'echo got TERM' TERM; trap 'echo got INT; exit 0' INT; echo armed; while :; do sleep 0.05; done\"]\n\
        stop_signal = \"SIGINT\"\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    wait_line(&zoo, "app", "armed");
    let pid = zoo_pid(&zoo, false);
    let (code, took) = terminate_timed(&mut zoo, pid);
    assert_eq!(code, Some(0), "{}", zoo.output());
    assert!(took < QUICK_STOP, "took {took:?}\n{}", zoo.output());
    let output = zoo.output();
    assert!(output.contains("app | got INT"), "{output}");
    assert!(
        !output.contains("got TERM"),
        "SIGTERM reached the app\n{output}"
    );
}

#[test]
fn ready_deadline_kills_an_app_that_never_gets_ready_and_restarts_it() {
    let apps = "[apps.stuck]\n\
        command = [\"sh\", \"-c\", \"echo pid $$$$; exec sleep 30\"]\n\
        ready = { exec = \"false\", interval = \"50ms\", deadline = \"300ms\" }\n\
        backoff = { first = \"100ms\" }\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    let first = number_after(&zoo, "stuck", "pid");
    wait_line(&zoo, "zoo", "stuck not ready within 300ms: killing it");
    wait_line(
        &zoo,
        "zoo",
        "stuck exited with signal 9 (SIGKILL); restarting in 100ms",
    );
    assert!(
        poll_until(LINE_DEADLINE, || zoo
            .output()
            .matches("stuck started")
            .count()
            >= 2),
        "no second start\n{}",
        zoo.output()
    );
    assert!(
        poll_until(LINE_DEADLINE, || !process_alive(first)),
        "the instance that was not ready is still running\n{}",
        zoo.output()
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn sigterm_during_startup_and_backoff_stops_at_once() {
    let apps = "[apps.slow]\ncommand = \"sleep 30\"\n\
                [apps.after]\ncommand = \"sleep 30\"\ndepends_on = [\"slow\"]\n\
                [apps.crash]\ncommand = \"exit 1\"\nbackoff = { first = \"30s\" , max = \"30s\" }\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    wait_line(&zoo, "zoo", "slow started");
    wait_line(&zoo, "zoo", "after waiting for slow to be ready");
    wait_line(
        &zoo,
        "zoo",
        "crash exited with exit code 1; restarting in 30s",
    );
    let pid = zoo_pid(&zoo, false);
    let (code, took) = terminate_timed(&mut zoo, pid);
    assert_eq!(code, Some(0), "{}", zoo.output());
    assert!(took < QUICK_STOP, "took {took:?}\n{}", zoo.output());
    wait_line(&zoo, "zoo", "crash: pending restart cancelled");
}

#[test]
fn apps_that_cannot_start_get_one_line_and_the_shell_status() {
    let cases = [
        (
            "command = [\"/nonexistent/program\"]",
            127,
            "/nonexistent/program: No such file",
        ),
        (
            "command = [\"./script\"]",
            126,
            "./script: Permission denied",
        ),
        ("command = \"no-such-command-zoo\"", 127, "not found"),
        (
            "command = \"true\"\ndir = \"missing\"",
            126,
            "working directory",
        ),
        (
            "command = \"true\"\nenv_file = \"missing.env\"",
            126,
            "env_file",
        ),
    ];
    for (command, code, cause) in cases {
        let apps = format!("[apps.broken]\n{command}\nrestart = \"never\"\n");
        let run = run_until_exit(&apps, &[("script", "#!/bin/sh\necho hi\n")]);
        assert_eq!(run.code(), Some(code), "{command}\n{}", run.output);
        assert!(
            run.output.contains(cause),
            "{command}: {cause:?}\n{}",
            run.output
        );
    }
}

#[test]
fn env_file_is_loaded_and_the_partial_last_line_is_flushed() {
    let apps = "[apps.app]\n\
        command = [\"sh\", \"-c\", \"echo \\\"greeting=$GREETING\\\"; printf 'no newline'\"]\n\
        env_file = \"app.env\"\nrestart = \"never\"\n";
    let run = run_until_exit(
        apps,
        &[("app.env", "# comment\nGREETING=\"hello world\"\n")],
    );
    assert_eq!(run.code(), Some(0), "{}", run.output);
    assert!(
        run.stdout.contains("app | greeting=hello world"),
        "{}",
        run.output
    );
    assert!(run.stdout.contains("app | no newline"), "{}", run.output);
}

#[test]
fn user_runs_the_app_as_that_user() {
    // The suite needs root anyway (PID namespaces): a run without it fails here too.
    assert!(
        nix::unistd::geteuid().is_root(),
        "switching users needs root: run the suite as root (as CI does)"
    );
    // `id -G`: the primary group, and no supplementary group left over from root.
    let apps = "[apps.app]\ncommand = \"echo $(id -u) $(id -G)\"\nuser = \"nobody\"\n\
                restart = \"never\"\n";
    let run = run_until_exit(apps, &[]);
    assert_eq!(run.code(), Some(0), "{}", run.output);
    assert!(run.stdout.contains("app | 65534 65534\n"), "{}", run.output);
}
