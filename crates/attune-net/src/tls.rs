//! Whom TLS trusts, what it presents, and what a failure means.
//!
//! Trust is the system store (rustls-native-certs: the OS store, or the
//! OpenSSL bundle and directory on Unix; `SSL_CERT_FILE`/`SSL_CERT_DIR`
//! replace it, as in OpenSSL, curl and pip), plus the operator's CA files,
//! plus a host's own CA. The bundled Mozilla roots are used only when the
//! system store is empty (a bare container), so a machine whose operator
//! removed a root does not trust it anyway. Verification is rustls' webpki
//! verifier on every platform: one behaviour, and errors that carry the
//! names and dates a useful message needs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use thiserror::Error;

use crate::config::{ConfigError, TlsConfig, parse_host_key};

/// The largest CA, certificate or key file read (a full CA bundle is ~250 KiB).
const MAX_PEM_FILE: u64 = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error(
        "TLS to {host} failed: its certificate is issued by a CA this machine does not trust \
         (unknown issuer); if {host} uses a private CA, add that CA with --ca-cert FILE, \
         config tls.ca_files, or tls.hosts.\"{host}\".ca_file"
    )]
    UnknownIssuer { host: String },
    #[error(
        "TLS to {host} failed: its certificate is not valid for the name {host}; it is for {presented}; \
         use one of those names in the URL, or have the server's certificate fixed"
    )]
    NameMismatch { host: String, presented: String },
    #[error(
        "TLS to {host} failed: its certificate expired on {not_after} (it is now {now}); \
         the server's certificate must be renewed (or this machine's clock is wrong)"
    )]
    Expired { host: String, not_after: String, now: String },
    #[error(
        "TLS to {host} failed: its certificate is not valid before {not_before} (it is now {now}); \
         check this machine's clock"
    )]
    NotYetValid { host: String, not_before: String, now: String },
    #[error("TLS to {host} failed: its certificate was refused: {reason}")]
    BadCertificate { host: String, reason: String },
    #[error(
        "TLS to {host} failed: the server asks for a client certificate and none is configured for it; \
         set tls.hosts.\"{host}\".client_cert and client_key"
    )]
    ClientCertRequired { host: String },
    #[error(
        "TLS to {host} failed: the server refused the client certificate configured for it ({alert}); \
         check tls.hosts.\"{host}\".client_cert is issued by a CA the server accepts and is current"
    )]
    ClientCertRefused { host: String, alert: String },
    #[error(
        "TLS to {host} failed: {detail}; the server may not speak TLS on this port, \
         or only TLS versions or ciphers attune does not (it speaks TLS 1.2 and 1.3)"
    )]
    Protocol { host: String, detail: String },
    #[error("TLS to {host} failed: {detail}")]
    Other { host: String, detail: String },
    #[error("{host:?} is not a name TLS can check; use a DNS name or an IP address")]
    BadName { host: String },
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {max} bytes; is this a PEM file?")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: no PEM certificate found (\"-----BEGIN CERTIFICATE-----\"); give a PEM file of {what}")]
    NoCertificate { path: PathBuf, what: &'static str },
    #[error("{path}: no PEM private key found; give the key of the client certificate (PKCS#8, PKCS#1 or SEC1 PEM)")]
    NoKey { path: PathBuf },
    #[error("{path}: not a usable CA certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("tls.hosts.{host:?}: the client certificate and key do not go together or are not usable: {reason}")]
    ClientAuth { host: String, reason: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Where the common trust came from, for `doctor`-style output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSummary {
    /// `system store`, `SSL_CERT_FILE …`, or `bundled Mozilla roots`.
    pub source: String,
    pub roots: usize,
    pub extra_ca_files: Vec<PathBuf>,
}

/// Settings for one host: its ClientConfig, and whether it presents a certificate.
#[derive(Clone)]
pub(crate) struct HostTls {
    pub config: Arc<ClientConfig>,
    pub client_cert: bool,
}

/// Every ClientConfig one [`crate::Net`] uses.
#[derive(Clone)]
pub(crate) struct Trust {
    pub default: HostTls,
    /// By (host, port); a `None` port is every port.
    pub hosts: BTreeMap<(String, Option<u16>), HostTls>,
    pub summary: TrustSummary,
}

impl Trust {
    pub fn build(tls: &TlsConfig, ssl_cert_file: Option<&Path>, ssl_cert_dirs: &[PathBuf]) -> Result<Trust, TlsError> {
        let (mut roots, source) = system_roots(ssl_cert_file, ssl_cert_dirs);
        for path in &tls.ca_files {
            add_ca_file(&mut roots, path)?;
        }
        let summary = TrustSummary { source, roots: roots.len(), extra_ca_files: tls.ca_files.clone() };
        let default = HostTls { config: client_config(roots.clone(), None, "")?, client_cert: false };
        let mut hosts = BTreeMap::new();
        for (key, h) in &tls.hosts {
            let (host, port) = parse_host_key(key)?;
            let mut host_roots = roots.clone();
            if let Some(ca) = &h.ca_file {
                add_ca_file(&mut host_roots, ca)?;
            }
            let identity = match (&h.client_cert, &h.client_key) {
                (Some(cert), Some(key)) => Some((read_certs(cert, "the client certificate")?, read_key(key)?)),
                (None, None) => None,
                _ => return Err(ConfigError::HalfClientCert { host: key.clone() }.into()),
            };
            let client_cert = identity.is_some();
            hosts.insert((host, port), HostTls { config: client_config(host_roots, identity, key)?, client_cert });
        }
        Ok(Trust { default, hosts, summary })
    }

    /// The settings for `host:port`: the port's own, else the host's, else the common ones.
    pub fn for_host(&self, host: &str, port: u16) -> &HostTls {
        self.hosts
            .get(&(host.to_string(), Some(port)))
            .or_else(|| self.hosts.get(&(host.to_string(), None)))
            .unwrap_or(&self.default)
    }
}

/// The system store, or what `SSL_CERT_FILE`/`SSL_CERT_DIR` name instead;
/// the bundled roots when that is empty.
fn system_roots(file: Option<&Path>, dirs: &[PathBuf]) -> (RootCertStore, String) {
    let mut roots = RootCertStore::empty();
    let (certs, mut source) = if file.is_some() || !dirs.is_empty() {
        let mut certs = Vec::new();
        if let Some(f) = file {
            certs.extend(rustls_native_certs::load_certs_from_paths(Some(f), None).certs);
        }
        for d in dirs {
            certs.extend(rustls_native_certs::load_certs_from_paths(None, Some(d)).certs);
        }
        let mut named: Vec<String> = file.iter().map(|f| format!("SSL_CERT_FILE {}", f.display())).collect();
        named.extend(dirs.iter().map(|d| format!("SSL_CERT_DIR {}", d.display())));
        (certs, named.join(", "))
    } else {
        (rustls_native_certs::load_native_certs().certs, "system store".to_string())
    };
    // Certificates a verifier cannot use are skipped, as every TLS stack does with a system bundle.
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        source = format!("bundled Mozilla roots ({source} has none)");
    }
    (roots, source)
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in read_certs(path, "CA certificates")? {
        roots.add(cert).map_err(|e| TlsError::BadCa { path: path.to_path_buf(), reason: e.to_string() })?;
    }
    Ok(())
}

/// Reads at most [`MAX_PEM_FILE`] bytes of `path`.
fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read { path: path.to_path_buf(), source };
    let f = fs_err::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(MAX_PEM_FILE + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge { path: path.to_path_buf(), max: MAX_PEM_FILE });
    }
    Ok(buf)
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_bounded(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf(), what });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey { path: path.to_path_buf() })
}

fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    host_key: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Other { host: host_key.to_string(), detail: e.to_string() })?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::ClientAuth { host: host_key.to_string(), reason: e.to_string() })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// What a rustls failure talking to `host` means, in the user's words.
pub(crate) fn explain(host: &str, e: &rustls::Error, client_cert: bool) -> TlsError {
    let host = host.to_string();
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TlsError::UnknownIssuer { host },
            CertificateError::NotValidForNameContext { presented, .. } => {
                let presented = if presented.is_empty() { "no name".to_string() } else { presented.join(", ") };
                TlsError::NameMismatch { host, presented }
            }
            CertificateError::NotValidForName => TlsError::NameMismatch { host, presented: "other names".into() },
            CertificateError::ExpiredContext { time, not_after } => {
                TlsError::Expired { host, not_after: date(*not_after), now: date(*time) }
            }
            CertificateError::Expired => TlsError::Expired { host, not_after: "an earlier date".into(), now: now() },
            CertificateError::NotValidYetContext { time, not_before } => {
                TlsError::NotYetValid { host, not_before: date(*not_before), now: date(*time) }
            }
            CertificateError::NotValidYet => {
                TlsError::NotYetValid { host, not_before: "a later date".into(), now: now() }
            }
            other => TlsError::BadCertificate { host, reason: format!("{other:?}") },
        },
        rustls::Error::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => TlsError::ClientCertRequired { host },
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
                if client_cert =>
            {
                TlsError::ClientCertRefused { host, alert: format!("{a:?}") }
            }
            // TLS 1.2 servers also say handshake_failure for a missing client certificate.
            AlertDescription::HandshakeFailure if !client_cert => TlsError::Protocol {
                detail: format!(
                    "the server ended the handshake (HandshakeFailure); if it wants a client certificate, \
                     set tls.hosts.\"{host}\".client_cert and client_key"
                ),
                host,
            },
            AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => {
                TlsError::Protocol { host, detail: format!("the server ended the handshake ({a:?})") }
            }
            other => TlsError::Other { host, detail: format!("the server sent the alert {other:?}") },
        },
        rustls::Error::PeerIncompatible(p) => TlsError::Protocol { host, detail: format!("{p:?}") },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateHandshakeMessage { .. } => {
            TlsError::Protocol { host, detail: e.to_string() }
        }
        other => TlsError::Other { host, detail: other.to_string() },
    }
}

fn date(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{} s after 1970", t.as_secs()))
}

fn now() -> String {
    date(UnixTime::now())
}
