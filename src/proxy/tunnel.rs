//! Upgraded connections (WebSocket): which requests ask for one, and the tunnel that moves
//! bytes both ways once the app answered 101.
//!
//! On Linux, when the client end is a plain TCP socket and the app end a plain TCP or Unix
//! stream socket (`socket = true`), the tunnel splices (splice(2)) through a pipe lent from a
//! bounded pool while bytes move (an idle tunnel holds only its two sockets): the bytes never
//! enter user space. Anywhere else (a TLS client, an HTTPS upstream, another OS) it falls
//! back to a copy loop. Either way a half-close passes
//! through (EOF one way shuts down writing the other way), and there is no idle timeout. A
//! tunnel holds only its two sockets, never the runtime table, so a config reload cannot close
//! it; it is tracked with the connections so graceful shutdown waits for it up to the grace.

use std::io;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use super::engine::{self, TunnelStream};
use super::keepalive::Watched;
use super::sniff::Sniffed;
#[cfg(target_os = "linux")]
use super::splice;
use crate::upstream::{UpgradedUpstream, UpstreamStream};

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

/// One end of a tunnel: a TCP or Unix socket (spliceable) with the bytes read past the HTTP
/// message, or any other stream (TLS) with them.
enum End {
    Tcp(TcpStream, Bytes),
    Unix(UnixStream, Bytes),
    Other(Box<dyn TunnelStream>, Bytes),
}

/// The app's end of a tunnel as an upstream client handed it over: hyper's upgraded
/// connection, or the stream zoo's client read the `101` on.
pub enum Upstream {
    Hyper(Upgraded),
    Zoo(UpgradedUpstream),
}

fn client_end(upgraded: Upgraded) -> End {
    match upgraded.downcast::<TokioIo<Watched<Sniffed>>>() {
        Ok(parts) => {
            let Sniffed { head, stream } = parts.io.into_inner().io;
            // Whatever the sniffer read is a prefix of what hyper read; both are unsent.
            End::Tcp(stream, [head, parts.read_buf].concat().into())
        }
        Err(upgraded) => End::Other(Box::new(TokioIo::new(upgraded)), Bytes::new()),
    }
}

/// The app's end: what `upstream/` dialled, a loopback port or an app's Unix socket (both
/// spliced), or a remote host over TLS.
fn upstream_end(upstream: Upstream) -> End {
    let upgraded = match upstream {
        Upstream::Zoo(UpgradedUpstream { stream, early }) => {
            return match stream {
                UpstreamStream::Tcp(tcp) => End::Tcp(tcp, early),
                UpstreamStream::Unix(unix) => End::Unix(unix, early),
                UpstreamStream::Tls(tls) => End::Other(tls, early),
            };
        }
        Upstream::Hyper(upgraded) => upgraded,
    };
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return End::Tcp(parts.io.into_inner(), parts.read_buf),
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<UnixStream>>() {
        Ok(parts) => End::Unix(parts.io.into_inner(), parts.read_buf),
        Err(upgraded) => End::Other(Box::new(TokioIo::new(upgraded)), Bytes::new()),
    }
}

/// Moves bytes between the client and the app until both directions ended or one failed.
pub async fn run(client: Upgraded, upstream: Upstream) -> io::Result<()> {
    between(client_end(client), upstream_end(upstream)).await
}

/// [`run`] for a client served by zoo's own HTTP/1.1 engine: its socket, and the bytes it
/// read past the request head.
pub async fn run_from_socket(
    client: engine::ClientSocket,
    client_early: Bytes,
    upstream: Upstream,
) -> io::Result<()> {
    let client = match client {
        engine::ClientSocket::Tcp(socket) => End::Tcp(socket, client_early),
        engine::ClientSocket::Stream(stream) => End::Other(Box::new(stream), client_early),
    };
    between(client, upstream_end(upstream)).await
}

async fn between(client: End, upstream: End) -> io::Result<()> {
    match (client, upstream) {
        #[cfg(target_os = "linux")]
        (End::Tcp(mut client, client_early), End::Tcp(mut upstream, upstream_early)) => {
            splice::both_ways(&mut client, client_early, &mut upstream, upstream_early).await
        }
        #[cfg(target_os = "linux")]
        (End::Tcp(mut client, client_early), End::Unix(mut upstream, upstream_early)) => {
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

fn boxed(end: End) -> (Box<dyn TunnelStream>, Bytes) {
    match end {
        End::Tcp(stream, early) => (Box::new(stream), early),
        End::Unix(stream, early) => (Box::new(stream), early),
        End::Other(stream, early) => (stream, early),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite};

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

    /// Runs a tunnel with `pool` between two loopback TCP socket pairs (see
    /// [`through_tunnel_to`]).
    #[cfg(target_os = "linux")]
    async fn through_tunnel(pool: &'static splice::PipePool, sent: Vec<u8>) {
        through_tunnel_to(pool, sent, pair().await).await;
    }

    /// Runs a tunnel with `pool` between a TCP pair (the client's) and `upstream` (the tunnel's
    /// end, the app's); the client sends `sent` then shuts down writing, the app answers the
    /// same bytes reversed then shuts down too. Both sides must see the other's early bytes
    /// first, then every byte in order.
    #[cfg(target_os = "linux")]
    async fn through_tunnel_to<U>(pool: &'static splice::PipePool, sent: Vec<u8>, upstream: (U, U))
    where
        U: splice::Socket + AsyncRead + AsyncWrite + Send + 'static,
    {
        use tokio::io::AsyncReadExt;

        let (mut client_in, mut client) = pair().await;
        let (mut upstream_in, app) = upstream;
        let tunnel = tokio::spawn(async move {
            splice::both_ways_with(
                pool,
                &mut client_in,
                Bytes::from_static(b"early-from-client "),
                &mut upstream_in,
                Bytes::from_static(b"early-from-app "),
            )
            .await
        });
        let answer: Vec<u8> = sent.iter().rev().copied().collect();
        let client_side = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut at_client = Vec::new();
            client.read_to_end(&mut at_client).await.unwrap();
            (sent, at_client)
        });
        let mut at_app = Vec::new();
        let mut expected = b"early-from-client ".to_vec();
        // Read what the client sent before answering: the client stopped sending, the app
        // can still answer (half-close passes through).
        let (mut app_read, mut app_write) = tokio::io::split(app);
        let (read, written) = tokio::join!(app_read.read_to_end(&mut at_app), async {
            app_write.write_all(&answer).await?;
            app_write.shutdown().await
        });
        read.unwrap();
        written.unwrap();
        let (sent, at_client) = client_side.await.unwrap();
        expected.extend_from_slice(&sent);
        assert!(at_app == expected, "client -> app bytes differ");
        let mut expected = b"early-from-app ".to_vec();
        expected.extend_from_slice(&answer);
        assert!(at_client == expected, "app -> client bytes differ");
        tunnel.await.unwrap().unwrap();
    }

    #[cfg(target_os = "linux")]
    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_moves_early_bytes_then_data_and_passes_half_close() {
        static POOL: splice::PipePool = splice::PipePool::new(4);
        through_tunnel(&POOL, b"hello".to_vec()).await;
        through_tunnel(&POOL, patterned(3 << 20)).await;
        // Every pipe went back: the two directions never needed more than two.
        assert!(POOL.open() <= 2, "{} pipes open", POOL.open());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_to_a_unix_socket_app_moves_early_bytes_then_data_and_passes_half_close() {
        static POOL: splice::PipePool = splice::PipePool::new(4);
        through_tunnel_to(&POOL, b"hello".to_vec(), UnixStream::pair().unwrap()).await;
        through_tunnel_to(&POOL, patterned(3 << 20), UnixStream::pair().unwrap()).await;
        // The bytes went through pipes (a copy opens none), and every pipe went back.
        assert!((1..=2).contains(&POOL.open()), "{} pipes open", POOL.open());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn tunnel_copies_when_no_pipe_is_free() {
        static NONE: splice::PipePool = splice::PipePool::new(0);
        through_tunnel(&NONE, patterned(1 << 20)).await;
        assert_eq!(NONE.open(), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnels_share_a_pool_smaller_than_their_directions() {
        // Eight tunnels, sixteen directions, one pipe: most transfers copy, the pipe is passed
        // around, and every byte still arrives in order.
        static ONE: splice::PipePool = splice::PipePool::new(1);
        let tunnels: Vec<_> = (0..8)
            .map(|n| tokio::spawn(through_tunnel(&ONE, patterned((n + 1) * 300_000))))
            .collect();
        for tunnel in tunnels {
            tunnel.await.unwrap();
        }
        assert!(ONE.open() <= 1);
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
