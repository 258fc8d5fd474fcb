//! The CLI side of the admin endpoints: finds the control socket of the zoo a command is about
//! and sends it one HTTP/1.1 request, with an error that says plainly when no zoo (or more
//! than one) could be meant.
//!
//! Given a config (`--config`, `ZOO_CONFIG`), the CLI goes to that config's socket and names
//! the config in [`super::CONFIG_HEADER`], so a zoo running another config refuses (409) and
//! never acts. Given none, it takes the socket of `./zoo.toml`, else the one live zoo in the
//! socket directory (the usual `docker exec CONTAINER zoo status`, whose cwd need not be
//! zoo's), and refuses to guess between several. `ZOO_SOCKET` overrides the search.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::socket;
use crate::rundir::Location;

/// The config file when neither `--config` nor `ZOO_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "zoo.toml";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no zoo is running at {} (start zoo, or set ZOO_SOCKET to its control socket)", path.display())]
    NotRunning { path: PathBuf },
    #[error("no zoo is running {} (its control socket would be {})", config.display(), path.display())]
    NotRunningConfig { config: PathBuf, path: PathBuf },
    #[error(
        "no zoo is running: no control socket in {} accepts (start zoo, or set ZOO_SOCKET to its control socket)",
        dir.display()
    )]
    NoneRunning { dir: PathBuf },
    #[error(
        "{} zoos are running ({}): pass --config with the config of the one you mean",
        sockets.len(),
        sockets.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous { sockets: Vec<PathBuf> },
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

/// One running zoo as the CLI addresses it.
pub struct Target {
    /// Its control socket.
    pub socket: PathBuf,
    /// The canonical config path the CLI was given, which the zoo must be running; `None`
    /// when the CLI was given none.
    config: Option<PathBuf>,
}

impl Target {
    /// The zoo that runs `config`, or the one zoo here when `config` is `None`.
    ///
    /// # Errors
    /// [`ClientError::NoneRunning`] when no config was given and no zoo is running here,
    /// [`ClientError::Ambiguous`] when several are and none runs `./zoo.toml`.
    pub fn find(config: Option<&Path>) -> Result<Target, ClientError> {
        let config = config.map(crate::rundir::canonical_config);
        if let Some(explicit) = socket::explicit_path() {
            return Ok(Target {
                socket: explicit,
                config,
            });
        }
        if let Some(config) = config {
            return Ok(Target {
                socket: socket::default_path(&config),
                config: Some(config),
            });
        }
        let own = socket::default_path(Path::new(DEFAULT_CONFIG));
        if crate::rundir::accepting(&own) {
            return Ok(Target {
                socket: own,
                config: None,
            });
        }
        let location = Location::here();
        let mut live = location.live_sockets();
        match live.len() {
            0 => Err(ClientError::NoneRunning {
                dir: location.dir().to_owned(),
            }),
            1 => Ok(Target {
                socket: live.remove(0),
                config: None,
            }),
            _ => Err(ClientError::Ambiguous { sockets: live }),
        }
    }

    /// Sends `method path` to this zoo and returns its status and body.
    ///
    /// # Errors
    /// When the zoo cannot be reached or the exchange fails.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(StatusCode, String), ClientError> {
        let socket = &self.socket;
        let stream = UnixStream::connect(socket).await.map_err(|source| {
            if matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) {
                match &self.config {
                    Some(config) => ClientError::NotRunningConfig {
                        config: config.clone(),
                        path: socket.clone(),
                    },
                    None => ClientError::NotRunning {
                        path: socket.clone(),
                    },
                }
            } else {
                ClientError::Connect {
                    path: socket.clone(),
                    source,
                }
            }
        })?;
        let http_error = |source| ClientError::Http {
            path: socket.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        tokio::spawn(connection);
        let bad_target = || ClientError::BadTarget {
            target: path.to_owned(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "zoo");
        if let Some(config) = &self.config {
            let named =
                HeaderValue::from_bytes(config.as_os_str().as_bytes()).map_err(|_| bad_target())?;
            request = request.header(super::CONFIG_HEADER, named);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| bad_target())?;
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
}
