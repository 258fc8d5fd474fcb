//! The accept loop of a public listener: one task per connection, HTTP/1.1 or HTTP/2 with prior
//! knowledge (h2c) told apart by the first bytes, or with `tls` HTTPS with ALPN h2/http1.1,
//! served until it closes or shutdown asks it to finish its in-flight requests.
//!
//! zoo reads the first bytes itself instead of using hyper-util's auto builder because the auto
//! builder wraps the socket in a private type: an upgraded (WebSocket) connection could then not
//! be turned back into its `TcpStream`, and the tunnel could not splice(2). [`Sniffed`] is that
//! wrapper, public to the tunnel. An `Upgrade: h2c` request is served as plain HTTP/1.1 (the
//! upgrade is never performed nor forwarded).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::drain::Counted;
use super::{ProxyService, Shared};
use crate::config::Tls;

/// What an HTTP/2 client sends first (RFC 9113 3.4); nothing else starts with it.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest request head (request line + headers) read; more is answered 431. hyper also caps
/// its read buffer with it, so it sizes the reads of request bodies too: 64 KiB cost 1 MiB
/// uploads about 15% more CPU per request than 256 KiB (bench A/B, 2 rounds).
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Size of the allocation [`raise_mmap_threshold`] makes and frees once.
const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Makes glibc's malloc keep big body buffers on its heap instead of mapping and unmapping them.
///
/// hyper reads a body into a fresh buffer of up to `MAX_HEAD_BYTES` (server) or ~400 KiB
/// (upstream client) whenever the chunk before is still being written, which under load is
/// most reads. glibc maps blocks of 128 KiB and more with `mmap` and trims the heap top past
/// 128 KiB free; it raises both on the fly only to the largest mapped block freed so far
/// (the trim threshold to twice that, mallopt(3) M_MMAP_THRESHOLD), ~400 KiB here, which is
/// not enough for 8 connections' buffers: ~8-10 page faults per proxied MiB (zeroed pages
/// faulted in, then trimmed away again), 5-8% of zoo's CPU on 1 MiB bodies. Freeing one 4 MiB
/// mapped block at startup raises them to 4 and 8 MiB: no fault per request, the same peak
/// RSS, at most 8 MiB of freed heap kept. Other allocators just see one allocation. (Safe
/// code cannot call `mallopt`.)
fn raise_mmap_threshold() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // black_box: the optimizer would otherwise drop an allocation nothing reads.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(
            MMAP_THRESHOLD,
        )));
    });
}

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

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls: {}: no certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("tls: {source}")]
    Config {
        #[from]
        source: rustls::Error,
    },
}

/// The TLS side of the listeners: the certificate and key, offering h2 then http/1.1.
pub fn acceptor(tls: &Tls) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Read { path, source }
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(read(&tls.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read(&tls.cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: tls.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(read(&tls.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
async fn sniff(mut stream: TcpStream) -> Option<(bool, Sniffed)> {
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

/// Serves `listener` until `shutdown` is cancelled; each connection (and each tunnel an
/// upgrade opens) is tracked by `tracker` and, on shutdown, finishes its in-flight requests.
/// Each request is tracked by `requests` until its response body ends (drain.rs).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    requests: TaskTracker,
) {
    raise_mmap_threshold();
    let (header_timeout, tls) = {
        let table = shared.table.load();
        (table.client_header_timeout, table.tls.clone())
    };
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    // RFC 8441: lets h2 clients open WebSockets (h2_websocket.rs).
    h2.timer(TokioTimer::new()).enable_connect_protocol();
    let builders = Arc::new(Builders { h1, h2 });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, client_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut service = Counted {
            service: ProxyService {
                shared: Arc::clone(&shared),
                client_addr,
                forwarded_for: super::headers::forwarded_for(client_addr.ip()),
                tunnels: tracker.clone(),
                scheme: "http",
            },
            requests: requests.clone(),
        };
        let builders = Arc::clone(&builders);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            // The sniff or handshake is part of the request head: the slowloris limit applies.
            if let Some(tls) = tls {
                let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, tls.accept(stream)).await
                else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                service.service.scheme = "https";
                builders.serve(h2, stream, service, &shutdown).await;
            } else {
                let Ok(Some((h2, io))) = tokio::time::timeout(header_timeout, sniff(stream)).await
                else {
                    return;
                };
                builders.serve(h2, io, service, &shutdown).await;
            }
        });
    }
}

/// The HTTP/1.1 and HTTP/2 connection settings every connection of a listener shares.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    async fn serve<I>(&self, h2: bool, io: I, service: Counted, shutdown: &CancellationToken)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if h2 {
            let connection = self.h2.serve_connection(io, service);
            drive(connection, shutdown, http2::Connection::graceful_shutdown).await;
        } else {
            let connection = self.h1.serve_connection(io, service).with_upgrades();
            drive(
                connection,
                shutdown,
                http1::UpgradeableConnection::graceful_shutdown,
            )
            .await;
        }
    }
}

/// Polls `connection` to its end; on shutdown asks it to finish in-flight requests and close.
async fn drive<C: Future>(
    connection: C,
    shutdown: &CancellationToken,
    graceful_shutdown: fn(Pin<&mut C>),
) {
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = shutdown.cancelled() => {
            graceful_shutdown(connection.as_mut());
            let _ = connection.await;
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
