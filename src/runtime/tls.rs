//! The listeners' TLS: the certificate and key of `tls`, offering h2 then http/1.1, and their
//! rotation on disk without a reload.
//!
//! The certificate is handed to rustls through a resolver that holds it behind an `ArcSwap`,
//! so a new pair is used by the next handshake while connections already open keep theirs.
//! [`ServerTls::refresh`] re-reads the files when their identity (device, inode, size, mtime,
//! followed through symlinks) changed: Kubernetes updates a mounted secret by swapping a
//! `..data` symlink, which changes the followed inode even when size and mtime do not. zoo
//! polls (`compose` calls refresh every few seconds) rather than using inotify: a watch on a
//! symlinked secret has to be re-armed on every swap, and polling two `stat`s is cheap.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, crypto::ring};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

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
    #[error("tls: {} and {}: {source}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("tls: {source}")]
    Config {
        #[from]
        source: rustls::Error,
    },
}

/// The TLS of the public listeners: an acceptor whose certificate can be replaced in place.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    cert: Arc<RotatingCert>,
}

/// What identifies one version of a file on disk, followed through symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(metadata: &Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }

    /// The stamps of the cert and key files now; `None` when one cannot be read.
    fn pair(tls: &Tls) -> Option<(Self, Self)> {
        let cert = std::fs::metadata(&tls.cert).ok()?;
        let key = std::fs::metadata(&tls.key).ok()?;
        Some((Self::of(&cert), Self::of(&key)))
    }
}

/// The certificate rustls presents, swapped whole when the files change.
#[derive(Debug)]
struct RotatingCert {
    paths: Tls,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps when `current` was read (or last found broken, so that a broken pair
    /// is reported once, not at every poll).
    seen: Mutex<Option<(FileStamp, FileStamp)>>,
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// ring, chosen by measurement over rustls' default aws-lc-rs (bench `--suite tls`, 3 rounds,
/// full TLS 1.3 handshakes, zoo CPU per handshake: RSA-2048 1.39 ms with ring, 1.55 with
/// aws-lc-rs, nginx 1.82; ECDSA P-256 0.84 and 0.75, nginx 1.15): no gain that pays for a
/// second C library in the build (+2.8 MiB binary, aws-lc-sys's long compile).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Reads and checks the pair: the chain parses, is not empty, and the key matches its leaf.
fn read_pair(tls: &Tls, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
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
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        source,
    })
}

impl ServerTls {
    /// Reads the pair named by `tls`; fails when it does not parse or does not match.
    pub fn load(tls: &Tls) -> Result<Self, TlsError> {
        let provider = provider();
        let seen = FileStamp::pair(tls);
        let cert = Arc::new(RotatingCert {
            current: ArcSwap::from_pointee(read_pair(tls, &provider)?),
            paths: tls.clone(),
            seen: Mutex::new(seen),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
        })
    }

    /// Whether the certificate in use is valid for the DNS name `host` (its subject
    /// alternative names, wildcards included), for `zoo check`'s warning on host routes.
    #[must_use]
    pub fn covers(&self, host: &str) -> bool {
        let pair = self.cert.current.load();
        let (Some(leaf), Ok(name)) = (pair.end_entity_cert().ok(), ServerName::try_from(host))
        else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|leaf| leaf.verify_is_valid_for_subject_name(&name).is_ok())
    }

    #[must_use]
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the pair when the files changed since they were last read. A new pair that
    /// does not parse or does not match is logged and the one in use stays.
    pub fn refresh(&self) {
        let cert = &self.cert;
        let now = FileStamp::pair(&cert.paths);
        let mut seen = cert.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if now.is_none() || now == *seen {
            return;
        }
        *seen = now;
        let paths = &cert.paths;
        match read_pair(paths, &provider()) {
            Ok(pair) => {
                cert.current.store(Arc::new(pair));
                tracing::info!(
                    "tls: {} changed on disk: new handshakes use the new certificate",
                    paths.cert.display()
                );
            }
            Err(error) => {
                tracing::error!("{error}: the certificate in use is kept");
            }
        }
    }
}
