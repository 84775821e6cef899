//! `squall secure-init DIR`: a certificate authority, certificates for the
//! daemons and for users, and config files that turn security on, for one
//! machine or a small cluster (rcgen).
//!
//! Files written (keys readable by their owner only):
//! - `ca.pem`, `ca.key`: the CA, which signs every certificate below;
//! - `daemon.pem`, `daemon.key`: CN `squall-daemon`, for Nimbus,
//!   supervisors and workers (`nimbus.supervisor.users`), valid for the
//!   given hosts;
//! - `<user>.pem`, `<user>.key` per user (CN the user's name); the first
//!   user is a Nimbus admin (`nimbus.admins`);
//! - `token.key`: the key that signs bearer tokens, and `<user>.token`, a
//!   token per user valid [`TOKEN_DAYS`] days (`squall token` issues more);
//! - `daemon.yaml` and `<user>.yaml`: `squall.security.enable: true`,
//!   the paths, and the admin and daemon principals; `daemon.yaml` (readable
//!   by its owner only) also holds the ZooKeeper credentials
//!   (`storm.zookeeper.auth.payload`, a random password).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The principal of the daemons' certificate.
pub const DAEMON_PRINCIPAL: &str = "squall-daemon";

/// How long certificates made by `secure-init` stay valid (825 days, the
/// longest lifetime browsers accept for a server certificate).
pub const VALIDITY_DAYS: i64 = 825;

/// How long the bearer tokens `secure-init` writes stay valid, in days.
pub const TOKEN_DAYS: u64 = 30;

/// Why `secure-init` failed.
#[derive(Debug, thiserror::Error)]
pub enum SecureInitError {
    /// The folder already holds a CA; making another would orphan every
    /// certificate it signed.
    #[error("{} already exists: refusing to replace a CA (remove the folder to start over)", .0.display())]
    Exists(PathBuf),
    /// A name is unusable.
    #[error("{0}")]
    BadName(String),
    /// A file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A certificate authority able to sign certificates.
pub struct Authority {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new self-signed CA named `name`, valid from `not_before` to
    /// `not_after`.
    ///
    /// # Errors
    /// [`SecureInitError::Rcgen`] when generation fails.
    pub fn new(
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, SecureInitError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA in `cert_pem` with its key `key_pem` (as `secure-init`
    /// wrote them to `ca.pem` and `ca.key`), to issue more certificates.
    ///
    /// # Errors
    /// [`SecureInitError::Rcgen`] when either does not parse.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, SecureInitError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        })
    }

    /// A certificate for principal `cn`, usable by servers at `hosts`
    /// (names or IP addresses) and as a client, valid from `not_before` to
    /// `not_after`: `(certificate PEM, key PEM)`.
    ///
    /// # Errors
    /// [`SecureInitError::Rcgen`] for a bad host name.
    pub fn issue(
        &self,
        cn: &str,
        hosts: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(String, String), SecureInitError> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// From a day ago (clock skew) to [`VALIDITY_DAYS`] from now.
pub fn default_validity() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(1), now + Duration::days(VALIDITY_DAYS))
}

/// Writes `text` to `path`, readable by its owner only when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), SecureInitError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 });
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|error| SecureInitError::Write {
            path: path.to_owned(),
            error,
        })
}

/// Creates the CA, the daemon certificate (for `hosts`, plus `localhost`
/// and `127.0.0.1`), a certificate per user (the first one an admin) and
/// the config files in `dir`; returns the files written.
///
/// # Errors
/// [`SecureInitError`]: `dir` already holds a CA, a user name is not a
/// plain name, or a file cannot be written.
pub fn secure_init(
    dir: &Path,
    users: &[String],
    hosts: &[String],
) -> Result<Vec<PathBuf>, SecureInitError> {
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() {
        return Err(SecureInitError::Exists(ca_path));
    }
    let users: Vec<String> = if users.is_empty() {
        vec!["admin".to_owned()]
    } else {
        users.to_vec()
    };
    for u in &users {
        let plain = !u.is_empty()
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain || u == DAEMON_PRINCIPAL || u == "ca" || u == "daemon" {
            return Err(SecureInitError::BadName(format!(
                "user name {u:?}: use letters, digits, '-', '_' or '.', and not ca, daemon or {DAEMON_PRINCIPAL}"
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| SecureInitError::Write {
        path: dir.to_owned(),
        error,
    })?;
    let mut all_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for h in hosts {
        if !all_hosts.contains(h) {
            all_hosts.push(h.clone());
        }
    }
    let (from, to) = default_validity();
    // A name of its own, so that another cluster's CA never looks like
    // this one's issuer.
    let serial: [u8; 6] = rand::random();
    let ca = Authority::new(
        &format!("Squall CA {}", squall_cluster::rpc::hex(&serial)),
        from,
        to,
    )?;
    let mut written = Vec::new();
    let mut put = |name: String, text: &str, secret: bool| -> Result<PathBuf, SecureInitError> {
        let path = dir.join(name);
        write(&path, text, secret)?;
        written.push(path.clone());
        Ok(path)
    };
    let ca_file = put("ca.pem".into(), &ca.cert_pem, false)?;
    put("ca.key".into(), &ca.key_pem, true)?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let config = |cert: &Path, key: &Path| {
        format!(
            "# Made by `squall secure-init`: mutual TLS on every Squall socket.\n\
             squall.security.enable: true\n\
             squall.tls.ca.path: {:?}\n\
             squall.tls.cert.path: {:?}\n\
             squall.tls.key.path: {:?}\n\
             nimbus.admins: [{:?}]\n\
             nimbus.supervisor.users: [{DAEMON_PRINCIPAL:?}]\n",
            abs(&ca_file).display().to_string(),
            abs(cert).display().to_string(),
            abs(key).display().to_string(),
            users[0],
        )
    };
    let mut identities = vec![("daemon".to_owned(), DAEMON_PRINCIPAL.to_owned())];
    identities.extend(users.iter().map(|u| (u.clone(), u.clone())));
    // Only the daemons (and their workers) hold ZooKeeper's credentials
    // and the key that signs the UI's bearer tokens.
    let password: [u8; 24] = rand::random();
    let token_key: [u8; 32] = rand::random();
    let token_key = squall_cluster::rpc::hex(&token_key);
    let token_path = put("token.key".into(), &token_key, true)?;
    let zookeeper = format!(
        "storm.zookeeper.auth.payload: \"squall:{}\"\nsquall.token.key.path: {:?}\n",
        squall_cluster::rpc::hex(&password),
        abs(&token_path).display().to_string(),
    );
    let tokens = squall_ui::token::TokenKey::new(token_key.into_bytes())
        .map_err(SecureInitError::BadName)?;
    let expires = (to.unix_timestamp().max(0) as u64)
        .min(squall_cluster::now_ms() / 1000 + TOKEN_DAYS * 86_400);
    for (file, cn) in identities {
        let (cert, key) = ca.issue(&cn, &all_hosts, from, to)?;
        let cert_path = put(format!("{file}.pem"), &cert, false)?;
        let key_path = put(format!("{file}.key"), &key, true)?;
        let mut text = config(&cert_path, &key_path);
        let daemon = cn == DAEMON_PRINCIPAL;
        if daemon {
            text.push_str(&zookeeper);
        }
        put(format!("{file}.yaml"), &text, daemon)?;
        if !daemon {
            put(format!("{file}.token"), &tokens.issue(&cn, expires), true)?;
        }
    }
    Ok(written)
}
