//! Readiness probes: does the app accept TCP connections, does its HTTP path answer below 500.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Probe;

/// Runs one probe against `addr`; `false` on any failure or when `timeout` passes.
pub async fn passes(probe: &Probe, addr: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        match probe {
            Probe::Tcp => TcpStream::connect(addr).await.is_ok(),
            Probe::Http { path } => http_status(addr, path)
                .await
                .is_some_and(|status| status < 500),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// Status code of `GET path`, or `None` when the app does not answer HTTP.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: zoo-probe\r\nConnection: close\r\n\r\n"
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
