//! Peer servers the tests compare zoo with (nginx, caddy): each run in the foreground in its
//! own temp dir and process group, waited for until it accepts connections, and killed with
//! its workers on drop; plus [`nginx`], the config frame every nginx peer shares.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a peer may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// nginx or caddy, run in the foreground in its own temp dir and process group.
pub struct Daemon {
    child: Child,
    pub port: u16,
    dir: TempDir,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, mut command: Command, port: u16, dir: TempDir) -> Daemon {
        use std::os::unix::process::CommandExt;
        let log = dir.path().join(format!("{name}.out"));
        let out = File::create(&log).expect("create the daemon's log file");
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut daemon = Daemon {
            child,
            port,
            dir,
            log,
        };
        let addr = daemon.addr();
        let up = super::poll_until(START_DEADLINE, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                || matches!(daemon.child.try_wait(), Ok(Some(_)))
        });
        assert!(
            up && matches!(daemon.child.try_wait(), Ok(None)),
            "{name} did not accept connections on {addr} within {START_DEADLINE:?}:\n{}",
            daemon.output()
        );
        daemon
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the daemon printed, and nginx's error log, for failure messages (lines clipped:
    /// nginx quotes whole over-long headers).
    pub fn output(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(errors) = std::fs::read_to_string(self.dir.path().join("error.log")) {
            text.push_str(&errors);
        }
        text.lines().map(|line| clip_line(line) + "\n").collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = kill(pid, Signal::SIGTERM);
        if !super::poll_until(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // nginx's workers are in the same group and exit with their master; make sure.
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

/// The path of `program` on `PATH` (and the sbin dirs, where Debian puts nginx), or a failure
/// that says how to get it.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed: the tests run nginx and caddy as peers. Run \
                 scripts/setup (it installs both Debian packages)."
            )
        })
}

pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

/// nginx on a free loopback port, in a temp dir named after `prefix`: `http(run, port)` gives
/// the body of the `http` block (the temp paths of `run` and access logging off are set
/// around it), one `server` listening on `127.0.0.1:port` in it.
pub fn nginx(prefix: &str, http: impl FnOnce(&str, u16) -> String) -> Daemon {
    let program = require("nginx");
    let dir = temp_dir(prefix);
    let run = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let port = super::free_port();
    // As root, nginx would run its workers as `nobody`, who cannot enter the temp dir.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;"
    } else {
        ""
    };
    let body = http(&run, port);
    let conf = format!(
        "{user}
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp/body;
    proxy_temp_path {run}/tmp/proxy;
    fastcgi_temp_path {run}/tmp/fastcgi;
    uwsgi_temp_path {run}/tmp/uwsgi;
    scgi_temp_path {run}/tmp/scgi;
{body}
}}
"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new(program);
    command
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .args(["-g", "daemon off;"]);
    Daemon::spawn("nginx", command, port, dir)
}

/// `line` cut at 300 characters (nginx quotes whole over-long headers in its log).
fn clip_line(line: &str) -> String {
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}
