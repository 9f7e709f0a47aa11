//! Per-host credentials: the config's `[credentials."host"]` and `~/.netrc`.
//!
//! Each request gets the credentials of its own target authority, looked up
//! afresh, so a redirect to another host (the guest follows redirects, each
//! hop a new request) carries none. The values are built once into
//! `Authorization` header values marked sensitive; no error or `Debug` of
//! this module shows a token, a password or a netrc line.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use thiserror::Error;

use crate::config::{ConfigError, CredentialConfig, NetConfig, Secret, parse_host_key};

/// The largest token file or netrc read.
const MAX_SECRET_FILE: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {max} bytes; a token or netrc file is small, is this the right file?")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: not UTF-8 text; a token or netrc file is text")]
    NotText { path: PathBuf },
    #[error("{path}: empty; put the token in it, or remove token_file")]
    EmptyToken { path: PathBuf },
    #[error(
        "credentials for {host}: the token or password holds characters an HTTP header cannot carry \
         (control characters or line breaks); check its source (not shown)"
    )]
    NotAHeader { host: String },
    #[error("{path}: not a netrc file ({line}); fix it, or set netrc = \"\" in the config to read none")]
    Netrc { path: PathBuf, line: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Authorization values by authority.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    /// From the config, by (host, port); a `None` port is every port.
    configured: BTreeMap<(String, Option<u16>), HeaderValue>,
    /// From netrc, by host (netrc has no ports).
    netrc: BTreeMap<String, HeaderValue>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .field("netrc", &self.netrc.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    pub fn build(config: &NetConfig) -> Result<Credentials, CredentialError> {
        let mut c = Credentials::default();
        for (key, cred) in &config.credentials {
            let (host, port) = parse_host_key(key)?;
            let value = header_for(key, cred, &config.env.tokens)?;
            c.configured.insert((host, port), value);
        }
        // A netrc the operator named must be there; the default one may not be.
        let (path, required) = match (&config.netrc, &config.env.netrc) {
            (Some(p), _) if p.as_os_str().is_empty() => (None, false),
            (Some(p), _) => (Some(p.clone()), true),
            (None, Some(p)) => (Some(p.clone()), false),
            (None, None) => (None, false),
        };
        if let Some(path) = path {
            match read_text(&path) {
                Ok(text) => c.netrc = parse_netrc(&path, &text)?,
                Err(CredentialError::Read { source, .. })
                    if !required && source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    /// The `Authorization` value for `host:port`, if any: the config's for
    /// that port, else for the host, else netrc's for the host.
    pub fn for_host(&self, host: &str, port: u16) -> Option<&HeaderValue> {
        self.configured
            .get(&(host.to_string(), Some(port)))
            .or_else(|| self.configured.get(&(host.to_string(), None)))
            .or_else(|| self.netrc.get(host))
    }

    /// Adds the credentials of `host:port` unless the request carries its
    /// own (credentials in the URL the user gave win, as with curl's `-u`
    /// over netrc). Returns whether it added any.
    pub fn authorize(&self, host: &str, port: u16, headers: &mut HeaderMap) -> bool {
        if headers.contains_key(http::header::AUTHORIZATION) {
            return false;
        }
        match self.for_host(host, port) {
            Some(v) => {
                headers.insert(http::header::AUTHORIZATION, v.clone());
                true
            }
            None => false,
        }
    }
}

fn header_for(
    host: &str,
    c: &CredentialConfig,
    env_tokens: &BTreeMap<String, Secret>,
) -> Result<HeaderValue, CredentialError> {
    let bad = |what| CredentialError::Config(ConfigError::Credential { host: host.to_string(), what });
    let given = [c.token.is_some(), c.token_env.is_some(), c.token_file.is_some(), c.password.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => return Err(bad("no secret is given")),
        1 => {}
        _ => return Err(bad("more than one secret is given")),
    }
    if c.password.is_some() && c.user.is_none() {
        return Err(bad("password needs user"));
    }
    let secret = if let Some(t) = c.token.as_ref().or(c.password.as_ref()) {
        t.clone()
    } else if let Some(var) = &c.token_env {
        env_tokens.get(var).cloned().ok_or_else(|| {
            CredentialError::Config(ConfigError::MissingTokenEnv { host: host.to_string(), var: var.clone() })
        })?
    } else if let Some(path) = &c.token_file {
        let text = read_text(path)?;
        let t = text.trim();
        if t.is_empty() {
            return Err(CredentialError::EmptyToken { path: path.clone() });
        }
        Secret::new(t)
    } else {
        return Err(bad("no secret is given"));
    };
    let value = match &c.user {
        Some(user) => basic(user, secret.expose()),
        None => format!("Bearer {}", secret.expose()),
    };
    let mut v = HeaderValue::try_from(value).map_err(|_| CredentialError::NotAHeader { host: host.to_string() })?;
    v.set_sensitive(true);
    Ok(v)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Reads a small text file whole, refusing more than [`MAX_SECRET_FILE`].
fn read_text(path: &Path) -> Result<String, CredentialError> {
    let read_err = |source| CredentialError::Read { path: path.to_path_buf(), source };
    let f = fs_err::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        return Err(CredentialError::TooLarge { path: path.to_path_buf(), max: MAX_SECRET_FILE });
    }
    String::from_utf8(buf).map_err(|_| CredentialError::NotText { path: path.to_path_buf() })
}

/// netrc's `machine` entries as basic auth. The `default` entry is not
/// used: it would send a password to every host a download reaches.
fn parse_netrc(path: &Path, text: &str) -> Result<BTreeMap<String, HeaderValue>, CredentialError> {
    let parsed: netrc::Netrc = text.parse().map_err(|e: <netrc::Netrc as std::str::FromStr>::Err| {
        // The parser's message may quote a token of the file (a password):
        // keep only its line number.
        let msg = e.to_string();
        let line = msg.rfind("(line ").map(|i| msg[i + 1..].trim_end_matches(')').to_string());
        CredentialError::Netrc { path: path.to_path_buf(), line: line.unwrap_or_else(|| "unreadable".into()) }
    })?;
    let mut out = BTreeMap::new();
    for (machine, auth) in parsed.hosts {
        if machine == "default" || auth.password.is_empty() && auth.login.is_empty() {
            continue;
        }
        let host = crate::config::normalize_host(&machine);
        let mut v = HeaderValue::try_from(basic(&auth.login, &auth.password))
            .map_err(|_| CredentialError::NotAHeader { host: host.clone() })?;
        v.set_sensitive(true);
        out.insert(host, v);
    }
    Ok(out)
}
