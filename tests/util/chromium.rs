//! Headless Chromium (Debian's `chromium`, which `scripts/setup` installs) for the browser
//! tests: a throwaway profile that several runs can share (so the second sees the first's HTTP
//! cache), a browser left showing a page (`browser.rs`'s WebSocket page posts its results to
//! the app), and a one-shot `--dump-dom` of a page once its scripts are done (`browser.rs`'s
//! SPA). Every browser runs in its own process group, killed with it (the zygote and the
//! renderers it forked included). A missing `chromium` fails the test, with what to run.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::describe;

/// How long a `--dump-dom` run may take, browser start-up included (normally 2 to 4 s).
const DUMP_DEADLINE: Duration = Duration::from_secs(60);
/// The virtual time a `--dump-dom` run gives the page's timers and fetches before it dumps
/// (headless advances it as soon as the page is idle, so it costs no wall time when idle).
const DUMP_VIRTUAL_TIME_MS: u32 = 10_000;

/// A `--user-data-dir` (profile and HTTP cache) and the log of every browser run in it.
pub struct Profile {
    dir: TempDir,
}

impl Default for Profile {
    fn default() -> Self {
        Self::new()
    }
}

impl Profile {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zoo-chromium-")
            .tempdir()
            .expect("create the Chromium profile dir");
        Profile { dir }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromium.log")
    }

    /// A browser in this profile showing `url`, until it is dropped.
    pub fn open(&self, url: &str) -> Chromium<'_> {
        self.spawn(&[url], Stdio::from(self.log()))
    }

    /// The DOM of `url` once its scripts, timers and fetches are done (`--dump-dom` with a
    /// virtual time budget). Fails after [`DUMP_DEADLINE`], or when Chromium fails, with its log.
    pub fn dump_dom(&self, url: &str) -> String {
        let dom_path = self.dir.path().join("dom.html");
        let dom = File::create(&dom_path).expect("dom.html");
        let budget = format!("--virtual-time-budget={DUMP_VIRTUAL_TIME_MS}");
        let mut browser = self.spawn(&["--dump-dom", &budget, url], Stdio::from(dom));
        let until = Instant::now() + DUMP_DEADLINE;
        let status = loop {
            if let Some(status) = browser.exited() {
                break status;
            }
            assert!(
                Instant::now() < until,
                "chromium --dump-dom {url} still running after {DUMP_DEADLINE:?}\n\
                 ---- chromium log ----\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "chromium --dump-dom {url}: {}\n---- chromium log ----\n{}",
            describe(status),
            self.log_tail()
        );
        std::fs::read_to_string(&dom_path).expect("read the dumped DOM")
    }

    fn log(&self) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("chromium.log")
    }

    fn spawn(&self, args: &[&str], stdout: Stdio) -> Chromium<'_> {
        let spawned = Command::new("chromium")
            .args([
                "--headless=new",
                // The sandbox needs user namespaces (absent in most containers) and refuses to
                // run as root; the pages are the tests' own, served on loopback.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", self.dir.path().display()))
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(self.log())
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`chromium` is not on PATH: run scripts/setup (it installs Debian's chromium \
                 package), which the headless browser tests need"
            ),
            Err(e) => panic!("spawn chromium: {e}"),
        };
        Chromium {
            child,
            profile: self,
        }
    }

    /// The last lines Chromium logged in this profile, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A running headless Chromium; dropping it kills its process group.
pub struct Chromium<'profile> {
    child: Child,
    profile: &'profile Profile,
}

impl Chromium<'_> {
    /// The exit status if the browser has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines Chromium logged, for failure messages.
    pub fn log_tail(&self) -> String {
        self.profile.log_tail()
    }
}

impl Drop for Chromium<'_> {
    fn drop(&mut self) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
