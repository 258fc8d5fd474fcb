//! Connections to upstreams: one pooled keep-alive HTTP client for the apps, and one pooled
//! HTTPS-capable client per distinct trust setting for external `proxy` targets (rustls with
//! the webpki roots, plus a route's `ca_file`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Time allowed to establish a TCP connection to an upstream (DESIGN.md).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this long; apps often close theirs at 5 s or more.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body as sent upstream: the client's stream as is, the same cut at a route's
/// `max_body`, or none (which a retry can send again).
pub type UpstreamBody = Either<Incoming, Either<Limited<Incoming>, Empty<Bytes>>>;
pub type AppClient = Client<HttpConnector, UpstreamBody>;
pub type ExternalClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("ca_file {}: {source}", path.display())]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("ca_file {}: no certificate in it", path.display())]
    CaFileEmpty { path: PathBuf },
    #[error("ca_file {}: {source}", path.display())]
    CaFileInvalid {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

fn http_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.enforce_http(false);
    connector
}

fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    builder
}

/// The client every app route shares.
#[must_use]
pub fn app_client() -> AppClient {
    client_builder().build(http_connector())
}

/// The client for apps with `protocol = "h2c"`: HTTP/2 with prior knowledge, one multiplexed
/// connection per app.
#[must_use]
pub fn h2c_client() -> AppClient {
    let mut builder = client_builder();
    builder.http2_only(true).timer(TokioTimer::new());
    builder.build(http_connector())
}

/// A client for external targets trusting the webpki roots plus the certificates in
/// `ca_file`.
pub fn external_client(ca_file: Option<&Path>) -> Result<ExternalClient, UpstreamError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http_connector());
    Ok(client_builder().build(connector))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), UpstreamError> {
    let read_error = |source| UpstreamError::CaFileRead {
        path: path.to_owned(),
        source,
    };
    let mut added = 0;
    for certificate in CertificateDer::pem_file_iter(path).map_err(read_error)? {
        roots
            .add(certificate.map_err(read_error)?)
            .map_err(|source| UpstreamError::CaFileInvalid {
                path: path.to_owned(),
                source,
            })?;
        added += 1;
    }
    if added == 0 {
        return Err(UpstreamError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(())
}
