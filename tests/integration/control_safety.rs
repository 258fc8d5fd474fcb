//! The control plane is safe by default: the control socket never replaces what zoo did not
//! make, is `0600` whatever the umask and serves only root and zoo's own uid; the `admin` TCP
//! listener is read-only unless `admin_token` is set, and refuses what a browser sends; two
//! zoos on one machine each have their own socket, and a CLI verb given a config never acts on
//! a zoo running another.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::{self, Zoo};

const CLI_DEADLINE: Duration = Duration::from_secs(10);

const RESPOND: &str = "listen = \"127.0.0.1:0\"\n[routes]\n\"/hello\" = { respond = \"hi\" }\n";

/// One app, `web` (Python's http.server), routed at `/`, and `extra` config lines on top.
fn web_app(extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [apps.web]\n\
         command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
         [routes]\n\
         \"/\" = {{ respond = \"zoo\" }}\n"
    )
}

/// Runs the zoo CLI with a clean environment plus `env`, in `cwd`.
fn cli(cwd: &Path, env: &[(&str, &OsStr)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zoo"));
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    util::run_bounded(&mut command, CLI_DEADLINE)
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `zoo status --json` through `ZOO_SOCKET=socket`; `None` unless it answered.
fn status_via(socket: &Path) -> Option<serde_json::Value> {
    let run = cli(
        Path::new("/"),
        &[("ZOO_SOCKET", socket.as_os_str())],
        &["status", "--json"],
    );
    run.status
        .success()
        .then(|| serde_json::from_slice(&run.stdout).expect("status --json is JSON"))
}

/// The state of app `name` in a `zoo status --json` answer.
fn app_state(status: &serde_json::Value, name: &str) -> String {
    status["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|app| app["name"] == name))
        .map(|app| app["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no app `{name}` in {status}"))
}

/// The control socket path zoo logged it bound.
fn logged_socket(zoo: &Zoo) -> PathBuf {
    let output = zoo.output();
    let path = output
        .lines()
        .find_map(|line| line.split_once("control socket ").map(|(_, path)| path))
        .unwrap_or_else(|| panic!("zoo logs its control socket\n{output}"));
    PathBuf::from(path.trim())
}

/// Runs a zoo whose `ZOO_SOCKET` is `path`, where `what` already sits, until it has served a
/// request and exited, and checks that it said so in its log.
fn run_with_socket_at(path: &Path, what: &str) -> Zoo {
    let set = format!("ZOO_SOCKET={}", path.display());
    let mut zoo = Zoo::start_wrapped(&["env", &set], RESPOND, &[]);
    zoo.assert_body("/hello", "hi");
    let named = format!("control socket {}: is {what}, not a socket", path.display());
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| line.contains(&named)),
        "zoo says what is at the path\n{}",
        zoo.output()
    );
    zoo.terminate();
    zoo
}

#[test]
fn socket_path_holding_a_regular_file_leaves_it_intact() {
    let scratch = tempfile::tempdir().unwrap();
    let precious = scratch.path().join("precious");
    std::fs::write(&precious, "do not delete").unwrap();
    let zoo = run_with_socket_at(&precious, "a regular file");
    assert_eq!(
        std::fs::read_to_string(&precious).expect("the file is still there"),
        "do not delete",
        "{}",
        zoo.output()
    );
}

#[test]
fn socket_path_holding_a_symlink_leaves_it_and_its_target_intact() {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("target");
    std::fs::write(&target, "the target").unwrap();
    let link = scratch.path().join("zoo.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let zoo = run_with_socket_at(&link, "a symlink");
    assert_eq!(
        std::fs::read_link(&link).ok(),
        Some(target.clone()),
        "{}",
        zoo.output()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "the target");
}

#[test]
fn stale_socket_is_replaced_and_removed_at_exit() {
    let scratch = tempfile::tempdir().unwrap();
    let socket = scratch.path().join("zoo.sock");
    // A socket nobody accepts on, as a zoo that was killed leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let set = format!("ZOO_SOCKET={}", socket.display());
    let mut zoo = Zoo::start_wrapped(&["env", &set], RESPOND, &[]);
    let status = status_via(&socket)
        .unwrap_or_else(|| panic!("zoo status reaches the new socket\n{}", zoo.output()));
    assert!(status["config"].as_str().is_some(), "{status}");
    zoo.terminate();
    assert!(
        !socket.exists(),
        "zoo removes the socket it made\n{}",
        zoo.output()
    );
}

#[test]
fn socket_is_0600_under_umask_000() {
    let zoo = Zoo::start_wrapped(&["sh", "-c", "umask 000; exec \"$0\" \"$@\""], RESPOND, &[]);
    let socket = zoo.dir().join("zoo.sock");
    let found = std::fs::symlink_metadata(&socket)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", socket.display(), zoo.output()));
    assert!(found.file_type().is_socket());
    assert_eq!(
        found.permissions().mode() & 0o777,
        0o600,
        "{}",
        zoo.output()
    );
    // The wrapper did reach zoo: without the chmod this socket would be srwxrwxrwx.
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", zoo.pid())).unwrap();
    assert!(
        proc_status.lines().any(|line| line == "Umask:\t0000"),
        "{proc_status}"
    );
    assert!(status_via(&socket).is_some(), "{}", zoo.output());
}

#[test]
fn socket_refuses_another_uid_even_when_its_mode_lets_it_in() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to connect as another uid");
        return;
    }
    let zoo = Zoo::start(RESPOND, &[]);
    let socket = zoo.dir().join("zoo.sock");
    // Open the door the mode would close (as during the moment between bind and chmod), so
    // that only the peer check stands between `nobody` and the socket.
    std::fs::set_permissions(zoo.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_zoo"))
        .args(["status", "--json"])
        .current_dir("/")
        .env_clear()
        .env("ZOO_SOCKET", &socket);
    let run = util::run_bounded(&mut command, CLI_DEADLINE);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        !run.status.success() && !stdout.contains("\"apps\""),
        "nobody gets no status\n{}\n{}",
        describe(&run),
        zoo.output()
    );
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("uid 65534 may not use this control socket"),
        "{}",
        describe(&run)
    );
    assert!(
        zoo.wait_for_line(CLI_DEADLINE, |_, line| line
            .contains("refused a connection from uid 65534")),
        "{}",
        zoo.output()
    );
    // Root still may.
    assert!(status_via(&socket).is_some(), "{}", zoo.output());
}

/// One request to the admin listener, with extra header lines.
fn admin(addr: SocketAddr, method: &str, target: &str, headers: &[&str]) -> util::Response {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    let raw = util::http::exchange(addr, request.as_bytes(), util::http::READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {target} on admin: {e}"));
    util::http::parse(&raw).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

fn admin_state(addr: SocketAddr) -> String {
    let status = admin(addr, "GET", "/status", &[]);
    assert_eq!(status.status, 200, "{}", status.text());
    app_state(&serde_json::from_slice(&status.body).unwrap(), "web")
}

#[test]
fn admin_listener_without_token_is_read_only() {
    let port = util::free_port();
    let mut zoo = Zoo::start(&web_app(&format!("admin = \"127.0.0.1:{port}\"")), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        util::poll_until(util::READY_DEADLINE, || admin_state(addr) == "ready"),
        "{}",
        zoo.output()
    );
    for (method, target) in [
        ("POST", "/apps/web/stop"),
        ("POST", "/apps/web/restart"),
        ("POST", "/reload"),
        ("GET", "/apps/web/logs"),
    ] {
        let refused = admin(addr, method, target, &[]);
        assert_eq!(refused.status, 403, "{method} {target}: {}", refused.text());
        assert!(refused.text().contains("admin_token"), "{}", refused.text());
    }
    assert_eq!(admin_state(addr), "ready", "{}", zoo.output());
    // The control socket serves the same verb.
    zoo.cli_ok(&["stop", "web"], CLI_DEADLINE);
    assert_eq!(admin_state(addr), "stopped", "{}", zoo.output());
    zoo.terminate();
}

#[test]
fn admin_token_opens_the_verbs_to_its_bearer_only() {
    let port = util::free_port();
    let config = web_app(&format!(
        "admin = \"127.0.0.1:{port}\"\nadmin_token = \"${{ZOO_ADMIN_TOKEN}}\""
    ));
    let mut zoo = Zoo::start_wrapped(&["env", "ZOO_ADMIN_TOKEN=s3cret"], &config, &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        util::poll_until(util::READY_DEADLINE, || admin_state(addr) == "ready"),
        "{}",
        zoo.output()
    );
    let right = "Authorization: Bearer s3cret";
    for (headers, expected) in [
        (&[][..], 401),
        (&["Authorization: Bearer s3cre"], 401),
        (&["Authorization: Bearer wrong"], 401),
        (&[right, "Origin: http://evil.example"], 403),
        (
            &[right, "Content-Type: application/x-www-form-urlencoded"],
            403,
        ),
        (&[right, "Content-Type: text/plain"], 403),
    ] {
        let refused = admin(addr, "POST", "/apps/web/stop", headers);
        assert_eq!(refused.status, expected, "{headers:?}: {}", refused.text());
        if expected == 401 {
            assert_eq!(
                refused.header("www-authenticate").map(|v| &v[..6]),
                Some("Bearer"),
                "{headers:?}"
            );
        }
    }
    assert_eq!(admin_state(addr), "ready", "{}", zoo.output());
    let logs = admin(addr, "GET", "/apps/web/logs", &[right]);
    assert_eq!(logs.status, 200, "{}", logs.text());
    let stopped = admin(addr, "POST", "/apps/web/stop", &[right]);
    assert_eq!(stopped.status, 200, "{}\n{}", stopped.text(), zoo.output());
    assert_eq!(admin_state(addr), "stopped", "{}", zoo.output());
    zoo.terminate();
}

#[test]
fn two_zoos_in_one_runtime_dir_each_answer_for_their_own_config() {
    let runtime = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let xdg = format!("XDG_RUNTIME_DIR={}", runtime.path().display());
    let wrapper = ["env", "-u", "ZOO_SOCKET", &xdg];
    let env = [("XDG_RUNTIME_DIR", runtime.path().as_os_str())];
    let a = Zoo::start_wrapped(&wrapper, &web_app(""), &[]);
    let a_config = a.dir().join("zoo.toml");
    let a_config = a_config.to_str().unwrap();

    // One zoo: the CLI finds it without a config, from any directory.
    let found = cli(nowhere.path(), &env, &["status", "--json"]);
    assert!(
        found.status.success(),
        "{}\n{}",
        describe(&found),
        a.output()
    );

    let b = Zoo::start_wrapped(&wrapper, &web_app(""), &[]);
    let b_config = b.dir().join("zoo.toml");
    let b_config = b_config.to_str().unwrap();
    assert_ne!(logged_socket(&a), logged_socket(&b), "{}", b.output());

    let state = |config: &str| {
        let run = cli(
            nowhere.path(),
            &env,
            &["status", "--json", "--config", config],
        );
        assert!(run.status.success(), "{}", describe(&run));
        let status: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(status["config"], config, "{status}");
        app_state(&status, "web")
    };
    let ready = |config: &str| util::poll_until(util::READY_DEADLINE, || state(config) == "ready");
    assert!(ready(a_config), "{}", a.output());
    assert!(ready(b_config), "{}", b.output());

    // Two zoos: without a config the CLI will not guess.
    let guess = cli(nowhere.path(), &env, &["stop", "web"]);
    assert!(
        !guess.status.success()
            && String::from_utf8_lossy(&guess.stderr).contains("2 zoos are running"),
        "{}",
        describe(&guess)
    );

    // A's socket named explicitly, B's config given: A refuses rather than act.
    let a_socket = logged_socket(&a);
    let canonical = |config: &str| std::fs::canonicalize(config).unwrap().display().to_string();
    let misdirected = cli(
        nowhere.path(),
        &[("ZOO_SOCKET", a_socket.as_os_str())],
        &["stop", "web", "--config", b_config],
    );
    let stderr = String::from_utf8_lossy(&misdirected.stderr);
    assert!(
        !misdirected.status.success()
            && stderr.contains(&format!(
                "this zoo runs {}, not {}",
                canonical(a_config),
                canonical(b_config)
            )),
        "{}",
        describe(&misdirected)
    );
    assert_eq!(state(a_config), "ready", "{}", a.output());

    let stop_b = cli(nowhere.path(), &env, &["stop", "web", "--config", b_config]);
    assert!(
        stop_b.status.success(),
        "{}\n{}",
        describe(&stop_b),
        b.output()
    );
    assert_eq!(state(b_config), "stopped", "{}", b.output());
    assert_eq!(state(a_config), "ready", "{}", a.output());
}
