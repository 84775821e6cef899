//! TLS with client certificates (mutual TLS, rustls) on Squall's sockets:
//! each process holds one [`Tls`] identity (a certificate signed by the
//! cluster's CA, and its key), refuses peers whose certificate the CA did
//! not sign, and names a peer by its certificate's common name (CN), the
//! principal Nimbus authorizes (Storm's `nimbus.admins`, `topology.users`).
//!
//! Loading fails closed: with `squall.security.enable` on, a missing,
//! unreadable, expired, not-yet-valid or mismatched file stops the caller
//! with an error naming the file and the problem.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use squall_topology_api::ClusterConfig;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a process's TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Security is on and a path is not set.
    #[error("squall.security.enable is true but {key} is not set")]
    Missing {
        /// The config key.
        key: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A file holds no certificate.
    #[error("{}: no PEM certificate (BEGIN CERTIFICATE) in it", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file holds no private key.
    #[error("{}: no PEM private key (BEGIN PRIVATE KEY) in it", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate is malformed, expired, not yet valid or unnamed.
    #[error("{}: {problem}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key is not the certificate's.
    #[error("{} is not the key of the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate was not issued by the CA.
    #[error("{}: not signed by the CA in {} ({reason})", cert.display(), ca.display())]
    NotSignedByCa {
        /// The certificate file.
        cert: PathBuf,
        /// The CA file.
        ca: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The identity paths of `config` as one environment value (CA,
/// certificate and key, a line each) for a process Squall starts with the
/// same identity (`squall jar`'s binary, a worker); `None` with security
/// off.
pub fn paths_env(config: &ClusterConfig) -> Option<String> {
    config.security_enable.then(|| {
        [
            &config.tls_ca_path,
            &config.tls_cert_path,
            &config.tls_key_path,
        ]
        .map(|p| p.clone().unwrap_or_default())
        .join("\n")
    })
}

/// `config` with security on and the identity paths of a [`paths_env`]
/// value.
///
/// # Errors
/// A message when `value` does not hold three lines.
pub fn apply_paths_env(config: &mut ClusterConfig, value: &str) -> Result<(), String> {
    let lines: Vec<&str> = value.lines().collect();
    let [ca, cert, key] = lines[..] else {
        return Err("must hold three paths (CA, certificate, key), one per line".into());
    };
    config.security_enable = true;
    config.tls_ca_path = Some(ca.to_owned());
    config.tls_cert_path = Some(cert.to_owned());
    config.tls_key_path = Some(key.to_owned());
    Ok(())
}

/// The ZooKeeper credentials of a daemon (`storm.zookeeper.auth.payload`),
/// required with security on.
///
/// # Errors
/// [`SecurityError::Missing`] when security is on and they are not set.
pub fn zookeeper_auth(
    config: &ClusterConfig,
) -> Result<Option<crate::ZkCredentials>, SecurityError> {
    match (&config.zookeeper_auth_payload, config.security_enable) {
        (None, true) => Err(SecurityError::Missing {
            key: "storm.zookeeper.auth.payload",
        }),
        (auth, _) => Ok(auth
            .as_ref()
            .map(|s| crate::ZkCredentials::daemon(s.expose()))),
    }
}

/// Why a TLS connection could not be made or accepted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The handshake failed: the peer sent no certificate or one the CA
    /// did not sign, an expired one, or plaintext.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The peer closed the connection during the handshake: it refused
    /// this side's certificate, does not speak TLS, or only probed the
    /// port.
    #[error("TLS handshake failed: the peer closed the connection (it refused this certificate, does not speak TLS, or only probed the port)")]
    Closed,
    /// The socket failed or timed out.
    #[error("TLS handshake failed: {0}")]
    Io(#[from] io::Error),
}

/// How long a TLS handshake may take before the socket is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One process's TLS identity: its certificate and key, and the CA its
/// peers' certificates must chain to.
pub struct Tls {
    principal: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The identity `config` names when `squall.security.enable` is on
    /// (`squall.tls.ca.path`, `squall.tls.cert.path`,
    /// `squall.tls.key.path`); `None` when security is off.
    ///
    /// # Errors
    /// [`SecurityError`] naming the key or file and the problem.
    pub fn from_config(config: &ClusterConfig) -> Result<Option<Arc<Tls>>, SecurityError> {
        if !config.security_enable {
            return Ok(None);
        }
        fn path<'a>(v: &'a Option<String>, key: &'static str) -> Result<&'a Path, SecurityError> {
            v.as_deref()
                .map(Path::new)
                .ok_or(SecurityError::Missing { key })
        }
        let tls = Self::from_files(
            path(&config.tls_ca_path, "squall.tls.ca.path")?,
            path(&config.tls_cert_path, "squall.tls.cert.path")?,
            path(&config.tls_key_path, "squall.tls.key.path")?,
        )?;
        Ok(Some(Arc::new(tls)))
    }

    /// The identity in PEM files: `ca` (the cluster's CA certificate),
    /// `cert` (this process's certificate, issued by the CA, its CN the
    /// principal) and `key` (its private key).
    ///
    /// # Errors
    /// [`SecurityError`] naming the file and the problem.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Tls, SecurityError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| SecurityError::Read {
                path: path.to_owned(),
                error,
            })
        };
        let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, SecurityError> {
            let pem = read(path)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| SecurityError::BadCertificate {
                    path: path.to_owned(),
                    problem: format!("bad PEM: {e}"),
                })?;
            if certs.is_empty() {
                return Err(SecurityError::NoCertificate {
                    path: path.to_owned(),
                });
            }
            Ok(certs)
        };
        let ca_certs = certs(ca)?;
        for c in &ca_certs {
            check_validity(ca, c)?;
        }
        let chain = certs(cert)?;
        let principal = check_validity(cert, &chain[0])?;
        let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => SecurityError::NoKey {
                path: key.to_owned(),
            },
            e => SecurityError::BadCertificate {
                path: key.to_owned(),
                problem: format!("bad PEM private key: {e}"),
            },
        })?;

        let mut roots = RootCertStore::empty();
        for c in ca_certs {
            roots.add(c).map_err(|e| SecurityError::BadCertificate {
                path: ca.to_owned(),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| SecurityError::Setup(e.to_string()))?;
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| SecurityError::NotSignedByCa {
                cert: cert.to_owned(),
                ca: ca.to_owned(),
                reason: e.to_string(),
            })?;
        let mismatch = |e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(_) => SecurityError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            e => SecurityError::BadCertificate {
                path: key.to_owned(),
                problem: e.to_string(),
            },
        };
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(mismatch)?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain.clone(), key_der.clone_key())
            .map_err(mismatch)?;
        Ok(Tls {
            principal,
            server: Arc::new(server),
            client: Arc::new(client),
            chain,
            key: key_der,
        })
    }

    /// The client configuration of this identity: the cluster's CA as the
    /// only root, this certificate offered (for HTTPS clients of Squall's
    /// servers, such as `squall logs`).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// A server configuration for HTTPS with this identity: no client
    /// certificate asked (browsers and HTTP clients authenticate with
    /// bearer tokens), HTTP/1.1.
    ///
    /// # Errors
    /// [`SecurityError::Setup`] when rustls refuses it.
    pub fn https_config(&self) -> Result<Arc<ServerConfig>, SecurityError> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| SecurityError::Setup(e.to_string()))?;
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }

    /// This process's principal: its certificate's CN.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Completes the server side of a handshake on `tcp` (within
    /// [`HANDSHAKE_TIMEOUT`]) and names the client by its certificate's CN.
    ///
    /// # Errors
    /// [`HandshakeError`]: no client certificate, one the CA did not sign
    /// or expired, plaintext, or a socket error.
    pub fn accept(&self, tcp: TcpStream) -> Result<(Stream, String), HandshakeError> {
        let conn = ServerConnection::new(self.server.clone())
            .map_err(|e| HandshakeError::Tls(e.to_string()))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock)?;
        let principal = s
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| common_name(c).ok())
            .ok_or_else(|| HandshakeError::Tls("the client certificate has no CN".into()))?;
        Ok((Stream::Server(Box::new(s)), principal))
    }

    /// Completes the client side of a handshake on `tcp` with the server at
    /// `host` (a name or an IP address its certificate must hold).
    ///
    /// # Errors
    /// [`HandshakeError`]: the server's certificate is not the CA's or not
    /// for `host`, the server refused this certificate, it speaks
    /// plaintext, or a socket error.
    pub fn connect(&self, tcp: TcpStream, host: &str) -> Result<Stream, HandshakeError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| HandshakeError::Tls(format!("server name {host:?}: {e}")))?;
        let conn = ClientConnection::new(self.client.clone(), name)
            .map_err(|e| HandshakeError::Tls(e.to_string()))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock)?;
        Ok(Stream::Client(Box::new(s)))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Drives a handshake to its end, the socket's timeouts set to
/// [`HANDSHAKE_TIMEOUT`] meanwhile and restored after.
fn handshake<C, D>(conn: &mut C, tcp: &mut TcpStream) -> Result<(), HandshakeError>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    let (read, write) = (tcp.read_timeout()?, tcp.write_timeout()?);
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    while conn.is_handshaking() {
        match conn.complete_io(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let reason = match e.into_inner() {
                    Some(inner) => inner.to_string(),
                    None => "invalid TLS data".into(),
                };
                return Err(HandshakeError::Tls(
                    if reason.contains("InvalidContentType") {
                        format!(
                            "{reason}: the peer does not speak TLS (a plaintext client or server?)"
                        )
                    } else {
                        reason
                    },
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(HandshakeError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Send what the handshake left (the client's last flight).
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    tcp.set_read_timeout(read)?;
    tcp.set_write_timeout(write)?;
    Ok(())
}

/// The validity of the certificate in `path` now, and its CN.
fn check_validity(path: &Path, der: &CertificateDer<'_>) -> Result<String, SecurityError> {
    let bad = |problem: String| SecurityError::BadCertificate {
        path: path.to_owned(),
        problem,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > v.not_after {
        return Err(bad(format!("the certificate expired on {}", v.not_after)));
    }
    if now < v.not_before {
        return Err(bad(format!(
            "the certificate is not valid before {}",
            v.not_before
        )));
    }
    subject_cn(&cert).map_err(bad)
}

/// The subject common name (CN) of `der`: the principal it names.
///
/// # Errors
/// The certificate does not parse or has no CN.
pub fn common_name(der: &CertificateDer<'_>) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    subject_cn(&cert)
}

fn subject_cn(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<String, String> {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .filter(|cn| !cn.is_empty());
    cn.ok_or_else(|| "the certificate has no subject CN, which names its principal".into())
}

/// A TCP connection, in plaintext or TLS.
pub enum Stream {
    /// Security off.
    Plain(TcpStream),
    /// The accepting side of a TLS connection.
    Server(Box<rustls::StreamOwned<ServerConnection, TcpStream>>),
    /// The connecting side of a TLS connection.
    Client(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket (for timeouts and addresses).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Server(s) => &s.sock,
            Stream::Client(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Server(s) => s.read(buf),
            Stream::Client(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Server(s) => s.write(buf),
            Stream::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Server(s) => s.flush(),
            Stream::Client(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_paths_survive_the_environment() {
        let mut c = ClusterConfig::default();
        assert_eq!(paths_env(&c), None);
        c.security_enable = true;
        c.tls_ca_path = Some("/s/ca.pem".into());
        c.tls_cert_path = Some("/s/d.pem".into());
        c.tls_key_path = Some("/s/d.key".into());
        let mut back = ClusterConfig::default();
        apply_paths_env(&mut back, &paths_env(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(apply_paths_env(&mut back, "/only/one").is_err());
    }
}
