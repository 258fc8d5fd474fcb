//! `basic_auth` through the real binary, with users files made by Apache's own `htpasswd -B`
//! (Debian's apache2-utils): the right password reaches the app without its `Authorization`
//! (or with it, under `forward_auth_header`); a wrong or missing one, or an unknown user, is
//! a one-line 401 with the realm's challenge; a burst of wrong passwords does not hold up
//! another route; weak entries and missing files are refused by `zoo check` and by a reload.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::front_door::{RECORDER_PY, get_with, recorder_app};
use crate::util::peers::require;
use crate::util::{self, READY_DEADLINE, Zoo, http};

const CLI_DEADLINE: Duration = Duration::from_secs(20);
/// Wrong passwords sent at once in the burst, and by how many clients.
const BURST: usize = 200;
const BURST_CLIENTS: usize = 20;
/// Requests to the other route, before and during the burst.
const PROBES: usize = 40;

/// `user:hash` lines of `htpasswd -nbB [-C cost] user password`.
fn htpasswd(entries: &[(&str, &str)], extra: &[&str]) -> String {
    let tool = require("htpasswd");
    let mut file = String::new();
    for (user, password) in entries {
        let output = util::run_bounded(
            Command::new(&tool)
                .arg("-nbB")
                .args(extra)
                .args([user, password]),
            CLI_DEADLINE,
        );
        assert!(output.status.success(), "htpasswd: {output:?}");
        file.push_str(String::from_utf8_lossy(&output.stdout).trim());
        file.push('\n');
    }
    file
}

/// `Authorization: Basic ...` for `user:password`.
fn basic(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn auth_config() -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         {api}\
         [routes]\n\
         \"/private\" = {{ app = \"api\", basic_auth = {{ users_file = \"users.htpasswd\", realm = \"private area\" }} }}\n\
         \"/forwarded\" = {{ app = \"api\", basic_auth = {{ users_file = \"users.htpasswd\", forward_auth_header = true }} }}\n\
         \"/fast\" = {{ respond = \"fast\" }}\n",
        api = recorder_app("api"),
    )
}

fn auth_zoo(users: &str) -> Zoo {
    let mut zoo = Zoo::start(
        &auth_config(),
        &[("recorder.py", RECORDER_PY), ("users.htpasswd", users)],
    );
    zoo.wait_ready("/fast", READY_DEADLINE);
    let right = basic("alice:s3cret pass");
    assert!(
        util::poll_until(READY_DEADLINE, || get_with(&zoo, "/private", &right)
            .0
            .status
            == 200),
        "{}",
        zoo.output()
    );
    zoo
}

#[test]
fn basic_auth_admits_the_right_password_only_and_strips_it() {
    let zoo = auth_zoo(&htpasswd(
        &[("alice", "s3cret pass"), ("bob", "other")],
        &[],
    ));
    let right = basic("alice:s3cret pass");
    let (response, echo) = get_with(&zoo, "/private/x", &right);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(echo["path"], "/private/x");
    assert!(
        echo["headers"].get("authorization").is_none(),
        "checked credentials are not forwarded: {echo}"
    );
    let (response, echo) = get_with(&zoo, "/forwarded", &right);
    assert_eq!(response.status, 200);
    assert_eq!(
        echo["headers"]["authorization"].as_str(),
        Some(right.trim_end().trim_start_matches("Authorization: "))
    );
    let refusals = [
        ("wrong password", basic("alice:s3cret")),
        ("another user's password", basic("bob:s3cret pass")),
        ("unknown user", basic("mallory:s3cret pass")),
        ("missing", String::new()),
        ("not basic", "Authorization: Bearer abc\r\n".to_owned()),
    ];
    for (what, header) in &refusals {
        let (response, echo) = get_with(&zoo, "/private/x", header);
        assert_eq!(response.status, 401, "{what}: {}", response.text());
        assert!(echo.is_null(), "{what}: the app was reached");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Basic realm=\"private area\""),
            "{what}"
        );
        assert_eq!(
            response.text(),
            "401 Unauthorized: route `/private` needs a user and password\n"
        );
    }
    let (default_realm, _) = get_with(&zoo, "/forwarded", "");
    assert_eq!(
        default_realm.header("www-authenticate"),
        Some("Basic realm=\"restricted\"")
    );
}

/// Times `count` GETs of `/fast` one after another; every one must answer 200.
fn probe(zoo: &Zoo, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            let response = http::get(zoo.addr(), "/fast").unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            started.elapsed()
        })
        .collect()
}

fn p99(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

#[test]
fn a_burst_of_wrong_passwords_does_not_hold_up_other_routes() {
    // Cost 6: a few ms of bcrypt per wrong password (more in a debug build), so that the
    // burst outlasts the probes.
    let zoo = auth_zoo(&htpasswd(&[("alice", "s3cret pass")], &["-C", "6"]));
    let baseline = p99(probe(&zoo, PROBES));
    let addr = zoo.addr();
    let burst_done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..BURST_CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                (0..BURST / BURST_CLIENTS)
                    .map(|attempt| {
                        let request = format!(
                            "GET /private HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
                            basic(&format!("alice:wrong-{client}-{attempt}"))
                        );
                        let raw = http::exchange(addr, request.as_bytes(), http::READ_TIMEOUT);
                        raw.ok()
                            .and_then(|raw| http::parse(&raw).ok())
                            .map_or(0, |response| response.status)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let watcher = {
        let burst_done = Arc::clone(&burst_done);
        std::thread::spawn(move || {
            let statuses: Vec<u16> = clients
                .into_iter()
                .flat_map(|client| client.join().unwrap())
                .collect();
            burst_done.store(true, Ordering::SeqCst);
            statuses
        })
    };
    // Let the burst fill the verifier first.
    std::thread::sleep(Duration::from_millis(100));
    let during = probe(&zoo, PROBES);
    let probes_done_first = !burst_done.load(Ordering::SeqCst);
    let loaded = p99(during);
    let statuses = watcher.join().unwrap();
    eprintln!(
        "basic_auth burst: /fast p99 unloaded {baseline:?}, during {BURST} wrong passwords {loaded:?}"
    );
    assert_eq!(statuses.len(), BURST);
    assert!(
        statuses.iter().all(|status| *status == 401),
        "{statuses:?}\n{}",
        zoo.output()
    );
    assert!(
        probes_done_first,
        "the burst ended before {PROBES} requests to another route did (p99 {loaded:?})"
    );
    // Generous: the machine is shared and bcrypt takes a core; what must not happen is the
    // event loop waiting for the burst (seconds).
    assert!(
        loaded < baseline * 20 + Duration::from_millis(200),
        "/fast p99 {loaded:?} during the burst vs {baseline:?} unloaded"
    );
}

#[test]
fn check_and_reload_refuse_weak_entries_and_missing_files() {
    let md5 = util::run_bounded(
        Command::new(require("htpasswd")).args(["-nbm", "carol", "pw"]),
        CLI_DEADLINE,
    );
    let weak = format!(
        "# made by hand\n{}\n{}",
        htpasswd(&[("alice", "s3cret pass")], &[]).trim(),
        String::from_utf8_lossy(&md5.stdout).trim()
    );
    let dir = util::prepare_dir(&auth_config(), &[("users.htpasswd", &weak)]);
    let finished = util::run_to_end(dir.path(), &["check"], CLI_DEADLINE);
    assert_eq!(finished.code(), Some(2), "{}", finished.output);
    assert!(
        finished.stderr.contains(
            "zoo.toml:6:57: error: routes.\"/private\".basic_auth.users_file: \
             users.htpasswd:3: user `carol`: Apache MD5 (`$apr1$`) is not accepted"
        ),
        "{}",
        finished.output
    );
    let dir = util::prepare_dir(&auth_config(), &[]);
    let finished = util::run_to_end(dir.path(), &["check"], CLI_DEADLINE);
    assert_eq!(finished.code(), Some(2), "{}", finished.output);
    assert!(
        finished
            .stderr
            .contains("basic_auth.users_file: cannot read "),
        "{}",
        finished.output
    );

    // A good file: the table shows each route's users.
    let good = htpasswd(&[("alice", "s3cret pass"), ("bob", "other")], &[]);
    let dir = util::prepare_dir(&auth_config(), &[("users.htpasswd", &good)]);
    let finished = util::run_to_end(dir.path(), &["check"], CLI_DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.output);
    for expected in [
        "basic_auth realm \"private area\": 2 user(s) from users.htpasswd",
        "basic_auth realm \"restricted\": 2 user(s) from users.htpasswd, Authorization forwarded",
        "request headers: remove authorization",
    ] {
        assert!(
            finished.stdout.contains(expected),
            "no {expected:?} in\n{}",
            finished.stdout
        );
    }

    // A reload re-reads the file: a new user works; a broken file is refused, the old users
    // stay.
    let zoo = auth_zoo(&htpasswd(&[("alice", "s3cret pass")], &[]));
    let users = zoo.dir().join("users.htpasswd");
    let both = htpasswd(&[("alice", "s3cret pass"), ("dave", "new one")], &[]);
    std::fs::write(&users, both).unwrap();
    zoo.cli_ok(&["reload"], CLI_DEADLINE);
    assert_eq!(
        get_with(&zoo, "/private", &basic("dave:new one")).0.status,
        200
    );
    std::fs::write(&users, "dave:plain\n").unwrap();
    let refused = util::run_to_end(zoo.dir(), &["reload"], CLI_DEADLINE);
    assert_ne!(refused.code(), Some(0), "{}", refused.output);
    assert!(
        refused
            .output
            .contains("users.htpasswd:1: user `dave`: a plaintext"),
        "{}",
        refused.output
    );
    assert_eq!(
        get_with(&zoo, "/private", &basic("dave:new one")).0.status,
        200
    );
}
