//! TLS configuration for the gate (certificate and key from PEM files) and for the clients
//! (system roots plus `--ca`, or — only when asked, with a warning — no verification), and
//! the TLS handshake as the data path wants its streams ([`accept`], [`connect`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;

use crate::transport::server_tls::{ClientTls, ServerTls};

/// Accepts a TLS connection for the data path ([`ServerTls`]: buffers of its own, freed while
/// idle). The gate and the relay both accept this way.
pub async fn accept(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
) -> std::io::Result<ServerTls<TcpStream>> {
    ServerTls::accept(config.clone(), tcp).await
}

/// Connects TLS for the data path, like [`accept`] on the client side ([`ClientTls`]: the
/// same buffers, freed while idle, and the same single copy per byte read).
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> std::io::Result<ClientTls<TcpStream>> {
    ClientTls::connect(config, name, tcp).await
}

/// A TLS setup failure, naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the certificate/key pair.
    #[error(
        "the certificate and key do not form a usable pair (does the key belong to the certificate?): {0}"
    )]
    Pair(rustls::Error),
    /// No trust anchors at all.
    #[error(
        "no trusted CA certificates: the system store is empty and no CA file was given (--ca; --relay-ca for serve)"
    )]
    NoRoots,
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // aws-lc-rs, the one provider of the whole binary: its AES-GCM costs about a third less
    // per byte than ring's here (perf on the bulk bench). AES-128-GCM first (the default puts
    // AES-256-GCM first): 10 AES rounds instead of 14 per block is the cheapest way to cut
    // the data path's cost, and 128-bit keys are what TLS 1.3 mandates and browsers prefer.
    // The client's order decides what is negotiated.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The gate's certificate and key, replaceable while the gate runs: a new pair applies to
/// new connections; sessions already established keep the TLS state they negotiated.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("cannot read a PEM private key: {e}")))?;
    // from_der also checks that the key belongs to the certificate.
    CertifiedKey::from_der(chain, key_der, &provider())
        .map(Arc::new)
        .map_err(TlsError::Pair)
}

impl CertStore {
    /// Loads the pair; an unusable pair is an error.
    pub fn load(cert: &Path, key: &Path) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: std::sync::RwLock::new(load_pair(cert, key)?),
        })
    }

    /// Loads the files again; on any error the pair in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = pair;
        Ok(())
    }

    /// The certificate and key files.
    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert, &self.key]
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The gate's TLS configuration over a [`CertStore`]: HTTP/1.1 only (WebSocket upgrades are
/// HTTP/1.1).
pub fn server_config(certs: Arc<CertStore>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // One ticket per handshake, not rustls' two: a client resumes with one ticket per new
    // connection, so one back keeps a sequence of tunnels resuming; the second was made,
    // sent, parsed and stored for nothing.
    config.send_tls13_tickets = 1;
    Arc::new(config)
}

/// How a client checks the gate's certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientTrust {
    /// Extra CA certificates (PEM) trusted besides the system store.
    pub ca_files: Vec<PathBuf>,
    /// Skip verification entirely (`--insecure`).
    pub insecure: bool,
    /// The command-line flag that adds to `ca_files` (`--ca`; `--relay-ca` for `serve`),
    /// named when a certificate is not trusted.
    pub ca_flag: &'static str,
}

/// A client TLS configuration for `trust`.
pub fn client_config(trust: &ClientTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    let mut config = if trust.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped: --ca may be all that is needed.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for path in &trust.ca_files {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `--insecure`: accepts any certificate. Signatures are still checked so that the handshake
/// itself is sound; only the identity of the server is not.
#[derive(Debug)]
struct NoVerification;

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
