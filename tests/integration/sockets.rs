//! `socket = true` (issue 18): apps listening on a Unix socket zoo names in `SOCKET`, in a
//! private directory under `$ZOO_RUN`: uvicorn `--uds` and Node `server.listen(SOCKET)`
//! answer through zoo, a WebSocket echoes over the socket (spliced), a stale socket left by an earlier
//! run is replaced, and a regular file at the socket's path is refused, not deleted.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::util::websocket::ws_frame;
use crate::util::{self, READY_DEADLINE, Zoo, http};

const SERVER_JS: &str = include_str!("sockets/server.js");
const APP_PY: &str = include_str!("../util/fastapi/app.py");

/// zoo with `ZOO_RUN` at `run` and the apps of `apps` (TOML), routes `/node` and `/`.
fn start(run: &Path, apps: &str, routes: &str) -> Zoo {
    let config = format!("listen = \"127.0.0.1:0\"\n{apps}\n[routes]\n{routes}");
    let zoo_run = format!("ZOO_RUN={}", run.display());
    Zoo::start_wrapped(
        &["/usr/bin/env", &zoo_run],
        &config,
        &[("server.js", SERVER_JS), ("app.py", APP_PY)],
    )
}

/// Leaves a socket file at `path`, as a process killed before it cleaned up would.
fn stale_socket(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
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

#[test]
fn socket_path_holding_a_regular_file_is_refused_and_kept() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("node/node.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "not a socket").unwrap();
    let zoo = start(
        run.path(),
        "[apps.node]\ncommand = \"node server.js\"\nsocket = true\nrestart = \"never\"\n",
        "\"/\" = { app = \"node\" }\n",
    );
    assert!(
        zoo.wait_for_line(READY_DEADLINE, |_, line| line
            .contains("exists and is not a socket")),
        "the start is refused with the reason\n{}",
        zoo.output()
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a socket",
        "the file is kept"
    );
}
