//! The operator's network settings: what the config file says, merged with
//! the environment the usual tools read (`HTTPS_PROXY`, `SSL_CERT_FILE`, …).
//!
//! This is plain data; [`crate::Net::build`] turns it into something that
//! connects. The environment is passed in as a map, never read from the
//! process here, so tests cannot race on it and the host decides what counts.
//! Secrets (tokens, passwords, proxy credentials) live in [`Secret`], whose
//! `Debug` never shows them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

use crate::proxy::ProxySpec;
pub use crate::values::{Secret, normalize_host};

/// Environment variables as a map: the process's ([`process_env`]) or a test's.
pub type Env = BTreeMap<String, String>;

/// The longest environment value read (a token, a proxy URL, a list).
const MAX_ENV_VALUE: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "credentials for {host}: {what}; give exactly one of token, token_env, token_file or password \
         (password and a token with user make HTTP basic auth, a token alone a bearer token)"
    )]
    Credential { host: String, what: &'static str },
    #[error(
        "credentials for {host}: the environment variable {var} named by token_env is not set or empty; \
         set it, or use token_file"
    )]
    MissingTokenEnv { host: String, var: String },
    #[error("{var}: the value is longer than {max} bytes; shorten it")]
    EnvTooLong { var: String, max: usize },
    #[error("{var}: {source}")]
    Proxy { var: String, source: crate::proxy::ProxyError },
    #[error("{var} (config): {reason}")]
    BadProxy { var: &'static str, reason: String },
    #[error("tls.hosts.{host:?}: client_cert and client_key go together; give both or neither")]
    HalfClientCert { host: String },
    #[error("{key:?} is not a host or host:port; write it as in a URL, e.g. \"git.corp.example\" or \"[::1]:8443\"")]
    BadHostKey { key: String },
}

/// Everything the operator configures, in the config file's shape (these
/// are top-level keys of attune's config: `proxy`, `no_proxy`, `netrc`,
/// `[tls]`, `[credentials."host"]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The proxy for http and https (`http://[user:password@]host:port`);
    /// `""` turns off the proxies the environment names. Wins over the
    /// environment.
    pub proxy: Option<ProxySpec>,
    /// Hosts reached directly, in curl's `NO_PROXY` forms; wins over the
    /// environment's `NO_PROXY`.
    pub no_proxy: Option<String>,
    /// The netrc file (default: `$NETRC`, else `~/.netrc` when it exists);
    /// `netrc = ""` reads none.
    pub netrc: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per host (`"host"` for every port, `"host:port"` for one).
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialConfig>,
    /// What the environment added ([`NetConfig::with_env`]).
    #[serde(skip)]
    pub env: EnvSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM files of CAs trusted besides the system store (`--ca-cert`).
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Per host (`"host"` or `"host:port"`).
    #[serde(default)]
    pub hosts: BTreeMap<String, TlsHostConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsHostConfig {
    /// A CA trusted for this host only (besides the common trust).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to this host (mTLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// One host's credentials as configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// With a user, basic auth (`user:secret`); without, a bearer token.
    pub user: Option<String>,
    pub token: Option<Secret>,
    /// An environment variable holding the token (read once, at start).
    pub token_env: Option<String>,
    /// A file holding the token (read once, at start; surrounding white space dropped).
    pub token_file: Option<PathBuf>,
    /// A password, with `user`.
    pub password: Option<Secret>,
}

/// What the environment says, as curl, git and pip read it.
#[derive(Debug, Clone, Default)]
pub struct EnvSettings {
    pub http_proxy: Option<ProxySpec>,
    pub https_proxy: Option<ProxySpec>,
    pub all_proxy: Option<ProxySpec>,
    pub no_proxy: Option<String>,
    /// `SSL_CERT_FILE`: replaces the system store, as in OpenSSL.
    pub ssl_cert_file: Option<PathBuf>,
    /// `SSL_CERT_DIR` (colon separated): replaces the system store too.
    pub ssl_cert_dirs: Vec<PathBuf>,
    /// `$NETRC`, else `$HOME/.netrc`.
    pub netrc: Option<PathBuf>,
    /// Values of the variables `token_env` names, by variable.
    pub tokens: BTreeMap<String, Secret>,
}

/// The process's environment (variables that are not UTF-8 are left out).
pub fn process_env() -> Env {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

impl NetConfig {
    /// Adds what `env` says; what the config file says wins.
    ///
    /// Proxies follow curl: `http_proxy` only in lower case (the upper case
    /// one can be set by a CGI request's `Proxy:` header), `https_proxy`,
    /// `all_proxy` and `no_proxy` in either case, lower case first.
    pub fn with_env(mut self, env: &Env) -> Result<NetConfig, ConfigError> {
        let get = |names: &[&str]| -> Result<Option<(String, String)>, ConfigError> {
            for name in names {
                if let Some(v) = env.get(*name) {
                    if v.len() > MAX_ENV_VALUE {
                        return Err(ConfigError::EnvTooLong { var: name.to_string(), max: MAX_ENV_VALUE });
                    }
                    if !v.trim().is_empty() {
                        return Ok(Some((name.to_string(), v.trim().to_string())));
                    }
                }
            }
            Ok(None)
        };
        let proxy = |names: &[&str]| -> Result<Option<ProxySpec>, ConfigError> {
            match get(names)? {
                Some((var, v)) => ProxySpec::parse(&v).map(Some).map_err(|source| ConfigError::Proxy { var, source }),
                None => Ok(None),
            }
        };
        let e = &mut self.env;
        e.http_proxy = proxy(&["http_proxy"])?;
        e.https_proxy = proxy(&["https_proxy", "HTTPS_PROXY"])?;
        e.all_proxy = proxy(&["all_proxy", "ALL_PROXY"])?;
        e.no_proxy = get(&["no_proxy", "NO_PROXY"])?.map(|(_, v)| v);
        e.ssl_cert_file = get(&["SSL_CERT_FILE"])?.map(|(_, v)| PathBuf::from(v));
        e.ssl_cert_dirs = get(&["SSL_CERT_DIR"])?
            .map(|(_, v)| v.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        e.netrc = match get(&["NETRC"])? {
            Some((_, v)) => Some(PathBuf::from(v)),
            None => get(&["HOME"])?.map(|(_, h)| PathBuf::from(h).join(".netrc")),
        };
        for (host, c) in &self.credentials {
            if let Some(var) = &c.token_env {
                match get(&[var.as_str()])? {
                    Some((_, v)) => {
                        self.env.tokens.insert(var.clone(), Secret::new(v));
                    }
                    None => return Err(ConfigError::MissingTokenEnv { host: host.clone(), var: var.clone() }),
                }
            }
        }
        Ok(self)
    }
}

/// `host` or `host:port` as a config key, normalised: lower case, no
/// brackets, no trailing dot.
pub(crate) fn parse_host_key(key: &str) -> Result<(String, Option<u16>), ConfigError> {
    let bad = || ConfigError::BadHostKey { key: key.to_string() };
    let key = key.trim();
    if key.is_empty() || key.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    // The URL parser reads the host as a request would name it (IPv6 in
    // brackets, IPv4 in any spelling).
    let with_port = if key.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{key}]") } else { key.to_string() };
    let url = url::Url::parse(&format!("http://{with_port}/")).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?;
    let port = url.port();
    // url drops port 80 for http: keep a port the key names.
    let port = port.or_else(|| if with_port.ends_with(":80") { Some(80) } else { None });
    Ok((normalize_host(host), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_read_as_a_url_names_the_host() {
        let k = |s: &str| parse_host_key(s).unwrap();
        assert_eq!(k("Git.Corp.Example."), ("git.corp.example".into(), None));
        assert_eq!(k("git.corp.example:8443"), ("git.corp.example".into(), Some(8443)));
        assert_eq!(k("h.example:80"), ("h.example".into(), Some(80)));
        assert_eq!(k("[::1]:8443"), ("::1".into(), Some(8443)));
        assert_eq!(k("::1"), ("::1".into(), None));
        assert_eq!(k("0x7f.1"), ("127.0.0.1".into(), None));
        for bad in ["", "https://h.example/", "user@h.example", "h.example/path", "h.example:99999"] {
            assert!(parse_host_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_long_environment_value_is_refused_before_use() {
        let env = Env::from([("https_proxy".to_string(), "x".repeat(MAX_ENV_VALUE + 1))]);
        let err = NetConfig::default().with_env(&env).unwrap_err().to_string();
        assert!(err.contains("https_proxy") && err.contains("longer than"), "{err}");
    }
}
