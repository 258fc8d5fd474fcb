//! An HTTPS upstream for proxy tests: a hyper server behind tokio-rustls on 127.0.0.1, with a
//! CA and a `localhost` leaf certificate made by rcgen at test time. It answers every request
//! with a fixed body and records what a reverse proxy must get right: method, path and query,
//! `Host`, and the SNI name of the TLS handshake. Also the client side: [`connect_tls`] to a zoo
//! whose listener has `tls`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The body every request gets.
pub const UPSTREAM_BODY: &str = "hello from the https upstream\n";

/// One request as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// The `Host` header (or, over HTTP/2, the `:authority`).
    pub host: Option<String>,
    /// The server name the client sent in its TLS `ClientHello`.
    pub sni: Option<String>,
}

/// A running HTTPS upstream; stops when dropped.
pub struct HttpsUpstream {
    pub port: u16,
    /// PEM of the CA that signed the server's certificate (write it as `ca.pem`).
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Handshakes that failed (a client that did not trust the certificate).
    failed_handshakes: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HttpsUpstream {
    pub fn start() -> HttpsUpstream {
        let (ca_pem, acceptor) = make_acceptor();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind upstream");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (seen2, failed2) = (Arc::clone(&seen), Arc::clone(&failed_handshakes));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen, failed) =
                    (acceptor.clone(), Arc::clone(&seen2), Arc::clone(&failed2));
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            failed.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let host = request
                            .headers()
                            .get(hyper::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .map(str::to_owned)
                            .or_else(|| request.uri().authority().map(ToString::to_string));
                        seen.lock().unwrap().push(Seen {
                            method: request.method().to_string(),
                            target: request
                                .uri()
                                .path_and_query()
                                .map_or_else(String::new, ToString::to_string),
                            host,
                            sni: sni.clone(),
                        });
                        async {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "text/plain")
                                    .body(Full::new(Bytes::from_static(UPSTREAM_BODY.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsUpstream {
            port,
            ca_pem,
            seen,
            failed_handshakes,
            runtime: Some(runtime),
        }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The TLS handshakes that failed so far, with rustls' reason.
    pub fn failed_handshakes(&self) -> Vec<String> {
        self.failed_handshakes.lock().unwrap().clone()
    }
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A TLS connection to `addr` as `localhost`, trusting `ca`, offering `alpn`.
pub async fn connect_tls(
    addr: std::net::SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with zoo")
}

/// A fresh CA, a `localhost` certificate it signed, and a TLS acceptor serving the latter.
fn make_acceptor() -> (String, TlsAcceptor) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "zoo test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign leaf");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

/// The upstream itself, checked with a rustls client that trusts only the test CA: it must
/// record the SNI, `Host` and target.
#[test]
fn harness_https_upstream_records_sni_host_and_target() {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = HttpsUpstream::start();
    let port = upstream.port;
    let mut roots = rustls::RootCertStore::empty();
    let pem = upstream.ca_pem.clone();
    let der = pem_to_der(&pem);
    roots.add(der.into()).expect("add test CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let request =
            format!("GET /?q=abc HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
        reply
    });
    let response = super::http::parse(&reply).expect("parse upstream reply");
    assert_eq!(response.body, UPSTREAM_BODY.as_bytes());
    assert_eq!(
        upstream.seen(),
        vec![Seen {
            method: "GET".into(),
            target: "/?q=abc".into(),
            host: Some(format!("localhost:{port}")),
            sni: Some("localhost".into()),
        }]
    );
}

/// The DER bytes of the first PEM block.
fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("CA PEM")
        .to_vec()
}
