//! The install pipeline, the one path every entry point takes.
//!
//! source → fetcher (sandboxed) → staging → `pack.yaml` rules → checksum →
//! pack lock → journal row (pending) → atomic rename → journal row
//! (installed). Any failure before the rename leaves the previous state
//! untouched and nothing half-installed; a kill after it is finished by the
//! next run's start-up check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::checksum::{self, Checksum, ChecksumKind};
use crate::context::Context;
use crate::db::{Action, Channel, NewInstallation};
use crate::runtime::{Event, EventSink, Limits};
use crate::staging::StagingWriter;
use crate::{Error, manifest, sources};

#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub source: String,
    pub force: bool,
    /// What the result must hash to: a tree checksum (`sha256-tree-v1:…`)
    /// for any source, or `sha256:…` for an archive's own bytes (a mismatch
    /// installs nothing).
    pub expected_checksum: Option<Checksum>,
    pub limits: Limits,
    pub method: Channel,
    /// Fetch with this component instead of the built-in fetcher.
    pub plugin_file: Option<PathBuf>,
    /// Fetch with this added plugin (default: the one whose scheme matches).
    pub plugin: Option<String>,
    /// More hosts the fetch may reach.
    pub allow_hosts: Vec<String>,
    /// A branch, tag or commit, for sources that have them (git).
    pub reference: Option<String>,
    pub allow_insecure_http: bool,
    /// The name of the API token the install is made with (`None` from the CLI).
    pub api_token: Option<String>,
    /// The ref and version the fetched pack must have (an index entry's
    /// claim); anything else is refused before it is installed.
    pub expected_pack: Option<ExpectedPack>,
    /// Never touch the network: an http(s) archive comes from the artifact
    /// cache (by the expected `sha256:…`, or by what its URL served last),
    /// and anything that is not cached fails naming what is missing.
    pub offline: bool,
    /// Offline, a signed index whose trusted metadata expired is still used
    /// (install by name warns which roles were expired).
    pub allow_expired: bool,
    /// The ref to record as asked for when `reference` is only how the
    /// source is fetched (`sync --locked` fetches a lockfile's commit but
    /// records the tag it was first installed from).
    pub record_reference: Option<String>,
    /// Install even when the pack's runtime requirements (python / node
    /// versions) are not met here; the report lists what was ignored.
    pub ignore_runtime_requirements: bool,
    /// The source was named by an API caller: its host may not be a
    /// private address unless it is in `allow_hosts` (the operator's).
    pub untrusted_caller: bool,
    /// The local source, already opened (no-follow) and checked by the
    /// caller: this handle, not the path, is what the fetcher reads.
    pub opened_input: Option<std::sync::Arc<OpenedInput>>,
    /// The pack's runtime environment (`--no-env`, `--rebuild-env`, …).
    pub env: crate::environments::EnvOptions,
    /// The source whose version list `source` was picked from
    /// (`oci://host/repo` for `oci://host/repo@^1.2`): recorded, so that
    /// `upgrade` and `outdated` can ask for that list again.
    pub listed_from: Option<String>,
}

/// A local folder or file opened once, when it was checked.
#[derive(Debug)]
pub struct OpenedInput {
    /// The path it had when it was opened (shown and recorded).
    pub path: PathBuf,
    pub handle: std::fs::File,
    pub is_dir: bool,
}

impl OpenedInput {
    /// A path that reopens this very handle (`/proc/self/fd/N`: the kernel
    /// follows the descriptor, not the name, so a later swap of the name
    /// changes nothing).
    pub fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.handle.as_raw_fd()))
    }
}

impl InstallRequest {
    /// What listing a source's versions runs under for this request.
    pub fn list_options(&self) -> crate::listed::ListOptions {
        crate::listed::ListOptions {
            limits: self.limits,
            allow_hosts: self.allow_hosts.clone(),
            allow_insecure_http: self.allow_insecure_http,
            untrusted_caller: self.untrusted_caller,
        }
    }

    /// A request for `source` with every option at its default (no force,
    /// nothing expected, no extra hosts or plugins, online); callers set
    /// what they need with struct update syntax, so a new option touches
    /// only the callers that use it.
    pub fn new(source: impl Into<String>, limits: Limits, method: Channel) -> InstallRequest {
        InstallRequest {
            source: source.into(),
            force: false,
            expected_checksum: None,
            limits,
            method,
            plugin_file: None,
            plugin: None,
            allow_hosts: vec![],
            reference: None,
            allow_insecure_http: false,
            api_token: None,
            expected_pack: None,
            offline: false,
            allow_expired: false,
            ignore_runtime_requirements: false,
            record_reference: None,
            untrusted_caller: false,
            opened_input: None,
            env: Default::default(),
            listed_from: None,
        }
    }
}

/// What an index says a source holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPack {
    pub pack_ref: String,
    pub version: String,
    /// Who claims it, e.g. `index main`.
    pub origin: String,
    /// When the claim comes from a signed index: what vouched for it,
    /// recorded with the installation (`index_trust` in its metadata).
    pub index_trust: Option<IndexTrust>,
}

/// A pack installed by name from a signed (TUF) index: the index, the
/// targets metadata version this host trusted, and the ids of the keys whose
/// signatures on it met the threshold. `info` shows it and `lock` writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexTrust {
    pub index: String,
    pub targets_version: u64,
    pub key_ids: Vec<String>,
}

/// What the pipeline is doing, for progress displays.
#[derive(Debug, Clone)]
pub enum InstallEvent {
    Phase(&'static str),
    /// Bytes and entries staged so far.
    Staged {
        bytes: u64,
        entries: u64,
    },
    Fetcher(Event),
    /// Waiting for another process that holds the pack's lock.
    Waiting(String),
    /// A step of building the pack's runtime environment.
    Env(attune_env::EnvEvent),
}

impl InstallEvent {
    /// The event's name and fields as JSON shows them: the one wire form of
    /// the CLI's `--json` lines and the API's job events.
    pub fn wire(&self) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        match self {
            InstallEvent::Phase(p) => ("phase", json!({ "phase": p })),
            InstallEvent::Staged { bytes, entries } => ("staged", json!({ "bytes": bytes, "entries": entries })),
            InstallEvent::Waiting(m) => ("waiting", json!({ "message": m })),
            InstallEvent::Env(e) => {
                let mut v = serde_json::to_value(e).expect("env events serialize");
                // Its own tag becomes `step`: `event` is the wire's.
                let step = v.as_object_mut().and_then(|o| o.remove("event")).unwrap_or_default();
                v["step"] = step;
                ("env", v)
            }
            InstallEvent::Fetcher(Event::Log(level, m)) => ("log", json!({ "level": level.as_str(), "message": m })),
            InstallEvent::Fetcher(Event::Progress { done, total }) => {
                ("fetch_progress", json!({ "done": done, "total": total }))
            }
        }
    }
}

pub type InstallProgress = Arc<dyn Fn(InstallEvent) + Send + Sync>;

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub path: PathBuf,
    pub checksum: String,
    pub replaced: bool,
    pub files: u64,
    pub bytes: u64,
    pub source_type: crate::source::SourceKind,
    pub source: String,
    pub fetcher: sources::FetcherFacts,
    pub installation_id: i64,
    /// Whether this install made the version active (the pack had none).
    pub activated: bool,
    /// Runtime requirements not met here, installed anyway as asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_runtime_requirements: Vec<String>,
    /// The runtime environment built with it (`{envs_dir}/{ref}-{version}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvReport>,
    /// What was read differently from how it was written (a short
    /// `version: 0.2` recorded as 0.2.0): notes a front end shows apart
    /// (the CLI on stderr), not part of the report's JSON.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// A built environment, as an install reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvReport {
    pub path: PathBuf,
    #[serde(flatten)]
    pub record: crate::environments::EnvRecord,
    /// Linked from another version, built from source, resolved unlocked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub async fn install(
    ctx: &Context,
    req: InstallRequest,
    progress: Option<InstallProgress>,
) -> Result<InstallReport, Error> {
    // `SOURCE@RANGE`: one exact source, picked from what the source lists.
    let req = match (&req.plugin_file, &req.opened_input) {
        (None, None) => {
            match crate::listed::pick(ctx, &req.source, req.plugin.as_deref(), &req.list_options()).await? {
                Some(p) => InstallRequest { source: p.source, listed_from: Some(p.listed_from), ..req },
                None => req,
            }
        }
        _ => req,
    };
    let emit = |e: InstallEvent| {
        if let Some(p) = &progress {
            p(e)
        }
    };
    let spec = match (&req.opened_input, &req.plugin_file) {
        (Some(o), _) => sources::SourceSpec::Opened { shown: o.path.clone(), input: o.proc_path(), is_dir: o.is_dir },
        (None, Some(wasm)) => sources::parse_for_plugin(&req.source, wasm),
        (None, None) => match crate::plugins::for_source(ctx, &req.source, req.plugin.as_deref()).await? {
            Some(row) => crate::plugins::added_spec(ctx, row, &req.source).await?,
            None => sources::parse(&req.source)?,
        },
    };
    let expected_sha256 = match &req.expected_checksum {
        Some(c) if c.kind() == ChecksumKind::Sha256 => Some(c.to_hex()),
        _ => None,
    };
    let spec = match req.offline {
        true => offline_spec(ctx, spec, expected_sha256.as_deref(), req.reference.as_deref())?,
        false => spec,
    };
    let cache_as = match &spec {
        sources::SourceSpec::Http { url, .. } => ctx.artifacts.clone().map(|a| (a, sources::redact_url(url))),
        _ => None,
    };
    // A git tree from the cache holds this commit; the archive fetcher that
    // unpacks it cannot say so itself.
    let (cached_commit, cache_git_as) = match &spec {
        sources::SourceSpec::Cached { git_commit, .. } => (git_commit.clone(), None),
        sources::SourceSpec::Git { url, .. } => (None, ctx.artifacts.clone().map(|a| (a, sources::redact_url(url)))),
        _ => (None, None),
    };
    let staging = ctx.store.new_staging()?;
    let pack_path = staging.pack_path();

    emit(InstallEvent::Phase("fetching"));
    let options = sources::SourceOptions {
        expected_sha256: expected_sha256.clone(),
        allow_hosts: req.allow_hosts.clone(),
        allow_insecure_http: req.allow_insecure_http,
        reference: req.reference.clone(),
        untrusted_caller: req.untrusted_caller,
        save_as: None,
    };
    let source = sources::resolve(spec, ctx.runtime.clone(), &options).await?;
    if expected_sha256.is_some() && !source.kind().is_artifact() {
        return Err(Error::Usage(format!(
            "{}: --checksum sha256:… is the SHA-256 of an archive file; for a folder pass its tree checksum \
             (sha256-tree-v1:…, from `attune pack checksum`)",
            source.display()
        )));
    }
    let limits = source.limits(&req.limits);
    let writer = writer_for(&staging, &limits)?;
    let counters = writer.counters();
    let events: Option<EventSink> =
        progress.clone().map(|p| Arc::new(move |e: &Event| p(InstallEvent::Fetcher(e.clone()))) as EventSink);
    let fetch = source.fetch(writer, &limits, events);
    tokio::pin!(fetch);
    let fetched = loop {
        tokio::select! {
            r = &mut fetch => break r?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                use std::sync::atomic::Ordering::Relaxed;
                emit(InstallEvent::Staged { bytes: counters.bytes.load(Relaxed), entries: counters.files.load(Relaxed) });
            }
        }
    };
    emit(InstallEvent::Staged { bytes: fetched.bytes, entries: fetched.entries });
    if let Some((artifacts, url)) = &cache_as {
        cache_download(artifacts, &staging.scratch_path(), &fetched, url);
    }
    if let Some((artifacts, url)) = &cache_git_as {
        cache_git_pack(artifacts, &staging.scratch_path(), &fetched, url, req.reference.as_deref());
    }
    // Scratch (a downloaded archive) is done with; unlinked now, its dirty
    // pages are dropped instead of written back by the commit's sync.
    let _ = std::fs::remove_dir_all(staging.scratch_path());

    emit(InstallEvent::Phase("checking"));
    let metadata: std::collections::BTreeMap<String, String> = fetched.result.metadata.iter().cloned().collect();
    if let Some(want) = &expected_sha256 {
        // The fetcher checked it; this holds it to that.
        let got = metadata.get(attune_core::keys::ARCHIVE_SHA256).map(String::as_str).unwrap_or("(not reported)");
        if !got.eq_ignore_ascii_case(want) {
            return Err(Error::ChecksumMismatch {
                source_str: source.display(),
                expected: format!("sha256:{want}"),
                actual: format!("sha256:{got}"),
            });
        }
    }
    let root = match source.kind().allows_wrapper_folder() {
        true => pack_root(&pack_path),
        false => pack_path.clone(),
    };
    // What the pack's errors name: the source as given (`./my_pack`), not the
    // staging folder it was fetched into.
    let given = match &req.opened_input {
        None if !req.source.is_empty() => sources::redact_url(&req.source),
        _ => source.display(),
    };
    let manifest = match manifest::read(&root) {
        Err(manifest::ManifestError::NotFound { .. }) if source.kind().allows_wrapper_folder() => {
            return Err(Error::NoManifest { source_str: given });
        }
        r => r.map_err(|e| e.shown_as(&root, &given))?,
    };
    let notes: Vec<String> = (manifest.version_written.iter())
        .map(|w| {
            format!(
                "{}: pack.yaml version {w} is not full semver; recorded as {} (as StackStorm does since 2.1)",
                manifest.r#ref, manifest.version
            )
        })
        .collect();
    if let Some(want) = &req.expected_pack
        && (manifest.r#ref != want.pack_ref || manifest.version.to_string() != want.version)
    {
        return Err(crate::registry::RegistryError::WrongPack {
            pack_ref: want.pack_ref.clone(),
            version: want.version.clone(),
            origin: want.origin.clone(),
            actual_ref: manifest.r#ref.clone(),
            actual_version: manifest.version.to_string(),
        }
        .into());
    }
    // The pack's actions must be able to run here (python / node versions).
    let ignored_runtime_requirements = crate::interpreters::enforce(
        &ctx.interpreters,
        &[crate::interpreters::PackRequirements::from_manifest(&manifest)],
        req.ignore_runtime_requirements,
    )
    .await?;
    // Hashed as it was staged: the pack is not read again.
    let tree = staged_tree(&pack_path, &root, fetched.tree)?;
    if let Some(expected) = &req.expected_checksum {
        let actual = match expected.kind() {
            ChecksumKind::Sha256 => *expected, // checked above, on the archive's bytes
            ChecksumKind::Tree(_) => tree.digest,
            // Attune registry indexes' git checksum: computed only to check one.
            ChecksumKind::AttunePackFileV1 => {
                let p = root.clone();
                tokio::task::spawn_blocking(move || checksum::attune_pack_file_v1(&p))
                    .await
                    .expect("checksum task panicked")?
            }
        };
        if actual != *expected {
            return Err(Error::ChecksumMismatch {
                source_str: source.display(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }

    // Built before the lock (it may take a while), published with the pack.
    let env = {
        let (python, node) = crate::environments::needed(&root, &req.env);
        if (python || node) && !req.env.skip {
            emit(InstallEvent::Phase("environment"));
        }
        let events = |e: attune_env::EnvEvent| emit(InstallEvent::Env(e));
        crate::environments::build(ctx, &root, &manifest.r#ref, &req.env, req.offline, &events).await?
    };

    let pack_ref = manifest.r#ref.clone();
    let version = manifest.version.clone();
    let lock = {
        let (p, r) = (progress.clone(), pack_ref.clone());
        ctx.lock_pack(
            &pack_ref,
            Arc::new(move || {
                if let Some(p) = &p {
                    p(InstallEvent::Waiting(format!("another attune process is changing {r}; waiting for it")))
                }
            }),
        )
        .await?
    };
    // Whether this version is already here is decided once, under the lock:
    // the journal records the answer (install or reinstall) and the store's
    // publish enforces it (replace, or refuse a folder that appeared).
    let dest = ctx.store.pack_dir(&pack_ref, &version);
    let recorded = ctx.db.current(&pack_ref, &version.to_string(), &ctx.machine).await?.is_some();
    let on_disk = fs_err::symlink_metadata(&dest).is_ok();
    if (recorded || on_disk) && !req.force {
        return Err(Error::AlreadyInstalled { pack_ref, version: version.to_string(), path: dest });
    }

    emit(InstallEvent::Phase("committing"));
    let new = NewInstallation {
        pack_ref: pack_ref.clone(),
        action: if recorded { Action::Reinstall } else { Action::Install },
        pack_name: manifest.name.clone(),
        pack_description: manifest.description.clone(),
        version: version.to_string(),
        source_type: source.kind(),
        source: source.display(),
        requested_ref: req.record_reference.clone().or_else(|| req.reference.clone()),
        resolved_commit: fetched.result.resolved_commit.clone().or(cached_commit),
        checksum: tree.digest.to_string(),
        checksum_algorithm: tree.algorithm.name().to_string(),
        manifest: serde_json::to_value(&tree).expect("manifest serializes"),
        verified: req.expected_checksum.is_some(),
        installed_by: ctx.user.clone(),
        method: req.method,
        storage_path: dest.display().to_string(),
        fetcher_name: source.fetcher().name,
        fetcher_version: source.fetcher().version,
        fetcher_hash: Some(source.fetcher().sha256),
        host: ctx.machine.clone(),
        metadata: {
            let mut m = serde_json::json!({
                "resolved_source": fetched.result.resolved_source,
                "fetcher": metadata,
            });
            if let Some(trust) = req.expected_pack.as_ref().and_then(|e| e.index_trust.as_ref()) {
                m["index_trust"] = serde_json::to_value(trust).expect("trust serializes");
            }
            if let Some(b) = &env {
                m["environment"] = serde_json::to_value(&b.record).expect("environment serializes");
            }
            if let Some(from) = &req.listed_from {
                m["listed_from"] = serde_json::Value::String(sources::redact_url(from));
            }
            m
        },
        api_token: req.api_token.clone(),
    };
    let id = ctx.db.begin_install(&new).await?;
    // The environment goes first and comes back out if the pack cannot follow.
    let (env_report, published, stale_env) = match env {
        Some(built) => {
            let report = EnvReport {
                path: ctx.envs.pack_dir(&pack_ref, &version),
                record: built.record.clone(),
                notes: built.notes.clone(),
            };
            match crate::environments::publish(ctx, built, &pack_ref, &version) {
                Ok(p) => (Some(report), Some(p), None),
                Err(e) => {
                    ctx.db.fail_install(id, &e.to_string()).await?;
                    return Err(e);
                }
            }
        }
        // A version reinstalled without one loses the one it had.
        None => (None, None, ctx.envs.take_out_if_present(&pack_ref, &version)?),
    };
    if let Err(e) = ctx.store.commit(&staging, &root, &pack_ref, &version, on_disk) {
        if let Some(p) = published {
            p.undo(ctx);
        }
        if let Some(aside) = &stale_env {
            let _ = ctx.envs.restore(aside, &pack_ref, &version);
        }
        ctx.db.fail_install(id, &e.to_string()).await?;
        return Err(e.into());
    }
    ctx.db.complete_install(id).await?;
    drop(published);
    if let Some(aside) = stale_env {
        ctx.envs.discard(&aside);
    }
    // The first version of a pack becomes its active one; another version
    // beside it does not switch (`attune activate` / `attune upgrade` do).
    let activated = match ctx.db.active_version(&ctx.machine, &pack_ref).await? {
        None => {
            crate::activation::activate_locked(ctx, &pack_ref, &version, "install").await?;
            true
        }
        Some(active) => {
            if active == version.to_string() {
                // A reinstall of the active version: keep the links right.
                ctx.store.set_active(&pack_ref, &version)?;
                crate::environments::link(ctx, &pack_ref, Some(&version))?;
            }
            false
        }
    };
    lock.release().await;
    drop(staging);
    Ok(InstallReport {
        pack_ref,
        version: version.to_string(),
        path: dest,
        checksum: tree.digest.to_string(),
        replaced: recorded || on_disk,
        files: tree.file_count() as u64,
        bytes: tree.total_bytes(),
        source_type: new.source_type,
        source: new.source,
        fetcher: source.fetcher(),
        installation_id: id,
        activated,
        ignored_runtime_requirements,
        environment: env_report,
        notes,
    })
}

/// `--offline`: the source as it can be fetched without the network. Local
/// folders and archives are already here; an http(s) archive or a git tree
/// is read from the artifact cache; anything else fails, naming what is
/// missing.
fn offline_spec(
    ctx: &Context,
    spec: sources::SourceSpec,
    expected_sha256: Option<&str>,
    reference: Option<&str>,
) -> Result<sources::SourceSpec, Error> {
    use crate::artifacts::{ArtifactError, CachedGit};
    use sources::SourceSpec as S;
    match spec {
        S::Local(_) | S::Archive(_) | S::Opened { .. } | S::Cached { .. } | S::CachedPack { .. } => Ok(spec),
        S::Http { url, .. } => {
            let artifacts = ctx.artifacts.as_ref().ok_or(ArtifactError::NoCacheDir)?;
            let shown = sources::redact_url(&url);
            let hex = match expected_sha256 {
                Some(h) => Some(h.to_ascii_lowercase()),
                None => artifacts.hex_for_url(&shown)?,
            };
            let missing = || ArtifactError::NotCached {
                what: match expected_sha256 {
                    Some(h) => format!("{shown} (sha256:{h})"),
                    None => shown.clone(),
                },
                dir: artifacts.root().to_path_buf(),
            };
            let path = match hex {
                Some(h) => artifacts.get(&h)?.ok_or_else(missing)?,
                None => return Err(missing().into()),
            };
            Ok(S::Cached { url, path, git_commit: None })
        }
        S::Git { url, .. } => {
            let artifacts = ctx.artifacts.as_ref().ok_or(ArtifactError::NoCacheDir)?;
            let shown = sources::redact_url(&url);
            match artifacts.git_tree(&shown, reference)? {
                Some(CachedGit { path, commit, pack: true }) => Ok(S::CachedPack { url, path, commit }),
                // A tree an older attune cached as a tar.
                Some(CachedGit { path, commit, pack: false }) => Ok(S::Cached { url, path, git_commit: Some(commit) }),
                None => Err(ArtifactError::NotCached {
                    what: format!("{shown} at {}", reference.unwrap_or("HEAD")),
                    dir: artifacts.root().to_path_buf(),
                }
                .into()),
            }
        }
        S::Plugin { source, .. } | S::Added { source, .. } => {
            Err(ArtifactError::NotCacheable { what: sources::redact_url(&source) }.into())
        }
    }
}

/// Keeps a downloaded archive (the http fetcher's first scratch blob) in the
/// artifact cache. A cache that cannot be written only costs a warning.
fn cache_download(
    artifacts: &crate::artifacts::Artifacts,
    scratch: &std::path::Path,
    fetched: &attune_fetch::runtime::Fetched,
    url: &str,
) {
    let metadata = &fetched.result.metadata;
    let Some((_, hex)) = metadata.iter().find(|(k, _)| k == attune_core::keys::ARCHIVE_SHA256) else { return };
    // The host hashed the download as it was appended; the fetcher's
    // `archive-sha256` is only a claim, held to that.
    let hashed = fetched.scratch_sha256.get(&0).map(String::as_str);
    match artifacts.put_file(&attune_fetch::runtime::blobs::scratch_file(scratch, 0), hex, hashed, Some(url)) {
        Ok(true) => {}
        Ok(false) => tracing::warn!("{url}: the downloaded bytes do not match sha256:{hex}; not cached"),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Keeps the pack a git fetch downloaded (the git fetcher's first scratch
/// blob, hashed by the host as it was written) in the artifact cache, found
/// again by URL and ref or commit. A cache that cannot be written only costs
/// a warning.
fn cache_git_pack(
    artifacts: &crate::artifacts::Artifacts,
    scratch: &std::path::Path,
    fetched: &attune_fetch::runtime::Fetched,
    url: &str,
    reference: Option<&str>,
) {
    let (Some(commit), Some(hex)) = (&fetched.result.resolved_commit, fetched.scratch_sha256.get(&0)) else { return };
    let pack = attune_fetch::runtime::blobs::scratch_file(scratch, 0);
    if let Err(e) = artifacts.put_git_pack(&pack, hex, url, reference, commit) {
        tracing::warn!("{e}");
    }
}

/// The pack's folder in a fetched tree: the root, or its one top-level
/// folder when only that holds `pack.yaml` (GitHub-style `name-1.2.3/`).
/// The checksum manifest of `root` (the staging folder `staged`, or the one
/// folder the pack came wrapped in) from the entries staging hashed.
fn staged_tree(staged: &Path, root: &Path, entries: Vec<checksum::Entry>) -> Result<checksum::TreeManifest, Error> {
    let entries = match root.strip_prefix(staged).ok().and_then(Path::to_str) {
        Some("") => entries,
        Some(wrapper) => {
            let prefix = format!("{wrapper}/");
            entries
                .into_iter()
                .filter_map(|mut e| {
                    e.path = e.path.strip_prefix(&prefix)?.to_string();
                    Some(e)
                })
                .collect()
        }
        // Not a folder staging wrote (cannot happen): read it the slow way.
        None => return Ok(checksum::tree(root)?),
    };
    Ok(checksum::TreeManifest::from_entries(checksum::Algorithm::CURRENT, entries)?)
}

fn pack_root(fetched: &std::path::Path) -> PathBuf {
    if std::fs::symlink_metadata(fetched.join(manifest::MANIFEST_FILE)).is_ok() {
        return fetched.to_path_buf();
    }
    let entries: Vec<_> = match std::fs::read_dir(fetched) {
        Ok(rd) => rd.flatten().collect(),
        Err(_) => return fetched.to_path_buf(),
    };
    match entries.as_slice() {
        [one] if one.file_type().is_ok_and(|t| t.is_dir()) && one.path().join(manifest::MANIFEST_FILE).is_file() => {
            one.path()
        }
        _ => fetched.to_path_buf(),
    }
}

/// Downloads one file over http(s) through the sandboxed http fetcher (same
/// allowlist, limits and checks as any install) and returns its bytes.
pub async fn download(
    ctx: &Context,
    url: &str,
    options: sources::SourceOptions,
    limits: &Limits,
) -> Result<Vec<u8>, Error> {
    let spec = sources::parse(url)?;
    if !matches!(spec, sources::SourceSpec::Http { .. }) {
        return Err(Error::Usage(format!("{}: not an http(s) URL of a file", sources::redact_url(url))));
    }
    const FILE: &str = "download";
    let options = sources::SourceOptions { save_as: Some(FILE.to_string()), ..options };
    let staging = ctx.store.new_staging()?;
    let pack_path = staging.pack_path();
    let source = sources::resolve(spec, ctx.runtime.clone(), &options).await?;
    source.fetch(writer_for(&staging, limits)?, limits, None).await?;
    let file = pack_path.join(FILE);
    std::fs::read(&file).map_err(|e| Error::Io { path: file, source: e })
}

/// The validated writer a fetch gets: the staging pack folder, with its
/// scratch space beside it.
fn writer_for(staging: &crate::store::StagingDir, limits: &Limits) -> Result<StagingWriter, Error> {
    let pack_path = staging.pack_path();
    Ok(StagingWriter::new(&pack_path, limits.write)
        .map_err(|e| Error::Io { path: pack_path, source: e })?
        .with_scratch(staging.scratch_path()))
}
