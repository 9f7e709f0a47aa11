//! `attune index add|list|update|remove` and `attune install <ref>[@range]`.
//!
//! An index is registered in the database (shared by every host using it)
//! and its fetched JSON is cached per host at
//! `{cache_dir}/indexes-v1/{name}-{location hash}.json`, written atomically, so installing by
//! name reads no network until `index update`. An http(s) index is fetched
//! through the sandboxed http fetcher ([`install::download`], the same
//! allowlist and limits as any install); a local path is read directly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::progress::{PlannedPack, SetEvent, SetProgress, Skip};
use super::{Index, PackRequest, RegistryError, Resolved};
use crate::context::Context;
use crate::db::{IndexFetch, IndexRow};
use crate::install::{self, ExpectedPack, InstallReport, InstallRequest};
use crate::{Error, sources};

/// The cache folder's name; bump it when the cached form changes.
const CACHE_FOLDER: &str = "indexes-v1";

/// How an index download may reach the network.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// More hosts the download may reach (redirects, mirrors).
    pub allow_hosts: Vec<String>,
    pub allow_insecure_http: bool,
}

/// One index as `index list` / `add` / `update` report it.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    #[serde(flatten)]
    pub row: IndexRow,
    /// Whether this host has a cached copy to install from.
    pub cached: bool,
    /// Entries the last fetch could not read (only after add/update).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// What `index update` did to one index.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateOutcome {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexReport>,
    /// Why it failed; the cached copy (if any) is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the content changed since the previous fetch.
    pub changed: bool,
}

/// `{cache_dir}/indexes-v1/{name}-{16 hex of SHA-256(location)}.json`: the
/// location is part of the key because one cache folder may serve several
/// databases (one per project, or per test) that use a name differently.
fn cache_path(cache_dir: &Path, name: &str, location: &str) -> PathBuf {
    let key = hex::encode(&Sha256::digest(location.as_bytes())[..8]);
    cache_dir.join(CACHE_FOLDER).join(format!("{name}-{key}.json"))
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if super::is_ref(name) { Ok(()) } else { Err(RegistryError::BadName { name: name.to_owned() }) }
}

fn is_url(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// An http(s) URL as given (no credentials allowed), or a path made absolute.
fn normalize_location(location: &str) -> Result<String, Error> {
    if is_url(location) {
        if sources::redact_url(location) != location
            || url::Url::parse(location).is_ok_and(|u| !u.username().is_empty())
        {
            return Err(RegistryError::Credentials { location: sources::redact_url(location) }.into());
        }
        return Ok(location.to_owned());
    }
    let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
    let abs = std::fs::canonicalize(path).map_err(|e| Error::Io { path: path.to_owned(), source: e })?;
    Ok(abs.display().to_string())
}

/// Fetches and parses an index; returns its bytes and the parsed form.
async fn fetch(ctx: &Context, location: &str, options: &FetchOptions) -> Result<(Vec<u8>, Index), Error> {
    let bytes = if is_url(location) {
        let opts = sources::SourceOptions {
            allow_hosts: options.allow_hosts.clone(),
            allow_insecure_http: options.allow_insecure_http,
            ..Default::default()
        };
        install::download(ctx, location, opts, &ctx.limits).await?
    } else {
        std::fs::read(location).map_err(|e| Error::Io { path: location.into(), source: e })?
    };
    let index = super::parse(&bytes, location)?;
    Ok((bytes, index))
}

fn facts(ctx: &Context, bytes: &[u8], index: &Index) -> IndexFetch {
    IndexFetch {
        format: index.format.as_str().to_owned(),
        // Millisecond precision, as the database stores it.
        at: {
            let now = time::OffsetDateTime::now_utc();
            now.replace_millisecond(now.millisecond()).unwrap_or(now)
        },
        by: ctx.user.clone(),
        sha256: hex::encode(Sha256::digest(bytes)),
        packs: index.packs.len() as i64,
        versions: index.version_count() as i64,
    }
}

/// Writes `bytes` to `path` atomically: a synced temporary file in the same
/// folder, renamed over the old copy, then the folder synced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("cache files live in a folder");
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| Error::Io { path: p, source: e }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    tmp.persist(path).map_err(|e| Error::Io { path: path.to_owned(), source: e.error })?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// `attune index add <name> <url|path>`: fetches the index (it must parse),
/// caches it, then registers it. Nothing is registered if any step fails.
pub async fn add(
    ctx: &Context,
    cache_dir: &Path,
    name: &str,
    location: &str,
    options: &FetchOptions,
) -> Result<IndexReport, Error> {
    check_name(name)?;
    if let Some(existing) = ctx.db.index(name).await? {
        return Err(RegistryError::Exists { name: name.to_owned(), location: existing.location }.into());
    }
    let location = normalize_location(location)?;
    let (bytes, index) = fetch(ctx, &location, options).await?;
    let fetch = facts(ctx, &bytes, &index);
    let cached = cache_path(cache_dir, name, &location);
    write_atomic(&cached, &bytes)?;
    let row = match ctx.db.add_index(name, &location, &ctx.user, &fetch).await {
        Ok(row) => row,
        Err(e) => {
            // Lost a race for the name, most likely: the winner's cache stays valid only if it is ours.
            if ctx.db.index(name).await.ok().flatten().is_none() {
                let _ = std::fs::remove_file(&cached);
            }
            return Err(e.into());
        }
    };
    Ok(IndexReport { row, cached: true, skipped: index.skipped })
}

/// `attune index list`.
pub async fn list(ctx: &Context, cache_dir: &Path) -> Result<Vec<IndexReport>, Error> {
    Ok(ctx
        .db
        .indexes()
        .await?
        .into_iter()
        .map(|row| IndexReport {
            cached: cache_path(cache_dir, &row.name, &row.location).is_file(),
            row,
            skipped: vec![],
        })
        .collect())
}

async fn known(ctx: &Context, name: &str) -> Result<IndexRow, Error> {
    match ctx.db.index(name).await? {
        Some(row) => Ok(row),
        None => {
            let names: Vec<String> = ctx.db.indexes().await?.into_iter().map(|r| r.name).collect();
            let known = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
            Err(RegistryError::UnknownIndex { name: name.to_owned(), known }.into())
        }
    }
}

/// `attune index update [name]`: refetches one index or all of them. A
/// failure is reported per index and keeps that index's cached copy.
pub async fn update(
    ctx: &Context,
    cache_dir: &Path,
    name: Option<&str>,
    options: &FetchOptions,
) -> Result<Vec<UpdateOutcome>, Error> {
    let rows = match name {
        Some(n) => vec![known(ctx, n).await?],
        None => ctx.db.indexes().await?,
    };
    let mut out = Vec::new();
    for row in rows {
        let name = row.name.clone();
        let previous = row.fetched.as_ref().map(|f| f.sha256.clone());
        let result: Result<IndexReport, Error> = async {
            let (bytes, index) = fetch(ctx, &row.location, options).await?;
            let fetch = facts(ctx, &bytes, &index);
            write_atomic(&cache_path(cache_dir, &name, &row.location), &bytes)?;
            ctx.db.index_fetched(&name, &fetch).await?;
            Ok(IndexReport { row: IndexRow { fetched: Some(fetch), ..row }, cached: true, skipped: index.skipped })
        }
        .await;
        out.push(match result {
            Ok(report) => UpdateOutcome {
                changed: previous.as_deref() != report.row.fetched.as_ref().map(|f| f.sha256.as_str()),
                name,
                index: Some(report),
                error: None,
            },
            Err(e) => UpdateOutcome { name, index: None, error: Some(e.to_string()), changed: false },
        });
    }
    Ok(out)
}

/// `attune index remove <name>`: unregisters it and drops this host's cache.
pub async fn remove(ctx: &Context, cache_dir: &Path, name: &str) -> Result<IndexRow, Error> {
    let row = known(ctx, name).await?;
    ctx.db.remove_index(name).await?;
    let cached = cache_path(cache_dir, name, &row.location);
    match std::fs::remove_file(&cached) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { path: cached, source: e }),
    }
    Ok(row)
}

/// Every registered index, read from this host's cache, in order.
pub async fn load_all(ctx: &Context, cache_dir: &Path) -> Result<Vec<(String, Index)>, Error> {
    let mut out = Vec::new();
    for row in ctx.db.indexes().await? {
        let path = cache_path(cache_dir, &row.name, &row.location);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotCached { name: row.name }.into());
            }
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let index = super::parse(&bytes, &row.location)?;
        out.push((row.name, index));
    }
    Ok(out)
}

/// What `attune install <spec>` did: which index and version it picked, and
/// the install itself.
#[derive(Debug, Clone, Serialize)]
pub struct NamedInstall {
    pub resolved: Resolved,
    /// The checksum the index gave and the pack was held to (`None`: the
    /// index has none, as with the StackStorm Exchange).
    pub expected_checksum: Option<String>,
    pub install: InstallReport,
    /// The dependencies, in the order they were handled (before the pack).
    pub dependencies: Vec<DependencyOutcome>,
    /// With `--skip-deps`: the dependencies the index lists, not installed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_dependencies: Vec<super::Dependency>,
    /// With `--ignore-runtime-requirements`: what the set needs that this
    /// host lacks (from the indexes, then from each fetched pack.yaml).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_runtime_requirements: Vec<String>,
    /// Dependencies that could not be installed (a repository URL no index
    /// lists), one message each; the set was installed without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One dependency of a named install.
#[derive(Debug, Clone, Serialize)]
pub struct DependencyOutcome {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub index: String,
    /// `installed`, or `already-installed` (this version was there).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_checksum: Option<String>,
}

/// Installs one resolved version through the pipeline, held to the index's
/// checksum and to its ref@version claim.
///
/// Reports its phases, and its end (done or failed), to `events`.
async fn install_resolved(
    ctx: &Context,
    resolved: &Resolved,
    base: &InstallRequest,
    events: Option<&SetProgress>,
) -> Result<(InstallReport, Option<String>), Error> {
    let (r, v) = (&resolved.pack.pack_ref, resolved.pack.version.to_string());
    let progress = events.map(|e| super::progress::for_pack(e, r, &v));
    let result = install_resolved_quietly(ctx, resolved, base, progress).await;
    if let Some(e) = events {
        e(&match &result {
            Ok((report, _)) => SetEvent::Done { report: report.clone() },
            Err(err) => SetEvent::Failed { pack_ref: r.clone(), version: v.clone(), error: err.to_string() },
        });
    }
    result
}

async fn install_resolved_quietly(
    ctx: &Context,
    resolved: &Resolved,
    base: &InstallRequest,
    progress: Option<install::InstallProgress>,
) -> Result<(InstallReport, Option<String>), Error> {
    let plans = resolved.plans()?;
    let mut attempts = Vec::new();
    for plan in &plans {
        let req = InstallRequest {
            source: plan.source.clone(),
            reference: plan.reference.clone(),
            expected_checksum: plan.expected,
            expected_pack: Some(ExpectedPack {
                pack_ref: resolved.pack.pack_ref.clone(),
                version: resolved.pack.version.to_string(),
                origin: format!("index {}", resolved.index),
            }),
            ..base.clone()
        };
        match install::install(ctx, req, progress.clone()).await {
            Ok(report) => return Ok((report, plan.expected.map(|c| c.to_string()))),
            Err(e) if plans.len() > 1 && source_failed(&e) => {
                let shown = crate::sources::redact_url(&plan.source);
                tracing::warn!("{shown}: {e}; trying the index's next source");
                attempts.push(format!("{shown}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(RegistryError::AllSourcesFailed {
        pack_ref: resolved.pack.pack_ref.clone(),
        version: resolved.pack.version.to_string(),
        attempts,
    }
    .into())
}

/// Whether an install failed because of what its source gave (or did not
/// give), so another source of the same version may still do.
fn source_failed(e: &Error) -> bool {
    use crate::artifacts::ArtifactError as A;
    matches!(
        e,
        Error::Source(_)
            | Error::Runtime(_)
            | Error::ChecksumMismatch { .. }
            | Error::NoManifest { .. }
            | Error::Manifest(_)
            | Error::Registry(RegistryError::WrongPack { .. })
            | Error::Artifact(A::NotCached { .. } | A::NotCacheable { .. })
    )
}

/// Resolves `spec` against the configured indexes and installs the chosen
/// version through the one pipeline, holding it to the index's checksum and
/// to the ref and version the index claims. `base` carries the caller's
/// options (force, limits, hosts, method); its source, ref and checksum are
/// replaced by the index's.
///
/// Unless `skip_deps`, the whole dependency set is solved first
/// ([`super::deps::solve`]) and installed dependencies first; if any pack of
/// the set fails, the ones this run installed are uninstalled again, so the
/// set is installed entirely or not at all. `--force` applies to the
/// requested pack only; a dependency already installed at the chosen version
/// is left as it is.
pub async fn install_by_name(
    ctx: &Context,
    cache_dir: &Path,
    spec: &str,
    base: InstallRequest,
    progress: Option<install::InstallProgress>,
    skip_deps: bool,
) -> Result<NamedInstall, Error> {
    let events = progress.map(super::progress::forward_to);
    install_by_name_with(ctx, cache_dir, spec, base, events, skip_deps).await
}

/// [`install_by_name`], reporting the set pack by pack to `events`: the plan,
/// each pack's phases and end, the dependencies left alone, and any rollback.
pub async fn install_by_name_with(
    ctx: &Context,
    cache_dir: &Path,
    spec: &str,
    base: InstallRequest,
    events: Option<SetProgress>,
    skip_deps: bool,
) -> Result<NamedInstall, Error> {
    let emit = |e: SetEvent| {
        if let Some(p) = &events {
            p(&e)
        }
    };
    let planned = |r: &Resolved, installed: bool| PlannedPack {
        pack_ref: r.pack.pack_ref.clone(),
        version: r.pack.version.to_string(),
        index: Some(r.index.clone()),
        action: if installed { "keep" } else { "install" },
    };
    let request = PackRequest::parse(spec)?;
    let indexes = load_all(ctx, cache_dir).await?;
    if skip_deps {
        let resolved = super::resolve(&indexes, &request)?;
        let mut ignored = crate::runtimes::check_set(ctx, [&resolved], base.ignore_runtime_requirements).await?;
        emit(SetEvent::Plan { spec: request.text.clone(), packs: vec![planned(&resolved, false)] });
        for d in &resolved.pack.dependencies {
            let reason = Skip::SkipDeps { req: d.req.to_string() };
            emit(SetEvent::Skipped { pack_ref: d.pack_ref.clone(), version: None, reason });
        }
        let (install, expected_checksum) = install_resolved(ctx, &resolved, &base, events.as_ref()).await?;
        crate::runtimes::merge(&mut ignored, &install.ignored_runtime_requirements);
        let skipped_dependencies = resolved.pack.dependencies.clone();
        // URL dependencies have no ref for `skipped_dependencies`: say so here.
        let warnings = (resolved.pack.url_dependencies.iter())
            .map(|u| format!("--skip-deps: not installed either: dependency {}", u.url))
            .collect();
        return Ok(NamedInstall {
            resolved,
            expected_checksum,
            install,
            dependencies: vec![],
            skipped_dependencies,
            ignored_runtime_requirements: ignored,
            warnings,
        });
    }

    let mut installed: BTreeMap<String, BTreeSet<semver::Version>> = BTreeMap::new();
    for row in ctx.db.installed(&ctx.host).await? {
        if let Ok(v) = row.version.parse() {
            installed.entry(row.pack_ref).or_default().insert(v);
        }
    }
    let mut steps = super::deps::solve(&indexes, &request, &installed)?;
    // Before anything is fetched: every pack to install must be able to run here.
    let to_install = steps.iter().filter(|s| !s.installed).map(|s| &s.resolved);
    let mut ignored = crate::runtimes::check_set(ctx, to_install, base.ignore_runtime_requirements).await?;
    let warnings: Vec<String> = steps.iter().flat_map(super::deps::Step::unresolved_warnings).collect();
    let packs = steps.iter().map(|s| planned(&s.resolved, s.installed)).collect();
    emit(SetEvent::Plan { spec: request.text.clone(), packs });
    let last = steps.pop().expect("the set holds at least the requested pack");
    let mut dependencies = Vec::new();
    // Packs this run installed, to take back out if a later one fails.
    let mut added: Vec<(String, String)> = Vec::new();
    let dep_base = InstallRequest { force: false, ..base.clone() };
    let mut failure: Option<(String, Error)> = None;
    for step in &steps {
        let r = &step.resolved;
        let label = format!("{}@{}", r.pack.pack_ref, r.pack.version);
        if step.installed {
            let (pack_ref, version) = (r.pack.pack_ref.clone(), Some(r.pack.version.to_string()));
            emit(SetEvent::Skipped { pack_ref, version, reason: Skip::AlreadyInstalled });
            dependencies.push(DependencyOutcome {
                pack_ref: r.pack.pack_ref.clone(),
                version: r.pack.version.to_string(),
                index: r.index.clone(),
                action: "already-installed",
                expected_checksum: None,
            });
            continue;
        }
        match install_resolved(ctx, r, &dep_base, events.as_ref()).await {
            Ok((report, expected)) => {
                crate::runtimes::merge(&mut ignored, &report.ignored_runtime_requirements);
                added.push((report.pack_ref.clone(), report.version.clone()));
                dependencies.push(DependencyOutcome {
                    pack_ref: r.pack.pack_ref.clone(),
                    version: r.pack.version.to_string(),
                    index: r.index.clone(),
                    action: "installed",
                    expected_checksum: expected,
                });
            }
            Err(e) => {
                failure = Some((label, e));
                break;
            }
        }
    }
    let result = match failure {
        Some(f) => Err(f),
        None => install_resolved(ctx, &last.resolved, &base, events.as_ref())
            .await
            .map_err(|e| (format!("{}@{}", last.resolved.pack.pack_ref, last.resolved.pack.version), e)),
    };
    match result {
        Ok((install, expected_checksum)) => {
            crate::runtimes::merge(&mut ignored, &install.ignored_runtime_requirements);
            Ok(NamedInstall {
                resolved: last.resolved,
                expected_checksum,
                install,
                dependencies,
                skipped_dependencies: vec![],
                ignored_runtime_requirements: ignored,
                warnings,
            })
        }
        // Nothing of ours to take back: the pipeline's own error says it best.
        Err((_, error)) if added.is_empty() => Err(error),
        Err((failed, error)) => {
            let mut rolled_back = Vec::new();
            for (r, v) in added.iter().rev() {
                let spec = crate::ops::PackSpec { pack_ref: r.clone(), version: v.parse().ok() };
                let outcome = crate::ops::uninstall(ctx, &spec, base.method, base.api_token.as_deref(), true).await;
                let not_removed = outcome.err().map(|e| e.to_string());
                rolled_back.push(match &not_removed {
                    None => format!("{r}@{v}"),
                    Some(e) => format!("{r}@{v} (could not be removed: {e})"),
                });
                emit(SetEvent::RolledBack { pack_ref: r.clone(), version: v.clone(), error: not_removed });
            }
            Err(RegistryError::SetFailed { spec: request.text, failed, error: error.to_string(), rolled_back }.into())
        }
    }
}
