//! Upgraded connections (WebSocket): which requests ask for one, and the tunnel that moves
//! bytes both ways once the app answered 101.
//!
//! On Linux, when both ends are plain TCP sockets, the tunnel splices (splice(2)) through a
//! pipe per direction: the bytes never enter user space. Anywhere else (a TLS client, an
//! HTTPS upstream, another OS) it falls back to a copy loop. Either way a half-close passes
//! through (EOF one way shuts down writing the other way), and there is no idle timeout. A
//! tunnel holds only its two sockets, never the runtime table, so a config reload cannot close
//! it; it is tracked with the connections so graceful shutdown waits for it up to the grace.

use std::io;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::keepalive::Watched;
use super::sniff::Sniffed;

/// Whether the request asks to switch to WebSocket: the one upgrade zoo performs (an
/// `Upgrade: h2c` is served as plain HTTP/1.1 and never forwarded).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket")
}

/// Whether an upstream's `101` switches to WebSocket, the one protocol zoo tunnels (RFC 6455
/// 4.1: a client fails a handshake whose `Upgrade` is anything else).
pub fn wants_websocket_answer(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Puts back the two hop-by-hop headers a WebSocket upgrade needs on the next hop.
pub fn mark_websocket(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// One end of a tunnel: a TCP socket (spliceable) with the bytes hyper read past the HTTP
/// message, or any other upgraded stream.
enum End {
    Tcp(TcpStream, Bytes),
    Other(TokioIo<Upgraded>),
}

fn client_end(upgraded: Upgraded) -> End {
    match upgraded.downcast::<TokioIo<Watched<Sniffed>>>() {
        Ok(parts) => {
            let Sniffed { head, stream } = parts.io.into_inner().io;
            // Whatever the sniffer read is a prefix of what hyper read; both are unsent.
            End::Tcp(stream, [head, parts.read_buf].concat().into())
        }
        Err(upgraded) => End::Other(TokioIo::new(upgraded)),
    }
}

fn upstream_end(upgraded: Upgraded) -> End {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => End::Tcp(parts.io.into_inner(), parts.read_buf),
        Err(upgraded) => End::Other(TokioIo::new(upgraded)),
    }
}

/// Moves bytes between the client and the app until both directions ended or one failed.
pub async fn run(client: Upgraded, upstream: Upgraded) -> io::Result<()> {
    match (client_end(client), upstream_end(upstream)) {
        #[cfg(target_os = "linux")]
        (End::Tcp(mut client, client_early), End::Tcp(mut upstream, upstream_early)) => {
            splice::both_ways(&mut client, client_early, &mut upstream, upstream_early).await
        }
        (client, upstream) => {
            let (mut client, client_early) = boxed(client);
            let (mut upstream, upstream_early) = boxed(upstream);
            upstream.write_all(&client_early).await?;
            client.write_all(&upstream_early).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            Ok(())
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn boxed(end: End) -> (Box<dyn Stream>, Bytes) {
    match end {
        End::Tcp(stream, early) => (Box::new(stream), early),
        End::Other(io) => (Box::new(io), Bytes::new()),
    }
}

#[cfg(target_os = "linux")]
mod splice {
    //! Zero-copy pumping between two TCP sockets through a pipe, driven by tokio readiness.

    use std::io;
    use std::os::fd::OwnedFd;

    use bytes::Bytes;
    use nix::fcntl::{OFlag, SpliceFFlags, splice};
    use nix::unistd::pipe2;
    use tokio::io::{AsyncWriteExt, Interest};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{ReadHalf, WriteHalf};

    /// Bytes moved per splice call: the default pipe capacity on Linux.
    const CHUNK: usize = 64 * 1024;

    pub async fn both_ways(
        client: &mut TcpStream,
        client_early: Bytes,
        upstream: &mut TcpStream,
        upstream_early: Bytes,
    ) -> io::Result<()> {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        // try_join: when one direction fails (a reset), the other is dropped with it.
        tokio::try_join!(
            pump(client_read, client_early, upstream_write),
            pump(upstream_read, upstream_early, client_write),
        )?;
        Ok(())
    }

    /// `early`, then everything `from` sends, into `to`; at EOF shuts down writing to `to`.
    async fn pump(from: ReadHalf<'_>, early: Bytes, mut to: WriteHalf<'_>) -> io::Result<()> {
        to.write_all(&early).await?;
        let (pipe_out, pipe_in) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        loop {
            let filled = into_pipe(&from, &pipe_in).await?;
            if filled == 0 {
                return to.shutdown().await;
            }
            let mut left = filled;
            while left > 0 {
                left -= out_of_pipe(&pipe_out, &to, left).await?;
            }
        }
    }

    const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

    async fn into_pipe(from: &ReadHalf<'_>, pipe_in: &OwnedFd) -> io::Result<usize> {
        let socket: &TcpStream = from.as_ref();
        when_ready(socket, Interest::READABLE, || {
            splice(socket, None, pipe_in, None, CHUNK, FLAGS)
        })
        .await
    }

    async fn out_of_pipe(pipe_out: &OwnedFd, to: &WriteHalf<'_>, len: usize) -> io::Result<usize> {
        let socket: &TcpStream = to.as_ref();
        when_ready(socket, Interest::WRITABLE, || {
            splice(pipe_out, None, socket, None, len, FLAGS)
        })
        .await
    }

    /// Runs one non-blocking `splice` once `socket` is ready for `interest`, waiting again
    /// whenever the readiness was stale.
    async fn when_ready(
        socket: &TcpStream,
        interest: Interest,
        splice_once: impl Fn() -> nix::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            socket.ready(interest).await?;
            match socket.try_io(interest, || Ok(splice_once()?)) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn websocket_upgrade_is_recognised_case_insensitively() {
        assert!(wants_websocket(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ])));
    }

    /// A connected pair of loopback sockets: (the end the tunnel gets, the test's end).
    #[cfg(target_os = "linux")]
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outside = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (inside, _) = listener.accept().await.unwrap();
        (inside, outside)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_moves_early_bytes_then_data_and_passes_half_close() {
        use tokio::io::AsyncReadExt;

        let (mut client_in, mut client) = pair().await;
        let (mut upstream_in, mut app) = pair().await;
        let tunnel = tokio::spawn(async move {
            splice::both_ways(
                &mut client_in,
                Bytes::from_static(b"early-from-client "),
                &mut upstream_in,
                Bytes::from_static(b"early-from-app "),
            )
            .await
        });
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut at_app = Vec::new();
        app.read_to_end(&mut at_app).await.unwrap();
        assert_eq!(at_app, b"early-from-client hello");
        // The client stopped sending; the app can still answer.
        app.write_all(b"bye").await.unwrap();
        app.shutdown().await.unwrap();
        let mut at_client = Vec::new();
        client.read_to_end(&mut at_client).await.unwrap();
        assert_eq!(at_client, b"early-from-app bye");
        tunnel.await.unwrap().unwrap();
    }

    #[test]
    fn h2c_and_half_asked_upgrades_are_not_websocket() {
        assert!(!wants_websocket(&headers(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
        assert!(!wants_websocket(&headers(&[("upgrade", "websocket")])));
        assert!(!wants_websocket(&headers(&[("connection", "upgrade")])));
    }
}
