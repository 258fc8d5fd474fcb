//! A real browser through zoo: headless Chromium (Debian's `chromium`, which `scripts/setup`
//! installs) loads `util/fastapi/ws_page.html` from the FastAPI app directly and through zoo. The
//! page opens WebSockets to its own origin (a 1 MiB echo as text and binary, 10,000 small
//! messages, closes with 1000 and 4000) and posts its results to the app, where the test reads
//! them; both runs must give the same, correct results. A missing `chromium` fails the test.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::fastapi::fastapi_zoo;
use crate::util::{self, Zoo, http};

/// How long one page run may take, browser start-up included (normally 2 to 5 s).
const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// A headless Chromium showing one URL, with a throwaway profile, in its own process group;
/// dropping it kills the group (the browser and the zygote and renderers it forked).
struct Chromium {
    child: Child,
    /// The profile (`--user-data-dir`) and `chromium.log`; removed after the group is dead.
    profile: TempDir,
}

impl Chromium {
    fn open(url: &str) -> Chromium {
        let profile = tempfile::Builder::new()
            .prefix("zoo-chromium-")
            .tempdir()
            .expect("create the Chromium profile dir");
        let log = File::create(profile.path().join("chromium.log")).expect("chromium.log");
        let spawned = Command::new("chromium")
            .args([
                "--headless=new",
                // The sandbox needs user namespaces (absent in most containers) and refuses to
                // run as root; the page is this test's own, served on loopback.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`chromium` is not on PATH: run scripts/setup (it installs Debian's chromium \
                 package), which the headless browser test needs"
            ),
            Err(e) => panic!("spawn chromium: {e}"),
        };
        Chromium { child, profile }
    }

    /// The exit status if the browser has exited (it should not, before it is killed).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines Chromium logged, for failure messages.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Loads the page from `origin` (the app or zoo) and returns what it posted to the app, which
/// the test reads from the app directly. Fails after [`PAGE_DEADLINE`], with Chromium's log.
fn page_results(zoo: &Zoo, origin: SocketAddr, app: SocketAddr, run: &str) -> Value {
    let mut browser = Chromium::open(&format!("http://{origin}/browser?run={run}"));
    let until = Instant::now() + PAGE_DEADLINE;
    let target = format!("/browser/result?run={run}");
    loop {
        let last = match http::get(app, &target) {
            Ok(response) if response.status == 200 => {
                return serde_json::from_slice(&response.body).unwrap_or_else(|e| {
                    panic!("the page's result is not JSON ({e}): {}", response.text())
                });
            }
            Ok(response) => format!("{} {}", response.status, response.text()),
            Err(e) => e.to_string(),
        };
        if let Some(status) = browser.exited() {
            panic!(
                "chromium exited ({}) before the page posted its result (last poll: {last})\n\
                 ---- chromium log ----\n{}\n{}",
                util::describe(status),
                browser.log_tail(),
                zoo.output()
            );
        }
        assert!(
            Instant::now() < until,
            "the page loaded from {origin} posted no result within {PAGE_DEADLINE:?} \
             (last poll: {last})\n---- chromium log ----\n{}\n{}",
            browser.log_tail(),
            zoo.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The results without their `ms` timings (the only part that may differ between runs).
fn without_timings(results: &Value) -> Value {
    let mut results = results.clone();
    for case in results.as_array_mut().expect("the page posts an array") {
        case.as_object_mut()
            .expect("one object per case")
            .remove("ms");
    }
    results
}

#[test]
fn chromium_websocket_page_through_zoo_equals_direct() {
    let (zoo, port) = fastapi_zoo("");
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let direct = page_results(&zoo, app, app, "direct");
    let direct_took = started.elapsed();
    let through = page_results(&zoo, zoo.addr(), app, "zoo");
    let through_took = started.elapsed() - direct_took;
    eprintln!(
        "Chromium page, direct ({direct_took:?} with browser start-up): {direct}\n\
         Chromium page, through zoo ({through_took:?}): {through}"
    );
    assert_eq!(
        without_timings(&through),
        without_timings(&direct),
        "the page's results through zoo vs direct\n{}",
        zoo.output()
    );
    let clean = |code: u16, reason: &str| json!({"code": code, "reason": reason, "wasClean": true});
    let expected = json!([
        {"case": "1 MiB echo, text and binary", "result": {
            "text": true, "textLength": 1 << 20, "binary": true, "binaryLength": 1 << 20,
            "extensions": "permessage-deflate; client_max_window_bits=15",
            "close": clean(1000, "done"),
        }},
        {"case": "10,000 small messages", "result": {
            "sent": 10_000, "echoedInOrder": 10_000, "close": clean(1000, "done"),
        }},
        {"case": "close 1000", "result": {"echoed": "hi", "close": clean(1000, "done")}},
        {"case": "close 4000", "result": {"echoed": "hi", "close": clean(4000, "app-defined")}},
    ]);
    assert_eq!(
        without_timings(&through),
        expected,
        "the page's results through zoo"
    );
}
