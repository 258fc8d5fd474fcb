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

#[cfg(target_os = "linux")]
mod splice {
    //! Zero-copy pumping between two stream sockets (TCP, or an app's Unix socket) through a
    //! pipe, driven by tokio readiness.
    //!
    //! A pipe costs two descriptors, so a tunnel does not keep one: each transfer leases a
    //! pipe from [`PIPES`] once its source is readable and returns it when it is drained
    //! again, as HAProxy's pipe pool does. An idle tunnel thus holds only its two sockets
    //! (nginx's count), and the pipes in the whole process are bounded. When none is free the
    //! transfer copies through a buffer that lives only as long as the transfer.

    use std::future::Future;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use bytes::Bytes;
    use nix::fcntl::{OFlag, SpliceFFlags, splice};
    use nix::unistd::pipe2;
    use tokio::io::{AsyncWrite, AsyncWriteExt, Interest, Ready};
    use tokio::net::{TcpStream, UnixStream, tcp, unix};

    /// Bytes moved per splice call: the default pipe capacity on Linux.
    const CHUNK: usize = 64 * 1024;

    /// The most pipes open at once in the process: 128 descriptors. A pipe is held only while
    /// a transfer's bytes are in it, so this many transfers can be in flight zero-copy; more
    /// copy (a 2-core machine moves no more at once anyway).
    const MAX_PIPES: usize = 64;

    /// Bytes a copying transfer moves per read (when no pipe is free).
    const COPY_CHUNK: usize = 16 * 1024;

    /// The pipes of every tunnel in the process. A process-wide static like the descriptor
    /// limit it protects: tunnels share it whichever listener or reload opened them.
    static PIPES: PipePool = PipePool::new(MAX_PIPES);

    /// Empty pipes ready to lend, and how many pipes are open in all (lent or idle).
    pub(super) struct PipePool {
        /// Only ever empty pipes: a lease goes back here only once drained.
        idle: Mutex<Vec<Pipe>>,
        open: AtomicUsize,
        max: usize,
    }

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    /// A pipe lent to one transfer. Dropped (an error midway, bytes maybe left in it), it
    /// closes the pipe; [`Lease::drained`] is the one way back to the pool.
    struct Lease<'pool> {
        pipe: Option<Pipe>,
        pool: &'pool PipePool,
    }

    impl PipePool {
        pub(super) const fn new(max: usize) -> Self {
            Self {
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                max,
            }
        }

        /// An idle pipe, or a new one while fewer than `max` are open; `None` means copy.
        fn lease(&self) -> Option<Lease<'_>> {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let pipe = match idle {
                Some(pipe) => pipe,
                None => {
                    let opened = self.open.fetch_add(1, Ordering::Relaxed);
                    let made = (opened < self.max)
                        .then(|| pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok())
                        .flatten();
                    let Some((read, write)) = made else {
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        return None;
                    };
                    Pipe { read, write }
                }
            };
            Some(Lease {
                pipe: Some(pipe),
                pool: self,
            })
        }

        #[cfg(test)]
        pub(super) fn open(&self) -> usize {
            self.open.load(Ordering::Relaxed)
        }
    }

    impl Lease<'_> {
        fn pipe(&self) -> &Pipe {
            self.pipe
                .as_ref()
                .expect("a lease holds its pipe until it ends")
        }

        /// Gives the pipe back; called only once every byte spliced in was spliced out.
        fn drained(mut self) {
            if let Some(pipe) = self.pipe.take() {
                let mut idle = self
                    .pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                idle.push(pipe);
            }
        }
    }

    impl Drop for Lease<'_> {
        fn drop(&mut self) {
            if self.pipe.take().is_some() {
                self.pool.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// A stream socket tokio drives that splice(2) reads from and writes to: TCP, or Unix
    /// (an app with `socket = true`). Its halves let both directions of a tunnel run at once.
    pub(super) trait Socket: AsFd + Sync {
        type Reading<'a>: AsRef<Self> + Send
        where
            Self: 'a;
        type Writing<'a>: AsyncWrite + AsRef<Self> + Unpin + Send
        where
            Self: 'a;
        fn halves(&mut self) -> (Self::Reading<'_>, Self::Writing<'_>);
        fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + Send;
        fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>)
        -> io::Result<R>;
        fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize>;
    }

    /// [`Socket`] for tokio's two stream sockets, whose methods of these names agree.
    macro_rules! stream_socket {
        ($stream:ty, $halves:ident) => {
            impl Socket for $stream {
                type Reading<'a> = $halves::ReadHalf<'a>;
                type Writing<'a> = $halves::WriteHalf<'a>;
                fn halves(&mut self) -> (Self::Reading<'_>, Self::Writing<'_>) {
                    self.split()
                }
                fn ready(
                    &self,
                    interest: Interest,
                ) -> impl Future<Output = io::Result<Ready>> + Send {
                    <$stream>::ready(self, interest)
                }
                fn try_io<R>(
                    &self,
                    interest: Interest,
                    f: impl FnOnce() -> io::Result<R>,
                ) -> io::Result<R> {
                    <$stream>::try_io(self, interest, f)
                }
                fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
                    <$stream>::try_read(self, buffer)
                }
            }
        };
    }
    stream_socket!(TcpStream, tcp);
    stream_socket!(UnixStream, unix);

    pub async fn both_ways<U: Socket>(
        client: &mut TcpStream,
        client_early: Bytes,
        upstream: &mut U,
        upstream_early: Bytes,
    ) -> io::Result<()> {
        both_ways_with(&PIPES, client, client_early, upstream, upstream_early).await
    }

    /// [`both_ways`] with the pipes of `pool` (a small one in the tests).
    pub(super) async fn both_ways_with<C: Socket, U: Socket>(
        pool: &PipePool,
        client: &mut C,
        client_early: Bytes,
        upstream: &mut U,
        upstream_early: Bytes,
    ) -> io::Result<()> {
        let (client_read, client_write) = client.halves();
        let (upstream_read, upstream_write) = upstream.halves();
        // try_join: when one direction fails (a reset), the other is dropped with it.
        tokio::try_join!(
            pump(pool, client_read.as_ref(), client_early, upstream_write),
            pump(pool, upstream_read.as_ref(), upstream_early, client_write),
        )?;
        Ok(())
    }

    /// `early`, then everything `from` sends, into `to`; at EOF shuts down writing to `to`.
    async fn pump<S: Socket, T: Socket>(
        pool: &PipePool,
        from: &S,
        early: Bytes,
        mut to: impl AsyncWrite + AsRef<T> + Unpin,
    ) -> io::Result<()> {
        to.write_all(&early).await?;
        loop {
            // Idle here, holding no pipe.
            from.ready(Interest::READABLE).await?;
            let moved = match pool.lease() {
                Some(lease) => through_pipe(lease, from, to.as_ref()).await?,
                None => copy_once(from, &mut to).await?,
            };
            // EOF ends this direction; bytes moved or a stale readiness wait again.
            if moved == Some(0) {
                return to.shutdown().await;
            }
        }
    }

    const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

    /// One splice from `from` into the leased pipe and out to `to` until the pipe is empty;
    /// the bytes moved (0 at EOF), or `None` when `from` had nothing after all.
    async fn through_pipe(
        lease: Lease<'_>,
        from: &impl Socket,
        to: &impl Socket,
    ) -> io::Result<Option<usize>> {
        let pipe = lease.pipe();
        let filled = match from.try_io(Interest::READABLE, || {
            Ok(splice(from, None, &pipe.write, None, CHUNK, FLAGS)?)
        }) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                lease.drained();
                return Ok(None);
            }
            filled => filled?,
        };
        let mut left = filled;
        while left > 0 {
            left -= out_of_pipe(&pipe.read, to, left).await?;
        }
        lease.drained();
        Ok(Some(filled))
    }

    async fn out_of_pipe(pipe_out: &OwnedFd, to: &impl Socket, len: usize) -> io::Result<usize> {
        loop {
            to.ready(Interest::WRITABLE).await?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(pipe_out, None, to, None, len, FLAGS)?)
            }) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
        }
    }

    /// One read from `from` copied whole to `to`, for when no pipe is free; like
    /// [`through_pipe`]'s answer.
    async fn copy_once(
        from: &impl Socket,
        to: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<Option<usize>> {
        let mut buffer = vec![0; COPY_CHUNK];
        match from.try_read(&mut buffer) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
            Ok(read) => {
                to.write_all(&buffer[..read]).await?;
                Ok(Some(read))
            }
        }
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
