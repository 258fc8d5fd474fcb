//! Telling HTTP/2 prior knowledge (h2c) from HTTP/1.x by a connection's first bytes, and
//! [`Sniffed`], the socket that replays those bytes to hyper.
//!
//! zoo reads the first bytes itself instead of using hyper-util's auto builder because the auto
//! builder wraps the socket in a private type: an upgraded (WebSocket) connection could then not
//! be turned back into its `TcpStream`, and the tunnel could not splice(2). [`Sniffed`] is that
//! wrapper, public to the tunnel.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What an HTTP/2 client sends first (RFC 9113 3.4); nothing else starts with it.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client socket plus the bytes read from it to tell the protocol, replayed before the rest.
pub struct Sniffed {
    /// Bytes already read from `stream` that hyper has not consumed yet.
    pub head: Bytes,
    pub stream: TcpStream,
}

impl AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.head.has_remaining() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Whether the bytes read so far decide the protocol: `Some(true)` for the h2 preface.
fn decided(head: &[u8]) -> Option<bool> {
    let n = head.len().min(H2_PREFACE.len());
    if head[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Reads until the first bytes tell HTTP/2 prior knowledge from HTTP/1.x. `None` when the
/// client closed or failed first.
pub(super) async fn sniff(mut stream: TcpStream) -> Option<(bool, Sniffed)> {
    let mut head = BytesMut::with_capacity(H2_PREFACE.len());
    loop {
        if stream.read_buf(&mut head).await.ok()? == 0 {
            return None;
        }
        if let Some(h2) = decided(&head) {
            let head = head.freeze();
            return Some((h2, Sniffed { head, stream }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_is_decided_at_the_first_differing_byte() {
        assert_eq!(decided(b"G"), Some(false));
        assert_eq!(decided(b"POST / HTTP/1.1\r\n"), Some(false));
        assert_eq!(decided(b"PRI * HTTP/1.1\r\n"), Some(false));
    }

    #[test]
    fn h2_needs_the_whole_preface() {
        assert_eq!(decided(b"PRI * HTTP/2.0"), None);
        assert_eq!(decided(b"P"), None);
        assert_eq!(decided(H2_PREFACE), Some(true));
        assert_eq!(
            decided(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"),
            Some(true)
        );
    }
}
