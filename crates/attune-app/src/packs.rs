//! The other operations on installed packs: list, info, verify, uninstall, doctor.
//!
//! Like install, each one takes the pack lock before it changes anything and
//! changes the disk with single renames, so a kill leaves a state the start-up
//! check understands.

use std::path::PathBuf;

use crate::checksum::{self, Change, TreeManifest};
use crate::context::Context;
use crate::db::{Channel, Installation, ListedRow, VerifyStatus};
use crate::{Error, manifest};

/// `ref` or `ref@version`, as typed on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSpec {
    pub pack_ref: String,
    pub version: Option<semver::Version>,
}

impl std::str::FromStr for PackSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (r, v) = match s.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (s, None),
        };
        manifest::validate_ref(r).map_err(|e| Error::Usage(format!("{s:?}: {e}")))?;
        let version = v
            .map(|v| {
                semver::Version::parse(v).map_err(|e| {
                    Error::Usage(format!("{s:?}: version {v:?} is not semver ({e}); write e.g. {r}@1.0.0"))
                })
            })
            .transpose()?;
        Ok(PackSpec { pack_ref: r.to_string(), version })
    }
}

/// The packs installed on this host, or on every host sharing the database.
pub async fn list(ctx: &Context, all_hosts: bool) -> Result<Vec<Installation>, Error> {
    Ok(match all_hosts {
        true => ctx.db.installed_on_all_hosts().await?,
        false => ctx.db.installed(&ctx.machine).await?,
    })
}

/// An installed version and whether it is its pack's active one on its host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub installation: Installation,
    pub active: bool,
}

/// An installation as `--json` and the API show it (without its per-entry
/// manifest, which an [`Installation`] never holds: `verify` reads it from
/// the database).
pub fn slim_json(i: &Installation) -> serde_json::Value {
    serde_json::to_value(i).expect("installation serializes")
}

impl Listed {
    /// [`slim_json`] with `"active"`.
    pub fn slim_json(&self) -> serde_json::Value {
        let mut v = slim_json(&self.installation);
        if let Some(o) = v.as_object_mut() {
            o.insert("active".into(), self.active.into());
        }
        v
    }
}

/// [`list`] with each version's active marker.
pub async fn list_with_active(ctx: &Context, all_hosts: bool) -> Result<Vec<Listed>, Error> {
    let mut rows = Vec::new();
    list_each(ctx, all_hosts, |l| {
        rows.push(l);
        Ok::<_, Error>(())
    })
    .await?;
    Ok(rows)
}

/// [`list_with_active`] one row at a time, in its order, as the database
/// hands them over: never all of them at once. Stops at the first error,
/// the database's or one `each` returns.
pub async fn list_each<E: From<Error>>(
    ctx: &Context,
    all_hosts: bool,
    mut each: impl FnMut(Listed) -> Result<(), E>,
) -> Result<(), E> {
    let host = (!all_hosts).then_some(ctx.machine.as_str());
    let listed = ctx.db.listing(host, |installation, active| each(Listed { installation, active }).map_err(Stop::Each));
    listed.await.map_err(Stop::into_inner)
}

/// What `attune list`'s table shows, one row at a time in [`list_each`]'s
/// order: only columns of an index, so the installation records themselves
/// are never read.
pub async fn list_rows<E: From<Error>>(
    ctx: &Context,
    all_hosts: bool,
    mut each: impl FnMut(ListedRow) -> Result<(), E>,
) -> Result<(), E> {
    let host = (!all_hosts).then_some(ctx.machine.as_str());
    ctx.db.listing_rows(host, |row| each(row).map_err(Stop::Each)).await.map_err(Stop::into_inner)
}

/// Why a listing stopped: the database failed, or the caller's `each` did.
enum Stop<E> {
    Db(crate::db::DbError),
    Each(E),
}

impl<E> From<crate::db::DbError> for Stop<E> {
    fn from(e: crate::db::DbError) -> Self {
        Stop::Db(e)
    }
}

impl<E: From<Error>> Stop<E> {
    fn into_inner(self) -> E {
        match self {
            Stop::Db(e) => Error::from(e).into(),
            Stop::Each(e) => e,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PackInfo {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub name: String,
    pub description: Option<String>,
    pub installed: Vec<Installation>,
    pub history: Vec<Installation>,
}

pub async fn info(ctx: &Context, spec: &PackSpec) -> Result<PackInfo, Error> {
    let pack = ctx
        .db
        .pack(&spec.pack_ref)
        .await?
        .ok_or_else(|| Error::NotInstalled { spec: spec.pack_ref.clone(), installed: vec![] })?;
    let mut installed = ctx.db.installed_of(&spec.pack_ref, &ctx.machine).await?;
    if let Some(v) = &spec.version {
        installed.retain(|i| i.version == v.to_string());
    }
    let history = ctx.db.history(&spec.pack_ref).await?;
    Ok(PackInfo { pack_ref: pack.pack_ref, name: pack.name, description: pack.description, installed, history })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub path: String,
    pub status: VerifyStatus,
    pub expected: String,
    pub actual: Option<String>,
    pub changes: Vec<Change>,
    /// How its runtime environment differs from what was recorded (empty:
    /// as built, or it has none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
}

/// Re-checksums installed packs (all of them when `specs` is empty) and
/// diffs them against the stored manifests.
pub async fn verify(ctx: &Context, specs: &[PackSpec]) -> Result<Vec<VerifyReport>, Error> {
    let mut rows = Vec::new();
    if specs.is_empty() {
        rows = ctx.db.installed(&ctx.machine).await?;
    }
    for s in specs {
        let of_pack = ctx.db.installed_of(&s.pack_ref, &ctx.machine).await?;
        if !of_pack.iter().any(|i| matches(s, i)) {
            return Err(not_installed(s, &of_pack));
        }
        rows.extend(of_pack.into_iter().filter(|i| matches(s, i)));
    }
    rows.sort_by(|a, b| a.pack_ref.cmp(&b.pack_ref).then_with(|| crate::db::version_cmp(&a.version, &b.version)));
    // A version named twice (`verify p p@1.0.0`) is checked once.
    rows.dedup_by_key(|r| r.id);
    let mut out = Vec::new();
    for row in rows {
        let stored = ctx.db.manifest(row.id).await?.unwrap_or_default();
        let expected: TreeManifest = serde_json::from_value(stored).map_err(|e| {
            Error::Corrupt(format!(
                "installation {} ({}@{}): stored manifest is unreadable: {e}",
                row.id, row.pack_ref, row.version
            ))
        })?;
        let path = PathBuf::from(&row.storage_path);
        let (status, actual, changes) = if !path.is_dir() {
            (VerifyStatus::Missing, None, vec![])
        } else {
            // With the algorithm it was stored with: a newer default must not
            // make every older pack look tampered.
            let (p, algorithm) = (path.clone(), expected.algorithm);
            let now = tokio::task::spawn_blocking(move || checksum::tree_as(&p, algorithm))
                .await
                .expect("checksum task panicked")?;
            let changes = checksum::diff(&expected, &now);
            let ok = changes.is_empty() && now.digest == expected.digest;
            (if ok { VerifyStatus::Ok } else { VerifyStatus::Tampered }, Some(now.digest.to_string()), changes)
        };
        let environment = match (
            crate::environments::EnvRecord::of_metadata(&row.metadata_json),
            semver::Version::parse(&row.version),
        ) {
            (Ok(Some(record)), Ok(v)) => crate::environments::verify(ctx, &row.pack_ref, &v, &record),
            (Err(e), _) => vec![format!("the recorded environment is unreadable: {e}")],
            _ => vec![],
        };
        let status = match status {
            VerifyStatus::Ok if !environment.is_empty() => VerifyStatus::Tampered,
            s => s,
        };
        ctx.db.set_verify_result(row.id, status, time::OffsetDateTime::now_utc()).await?;
        out.push(VerifyReport {
            pack_ref: row.pack_ref,
            version: row.version,
            path: row.storage_path,
            status,
            expected: row.checksum,
            actual,
            changes,
            environment,
        });
    }
    Ok(out)
}

fn matches(spec: &PackSpec, i: &Installation) -> bool {
    spec.pack_ref == i.pack_ref && spec.version.as_ref().is_none_or(|v| v.to_string() == i.version)
}

fn not_installed(spec: &PackSpec, all: &[Installation]) -> Error {
    let label = match &spec.version {
        Some(v) => format!("{}@{v}", spec.pack_ref),
        None => spec.pack_ref.clone(),
    };
    let installed =
        all.iter().filter(|i| i.pack_ref == spec.pack_ref).map(|i| format!("{}@{}", i.pack_ref, i.version)).collect();
    Error::NotInstalled { spec: label, installed }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UninstallReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub path: String,
    pub installation_id: i64,
    /// It was the active version; the pack now has none.
    pub deactivated: bool,
}

/// Removes one installed version: out of the packs folder in one rename,
/// then the record, then the files. `api_token` names the API token it is
/// made with (`None` from the CLI), for the audit trail.
///
/// The active version is refused while other versions of the pack are
/// installed (they would be left with none active), unless `force`; the only
/// installed version may always go. Either way, uninstalling the active
/// version leaves the pack with no active version and removes its link.
pub async fn uninstall(
    ctx: &Context,
    spec: &PackSpec,
    method: Channel,
    api_token: Option<&str>,
    force: bool,
) -> Result<UninstallReport, Error> {
    let _lock = ctx.lock_pack(&spec.pack_ref, std::sync::Arc::new(|| {})).await?;
    let all = ctx.db.installed_of(&spec.pack_ref, &ctx.machine).await?;
    let candidates: Vec<&Installation> = all.iter().filter(|i| matches(spec, i)).collect();
    let row = match candidates.as_slice() {
        [] => return Err(not_installed(spec, &all)),
        [one] => *one,
        many => {
            return Err(Error::Usage(format!(
                "{} has several versions installed ({}); name one, e.g. `attune uninstall {}@{}`",
                spec.pack_ref,
                many.iter().map(|i| i.version.as_str()).collect::<Vec<_>>().join(", "),
                spec.pack_ref,
                many[0].version
            )));
        }
    };
    let version = semver::Version::parse(&row.version)
        .map_err(|e| Error::Corrupt(format!("installation {}: version {:?}: {e}", row.id, row.version)))?;
    let is_active = ctx.db.active_version(&ctx.machine, &row.pack_ref).await?.as_deref() == Some(row.version.as_str());
    let others: Vec<&str> = all
        .iter()
        .filter(|i| i.pack_ref == row.pack_ref && i.version != row.version)
        .map(|i| i.version.as_str())
        .collect();
    if is_active && !others.is_empty() && !force {
        return Err(crate::UpgradeError::UninstallActive {
            pack_ref: row.pack_ref.clone(),
            version: row.version.clone(),
            others: format!("{} {}", others.join(", "), if others.len() == 1 { "is" } else { "are" }),
        }
        .into());
    }
    // Already gone from disk: still record the uninstall so the two agree.
    let aside = ctx.store.take_out_if_present(&row.pack_ref, &version)?;
    let env_aside = match ctx.envs.take_out_if_present(&row.pack_ref, &version) {
        Ok(a) => a,
        Err(e) => {
            if let Some(a) = &aside {
                ctx.store.restore(a, &row.pack_ref, &version)?;
            }
            return Err(e.into());
        }
    };
    let id =
        match ctx.db.record_uninstall(&row.pack_ref, &row.version, &ctx.machine, &ctx.user, method, api_token).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(a) = &aside {
                    ctx.store.restore(a, &row.pack_ref, &version)?;
                }
                if let Some(a) = &env_aside {
                    ctx.envs.restore(a, &row.pack_ref, &version)?;
                }
                return Err(e.into());
            }
        };
    if let Some(a) = aside {
        ctx.store.discard(&a);
    }
    if let Some(a) = env_aside {
        ctx.envs.discard(&a);
    }
    if is_active {
        crate::activation::deactivate_locked(ctx, &row.pack_ref, "uninstall").await?;
    }
    Ok(UninstallReport {
        pack_ref: row.pack_ref.clone(),
        version: row.version.clone(),
        path: row.storage_path.clone(),
        installation_id: id,
        deactivated: is_active,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Finding {
    /// Recorded as installed, but its folder is gone.
    Missing { pack: String, path: String, repaired: bool },
    /// A pack folder no installation accounts for.
    Orphan { path: String, repaired: bool },
    /// An installed version whose recorded environment is gone; repaired by
    /// building it again from the recorded lock.
    MissingEnvironment { pack: String, path: String, repaired: bool, error: Option<String> },
    /// An environment folder no installed version accounts for.
    OrphanEnvironment { path: String, repaired: bool },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorReport {
    pub recovery: crate::recovery::Recovery,
    pub findings: Vec<Finding>,
}

/// Compares disk and database; with `repair`, makes them agree: missing
/// folders are recorded as uninstalled, orphan folders are removed.
pub async fn doctor(ctx: &Context, recovery: crate::recovery::Recovery, repair: bool) -> Result<DoctorReport, Error> {
    let mut findings = Vec::new();
    let installed = ctx.db.installed(&ctx.machine).await?;
    for row in &installed {
        if !PathBuf::from(&row.storage_path).is_dir() {
            let mut repaired = false;
            if repair {
                let spec =
                    PackSpec { pack_ref: row.pack_ref.clone(), version: semver::Version::parse(&row.version).ok() };
                repaired = uninstall(ctx, &spec, Channel::Cli, None, true).await.is_ok();
            }
            findings.push(Finding::Missing {
                pack: format!("{}@{}", row.pack_ref, row.version),
                path: row.storage_path.clone(),
                repaired,
            });
        }
    }
    for (name, r, v) in ctx.store.scan()? {
        let path = ctx.store.root().join(&name);
        let known = installed.iter().any(|i| i.pack_ref == r && i.version == v.to_string());
        if known {
            continue;
        }
        let mut repaired = false;
        if repair && let Some(_lock) = ctx.store.try_lock_pack(&r)? {
            // Re-check under the lock: an install may have finished meanwhile.
            if ctx.db.current(&r, &v.to_string(), &ctx.machine).await?.is_none()
                && let Ok(aside) = ctx.store.take_out(&r, &v)
            {
                ctx.store.discard(&aside);
                repaired = true;
            }
        }
        findings.push(Finding::Orphan { path: path.display().to_string(), repaired });
    }
    environment_findings(ctx, repair, &mut findings).await?;
    Ok(DoctorReport { recovery, findings })
}

/// Environments without their pack, and packs without their environment.
async fn environment_findings(ctx: &Context, repair: bool, findings: &mut Vec<Finding>) -> Result<(), Error> {
    let installed = ctx.db.installed(&ctx.machine).await?;
    let recorded = |r: &str, v: &semver::Version| {
        installed
            .iter()
            .find(|i| i.pack_ref == r && i.version == v.to_string())
            .map(|i| crate::environments::EnvRecord::of_metadata(&i.metadata_json).ok().flatten())
    };
    for row in &installed {
        let (Ok(Some(record)), Ok(v)) =
            (crate::environments::EnvRecord::of_metadata(&row.metadata_json), semver::Version::parse(&row.version))
        else {
            continue;
        };
        let path = ctx.envs.pack_dir(&row.pack_ref, &v);
        if path.is_dir() || !PathBuf::from(&row.storage_path).is_dir() {
            continue;
        }
        let (mut repaired, mut error) = (false, None);
        if repair {
            match rebuild(ctx, &row.pack_ref, &v, &PathBuf::from(&row.storage_path), record).await {
                Ok(()) => repaired = true,
                Err(e) => error = Some(e.to_string()),
            }
        }
        findings.push(Finding::MissingEnvironment {
            pack: format!("{}@{}", row.pack_ref, row.version),
            path: path.display().to_string(),
            repaired,
            error,
        });
    }
    for (name, r, v) in ctx.envs.scan()? {
        if matches!(recorded(&r, &v), Some(Some(_))) {
            continue;
        }
        let mut repaired = false;
        if repair && let Some(_lock) = ctx.try_lock_pack(&r).await? {
            // Re-check under the lock: an install may have finished meanwhile.
            let now = ctx.db.current(&r, &v.to_string(), &ctx.machine).await?;
            let has_env = now
                .is_some_and(|i| matches!(crate::environments::EnvRecord::of_metadata(&i.metadata_json), Ok(Some(_))));
            if !has_env && let Ok(aside) = ctx.envs.take_out(&r, &v) {
                ctx.envs.discard(&aside);
                repaired = true;
            }
        }
        findings.push(Finding::OrphanEnvironment { path: ctx.envs.root().join(&name).display().to_string(), repaired });
    }
    Ok(())
}

/// Builds an installed version's environment again from its record (the
/// same distributions, checked by their hashes) and publishes it.
async fn rebuild(
    ctx: &Context,
    pack_ref: &str,
    version: &semver::Version,
    pack_dir: &std::path::Path,
    record: crate::environments::EnvRecord,
) -> Result<(), Error> {
    let lock = ctx.lock_pack(pack_ref, std::sync::Arc::new(|| {})).await?;
    let opts = crate::environments::EnvOptions {
        allow_source_builds: record.python.as_ref().is_some_and(|p| p.built_from_source),
        allow_unlocked: record.node.as_ref().is_some_and(|n| n.unlocked),
        locked: Some(record),
        ..Default::default()
    };
    if let Some(built) = crate::environments::build(ctx, pack_dir, pack_ref, &opts, false, &|_| {}).await? {
        drop(crate::environments::publish(ctx, built, pack_ref, version)?);
    }
    if ctx.db.active_version(&ctx.machine, pack_ref).await?.as_deref() == Some(version.to_string().as_str()) {
        crate::environments::link(ctx, pack_ref, Some(version))?;
    }
    lock.release().await;
    Ok(())
}
