//! Sources: where a pack comes from, and which fetcher gets it.
//!
//! One small trait ([`Source`]) and one factory ([`resolve`]), the only place
//! that knows the concrete kinds of source. Every kind is fetched by a wasm
//! component ([`wasm::WasmSource`]); the install pipeline only sees a
//! `Source`, never which fetcher ran.

pub mod wasm;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use thiserror::Error;

use crate::runtime::{EventSink, Fetched, Limits, RuntimeError};
use crate::staging::StagingWriter;
pub use attune_core::source::{SourceKind, redact_url};

/// A parsed source string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A folder on this machine (canonical path).
    Local(PathBuf),
    /// An archive file on this machine (canonical path).
    Archive(PathBuf),
    /// An archive at an http(s) URL (`url` may carry credentials; `host` is
    /// lower case).
    Http { url: String, host: String },
    /// A git repository over smart HTTP (`url` without the `git+` prefix).
    Git { url: String, host: String },
    /// An http(s) archive or a git tree read from the artifact cache
    /// (`--offline`): the archive fetcher reads `path`, the install is shown
    /// and recorded as the URL's (a git one, at `git_commit`, as git).
    Cached { url: String, path: PathBuf, git_commit: Option<String> },
    /// A git pack read from the artifact cache (`--offline`): the git
    /// fetcher reads `path` instead of the network and writes `commit`'s
    /// tree; the install is shown and recorded as the URL's.
    CachedPack { url: String, path: PathBuf, commit: String },
    /// A local folder or archive opened once by the caller (the API): the
    /// fetcher reads `input` (`/proc/self/fd/N`, that open handle), the
    /// install is shown and recorded as `shown`.
    Opened { shown: PathBuf, input: PathBuf, is_dir: bool },
    /// Any source, fetched by the component in `wasm`; a source that names
    /// an existing local path is offered to it read-only.
    Plugin { wasm: PathBuf, source: String, input: Option<PathBuf> },
    /// A source handled by an added plugin, with who it was when added (what
    /// an install records) and what the operator granted it
    /// (`outbound-host:…`, `read-input`).
    Added { identity: crate::runtime::Identity, wasm: Vec<u8>, source: String, grants: Vec<String> },
}

/// Facts about the fetcher that ran, recorded with the installation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetcherFacts {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// Something that can put a pack into a staging folder.
pub trait Source: Send + Sync {
    fn kind(&self) -> SourceKind;
    /// The source as it may be shown and stored (credentials removed).
    fn display(&self) -> String;
    fn fetcher(&self) -> FetcherFacts;
    /// The limits this source's fetches run under, given the configured ones
    /// (a fetcher granted larger limits raises them).
    fn limits(&self, configured: &Limits) -> Limits {
        *configured
    }
    fn fetch<'a>(
        &'a self,
        staging: StagingWriter,
        limits: &'a Limits,
        events: Option<EventSink>,
    ) -> BoxFuture<'a, Result<Fetched, SourceError>>;
    /// The versions this source offers, each with the exact source that
    /// fetches it (its fetcher's `list-versions`); `None`: it lists none.
    fn list_versions<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Vec<crate::runtime::VersionInfo>>, SourceError>> {
        let _ = limits;
        Box::pin(async { Ok(None) })
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error("{path}: {what} cannot be a pack source; use a pack folder or an archive")]
    Unsupported { path: PathBuf, what: &'static str },
    #[error(
        "{source_str:?}: unsupported source; use a pack folder (./my_pack), an archive (./my_pack.tar.gz), \
         an http(s) URL of an archive, or a git repository (git+https://host/org/repo.git)"
    )]
    UnknownScheme { source_str: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{url}: not a usable URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "{url}: plain http:// is only allowed for loopback hosts (localhost, 127.0.0.1, ::1); \
         use https://, or pass --allow-insecure-http if you accept an unauthenticated download"
    )]
    InsecureHttp { url: String },
    #[error("{path}: cannot read the plugin: {source}")]
    PluginFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Parses a source string as the user wrote it.
pub fn parse(source: &str) -> Result<SourceSpec, SourceError> {
    let git = attune_core::source::strip_git_prefix(source);
    if git.is_some() || attune_core::source::is_http_url(source) {
        let plain = git.unwrap_or(source);
        let url = url::Url::parse(plain)
            .map_err(|e| SourceError::BadUrl { url: redact_url(source), reason: e.to_string() })?;
        let host = url
            .host_str()
            .ok_or_else(|| SourceError::BadUrl { url: redact_url(source), reason: "no host".into() })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        // `https://host/org/repo.git` is a repository, like `git+https://…`.
        if git.is_some() || url.path().trim_end_matches('/').ends_with(".git") {
            return Ok(SourceSpec::Git { url: plain.to_string(), host });
        }
        return Ok(SourceSpec::Http { url: source.to_string(), host });
    }
    let path = match source.strip_prefix("file://") {
        Some(p) => Path::new(p),
        None if source.contains("://") => {
            return Err(SourceError::UnknownScheme { source_str: redact_url(source) });
        }
        None => Path::new(source),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::NotFound { path: path.to_path_buf() });
        }
        Err(e) => return Err(SourceError::Io { path: path.to_path_buf(), source: e }),
    };
    let canonical = std::fs::canonicalize(path).map_err(|e| SourceError::Io { path: path.to_path_buf(), source: e })?;
    if meta.is_dir() {
        Ok(SourceSpec::Local(canonical))
    } else if meta.is_file() {
        Ok(SourceSpec::Archive(canonical))
    } else {
        Err(SourceError::Unsupported { path: path.to_path_buf(), what: "a device, FIFO or socket" })
    }
}

/// How a network source is shown, and the hosts it is offered: its own
/// (`host:port`, so a redirect to another port of it is refused) and the
/// ones the user allowed. Only a trusted caller's own host may be private.
/// Plain http is refused here, before any fetcher runs, unless it is
/// loopback or allowed.
fn network_offer(
    url: &str,
    host: String,
    options: &SourceOptions,
) -> Result<(String, crate::runtime::grants::Offer), SourceError> {
    let shown = redact_url(url);
    if url.to_ascii_lowercase().starts_with("http://")
        && !options.allow_insecure_http
        && !crate::runtime::http::is_loopback_host(&host)
    {
        return Err(SourceError::InsecureHttp { url: shown });
    }
    let own = crate::runtime::grants::source_authority(url)
        .ok_or_else(|| SourceError::BadUrl { url: shown.clone(), reason: "no host".into() })?;
    let allowed: Vec<String> =
        options.allow_hosts.iter().map(|h| crate::runtime::grants::normalize_authority(h)).collect();
    let mut hosts = vec![own.clone()];
    hosts.extend(allowed.iter().cloned());
    let mut trusted_hosts = allowed;
    if !options.untrusted_caller {
        trusted_hosts.push(own);
    }
    let offer = crate::runtime::grants::Offer {
        hosts,
        trusted_hosts,
        allow_insecure_http: options.allow_insecure_http,
        ..Default::default()
    };
    Ok((shown, offer))
}

/// A source to be fetched by a plugin file instead of a built-in fetcher.
pub fn parse_for_plugin(source: &str, wasm: &Path) -> SourceSpec {
    let input = std::fs::canonicalize(source.strip_prefix("file://").unwrap_or(source)).ok();
    SourceSpec::Plugin { wasm: wasm.to_path_buf(), source: source.to_string(), input }
}

/// What the user said about a source beyond the source string.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// The SHA-256 the fetched artifact (an archive) must have; a mismatch
    /// installs nothing.
    pub expected_sha256: Option<String>,
    /// More hosts a download may reach (redirect targets, mirrors).
    pub allow_hosts: Vec<String>,
    /// Plain http:// to hosts that are not loopback.
    pub allow_insecure_http: bool,
    /// A branch, tag or commit (`--ref`), for sources that have them.
    pub reference: Option<String>,
    /// The source was named by an API caller, not the operator: its host
    /// may not be a private address (only `allow_hosts`, the operator's, may).
    pub untrusted_caller: bool,
    /// Keep a download as this one file instead of unpacking it.
    pub save_as: Option<String>,
}

impl SourceOptions {
    fn request_options(&self) -> Vec<(String, String)> {
        let sha = self.expected_sha256.iter().map(|h| (attune_core::keys::EXPECTED_SHA256.to_string(), h.clone()));
        sha.chain(self.save_as.iter().map(|f| ("save-as".to_string(), f.clone()))).collect()
    }
}

/// The factory: the one place that maps a kind of source to its fetcher.
pub async fn resolve(
    spec: SourceSpec,
    runtime: std::sync::Arc<crate::runtime::Runtime>,
    options: &SourceOptions,
) -> Result<Box<dyn Source>, SourceError> {
    use crate::runtime::FetchRequest;
    use crate::runtime::grants::Offer;
    // Each kind picks its fetcher, what it is offered, and how it is shown;
    // all of them then run the same way.
    let (kind, display, plugin, request, offer) = match spec {
        SourceSpec::Local(path) => {
            let shown = path.display().to_string();
            let request = FetchRequest { source: shown.clone(), ..Default::default() };
            let offer = Offer { input: Some(path), ..Default::default() };
            (SourceKind::Local, shown, crate::builtins::LOCAL.load(&runtime).await?, request, offer)
        }
        SourceSpec::Archive(path) => {
            let shown = path.display().to_string();
            let request = FetchRequest {
                source: shown.clone(),
                input_file: path.file_name().map(|n| n.to_string_lossy().into_owned()),
                options: options.request_options(),
                ..Default::default()
            };
            let offer = Offer { input: Some(path), ..Default::default() };
            (SourceKind::Archive, shown, crate::builtins::ARCHIVE.load(&runtime).await?, request, offer)
        }
        SourceSpec::Opened { shown, input, is_dir: true } => {
            let shown = shown.display().to_string();
            let request = FetchRequest { source: shown.clone(), ..Default::default() };
            let offer = Offer { input: Some(input), ..Default::default() };
            (SourceKind::Local, shown, crate::builtins::LOCAL.load(&runtime).await?, request, offer)
        }
        SourceSpec::Opened { shown, input, is_dir: false } => {
            let request = FetchRequest {
                source: shown.display().to_string(),
                input_file: shown.file_name().map(|n| n.to_string_lossy().into_owned()),
                options: options.request_options(),
                ..Default::default()
            };
            let offer = Offer { input: Some(input), ..Default::default() };
            let shown = shown.display().to_string();
            (SourceKind::Archive, shown, crate::builtins::ARCHIVE.load(&runtime).await?, request, offer)
        }
        SourceSpec::Cached { url, path, git_commit } => {
            let kind = if git_commit.is_some() { SourceKind::Git } else { SourceKind::Http };
            let request = FetchRequest {
                source: redact_url(&url),
                input_file: path.file_name().map(|n| n.to_string_lossy().into_owned()),
                options: options.request_options(),
                ..Default::default()
            };
            let offer = Offer { input: Some(path), ..Default::default() };
            (kind, redact_url(&url), crate::builtins::ARCHIVE.load(&runtime).await?, request, offer)
        }
        SourceSpec::CachedPack { url, path, commit } => {
            let request = FetchRequest {
                source: redact_url(&url),
                input_file: Some("pack".into()),
                reference: Some(commit),
                ..Default::default()
            };
            let offer = Offer { input: Some(path), ..Default::default() };
            (SourceKind::Git, redact_url(&url), crate::builtins::GIT.load(&runtime).await?, request, offer)
        }
        SourceSpec::Http { url, host } => {
            let (shown, offer) = network_offer(&url, host, options)?;
            let request = FetchRequest { source: url, options: options.request_options(), ..Default::default() };
            (SourceKind::Http, shown, crate::builtins::HTTP.load(&runtime).await?, request, offer)
        }
        SourceSpec::Git { url, host } => {
            let (shown, offer) = network_offer(&url, host, options)?;
            let request = FetchRequest { source: url, reference: options.reference.clone(), ..Default::default() };
            (SourceKind::Git, shown, crate::builtins::GIT.load(&runtime).await?, request, offer)
        }
        SourceSpec::Added { identity, wasm, source, grants } => {
            let plugin = runtime.load(&identity.name, &wasm).await?;
            plugin.expect_identity(&identity)?;
            let allowed: Vec<String> =
                options.allow_hosts.iter().map(|h| crate::runtime::grants::normalize_authority(h)).collect();
            let mut offer = crate::runtime::grants::Offer {
                allow_insecure_http: options.allow_insecure_http,
                hosts: allowed.clone(),
                trusted_hosts: allowed,
                ..Default::default()
            };
            for g in &grants {
                match g.strip_prefix("outbound-host:") {
                    // "The host the source names": resolved here, per source.
                    Some(crate::runtime::grants::SOURCE_HOST) => {
                        if let Some(h) = crate::runtime::grants::source_authority(&source) {
                            if !options.untrusted_caller {
                                offer.trusted_hosts.push(h.clone());
                            }
                            offer.hosts.push(h);
                        }
                    }
                    // The operator granted it: trusted.
                    Some(h) => {
                        offer.hosts.push(h.to_string());
                        offer.trusted_hosts.push(h.to_string());
                    }
                    None if g.starts_with("larger-limits:") => offer.granted.push(g.clone()),
                    // By path, so only for the operator: an API caller's local
                    // input must come opened once (SourceSpec::Opened).
                    None if g == "read-input" && !options.untrusted_caller => {
                        offer.input = std::fs::canonicalize(source.strip_prefix("file://").unwrap_or(&source)).ok();
                    }
                    None => {}
                }
            }
            let request = FetchRequest {
                source: source.clone(),
                options: options.request_options(),
                reference: options.reference.clone(),
                ..Default::default()
            };
            (SourceKind::Plugin, redact_url(&source), plugin, request, offer)
        }
        SourceSpec::Plugin { wasm, source, input } => {
            let bytes = std::fs::read(&wasm).map_err(|e| SourceError::PluginFile { path: wasm.clone(), source: e })?;
            let label = wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
            let plugin = runtime.load(&label, &bytes).await?;
            // Recorded under the name it gives: never a built-in's.
            if let Some(b) = crate::builtins::BUILTINS.iter().find(|b| b.name == plugin.info.name) {
                return Err(SourceError::Runtime(crate::runtime::RuntimeError::Instantiate {
                    plugin: label,
                    message: format!(
                        "{}: it calls itself {:?}, the name of a built-in fetcher; a plugin file cannot",
                        wasm.display(),
                        b.name
                    ),
                }));
            }
            let request =
                FetchRequest { source: source.clone(), options: options.request_options(), ..Default::default() };
            (SourceKind::Plugin, redact_url(&source), plugin, request, Offer { input, ..Default::default() })
        }
    };
    Ok(Box::new(wasm::WasmSource::new(kind, display, runtime, plugin, request, &offer)))
}
