//! The client streams the engine serves: a plain TCP socket, a TLS stream over one
//! (tokio-rustls, ALPN `http/1.1` or none), or an in-memory stream (`tokio::io::duplex`, for
//! the fuzz target). [`ClientStream`] is what the engine needs of one beyond reading and
//! writing: waiting for bytes without a buffer (so an idle connection holds none), and what
//! the WebSocket tunnel gets after a `101` ([`ClientSocket`]: the bare socket, which it can
//! splice, or the stream as it is).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client connection's stream as the engine serves it.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until a read may find bytes (or the end), holding no buffer meanwhile. A stream
    /// that cannot tell is ready at once; the engine's read then waits, in a buffer.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    /// The bare TCP socket under the stream, when there is nothing between (no TLS): a body
    /// can then be spliced into it.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// The client's end of a WebSocket tunnel.
    fn into_socket(self) -> ClientSocket
    where
        Self: Sized,
    {
        ClientSocket::Stream(Box::new(self))
    }
}

impl ClientStream for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        // The socket's own read waker, not `TcpStream::readable`'s waiter: a future of one
        // reference where that one's takes 150 bytes of every idle connection's task.
        std::future::poll_fn(|context| self.poll_read_ready(context))
    }

    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }

    fn into_socket(self) -> ClientSocket {
        ClientSocket::Tcp(self)
    }
}

impl ClientStream for TlsStream<TcpStream> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        let (socket, tls) = self.get_ref();
        // rustls may hold decrypted bytes (or a close_notify) the socket will not signal.
        let buffered = !tls.wants_read();
        std::future::poll_fn(move |context| {
            if buffered {
                Poll::Ready(Ok(()))
            } else {
                socket.poll_read_ready(context)
            }
        })
    }
}

impl ClientStream for DuplexStream {}

/// A stream the tunnel copies to and from.
pub trait TunnelStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelStream for T {}

/// The client's end of a WebSocket tunnel, handed over by the engine after the `101`.
pub enum ClientSocket {
    /// A plain TCP socket: the tunnel splices it.
    Tcp(TcpStream),
    /// Any other stream (TLS): the tunnel copies.
    Stream(Box<dyn TunnelStream>),
}

/// Reads what `stream` has ready now into `buf`, without waiting (`WouldBlock` if nothing).
pub(super) fn read_now<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    // A no-op waker: the caller waits by other means (`readable`, or an awaited read, whose
    // own poll registers its waker again).
    let mut context = Context::from_waker(Waker::noop());
    match tokio_util::io::poll_read_buf(Pin::new(stream), &mut context, buf) {
        Poll::Ready(read) => read,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Writes all of `bytes` and flushes them: a TLS stream may keep the last record it made
/// until flushed, and the engine waits for the client next.
pub(super) async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
