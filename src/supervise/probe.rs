//! Readiness and liveness probes: does the app accept connections (on its port, or its Unix
//! socket with `socket = true`), does its HTTP path
//! answer below 500, does an exec command exit 0. Exec probes are spawned through the
//! [`Reaper`] like the apps (nothing else may wait for a child) in their own process group,
//! which is killed when the probe times out.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::{Reaper, command, signal_group};
use crate::config::{self, Probe};

/// What a probe runs against: the app's address, and for exec probes its env and dir.
pub struct Target<'a> {
    pub addr: SocketAddr,
    /// The instance's Unix socket, which TCP and HTTP probes then connect to instead.
    pub socket: Option<&'a Path>,
    pub app: &'a config::App,
    /// The instance's `ZOO_REPLICA`, which an exec probe sees too.
    pub replica: usize,
    pub reaper: &'a Reaper,
}

/// Runs one probe; `false` on any failure or when `timeout` passes.
pub async fn passes(probe: &Probe, target: &Target<'_>, timeout: Duration) -> bool {
    let addr = target.addr;
    match probe {
        Probe::Tcp => match target.socket {
            Some(socket) => tokio::time::timeout(timeout, UnixStream::connect(socket))
                .await
                .is_ok_and(|connected| connected.is_ok()),
            None => tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .is_ok_and(|connected| connected.is_ok()),
        },
        Probe::Http { path } => tokio::time::timeout(timeout, http_status(target, path))
            .await
            .ok()
            .flatten()
            .is_some_and(|status| status < 500),
        Probe::Exec { command } => exec_passes(command, target, timeout).await,
        Probe::Started => true,
    }
}

async fn exec_passes(line: &str, target: &Target<'_>, timeout: Duration) -> bool {
    let port = target.app.listens().then(|| target.addr.port());
    let mut command = command::probe_command(
        line,
        target.app,
        command::Listening {
            port,
            socket: target.socket,
            replica: target.replica,
        },
    );
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (child, exit) = match target.reaper.spawn(&mut command) {
        Ok(spawned) => spawned,
        Err(error) => {
            tracing::warn!("{}: cannot run exec probe: {error}", target.app.name);
            return false;
        }
    };
    match tokio::time::timeout(timeout, exit).await {
        Ok(status) => status.is_ok_and(super::ExitStatus::success),
        Err(_) => {
            #[allow(clippy::cast_possible_wrap)]
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            signal_group(pgid, Signal::SIGKILL);
            false
        }
    }
}

/// Status code of `GET path`, or `None` when the app does not answer HTTP.
async fn http_status(target: &Target<'_>, path: &str) -> Option<u16> {
    match target.socket {
        Some(socket) => {
            let stream = UnixStream::connect(socket).await.ok()?;
            http_status_over(stream, "localhost", path).await
        }
        None => {
            let stream = TcpStream::connect(target.addr).await.ok()?;
            http_status_over(stream, &target.addr.to_string(), path).await
        }
    }
}

/// The status `GET path` gets on `stream`, with `Host: host`.
async fn http_status_over(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    host: &str,
    path: &str,
) -> Option<u16> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: zoo-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 32];
    let mut filled = 0;
    while filled < 12 {
        let read = stream.read(&mut head[filled..]).await.ok()?;
        if read == 0 {
            return None;
        }
        filled += read;
    }
    parse_status_line(&head[..filled])
}

/// `HTTP/1.x NNN ...` -> NNN.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_parsed() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2x0 OK"), None);
    }
}
