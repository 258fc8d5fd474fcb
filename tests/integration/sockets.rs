//! `socket = true` (issue 18): apps listening on a Unix socket zoo names in `SOCKET`, in a
//! private directory under `$ZOO_RUN`: uvicorn `--uds` and Node `server.listen(SOCKET)`
//! answer through zoo, a WebSocket echoes over the socket (spliced), a stale socket left by an earlier
//! run is replaced, and a regular file at the socket's path is refused, not deleted. Without
//! `ZOO_RUN` each config has its own directory, which a restart of that config finds again.
//! Replicas get one socket each, `protocol = "h2c"` works over a socket, and a reload moves an
//! app between its port and a socket.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::util::websocket::ws_frame;
use crate::util::{self, READY_DEADLINE, Zoo, http};

const SERVER_JS: &str = include_str!("sockets/server.js");
const H2_JS: &str = include_str!("sockets/h2.js");
const APP_PY: &str = include_str!("../util/fastapi/app.py");

/// zoo with `ZOO_RUN` at `run` and the apps of `apps` (TOML), routes `/node` and `/`.
fn start(run: &Path, apps: &str, routes: &str) -> Zoo {
    let config = format!("listen = \"127.0.0.1:0\"\n{apps}\n[routes]\n{routes}");
    let zoo_run = format!("ZOO_RUN={}", run.display());
    Zoo::start_wrapped(
        &["/usr/bin/env", &zoo_run],
        &config,
        &[
            ("server.js", SERVER_JS),
            ("h2.js", H2_JS),
            ("app.py", APP_PY),
        ],
    )
}

/// Makes `dir` as zoo would: private (0700), or zoo refuses it.
fn private_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Leaves a socket file at `path`, as a process killed before it cleaned up would.
fn stale_socket(path: &Path) {
    private_dir(path.parent().unwrap());
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(std::fs::metadata(path).unwrap().file_type().is_socket());
}

#[test]
fn socket_apps_answer_through_zoo_with_a_websocket_and_replace_a_stale_socket() {
    util::require_uvicorn();
    let run = tempfile::tempdir().unwrap();
    // Node's listen fails on an existing file: it works only if zoo removed the stale one.
    stale_socket(&run.path().join("node/node.sock"));
    let uvicorn = util::venv_bin().join("uvicorn");
    let apps = format!(
        "[apps.node]\n\
         command = \"node server.js\"\n\
         socket = true\n\
         [apps.py]\n\
         command = \"{} app:app --uds $SOCKET --ws wsproto --log-level warning\"\n\
         socket = true\n\
         ready = {{ http = \"/ping\" }}\n",
        uvicorn.display()
    );
    let mut zoo = start(
        run.path(),
        &apps,
        "\"/node\" = { app = \"node\" }\n\"/\" = { app = \"py\" }\n",
    );
    zoo.wait_ready("/ping", READY_DEADLINE);
    assert!(
        util::poll_until(READY_DEADLINE, || http::get(zoo.addr(), "/node/a")
            .is_ok_and(|response| response.status == 200)),
        "node over its socket\n{}",
        zoo.output()
    );
    let node = zoo.get("/node/a/b");
    assert!(
        node.text().starts_with("node ") && node.text().ends_with(" /node/a/b\n"),
        "{}",
        node.text()
    );
    assert_eq!(zoo.get("/ping").text(), "pong");

    // Private directories, one socket per app, and no PORT.
    for app in ["node", "py"] {
        let dir = run.path().join(app);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        let socket = dir.join(format!("{app}.sock"));
        assert!(
            std::fs::metadata(&socket).unwrap().file_type().is_socket(),
            "{}",
            socket.display()
        );
    }

    // A WebSocket echo through zoo to uvicorn over its socket, spliced: the first transfer
    // opens a pipe of the tunnels' pool, which stays open for the next one (a copy opens none).
    let pipes_before = open_pipes(&zoo);
    let mut stream = std::net::TcpStream::connect(zoo.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: zoo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "handshake cut: {head:?}"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
        .write_all(&ws_frame(0x81, b"over the socket"))
        .unwrap();
    let mut frame = [0u8; 2 + 15];
    stream.read_exact(&mut frame).unwrap();
    assert_eq!((frame[0], frame[1]), (0x81, 15), "{frame:?}");
    assert_eq!(&frame[2..], b"over the socket");
    let pipes_after = open_pipes(&zoo);
    assert!(
        pipes_after > pipes_before,
        "zoo's pipe descriptors {pipes_before} -> {pipes_after}: the tunnel copied\n{}",
        zoo.output()
    );
}

/// zoo's open pipe descriptors: the apps' output pipes and the tunnels' splice pipes.
fn open_pipes(zoo: &Zoo) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", zoo.pid().as_raw()))
        .expect("read zoo's /proc/PID/fd")
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// zoo with one `node` app on a socket under `run` (never restarted) routed at `/`; asserts that
/// its start is refused with a line containing `reason`, and returns it.
fn refused_start(run: &Path, reason: &str) -> Zoo {
    let zoo = start(
        run,
        "[apps.node]\ncommand = \"node server.js\"\nsocket = true\nrestart = \"never\"\n",
        "\"/\" = { app = \"node\" }\n",
    );
    assert!(
        zoo.wait_for_line(READY_DEADLINE, |_, line| line.contains(reason)),
        "the start is refused with the reason\n{}",
        zoo.output()
    );
    zoo
}

#[test]
fn socket_path_holding_a_regular_file_is_refused_and_kept() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("node/node.sock");
    private_dir(path.parent().unwrap());
    std::fs::write(&path, "not a socket").unwrap();
    let _zoo = refused_start(run.path(), "exists and is not a socket");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a socket",
        "the file is kept"
    );
}

#[test]
fn socket_directory_open_to_others_is_refused_and_left_as_it_is() {
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("node");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _zoo = refused_start(
        run.path(),
        "is mode 755: zoo uses only a private one (0700)",
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "not changed behind the user's back");
}

#[test]
fn reload_moves_an_app_from_its_port_to_a_socket_and_back() {
    let run = tempfile::tempdir().unwrap();
    let on_port = "[apps.node]\ncommand = \"node server.js\"\n";
    let zoo = start(run.path(), on_port, "\"/\" = { app = \"node\" }\n");
    let answers = |zoo: &Zoo| {
        util::poll_until(READY_DEADLINE, || {
            http::get(zoo.addr(), "/a").is_ok_and(|response| response.status == 200)
        })
    };
    assert!(answers(&zoo), "on its port\n{}", zoo.output());
    let socket = run.path().join("node/node.sock");
    let config = zoo.dir().join("zoo.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(on_port, &format!("{on_port}socket = true\n")),
    )
    .unwrap();
    zoo.cli_ok(&["reload"], Duration::from_secs(60));
    assert!(answers(&zoo), "on its socket\n{}", zoo.output());
    assert!(
        std::fs::metadata(&socket).is_ok_and(|found| found.file_type().is_socket()),
        "{}\n{}",
        socket.display(),
        zoo.output()
    );
    let status = util::status_json(zoo.dir(), READY_DEADLINE);
    assert!(
        status["routes"][0]
            .as_str()
            .is_some_and(|line| line.ends_with(&format!("at unix:{}", socket.display()))),
        "{status}"
    );
    std::fs::write(&config, text).unwrap();
    zoo.cli_ok(&["reload"], Duration::from_secs(60));
    assert!(answers(&zoo), "on a port again\n{}", zoo.output());
    let status = util::status_json(zoo.dir(), READY_DEADLINE);
    assert!(
        status["routes"][0]
            .as_str()
            .is_some_and(|line| line.contains("at 127.0.0.1:")),
        "{status}"
    );
}

#[test]
fn socket_apps_run_replicas_one_socket_each_and_speak_h2c() {
    let run = tempfile::tempdir().unwrap();
    let zoo = start(
        run.path(),
        "[apps.node]\ncommand = \"node server.js\"\nsocket = true\nreplicas = 2\n\
         [apps.h2]\ncommand = \"node h2.js\"\nsocket = true\nprotocol = \"h2c\"\n",
        "\"/h2\" = { app = \"h2\" }\n\"/\" = { app = \"node\" }\n",
    );
    let mut pids = std::collections::BTreeSet::new();
    assert!(
        util::poll_until(READY_DEADLINE, || {
            if let Ok(response) = http::get(zoo.addr(), "/a")
                && response.status == 200
            {
                pids.extend(response.text().split_whitespace().nth(1).map(str::to_owned));
            }
            pids.len() == 2
        }),
        "both instances answer: {pids:?}\n{}",
        zoo.output()
    );
    for file in ["node.0.sock", "node.1.sock"] {
        let socket = run.path().join("node").join(file);
        assert!(
            std::fs::metadata(&socket).is_ok_and(|found| found.file_type().is_socket()),
            "{}",
            socket.display()
        );
    }
    assert!(
        util::poll_until(READY_DEADLINE, || http::get(zoo.addr(), "/h2/x")
            .is_ok_and(|response| response.status == 200)),
        "h2c over its socket\n{}",
        zoo.output()
    );
    assert_eq!(zoo.get("/h2/x/y").text(), "h2 2.0 /h2/x/y\n");
}

/// The config-named socket directories (`zoo-HASH`) zoos made in `runtime_dir`.
fn zoo_dirs(runtime_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(runtime_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("zoo-"))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn without_zoo_run_each_config_has_its_own_socket_directory_found_again_on_restart() {
    let runtime_dir = tempfile::tempdir().unwrap();
    let xdg = format!("XDG_RUNTIME_DIR={}", runtime_dir.path().display());
    // One config file that two zoos run in turn (the harness gives each zoo its own).
    let fixed = tempfile::tempdir().unwrap();
    let config = fixed.path().join("zoo.toml");
    std::fs::write(fixed.path().join("server.js"), SERVER_JS).unwrap();
    let node_app = |script: &Path| {
        format!(
            "listen = \"127.0.0.1:0\"\n[apps.node]\ncommand = \"node {}\"\nsocket = true\n\
             [routes]\n\"/\" = {{ app = \"node\" }}\n",
            script.display()
        )
    };
    std::fs::write(&config, node_app(&fixed.path().join("server.js"))).unwrap();
    let run_fixed = format!("exec \"$0\" --config {}", config.display());
    let wrapper = [
        "/usr/bin/env",
        xdg.as_str(),
        "/bin/sh",
        "-c",
        run_fixed.as_str(),
    ];
    let answers = |zoo: &Zoo| {
        util::poll_until(READY_DEADLINE, || {
            http::get(zoo.addr(), "/a").is_ok_and(|response| response.status == 200)
        })
    };

    let mut first = Zoo::start_wrapped(&wrapper, "", &[]);
    assert!(answers(&first), "first run\n{}", first.output());
    let dirs = zoo_dirs(runtime_dir.path());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let socket = dirs[0].join("node/node.sock");
    assert!(
        std::fs::metadata(&socket).unwrap().file_type().is_socket(),
        "{}",
        socket.display()
    );
    let mode = std::fs::metadata(dirs[0].join("node"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // Another config, another directory: the two `node` apps do not meet.
    let other = Zoo::start_wrapped(
        &["/usr/bin/env", xdg.as_str()],
        &node_app(Path::new("server.js")),
        &[("server.js", SERVER_JS)],
    );
    assert!(answers(&other), "other config\n{}", other.output());
    assert_eq!(zoo_dirs(runtime_dir.path()).len(), 2);

    // The first zoo stops; what a crash would leave behind is left at its socket's path.
    first.terminate();
    if !socket.exists() {
        stale_socket(&socket);
    }
    let again = Zoo::start_wrapped(&wrapper, "", &[]);
    assert!(
        answers(&again),
        "the same config finds and replaces its stale socket\n{}",
        again.output()
    );
    let now = zoo_dirs(runtime_dir.path());
    assert!(now.len() == 2 && now.contains(&dirs[0]), "{now:?}");
    assert!(
        answers(&other),
        "the other zoo's app kept its socket\n{}",
        other.output()
    );
}
