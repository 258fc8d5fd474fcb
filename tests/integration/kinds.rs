//! What kinds of program zoo runs besides web services: one-shot tasks (a migration that its
//! dependents wait for, retried or fatal by its policy, bounded by `timeout`, run again with
//! `zoo run`), workers without a port, and the kind x policy x exit table of
//! docs/supervision.md, every cell. Real processes (python3 with its sqlite3 module, sh),
//! loopback only, every wait bounded; assertions are on zoo's logged events, not on timings.

use std::time::Duration;

use super::supervise::{config, run_until_exit};
use crate::util::{Zoo, poll_until, run_to_end};

/// Bound for an app's (or zoo's) line to show up.
const LINE_DEADLINE: Duration = Duration::from_secs(15);
/// Bound for `zoo status` and `zoo run`.
const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until a line of zoo's output contains `text`.
fn wait_logged(zoo: &Zoo, text: &str) {
    assert!(
        zoo.wait_for_line(LINE_DEADLINE, |_, line| line.contains(text)),
        "no line with {text:?}\n{}",
        zoo.output()
    );
}

/// The index of the first line of `output` containing `text`.
fn line_of(output: &str, text: &str) -> usize {
    output
        .lines()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?}\n{output}"))
}

/// Creates the table and adds one row each run; slow enough that a dependent started early
/// would find no table.
const MIGRATE: &str = "import sqlite3, time\n\
    time.sleep(0.5)\n\
    db = sqlite3.connect('app.db')\n\
    db.execute('create table if not exists items (name text)')\n\
    db.execute(\"insert into items values ('migrated')\")\n\
    db.commit()\n\
    print('migrated', flush=True)\n";

/// Exits at once when the table is missing (it started too early); else serves its rows.
const WEB: &str = "import http.server, os, sqlite3\n\
    sqlite3.connect('app.db').execute('select 1 from items')\n\
    class Handler(http.server.BaseHTTPRequestHandler):\n\
    \x20   def do_GET(self):\n\
    \x20       rows = sqlite3.connect('app.db').execute('select name from items').fetchall()\n\
    \x20       body = ','.join(row[0] for row in rows).encode()\n\
    \x20       self.send_response(200)\n\
    \x20       self.send_header('Content-Length', str(len(body)))\n\
    \x20       self.end_headers()\n\
    \x20       self.wfile.write(body)\n\
    \x20   def log_message(self, *args):\n\
    \x20       pass\n\
    http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()\n";

#[test]
fn task_success_gates_its_dependent_and_zoo_run_runs_it_again() {
    let apps = "[apps.migrate]\n\
                command = \"python3 migrate.py\"\n\
                kind = \"task\"\n\
                \n\
                [apps.queue]\n\
                command = \"sh -c 'echo PORT=${PORT:-unset}; exec sleep 60'\"\n\
                port = false\n\
                \n\
                [apps.web]\n\
                command = \"python3 web.py\"\n\
                depends_on = [\"migrate\"]\n\
                \n\
                [routes]\n\
                \"/\" = { app = \"web\" }\n";
    let mut zoo = Zoo::start(&config(apps), &[("migrate.py", MIGRATE), ("web.py", WEB)]);
    let response = zoo.wait_ready("/", LINE_DEADLINE);
    assert_eq!(response.text(), "migrated", "{}", zoo.output());
    let output = zoo.output();
    assert!(
        line_of(&output, "migrate done (exit code 0 after") < line_of(&output, "web started"),
        "web started before the task succeeded\n{output}"
    );
    assert!(
        !output.contains("web exited"),
        "web never found the table missing\n{output}"
    );
    wait_logged(&zoo, "PORT=unset");

    let status = zoo.cli_ok(&["status"], CLI_DEADLINE).stdout;
    let row = |app: &str| {
        status
            .lines()
            .find(|line| line.starts_with(app))
            .unwrap_or_else(|| panic!("no {app} row\n{status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let migrate = row("migrate");
    assert!(
        migrate.starts_with("migrate - done (exit 0 after "),
        "{migrate}\n{status}"
    );
    assert!(row("queue").starts_with("queue - ready "), "{status}");

    let ran = zoo.cli_ok(&["run", "migrate"], CLI_DEADLINE).stdout;
    assert!(ran.starts_with("migrate done (exit 0 after "), "{ran}");
    zoo.assert_body("/", "migrated,migrated");
    let refused = run_to_end(zoo.dir(), &["run", "web"], CLI_DEADLINE);
    assert_eq!(refused.code(), Some(1), "{}", refused.output);
    assert!(
        refused
            .stderr
            .contains("app `web` is a service: only tasks and cron jobs can be run"),
        "{}",
        refused.output
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn failed_task_stops_zoo_with_its_status_before_its_dependent_starts() {
    let apps = "[apps.migrate]\n\
                command = \"sh -c 'echo broken; exit 3'\"\n\
                kind = \"task\"\n\
                \n\
                [apps.web]\n\
                command = \"python3 web.py\"\n\
                depends_on = [\"migrate\"]\n";
    let run = run_until_exit(apps, &[("web.py", WEB)]);
    assert_eq!(run.code(), Some(3), "{}", run.output);
    assert!(
        run.output
            .contains("migrate exited with exit code 3; restart = never: stopping zoo"),
        "{}",
        run.output
    );
    assert!(!run.output.contains("web started"), "{}", run.output);
}

#[test]
fn task_on_failure_is_retried_with_backoff_until_it_succeeds() {
    // Fails on its first two runs, then succeeds.
    let apps = "[apps.flaky]\n\
                command = \"echo run >> runs; test $(wc -l < runs) -ge 3\"\n\
                kind = \"task\"\n\
                restart = \"on-failure\"\n\
                backoff = { first = \"100ms\", max = \"200ms\" }\n\
                max_restarts = 5\n\
                \n\
                [apps.after]\n\
                command = \"sh -c 'echo after started; exec sleep 60'\"\n\
                port = false\n\
                depends_on = [\"flaky\"]\n";
    let zoo = Zoo::start(&config(apps), &[]);
    wait_logged(&zoo, "after started");
    let output = zoo.output();
    for logged in [
        "flaky exited with exit code 1; restarting in 100ms (1/5)",
        "flaky exited with exit code 1; restarting in 200ms (2/5)",
        "flaky done (exit code 0 after",
    ] {
        assert!(output.contains(logged), "{logged:?}\n{output}");
    }
    assert!(line_of(&output, "flaky done") < line_of(&output, "after started"));
}

#[test]
fn task_past_its_timeout_is_stopped_and_counts_as_failed() {
    let apps = "[apps.slow]\n\
                command = \"sleep 30\"\n\
                kind = \"task\"\n\
                timeout = \"300ms\"\n";
    let run = run_until_exit(apps, &[]);
    assert_eq!(run.code(), Some(124), "{}", run.output);
    for logged in [
        "slow still running after its timeout of 300ms: stopping it",
        "slow timed out: counted as exit code 124",
    ] {
        assert!(run.output.contains(logged), "{logged:?}\n{}", run.output);
    }
}

/// A worker taking jobs from `queue/`: a job is claimed by renaming it into `working/`, and
/// done by renaming its result into `done/`, so a worker killed mid-job redoes that job (and
/// only it) when restarted, and never completes one twice. SIGTERM lets it finish its job.
const WORKER: &str = "import os, signal, time\n\
    stopping = False\n\
    def stop(*_):\n\
    \x20   global stopping\n\
    \x20   stopping = True\n\
    signal.signal(signal.SIGTERM, stop)\n\
    for d in ('working', 'done'):\n\
    \x20   os.makedirs(d, exist_ok=True)\n\
    print('worker up', flush=True)\n\
    while not stopping:\n\
    \x20   claimed = sorted(os.listdir('working'))\n\
    \x20   if not claimed:\n\
    \x20       waiting = sorted(os.listdir('queue'))\n\
    \x20       if not waiting:\n\
    \x20           time.sleep(0.05)\n\
    \x20           continue\n\
    \x20       os.rename('queue/' + waiting[0], 'working/' + waiting[0])\n\
    \x20       claimed = [waiting[0]]\n\
    \x20   job = claimed[0]\n\
    \x20   if not os.path.exists('done/' + job):\n\
    \x20       print('working on', job, flush=True)\n\
    \x20       time.sleep(0.1)\n\
    \x20       with open('done/.' + job, 'w') as f:\n\
    \x20           f.write(str(os.getpid()))\n\
    \x20       with open('completions', 'a') as f:\n\
    \x20           f.write(job + '\\n')\n\
    \x20       os.rename('done/.' + job, 'done/' + job)\n\
    \x20   os.remove('working/' + job)\n\
    print('worker stopping after its job', flush=True)\n";

#[test]
fn killed_worker_is_restarted_and_loses_or_repeats_no_job() {
    let jobs = 20;
    let apps = "[apps.worker]\n\
                command = \"python3 worker.py\"\n\
                port = false\n\
                backoff = { first = \"200ms\" }\n";
    let mut zoo = Zoo::start(&config(apps), &[("worker.py", WORKER)]);
    let queue = zoo.dir().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    for job in 0..jobs {
        std::fs::write(queue.join(format!("job-{job:02}")), "").unwrap();
    }
    wait_logged(&zoo, "working on job-03");
    let pid = zoo
        .output()
        .lines()
        .find_map(|line| {
            line.split_once("worker started (pid ")?
                .1
                .strip_suffix(')')?
                .parse::<i32>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no start line\n{}", zoo.output()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_logged(
        &zoo,
        "worker exited with signal 9 (SIGKILL); restarting in 200ms",
    );
    let done = zoo.dir().join("done");
    assert!(
        poll_until(LINE_DEADLINE, || std::fs::read_dir(&done)
            .map(|entries| entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count())
            .unwrap_or(0)
            == jobs),
        "not every job done\n{}",
        zoo.output()
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    assert!(
        zoo.output().contains("worker stopping after its job"),
        "{}",
        zoo.output()
    );
    let completions = std::fs::read_to_string(zoo.dir().join("completions")).unwrap();
    let mut completed: Vec<&str> = completions.lines().collect();
    completed.sort_unstable();
    let expected: Vec<String> = (0..jobs).map(|job| format!("job-{job:02}")).collect();
    assert_eq!(completed, expected, "each job completed exactly once");
}

/// Every cell of the kind x policy x exit table that does not end the container, in one zoo:
/// (app, kind, policy, exit code, the line zoo logs for it).
const GOING_ON: &[(&str, &str, &str, i32, &str)] = &[
    (
        "sa0",
        "service",
        "always",
        0,
        "sa0 exited with exit code 0; restarting in 30s",
    ),
    (
        "sa3",
        "service",
        "always",
        3,
        "sa3 exited with exit code 3; restarting in 30s",
    ),
    (
        "so0",
        "service",
        "on-failure",
        0,
        "so0 done (exit code 0 after",
    ),
    (
        "so3",
        "service",
        "on-failure",
        3,
        "so3 exited with exit code 3; restarting in 30s",
    ),
    (
        "wa0",
        "worker",
        "always",
        0,
        "wa0 exited with exit code 0; restarting in 30s",
    ),
    (
        "wa3",
        "worker",
        "always",
        3,
        "wa3 exited with exit code 3; restarting in 30s",
    ),
    (
        "wo0",
        "worker",
        "on-failure",
        0,
        "wo0 done (exit code 0 after",
    ),
    (
        "wo3",
        "worker",
        "on-failure",
        3,
        "wo3 exited with exit code 3; restarting in 30s",
    ),
    (
        "to0",
        "task",
        "on-failure",
        0,
        "to0 done (exit code 0 after",
    ),
    (
        "to3",
        "task",
        "on-failure",
        3,
        "to3 exited with exit code 3; restarting in 30s",
    ),
    ("tn0", "task", "never", 0, "tn0 done (exit code 0 after"),
];

/// The cells that end the container: (kind, policy, exit code), zoo exiting with that code.
const ENDING: &[(&str, &str, i32)] = &[
    ("service", "never", 0),
    ("service", "never", 3),
    ("worker", "never", 0),
    ("worker", "never", 3),
    ("task", "never", 3),
];

#[test]
fn every_kind_policy_and_exit_cell_does_what_the_table_says() {
    let mut apps = String::new();
    for (name, kind, policy, code, _) in GOING_ON {
        apps.push_str(&format!(
            "[apps.{name}]\ncommand = \"exit {code}\"\nkind = \"{kind}\"\nrestart = \"{policy}\"\n\
             backoff = {{ first = \"30s\" }}\n\n"
        ));
    }
    let mut zoo = Zoo::start(&config(&apps), &[]);
    for (_, _, _, _, logged) in GOING_ON {
        wait_logged(&zoo, logged);
    }
    assert!(zoo.try_status().is_none(), "zoo went on\n{}", zoo.output());
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());

    for (kind, policy, code) in ENDING {
        let apps = format!(
            "[apps.one]\ncommand = \"exit {code}\"\nkind = \"{kind}\"\nrestart = \"{policy}\"\n"
        );
        let run = run_until_exit(&apps, &[]);
        assert_eq!(run.code(), Some(*code), "{kind} {policy}\n{}", run.output);
        let logged = format!("one exited with exit code {code}; restart = never: stopping zoo");
        assert!(run.output.contains(&logged), "{logged:?}\n{}", run.output);
    }
}

/// `examples/jobs/`: its own zoo.toml and scripts, on free addresses.
#[test]
fn jobs_example_runs_its_migration_api_worker_and_report() {
    crate::util::require_uvicorn();
    let dir = crate::util::repo_root().join("examples/jobs");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (listen, admin) = (
        "listen = \"0.0.0.0:${PORT:-8000}\"",
        "admin = \"127.0.0.1:9901\"",
    );
    let config = read("zoo.toml");
    assert!(
        config.contains(listen) && config.contains(admin),
        "update this test:\n{config}"
    );
    let config = config.replace(listen, "listen = \"127.0.0.1:0\"").replace(
        admin,
        &format!("admin = \"127.0.0.1:{}\"", crate::util::free_port()),
    );
    let scripts =
        ["main.py", "migrate.py", "worker.py", "report.py"].map(|name| (name, read(name)));
    let files: Vec<(&str, &str)> = scripts
        .iter()
        .map(|(name, text)| (*name, text.as_str()))
        .collect();
    let mut zoo = Zoo::start(&config, &files);
    zoo.wait_ready("/jobs", LINE_DEADLINE);
    let posted = zoo.send_raw(
        b"POST /jobs?payload=hello HTTP/1.1\r\nHost: zoo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(
        posted.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&posted)
    );
    let done = "\"status\":\"done\",\"result\":\"HELLO\"";
    assert!(
        poll_until(LINE_DEADLINE, || zoo.get("/jobs").text().contains(done)),
        "the worker did not do the job\n{}",
        zoo.output()
    );
    zoo.cli_ok(&["run", "report"], CLI_DEADLINE);
    wait_logged(&zoo, "report: {'done': 1}");
    let status = zoo.cli_ok(&["status"], CLI_DEADLINE).stdout;
    for expected in [
        "migrate      -  done (exit 0 after ",
        "worker       -  ready",
        "scheduled (next ",
    ] {
        assert!(status.contains(expected), "{expected:?}\n{status}");
    }
    println!("{status}");
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
    assert!(zoo.output().contains("worker stopped"), "{}", zoo.output());
}

#[test]
fn a_worker_with_an_exec_probe_is_ready_when_it_passes_and_gates_its_dependent() {
    let apps = "[apps.consumer]\n\
                command = \"sh -c 'sleep 0.5; touch connected; exec sleep 60'\"\n\
                port = false\n\
                ready = { exec = \"test -f connected\", interval = \"50ms\" }\n\
                live = { exec = \"test -f connected\", interval = \"100ms\" }\n\
                \n\
                [apps.after]\n\
                command = \"sh -c 'echo after started; exec sleep 60'\"\n\
                port = false\n\
                depends_on = [\"consumer\"]\n";
    let mut zoo = Zoo::start(&config(apps), &[]);
    wait_logged(&zoo, "after started");
    let output = zoo.output();
    assert!(
        line_of(&output, "consumer ready") < line_of(&output, "after started (pid"),
        "{output}"
    );
    // Liveness by `exec` too: the worker is stopped and restarted once its probe fails.
    std::fs::remove_file(zoo.dir().join("connected")).unwrap();
    wait_logged(
        &zoo,
        "consumer failed 3 liveness probes in a row: stopping it",
    );
    wait_logged(
        &zoo,
        "consumer exited with signal 15 (SIGTERM); restarting in",
    );
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}
