//! The CLI side of the admin endpoints: one HTTP/1.1 request to a running zoo over its control
//! socket, with an error that says plainly when no zoo is running there.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no zoo is running at {} (start zoo, or set ZOO_SOCKET to its control socket)", path.display())]
    NotRunning { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{target}` is not a valid admin request")]
    BadTarget { target: String },
    #[error("control socket {}: {source}", path.display())]
    Http {
        path: PathBuf,
        #[source]
        source: hyper::Error,
    },
}

/// Sends `method path` to the zoo listening on `socket` and returns its status and body.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
) -> Result<(StatusCode, String), ClientError> {
    let stream = UnixStream::connect(socket).await.map_err(|source| {
        if matches!(
            source.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        ) {
            ClientError::NotRunning {
                path: socket.to_owned(),
            }
        } else {
            ClientError::Connect {
                path: socket.to_owned(),
                source,
            }
        }
    })?;
    let http_error = |source| ClientError::Http {
        path: socket.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "zoo")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ClientError::BadTarget {
            target: path.to_owned(),
        })?;
    let response = sender.send_request(request).await.map_err(http_error)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http_error)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
