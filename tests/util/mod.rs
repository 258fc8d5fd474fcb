//! Test harness: runs the real `zoo` binary as a black box. Each [`Zoo`] lives in its own
//! temp dir with its own `zoo.toml`, a cleaned environment and ephemeral ports; it learns the
//! bound address from the `listening on http://ADDR` line zoo logs, and every failure message
//! carries everything the child printed. Nothing here sleeps to synchronise: every wait is a
//! poll bounded by a deadline, and the child is stopped (and its process group killed) on drop.

pub mod chromium;
pub mod fastapi;
pub mod h2c;
pub mod http;
pub mod https;
pub mod load;
pub mod peers;
pub mod raw;
pub mod recorder;
pub mod scripted;
pub mod websocket;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

pub use http::Response;

/// How long zoo may take to log its listening address.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long an app (uvicorn, node) may take to answer through zoo for the first time.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long zoo may take to exit after SIGTERM (its own grace period is 10 s).
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Interval between two polls of a condition that has a deadline.
const POLL: Duration = Duration::from_millis(50);

/// The `bin` directory of the Python virtualenv that `scripts/setup` makes: `$ZOO_TEST_VENV`,
/// else `.venv` at the repository root.
pub fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("ZOO_TEST_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
        PathBuf::from,
    );
    venv.join("bin")
}

/// Fails the test with a pointer to `scripts/setup` unless the venv has uvicorn.
pub fn require_uvicorn() {
    let uvicorn = venv_bin().join("uvicorn");
    assert!(
        uvicorn.is_file(),
        "{} is missing: run scripts/setup (it makes .venv with fastapi and uvicorn), \
         or point ZOO_TEST_VENV at a venv that has them",
        uvicorn.display()
    );
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The repository root (where `examples/` lives).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temp dir holding `zoo.toml` and `files` (`(relative path, contents)`).
pub fn prepare_dir(config_toml: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("zoo-test-")
        .tempdir()
        .expect("create temp dir");
    std::fs::write(
        dir.path().join("zoo.toml"),
        with_test_engine(config_toml).as_bytes(),
    )
    .expect("write zoo.toml");
    for (name, contents) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    dir
}

/// The HTTP/1.1 engine the zoos this harness starts use when their config names none:
/// hyper's with `ZOO_TEST_ENGINE=hyper`, else zoo's (the config default).
pub fn engine_under_test() -> &'static str {
    match std::env::var("ZOO_TEST_ENGINE").as_deref() {
        Ok("hyper") => "hyper",
        _ => "zoo",
    }
}

/// `config_toml` with `engine = "NAME"` when the environment has `ZOO_TEST_ENGINE=NAME` and
/// the config sets no engine, so that the whole suite can run on either HTTP/1.1 engine. The
/// line takes the place of the first blank or comment line before any table (most test
/// configs have one), so that the lines and columns a config error names stay where they
/// were; a config without one is left as it is (the tests of `zoo check`'s positions mostly).
pub fn with_test_engine(config_toml: &str) -> std::borrow::Cow<'_, str> {
    let Ok(engine) = std::env::var("ZOO_TEST_ENGINE") else {
        return config_toml.into();
    };
    let top_level: Vec<&str> = config_toml
        .lines()
        .take_while(|line| !line.trim_start().starts_with('['))
        .collect();
    let sets_engine = top_level.iter().any(|line| {
        line.trim_start()
            .strip_prefix("engine")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if sets_engine {
        return config_toml.into();
    }
    let line = format!("engine = \"{engine}\"");
    let free = top_level.iter().position(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    });
    let Some(free) = free else {
        return config_toml.into();
    };
    let mut lines: Vec<&str> = config_toml.split('\n').collect();
    lines[free] = &line;
    lines.join("\n").into()
}

/// `WRAPPER... zoo ARGS` in `dir` with the cleaned environment, in its own process group.
fn command(wrapper: &[&str], dir: &Path, args: &[&str]) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![venv_bin()];
    paths.extend(std::env::split_paths(&path));
    let zoo = env!("CARGO_BIN_EXE_zoo");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(zoo);
            command
        }
        None => Command::new(zoo),
    };
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::join_paths(paths).expect("join PATH"))
        .env("NO_COLOR", "1")
        // One control socket per test dir, so parallel tests never reach each other's zoo.
        .env("ZOO_SOCKET", dir.join("zoo.sock"))
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    command
}

/// Which of the child's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Everything the child printed, line by line, ANSI colours removed.
#[derive(Default)]
struct Captured {
    /// Lines in arrival order (the two streams interleaved as the reader threads saw them).
    lines: Mutex<Vec<(Stream, String)>>,
    /// Signalled on every new line, so waits on output need no sleeps.
    changed: Condvar,
    /// How many of the child's streams reached EOF: a child that exited may still have lines
    /// in its pipes that the reader threads have not taken yet.
    closed: AtomicUsize,
}

impl Captured {
    fn start(self: &Arc<Self>, stream: Stream, pipe: impl Read + Send + 'static) {
        let captured = Arc::clone(self);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => {
                        captured.closed.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Ok(_) => {
                        let line = strip_ansi(&String::from_utf8_lossy(&buf));
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        captured.lines.lock().unwrap().push((stream, line));
                        captured.changed.notify_all();
                    }
                }
            }
        });
    }

    fn render(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut out = String::from("---- zoo output (out/err) ----\n");
        for (stream, line) in lines.iter() {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            let _ = writeln!(out, "{tag}| {line}");
        }
        out.push_str("---- end of zoo output ----");
        out
    }

    fn text(&self, stream: Stream) -> String {
        let lines = self.lines.lock().unwrap();
        let mut out = String::new();
        for (_, line) in lines.iter().filter(|(s, _)| *s == stream) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Waits until `find` returns `Some` for one of the lines, or the deadline passes.
    fn wait_for<T>(
        &self,
        deadline: Duration,
        mut find: impl FnMut(Stream, &str) -> Option<T>,
    ) -> Option<T> {
        let until = Instant::now() + deadline;
        let mut lines = self.lines.lock().unwrap();
        let mut seen = 0;
        loop {
            for (stream, line) in &lines[seen..] {
                if let Some(found) = find(*stream, line) {
                    return Some(found);
                }
            }
            seen = lines.len();
            let left = until.checked_duration_since(Instant::now())?;
            // Short waits so that a child that exited is noticed by the caller's own loop.
            lines = self
                .changed
                .wait_timeout(lines, left.min(Duration::from_millis(200)))
                .unwrap()
                .0;
            if Instant::now() >= until && lines.len() == seen {
                return None;
            }
        }
    }
}

/// Removes ANSI CSI sequences (`ESC [ ... final`), in case colours are on.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address in a `... listening on http://ADDR ...` line, if this is one.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http")?;
    let rest = rest
        .strip_prefix("s://")
        .or_else(|| rest.strip_prefix("://"))?;
    let token: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ')' | '"' | '\''))
        .collect();
    let token = token.trim_end_matches('/');
    let addr: SocketAddr = token.parse().ok()?;
    Some(match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    })
}

/// What a zoo run that was expected to end left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Both streams, tagged, for assertion messages.
    pub output: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `zoo ARGS` in `dir` to completion (`zoo check`, or a zoo that must refuse to start).
/// Kills it and fails the test if it is still running after `deadline`.
pub fn run_to_end(dir: &Path, args: &[&str], deadline: Duration) -> Finished {
    let mut zoo = Zoo::spawn(&[], dir, args);
    let status = zoo.wait_exit(deadline).unwrap_or_else(|| {
        panic!(
            "zoo {args:?} still running after {deadline:?}\n{}",
            zoo.output()
        )
    });
    Finished {
        status,
        stdout: zoo.captured.text(Stream::Stdout),
        stderr: zoo.captured.text(Stream::Stderr),
        output: zoo.output(),
    }
}

/// `zoo status --json` of the zoo running in `dir`, parsed; fails the test when it does not
/// answer JSON within `deadline`.
pub fn status_json(dir: &Path, deadline: Duration) -> serde_json::Value {
    let run = run_to_end(dir, &["status", "--json"], deadline);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("zoo status --json ({e})\n{}", run.output))
}

/// A running `zoo` child process.
pub struct Zoo {
    /// `None` once it has been waited for.
    child: Option<Child>,
    /// The exit status, once known.
    status: Option<ExitStatus>,
    /// The first address zoo said it listens on.
    addr: Option<SocketAddr>,
    captured: Arc<Captured>,
    /// Keeps the temp dir alive as long as the child may use it.
    dir: Option<TempDir>,
}

impl Zoo {
    /// Writes `config_toml` as `zoo.toml` and `files` into a fresh temp dir, runs
    /// `zoo --config DIR/zoo.toml` there and waits for its `listening on http://ADDR` line.
    pub fn start(config_toml: &str, files: &[(&str, &str)]) -> Zoo {
        Zoo::start_wrapped(&[], config_toml, files)
    }

    /// Like [`Zoo::start`], but runs `WRAPPER... zoo` (`unshare --pid --fork --mount-proc`, so
    /// that zoo is PID 1 as in a container).
    pub fn start_wrapped(wrapper: &[&str], config_toml: &str, files: &[(&str, &str)]) -> Zoo {
        let dir = prepare_dir(config_toml, files);
        let config = dir.path().join("zoo.toml");
        let mut zoo = Zoo::spawn(wrapper, dir.path(), &["--config", config.to_str().unwrap()]);
        zoo.dir = Some(dir);
        let captured = Arc::clone(&zoo.captured);
        let until = Instant::now() + START_DEADLINE;
        while zoo.addr.is_none() {
            let left = until.checked_duration_since(Instant::now());
            let Some(left) = left else {
                panic!(
                    "zoo did not log `listening on http://ADDR` within {START_DEADLINE:?}\n{}",
                    zoo.output()
                );
            };
            zoo.addr = captured.wait_for(left.min(Duration::from_millis(500)), |_, line| {
                parse_listening(line)
            });
            if zoo.addr.is_none()
                && let Some(status) = zoo.try_status()
            {
                panic!(
                    "zoo exited ({}) before it logged `listening on http://ADDR`\n{}",
                    describe(status),
                    zoo.output()
                );
            }
        }
        zoo
    }

    fn spawn(wrapper: &[&str], dir: &Path, args: &[&str]) -> Zoo {
        let mut child = command(wrapper, dir, args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env!("CARGO_BIN_EXE_zoo")));
        let captured = Arc::new(Captured::default());
        captured.start(Stream::Stdout, child.stdout.take().unwrap());
        captured.start(Stream::Stderr, child.stderr.take().unwrap());
        Zoo {
            child: Some(child),
            status: None,
            addr: None,
            captured,
            dir: None,
        }
    }

    /// Runs `zoo ARGS` against this zoo (its dir, so its control socket) and asserts that it
    /// exits 0.
    pub fn cli_ok(&self, args: &[&str], deadline: Duration) -> Finished {
        let run = run_to_end(self.dir(), args, deadline);
        assert_eq!(
            run.code(),
            Some(0),
            "zoo {args:?}\n{}\n{}",
            run.output,
            self.output()
        );
        run
    }

    /// The public address zoo listens on (from its log line).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("zoo has no listening address")
    }

    /// The temp dir zoo runs in (where `zoo.toml` and the extra files are).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("zoo has no temp dir").path()
    }

    /// Everything zoo printed so far, both streams, for assertion messages.
    pub fn output(&self) -> String {
        self.captured.render()
    }

    /// Every line zoo printed so far, with its stream, in arrival order.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        self.captured.lines.lock().unwrap().clone()
    }

    /// Every line zoo ever printed, once both of its streams are closed (it exited and no
    /// child of it holds them); fails the test if they are still open after `deadline`.
    pub fn all_lines(&self, deadline: Duration) -> Vec<(Stream, String)> {
        assert!(
            poll_until(deadline, || self.captured.closed.load(Ordering::SeqCst)
                == 2),
            "zoo's stdout and stderr still open after {deadline:?}\n{}",
            self.output()
        );
        self.lines()
    }

    /// Waits until some line of zoo's output satisfies `pred`; false after `deadline`.
    pub fn wait_for_line(&self, deadline: Duration, pred: impl Fn(Stream, &str) -> bool) -> bool {
        self.captured
            .wait_for(deadline, |stream, line| pred(stream, line).then_some(()))
            .is_some()
    }

    /// The exit status if zoo has exited, without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// Waits for zoo to exit; `None` if it is still running after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_status() {
                // Let the reader threads drain what the child wrote before it exited.
                self.wait_for_line(Duration::from_millis(100), |_, _| false);
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// The pid of the process the harness started (zoo, or its wrapper).
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().expect("child").id()).unwrap())
    }

    /// Sends SIGTERM and waits (up to [`STOP_DEADLINE`]) for zoo to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        kill(self.pid(), Signal::SIGTERM).expect("send SIGTERM to zoo");
        self.wait_exit(STOP_DEADLINE).unwrap_or_else(|| {
            panic!(
                "zoo still running {STOP_DEADLINE:?} after SIGTERM\n{}",
                self.output()
            )
        })
    }

    /// Sends raw bytes on a new connection and returns all bytes until the server closes.
    pub fn send_raw(&self, bytes: &[u8]) -> Vec<u8> {
        http::exchange(self.addr(), bytes, http::READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("raw exchange with {}: {e}\n{}", self.addr(), self.output()))
    }

    /// `GET target` on a new connection; fails the test (with zoo's output) on an I/O or
    /// parse error, never on a status.
    pub fn get(&self, target: &str) -> Response {
        http::get(self.addr(), target)
            .unwrap_or_else(|e| panic!("GET {target} from {}: {e}\n{}", self.addr(), self.output()))
    }

    /// Polls `GET target` until it answers 200 or `deadline` passes (then fails the test).
    pub fn wait_ready(&mut self, target: &str, deadline: Duration) -> Response {
        let until = Instant::now() + deadline;
        loop {
            let last = match http::get(self.addr(), target) {
                Ok(response) if response.status == 200 => return response,
                Ok(response) => format!("status {}: {:?}", response.status, response.text()),
                Err(e) => e.to_string(),
            };
            if let Some(status) = self.try_status() {
                panic!(
                    "zoo exited ({}) while waiting for GET {target} -> 200 (last: {last})\n{}",
                    describe(status),
                    self.output()
                );
            }
            assert!(
                Instant::now() < until,
                "GET {target} did not answer 200 within {deadline:?} (last: {last})\n{}",
                self.output()
            );
            thread::sleep(POLL);
        }
    }

    /// Asserts that `GET target` answers 200 with exactly `body`.
    pub fn assert_body(&self, target: &str, body: &str) {
        let response = self.get(target);
        assert!(
            response.status == 200 && response.body == body.as_bytes(),
            "GET {target}: expected 200 {body:?}, got {} {:?}\n{}",
            response.status,
            response.text(),
            self.output()
        );
    }
}

impl Drop for Zoo {
    fn drop(&mut self) {
        if self.try_status().is_none() && self.child.is_some() {
            let pid = self.pid();
            // Politely first, so zoo stops the apps it started (they run in their own groups).
            let _ = kill(pid, Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(5));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `exit code N` or `killed by signal N`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status:?}"),
    }
}

/// True while a process with this pid exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Runs `command` to completion with stdout and stderr captured, read while it runs (so a
/// chatty child never blocks on a full pipe). Kills it and fails the test if it is still running
/// after `deadline`.
pub fn run_bounded(command: &mut Command, deadline: Duration) -> std::process::Output {
    let what = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                panic!("spawn {what}: {e}: run scripts/setup, which installs the test clients")
            }
            _ => panic!("spawn {what}: {e}"),
        });
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (done, finished) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(deadline) {
        Ok(output) => output.unwrap_or_else(|e| panic!("wait for {what}: {e}")),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = finished.recv_timeout(Duration::from_secs(5));
            panic!("{what} still running after {deadline:?}: killed");
        }
    }
}

/// Polls `condition` until it holds or `deadline` passes; returns whether it held.
pub fn poll_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(POLL);
    }
}

#[test]
fn harness_parses_listening_lines() {
    assert_eq!(
        parse_listening("2025-01-01T00:00:00Z  INFO zoo: listening on http://127.0.0.1:41234"),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    assert_eq!(
        parse_listening("zoo    | listening on http://[::1]:8000/ (public)"),
        Some("[::1]:8000".parse().unwrap())
    );
    assert_eq!(
        parse_listening("listening on http://0.0.0.0:8000"),
        Some("127.0.0.1:8000".parse().unwrap())
    );
    assert_eq!(parse_listening("node | listening on port 9100"), None);
    assert_eq!(strip_ansi("\u{1b}[2mzoo\u{1b}[0m | hi"), "zoo | hi");
}
