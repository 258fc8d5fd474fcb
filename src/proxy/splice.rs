//! Zero-copy moving between two stream sockets (TCP, or an app's Unix socket) through a
//! pipe, driven by tokio readiness: both ways for a WebSocket tunnel (tunnel.rs), and one
//! response body of known length from an upstream to a client ([`BodyPipe`], used by the
//! HTTP/1.1 engine).
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
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::unistd::pipe2;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest, Ready};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// Bytes moved per splice call: the default pipe capacity on Linux.
const CHUNK: usize = 64 * 1024;

/// What a pipe is made to hold (`F_SETPIPE_SZ`), for a body's pieces: the default 64 KiB
/// would take 16 splices in and 16 out per MiB. Its pages are taken only while bytes are in
/// it, and a tunnel's transfers still move at most [`CHUNK`] at a time.
const BODY_PIPE_BYTES: usize = 256 * 1024;

/// The most pipes open at once in the process: 128 descriptors. A pipe is held only while
/// a transfer's bytes are in it, so this many transfers can be in flight zero-copy; more
/// copy (a 2-core machine moves no more at once anyway).
const MAX_PIPES: usize = 64;

/// Bytes a copying transfer moves per read (when no pipe is free).
const COPY_CHUNK: usize = 16 * 1024;

/// The pipes of every tunnel and spliced body in the process. A process-wide static like the descriptor
/// limit it protects: tunnels share it whichever listener or reload opened them.
static PIPES: PipePool = PipePool::new(MAX_PIPES);

/// Empty pipes ready to lend, and how many pipes are open in all (lent or idle).
pub struct PipePool {
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
    pub const fn new(max: usize) -> Self {
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
                // Refused past the system's limits (`/proc/sys/fs/pipe-max-size`, a user's
                // pipe pages): the pipe keeps its default size and works the same.
                let size = i32::try_from(BODY_PIPE_BYTES).unwrap_or(i32::MAX);
                let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(size));
                Pipe { read, write }
            }
        };
        Some(Lease {
            pipe: Some(pipe),
            pool: self,
        })
    }

    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Lease<'_> {
    fn pipe(&self) -> io::Result<&Pipe> {
        // A lease holds its pipe until it ends.
        self.pipe
            .as_ref()
            .ok_or_else(|| io::ErrorKind::BrokenPipe.into())
    }

    /// Gives the pipe back; called only once every byte spliced in was spliced out.
    fn drained(mut self) {
        self.give_back();
    }

    /// [`Lease::drained`] for a lease inside another value.
    fn give_back(&mut self) {
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
pub trait Socket: AsFd + Sync {
    type Reading<'a>: AsRef<Self> + Send
    where
        Self: 'a;
    type Writing<'a>: AsyncWrite + AsRef<Self> + Unpin + Send
    where
        Self: 'a;
    fn halves(&mut self) -> (Self::Reading<'_>, Self::Writing<'_>);
    fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + Send;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize>;
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
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
            fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + Send {
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
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_write_ready(self, cx)
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
pub async fn both_ways_with<C: Socket, U: Socket>(
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

/// One splice from `from` into the leased pipe and out to `to` until the pipe is empty; the
/// bytes moved (0 at EOF), or `None` when `from` had nothing after all.
async fn through_pipe(
    lease: Lease<'_>,
    from: &impl Socket,
    to: &impl Socket,
) -> io::Result<Option<usize>> {
    let moved = splice_once(lease.pipe()?, from, to, CHUNK).await?;
    lease.drained();
    Ok(moved)
}

/// Up to `max` bytes spliced from `from` into `pipe` (empty) and out to `to` until `pipe` is
/// empty again; the bytes moved (0 at EOF), or `None` when `from` had nothing after all.
async fn splice_once(
    pipe: &Pipe,
    from: &impl Socket,
    to: &impl Socket,
    max: usize,
) -> io::Result<Option<usize>> {
    let filled = match from.try_io(Interest::READABLE, || {
        Ok(splice(from, None, &pipe.write, None, max, FLAGS)?)
    }) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        filled => filled?,
    };
    let mut left = filled;
    while left > 0 {
        left -= out_of_pipe(&pipe.read, to, left).await?;
    }
    Ok(Some(filled))
}

/// A pipe lent to one body of known length, which it moves between two sockets: a
/// response's from the upstream to the client (HAProxy's `splice-response`), a request's
/// from the client to the upstream. The body's bytes are not copied through zoo, and a large
/// one goes in pieces of [`BODY_PIPE_BYTES`]. Dropped empty, the pipe goes back to the pool;
/// with bytes in it (an error midway), it is closed.
pub struct BodyPipe {
    lease: Lease<'static>,
    /// Bytes of the piece under way: spliced in, and not yet all out.
    piece: usize,
    /// Bytes of the piece still in the pipe.
    held: usize,
}

/// A pipe for a body; `None` when all [`MAX_PIPES`] are in use (the body is then copied).
pub fn body_pipe() -> Option<BodyPipe> {
    PIPES.lease().map(|lease| BodyPipe {
        lease,
        piece: 0,
        held: 0,
    })
}

impl BodyPipe {
    /// Moves exactly `len` bytes from `from` to `to`. `from` ending sooner is
    /// `UnexpectedEof`.
    pub async fn move_exactly(
        mut self,
        from: &impl Socket,
        to: &impl Socket,
        len: u64,
    ) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let max = piece_max(left);
            match std::future::poll_fn(|cx| self.poll_piece(cx, from, to, max)).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                moved => left = left.saturating_sub(u64::try_from(moved).unwrap_or(u64::MAX)),
            }
        }
        Ok(())
    }

    /// Moves one piece of up to `max` bytes: spliced from `from` into the pipe once `from`
    /// has some, then out to `to` until the pipe is empty. Ready with the piece's size (0:
    /// `from` ended) once it is all in `to`; polled again after pending, it goes on.
    pub fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
        from: &impl Socket,
        to: &impl Socket,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        while self.piece == 0 {
            ready!(from.poll_read_ready(cx))?;
            match self.try_fill(from, max) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {}
            }
        }
        ready!(self.poll_empty(cx, to))?;
        Poll::Ready(Ok(std::mem::take(&mut self.piece)))
    }

    /// One splice of up to `max` bytes from `from` into the pipe, which must be empty (a
    /// full pipe would read as `from` having nothing); `WouldBlock` when `from` has nothing.
    pub fn try_fill(&mut self, from: &impl Socket, max: usize) -> io::Result<usize> {
        let pipe = self.lease.pipe()?;
        let filled = from.try_io(Interest::READABLE, || {
            Ok(splice(from, None, &pipe.write, None, max, FLAGS)?)
        })?;
        self.piece = filled;
        self.held = filled;
        Ok(filled)
    }

    /// Splices what the pipe holds out to `to`; ready once the pipe is empty.
    pub fn poll_empty(&mut self, cx: &mut Context<'_>, to: &impl Socket) -> Poll<io::Result<()>> {
        while self.held > 0 {
            let pipe = self.lease.pipe()?;
            ready!(to.poll_write_ready(cx))?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe.read, None, to, None, self.held, FLAGS)?)
            }) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(out) => self.held = self.held.saturating_sub(out),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether the pipe holds bytes not yet spliced out.
    pub fn holds(&self) -> bool {
        self.held > 0
    }
}

/// The largest piece for a body with `left` bytes to go.
pub fn piece_max(left: u64) -> usize {
    usize::try_from(left).map_or(BODY_PIPE_BYTES, |left| left.min(BODY_PIPE_BYTES))
}

impl Drop for BodyPipe {
    fn drop(&mut self) {
        if self.held == 0 {
            self.lease.give_back();
        }
    }
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

/// Both ends of a loopback TCP connection, (accepted, connected), and bytes that differ from
/// their neighbours, for the tests of what splices (here and engine/upload.rs).
#[cfg(test)]
pub mod test_sockets {
    use tokio::net::{TcpListener, TcpStream};

    pub async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connected = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener.accept().await.unwrap().0, connected)
    }

    pub fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::test_sockets::{pair, patterned};
    use super::*;

    #[tokio::test]
    async fn a_body_moves_exactly_its_length_and_leaves_the_next_bytes_unread() {
        let (mut upstream, mut app) = pair().await;
        let (to_client, mut client) = pair().await;
        // Not a multiple of the pipe's size, and the next response right behind it.
        let body = patterned(1_000_003);
        let mut sent = body.clone();
        sent.extend_from_slice(b"NEXT");
        let app_side = tokio::spawn(async move { app.write_all(&sent).await.map(|()| app) });
        let length = body.len();
        let client_side = tokio::spawn(async move {
            let mut got = vec![0; length];
            client.read_exact(&mut got).await.map(|_| got)
        });
        let pipe = body_pipe().expect("a pipe is free");
        pipe.move_exactly(&upstream, &to_client, u64::try_from(length).unwrap())
            .await
            .unwrap();
        assert!(
            client_side.await.unwrap().unwrap() == body,
            "the body differs"
        );
        let mut next = [0; 4];
        // Bounded: had the pipe taken them, they would never come.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            upstream.read_exact(&mut next),
        )
        .await
        .expect("the bytes after the body are still there")
        .unwrap();
        assert_eq!(
            &next, b"NEXT",
            "what follows the body stays in the upstream's socket"
        );
        drop(app_side.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn an_upstream_that_closes_before_the_length_is_an_unexpected_end() {
        let (upstream, mut app) = pair().await;
        let (to_client, _client) = pair().await;
        app.write_all(&patterned(1000)).await.unwrap();
        app.shutdown().await.unwrap();
        let pipe = body_pipe().expect("a pipe is free");
        let moved = pipe.move_exactly(&upstream, &to_client, 5000).await;
        assert_eq!(
            moved.map_err(|error| error.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
    }
}
