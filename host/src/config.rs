//! Settings: defaults, then the config file, then environment and flags.
//!
//! The config file is TOML at `--config`, `$ATTUNE_CONFIG`, or
//! `{config_dir}/attune/config.toml`:
//!
//! ```toml
//! packs_dir = "/srv/attune/packs"
//! database_url = "sqlite:///srv/attune/attune.db"
//! cache_dir = "/var/cache/attune"
//! host_name = "web-1"
//! allow_hosts = ["mirror.example.com"]
//! require_signed_indexes = true            # refuse unsigned (non-TUF) indexes
//! python = "/opt/python3.12/bin/python3"   # runtime checks (else PATH)
//! node = "/usr/local/bin/node"
//! # Packs' runtime environments (see the README, "Runtime environments"):
//! envs_dir = "/srv/attune/envs"            # default: {packs_dir}-envs
//! uv = "/usr/local/bin/uv"                 # default: $ATTUNE_UV, then PATH
//! python_index_url = "https://pypi.corp.example/simple/"
//! python_find_links = ["/srv/wheels"]
//! npm_registry = "https://npm.corp.example/"
//! [limits]
//! memory = "256MiB"
//! time = "300s"
//! bytes = "1GiB"
//! files = 100000
//! # The network (attune-net's keys; see the README, "Corporate networks"):
//! proxy = "http://proxy.corp.example:3128"
//! no_proxy = "localhost,.corp.example"
//! [tls]
//! ca_files = ["/etc/attune/corp-ca.pem"]   # plus --ca-cert FILE
//! [credentials."git.corp.example"]
//! token_env = "GIT_TOKEN"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use attune_app::runtime::Limits;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{value:?} is not a size: write a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. 512MiB"
    )]
    Size { value: String },
    #[error("{value:?} is not a duration: write seconds with an optional unit (ms, s, m, h), e.g. 90s")]
    Duration { value: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub packs_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// The name installs are recorded under (default: the hostname).
    pub host_name: Option<String>,
    /// Hosts every download may reach besides the source's own.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Refuse unsigned indexes in `index add|update` (as `--require-signed`).
    pub require_signed_indexes: Option<bool>,
    /// How many versions of each pack `attune gc` keeps (default 3).
    pub gc_keep: Option<usize>,
    /// The Python interpreter packs' runtime requirements are checked
    /// against (default: `python3`, then `python`, on PATH; `$ATTUNE_PYTHON` wins).
    pub python: Option<PathBuf>,
    /// The Node.js interpreter, likewise (default: `node`, then `nodejs`; `$ATTUNE_NODE` wins).
    pub node: Option<PathBuf>,
    /// Where packs' runtime environments live (default: `{packs_dir}-envs`).
    pub envs_dir: Option<PathBuf>,
    /// uv, which builds Python environments (`$ATTUNE_UV` wins; default: PATH).
    pub uv: Option<PathBuf>,
    /// npm, which installs node packages (`$ATTUNE_NPM` wins; default: PATH).
    pub npm: Option<PathBuf>,
    /// The Python package index environments are built from (default: PyPI,
    /// unless only `python_find_links` is set).
    pub python_index_url: Option<String>,
    /// Folders or pages of Python distributions (`--find-links`).
    #[serde(default)]
    pub python_find_links: Vec<String>,
    /// The npm registry (default: npm's own configuration).
    pub npm_registry: Option<String>,
    #[serde(default)]
    pub limits: FileLimits,
    /// The outbound proxy (wins over `HTTPS_PROXY` and friends; `""`: none).
    pub proxy: Option<attune_net::ProxySpec>,
    /// Hosts reached without the proxy, in curl's `NO_PROXY` forms.
    pub no_proxy: Option<String>,
    /// The netrc file (default `$NETRC`, else `~/.netrc`; `""`: none).
    pub netrc: Option<PathBuf>,
    /// Extra CAs, and per host a CA or a client certificate.
    #[serde(default)]
    pub tls: attune_net::config::TlsConfig,
    /// Per host: a token, basic credentials, or where to read a token.
    #[serde(default)]
    pub credentials: BTreeMap<String, attune_net::config::CredentialConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub memory: Option<String>,
    pub time: Option<String>,
    pub bytes: Option<String>,
    pub files: Option<u64>,
}

impl FileConfig {
    /// Reads `path`; a missing default file is an empty config, a missing
    /// named file is an error.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match dirs::config_dir() {
                Some(d) => (d.join("attune").join("config.toml"), false),
                None => return Ok(FileConfig::default()),
            },
        };
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(FileConfig::default()),
            Err(e) => return Err(ConfigError::Io { path, source: e }),
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path, message: e.to_string() })
    }

    /// The network settings of this file, with `ca_certs` (`--ca-cert`)
    /// trusted as well; the environment is added by the caller.
    pub fn net(&self, ca_certs: &[PathBuf]) -> attune_net::NetConfig {
        let mut tls = self.tls.clone();
        tls.ca_files.extend(ca_certs.iter().cloned());
        attune_net::NetConfig {
            proxy: self.proxy.clone(),
            no_proxy: self.no_proxy.clone(),
            netrc: self.netrc.clone(),
            tls,
            credentials: self.credentials.clone(),
            ..Default::default()
        }
    }

    /// How this file says environments are built.
    pub fn env_config(&self) -> attune_app::context::EnvConfig {
        attune_app::context::EnvConfig {
            uv: self.uv.clone(),
            npm: self.npm.clone(),
            python_index_url: self.python_index_url.clone(),
            python_find_links: self.python_find_links.clone(),
            npm_registry: self.npm_registry.clone(),
        }
    }

    /// Limits from this file over the defaults.
    pub fn limits(&self) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        if let Some(m) = &self.limits.memory {
            l.memory_bytes = parse_size(m)?;
        }
        if let Some(t) = &self.limits.time {
            l.time = parse_duration(t)?;
        }
        if let Some(b) = &self.limits.bytes {
            l.write.max_bytes = parse_size(b)?;
        }
        if let Some(f) = self.limits.files {
            l.write.max_files = f;
        }
        Ok(l)
    }
}

pub fn default_packs_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("attune").join("packs")
}

pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("attune")
}

/// `512MiB`, `1GiB`, `1000000`, `10MB`.
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size { value: s.to_string() };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

/// `90s`, `500ms`, `5m`, `1h`, `30` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError::Duration { value: s.to_string() };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(err)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(err)?),
        _ => return Err(err()),
    };
    if d.is_zero() {
        return Err(err());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn config_file_limits_override_defaults() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        fs_err::write(&p, "[limits]\nmemory = \"64MiB\"\nfiles = 10\n").unwrap();
        let c = FileConfig::load(Some(&p)).unwrap();
        let l = c.limits().unwrap();
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.write.max_files, 10);
        assert_eq!(l.write.max_bytes, Limits::default().write.max_bytes);
        fs_err::write(&p, "[limits]\nmemroy = \"64MiB\"\n").unwrap();
        assert!(matches!(FileConfig::load(Some(&p)), Err(ConfigError::Parse { .. })));
        assert!(matches!(FileConfig::load(Some(&t.path().join("nope.toml"))), Err(ConfigError::Io { .. })));
    }

    #[test]
    fn network_keys_are_read_and_ca_flags_add_to_the_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        let text = "proxy = \"http://u:pw@proxy.example:3128\"\nno_proxy = \".corp.example\"\nnetrc = \"\"\n\
                    [tls]\nca_files = [\"/etc/a.pem\"]\n[tls.hosts.\"git.corp.example\"]\nca_file = \"/etc/g.pem\"\n\
                    [credentials.\"git.corp.example\"]\ntoken = \"t0ken\"\n";
        fs_err::write(&p, text).unwrap();
        let c = FileConfig::load(Some(&p)).unwrap();
        let net = c.net(&[PathBuf::from("/tmp/flag.pem")]);
        assert_eq!(net.tls.ca_files, [PathBuf::from("/etc/a.pem"), PathBuf::from("/tmp/flag.pem")]);
        assert_eq!(net.no_proxy.as_deref(), Some(".corp.example"));
        assert!(net.credentials.contains_key("git.corp.example") && net.tls.hosts.contains_key("git.corp.example"));
        // Neither the token nor the proxy's password shows in a debug print.
        let shown = format!("{c:?}");
        assert!(!shown.contains("t0ken") && !shown.contains("pw@"), "{shown}");
        fs_err::write(&p, "[tls]\ncafiles = []\n").unwrap();
        assert!(matches!(FileConfig::load(Some(&p)), Err(ConfigError::Parse { .. })));
    }
}
