//! File-watch restarts (`watch`): an edit restarts the app once and the new code serves; a
//! burst of 200 writes is one restart; ignored directories restart nothing; with
//! `restart_strategy = "replace"` a bounded load of GETs across 3 edits has no failure.
//! Restarts are counted from zoo's log lines, not from timings.

use std::time::Duration;

use super::supervise::config;
use crate::util::load::{self, Load};
use crate::util::{Zoo, poll_until};

const DEADLINE: Duration = Duration::from_secs(20);

/// Serves its own `VERSION`, so which code runs is visible.
fn app(version: &str) -> String {
    format!(
        "import os\n\
         from wsgiref.simple_server import WSGIRequestHandler, make_server\n\
         VERSION = b'{version}'\n\
         class Quiet(WSGIRequestHandler):\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         def serve(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Length', str(len(VERSION)))])\n\
         \x20   return [VERSION]\n\
         make_server('127.0.0.1', int(os.environ['PORT']), serve, handler_class=Quiet).serve_forever()\n"
    )
}

fn apps(extra: &str) -> String {
    config(&format!(
        "[apps.web]\n\
         command = \"python3 app.py\"\n\
         watch = [\"*.py\", \"static/\"]\n\
         {extra}\n\
         [routes]\n\
         \"/\" = {{ app = \"web\" }}\n"
    ))
}

fn count(zoo: &Zoo, text: &str) -> usize {
    zoo.output()
        .lines()
        .filter(|line| line.contains(text))
        .count()
}

/// Waits until `/` serves `version`.
fn wait_version(zoo: &Zoo, version: &str) {
    assert!(
        poll_until(DEADLINE, || zoo.get("/").text() == version),
        "never served {version}\n{}",
        zoo.output()
    );
}

/// Lets a restart that would still come (debounce, then restart) show in the log.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn an_edit_restarts_the_app_once_and_the_new_code_serves() {
    let mut zoo = Zoo::start(&apps(""), &[("app.py", &app("v1")), ("static/keep", "")]);
    zoo.wait_ready("/", DEADLINE);
    std::fs::write(zoo.dir().join("app.py"), app("v2")).unwrap();
    wait_version(&zoo, "v2");
    settle();
    assert_eq!(
        count(&zoo, "web: app.py changed: restarting it"),
        1,
        "{}",
        zoo.output()
    );
    assert_eq!(count(&zoo, "web started"), 2, "{}", zoo.output());

    // Ignored however they match: nothing restarts.
    for ignored in ["node_modules/x.py", "__pycache__/app.py", ".venv/y.py"] {
        let path = zoo.dir().join(ignored);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    std::fs::write(zoo.dir().join("notes.txt"), "not watched").unwrap();
    settle();
    assert_eq!(count(&zoo, "web started"), 2, "{}", zoo.output());
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn watch_ignore_keeps_a_matching_path_from_restarting_the_app() {
    let mut zoo = Zoo::start(
        &apps("watch_ignore = [\"generated_*.py\"]"),
        &[("app.py", &app("v1")), ("static/keep", "")],
    );
    zoo.wait_ready("/", DEADLINE);
    std::fs::write(zoo.dir().join("generated_schema.py"), "x = 1\n").unwrap();
    settle();
    assert_eq!(count(&zoo, "web started"), 1, "{}", zoo.output());
    // A watched path that the ignore list does not name still restarts it.
    std::fs::write(zoo.dir().join("app.py"), app("v2")).unwrap();
    wait_version(&zoo, "v2");
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn a_burst_of_200_writes_is_one_restart() {
    let mut zoo = Zoo::start(&apps(""), &[("app.py", &app("v1")), ("static/keep", "")]);
    zoo.wait_ready("/", DEADLINE);
    for file in 0..200 {
        std::fs::write(zoo.dir().join(format!("static/{file}.css")), "x").unwrap();
    }
    assert!(
        zoo.wait_for_line(DEADLINE, |_, line| line
            .contains("and 199 more: restarting it")),
        "{}",
        zoo.output()
    );
    settle();
    assert_eq!(count(&zoo, ": restarting it"), 1, "{}", zoo.output());
    assert_eq!(count(&zoo, "web started"), 2, "{}", zoo.output());
    zoo.wait_ready("/", DEADLINE);
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}

#[test]
fn with_replace_edits_lose_no_request() {
    let config = apps("restart_strategy = \"replace\"\nready = { http = \"/\" }\n");
    let mut zoo = Zoo::start(&config, &[("app.py", &app("v1")), ("static/keep", "")]);
    zoo.wait_ready("/", DEADLINE);
    // Requests keep going across all three edits: the load ends at its deadline.
    let load = Load::start(zoo.addr(), "/", 1_000_000, 4, Duration::from_secs(8));
    for version in ["v2", "v3", "v4"] {
        std::fs::write(zoo.dir().join("app.py"), app(version)).unwrap();
        wait_version(&zoo, version);
    }
    let outcomes = load.finish();
    assert!(outcomes.len() > 100, "{}", load::summary(&outcomes));
    assert!(
        outcomes.iter().all(load::Outcome::ok),
        "{}\n{}",
        load::summary(&outcomes),
        zoo.output()
    );
    assert_eq!(count(&zoo, "web switched to pid"), 3, "{}", zoo.output());
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}
