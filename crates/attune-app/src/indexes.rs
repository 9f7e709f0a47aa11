//! `attune index add|list|update|remove`: registering and caching indexes.
//!
//! An index is registered in the database (shared by every host using it)
//! and its fetched JSON is cached per host at
//! `{cache_dir}/indexes-v1/{name}-{location hash}.json`, written atomically, so installing by
//! name reads no network until `index update`. An http(s) index is fetched
//! through the sandboxed http fetcher ([`install::download`], the same
//! allowlist and limits as any install); a local path is read directly.
//!
//! A signed index (`index add … --root`) is a TUF repository: its document is
//! a target verified by [`signed_index`] (trusted metadata per host at
//! `{cache_dir}/indexes-v1/{name}-{location hash}.tuf/`), and a refused
//! verification changes neither the cached copy nor the trusted metadata.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::db::{IndexFetch, IndexRow};
use crate::install;
use crate::registry::{Index, RegistryError};
use crate::signed_index::{self, Signing};
use crate::{Error, SignedIndexError, sources};

/// The cache folder's name; bump it when the cached form changes.
const CACHE_FOLDER: &str = "indexes-v1";

/// How an index download may reach the network.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// More hosts the download may reach (redirects, mirrors).
    pub allow_hosts: Vec<String>,
    pub allow_insecure_http: bool,
    /// Refuse unsigned indexes (`--require-signed`, `require_signed_indexes`).
    pub require_signed: bool,
}

impl FetchOptions {
    fn source_options(&self) -> sources::SourceOptions {
        sources::SourceOptions {
            allow_hosts: self.allow_hosts.clone(),
            allow_insecure_http: self.allow_insecure_http,
            ..Default::default()
        }
    }
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

/// The trusted TUF metadata of a signed index, beside its cached copy.
pub fn trust_dir(cache_dir: &Path, name: &str, location: &str) -> PathBuf {
    cache_path(cache_dir, name, location).with_extension("tuf")
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if crate::registry::is_ref(name) { Ok(()) } else { Err(RegistryError::BadName { name: name.to_owned() }) }
}

/// An http(s) URL as given (no credentials allowed), or a path made absolute.
fn normalize_location(location: &str) -> Result<String, Error> {
    if crate::source::is_http_url(location) {
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
    let bytes = if crate::source::is_http_url(location) {
        install::download(ctx, location, options.source_options(), &ctx.limits).await?
    } else {
        std::fs::read(location).map_err(|e| Error::Io { path: location.into(), source: e })?
    };
    let index = crate::registry::parse(&bytes, location)?;
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

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    crate::fs::write_atomic(path, bytes).map_err(|e| Error::Io { path: path.to_owned(), source: e })
}

/// `attune index add <name> <url|path> [--root …]`: fetches the index (it
/// must parse; a signed one must verify), caches it, then registers it.
/// Nothing is registered, cached or trusted if any step fails.
pub async fn add(
    ctx: &Context,
    cache_dir: &Path,
    name: &str,
    location: &str,
    options: &FetchOptions,
    signing: Option<&Signing>,
) -> Result<IndexReport, Error> {
    check_name(name)?;
    if let Some(existing) = ctx.db.index(name).await? {
        return Err(RegistryError::Exists { name: name.to_owned(), location: existing.location }.into());
    }
    if signing.is_none() && options.require_signed {
        return Err(SignedIndexError::Unsigned { name: name.to_owned() }.into());
    }
    let location = normalize_location(location)?;
    let trust = trust_dir(cache_dir, name, &location);
    let result = add_fetched(ctx, cache_dir, name, &location, options, signing, &trust).await;
    if result.is_err() && signing.is_some() && ctx.db.index(name).await.ok().flatten().is_none() {
        // Trust written for an index that did not get registered is dropped with it.
        let _ = signed_index::forget(&trust);
    }
    result
}

async fn add_fetched(
    ctx: &Context,
    cache_dir: &Path,
    name: &str,
    location: &str,
    options: &FetchOptions,
    signing: Option<&Signing>,
    trust: &Path,
) -> Result<IndexReport, Error> {
    let (bytes, index, signed) = match signing {
        None => {
            let (bytes, index) = fetch(ctx, location, options).await?;
            (bytes, index, None)
        }
        Some(signing) => {
            let verified = signed_index::init(ctx, name, location, trust, signing, options.source_options()).await?;
            let index = crate::registry::parse(&verified.bytes, location)?;
            let signed = crate::db::IndexSigned {
                target: signing.target.clone(),
                targets_version: verified.facts.targets_version as i64,
            };
            (verified.bytes, index, Some(signed))
        }
    };
    let fetch = facts(ctx, &bytes, &index);
    let cached = cache_path(cache_dir, name, location);
    write_atomic(&cached, &bytes)?;
    let row = match ctx.db.add_index(name, location, &ctx.user, &fetch, signed.as_ref()).await {
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
            let (bytes, index, targets_version) = match &row.signed {
                None if options.require_signed => return Err(SignedIndexError::Unsigned { name: name.clone() }.into()),
                None => {
                    let (bytes, index) = fetch(ctx, &row.location, options).await?;
                    (bytes, index, None)
                }
                Some(signed) => {
                    let trust = trust_dir(cache_dir, &name, &row.location);
                    let verified = signed_index::update(
                        ctx,
                        &name,
                        &row.location,
                        &trust,
                        &signed.target,
                        options.source_options(),
                    )
                    .await?;
                    let index = crate::registry::parse(&verified.bytes, &row.location)?;
                    (verified.bytes, index, Some(verified.facts.targets_version as i64))
                }
            };
            let fetch = facts(ctx, &bytes, &index);
            write_atomic(&cache_path(cache_dir, &name, &row.location), &bytes)?;
            ctx.db.index_fetched(&name, &fetch, targets_version).await?;
            let signed = row
                .signed
                .clone()
                .map(|s| crate::db::IndexSigned { targets_version: targets_version.unwrap_or(s.targets_version), ..s });
            Ok(IndexReport {
                row: IndexRow { fetched: Some(fetch), signed, ..row },
                cached: true,
                skipped: index.skipped,
            })
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

/// `attune index remove <name>`: unregisters it and drops this host's cache
/// and trusted metadata.
pub async fn remove(ctx: &Context, cache_dir: &Path, name: &str) -> Result<IndexRow, Error> {
    let row = known(ctx, name).await?;
    ctx.db.remove_index(name).await?;
    signed_index::forget(&trust_dir(cache_dir, name, &row.location))?;
    let cached = cache_path(cache_dir, name, &row.location);
    match std::fs::remove_file(&cached) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { path: cached, source: e }),
    }
    Ok(row)
}

/// What this host trusts for each signed index it has fetched (no network):
/// index name → the facts of its trusted metadata.
pub async fn trusted_facts(
    ctx: &Context,
    cache_dir: &Path,
) -> Result<std::collections::BTreeMap<String, crate::tuf::Facts>, Error> {
    let mut out = std::collections::BTreeMap::new();
    for row in ctx.db.indexes().await? {
        let Some(signed) = &row.signed else { continue };
        let dir = trust_dir(cache_dir, &row.name, &row.location);
        if let Some(facts) = signed_index::trusted(ctx, &row.name, &row.location, &dir, &signed.target).await? {
            out.insert(row.name, facts);
        }
    }
    Ok(out)
}

/// Every registered index, read from this host's cache, in order.
pub async fn load_all(ctx: &Context, cache_dir: &Path) -> Result<Vec<(String, Index)>, Error> {
    Ok(load(ctx, cache_dir, None).await?.0)
}

/// [`load_all`] for an offline install: a signed index comes from its trusted
/// metadata on disk (verified again, refused once expired unless
/// `allow_expired`); returns the indexes and a warning per expired one used.
pub async fn load_all_offline(
    ctx: &Context,
    cache_dir: &Path,
    allow_expired: bool,
) -> Result<(Vec<(String, Index)>, Vec<String>), Error> {
    load(ctx, cache_dir, Some(allow_expired)).await
}

async fn load(
    ctx: &Context,
    cache_dir: &Path,
    offline: Option<bool>,
) -> Result<(Vec<(String, Index)>, Vec<String>), Error> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for row in ctx.db.indexes().await? {
        if let (Some(allow_expired), Some(signed)) = (offline, &row.signed) {
            let dir = trust_dir(cache_dir, &row.name, &row.location);
            let v = signed_index::offline(ctx, &row.name, &row.location, &dir, &signed.target, allow_expired).await?;
            if !v.facts.expired_allowed.is_empty() {
                warnings.push(format!(
                    "index {}: used offline with expired {} metadata (--allow-expired; checked against the {})",
                    row.name,
                    v.facts.expired_allowed.join(", "),
                    v.facts.time_source
                ));
            }
            out.push((row.name, crate::registry::parse(&v.bytes, &row.location)?));
            continue;
        }
        let path = cache_path(cache_dir, &row.name, &row.location);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotCached { name: row.name }.into());
            }
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let index = crate::registry::parse(&bytes, &row.location)?;
        out.push((row.name, index));
    }
    Ok((out, warnings))
}
