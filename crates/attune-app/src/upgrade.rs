//! Switching versions: `activate`, `rollback`, upgrades and garbage
//! collection, on top of [`crate::activation`] (what "active" means and the
//! one place that changes it).
//!
//! An upgrade never changes the old version's files: the new one is installed
//! beside it through the one install pipeline, the link is switched, and the
//! new tree is verified. If any step fails, the old version is made active
//! again (and verified) and whatever the upgrade installed is uninstalled
//! again, so a failed upgrade leaves the host as it was.
//!
//! Locking: `activate`, `rollback`, `gc` and a whole `upgrade` hold the
//! pack's switch lock ([`Context::lock_switches`]), so a concurrent
//! `activate` cannot land between an upgrade's switch and its rollback;
//! inside it, the upgrade's install and each switch take the pack lock as
//! any install does.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::activation::activate_locked;
use crate::context::Context;
use crate::db::{Channel, VerifyStatus};
use crate::install::{self, InstallProgress, InstallRequest};
use crate::packs::{self, PackSpec};
use crate::registry::{self, PackRequest};
use crate::{Error, UpgradeError};

/// What `activate` or `rollback` did.
#[derive(Debug, Clone, Serialize)]
pub struct Switch {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// False when the version was already active (nothing recorded).
    pub changed: bool,
}

/// `attune activate ref@version`.
pub async fn activate(ctx: &Context, pack_ref: &str, version: &semver::Version) -> Result<Switch, Error> {
    let switches = ctx.lock_switches(pack_ref, Arc::new(|| {})).await?;
    let lock = ctx.lock_pack(pack_ref, Arc::new(|| {})).await?;
    let current = ctx.db.active_version(&ctx.machine, pack_ref).await?;
    let v = version.to_string();
    let changed = current.as_deref() != Some(v.as_str());
    if changed {
        activate_locked(ctx, pack_ref, version, "activate").await?;
    } else {
        // Already active: make sure the link says so too.
        ctx.store.set_active(pack_ref, version)?;
    }
    lock.release().await;
    switches.release().await;
    Ok(Switch { pack_ref: pack_ref.into(), version: v, previous_version: current, changed })
}

/// `attune rollback ref`: back to the version that was active before the
/// current one, which must still be installed.
pub async fn rollback(ctx: &Context, pack_ref: &str) -> Result<Switch, Error> {
    let switches = ctx.lock_switches(pack_ref, Arc::new(|| {})).await?;
    let lock = ctx.lock_pack(pack_ref, Arc::new(|| {})).await?;
    let no = |reason: String| UpgradeError::NoPrevious { pack_ref: pack_ref.into(), reason };
    let Some(current) = ctx.db.activation(&ctx.machine, pack_ref).await? else {
        return Err(no("it was never activated on this host".into()).into());
    };
    let Some(prev) = current.previous_version.clone() else {
        return Err(no("no earlier active version is recorded".into()).into());
    };
    if ctx.db.current(pack_ref, &prev, &ctx.machine).await?.is_none() {
        return Err(no(format!(
            "the previous active version {prev} is no longer installed; reinstall it or `attune activate` another"
        ))
        .into());
    }
    let version = semver::Version::parse(&prev)
        .map_err(|e| Error::Corrupt(format!("activation {}: version {prev:?}: {e}", current.id)))?;
    activate_locked(ctx, pack_ref, &version, "rollback").await?;
    lock.release().await;
    switches.release().await;
    Ok(Switch { pack_ref: pack_ref.into(), version: prev, previous_version: current.version, changed: true })
}

/// What to upgrade to.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub pack_ref: String,
    /// A version or range (default: the highest newer than the active one).
    pub to: Option<String>,
    /// Install this source (folder, archive, URL) instead of asking the indexes.
    pub from: Option<String>,
    /// Limits, hosts and method for the install; `source` is set here.
    pub base: InstallRequest,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub from: String,
    pub to: String,
    /// False: already at the newest matching version; nothing changed.
    pub upgraded: bool,
    /// Whether this upgrade installed the new version (false: it was installed already).
    pub installed: bool,
    /// Dependencies this upgrade installed.
    pub dependencies: Vec<String>,
    /// With `--ignore-runtime-requirements`: what the new version needs that
    /// this host lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_runtime_requirements: Vec<String>,
}

/// `attune upgrade`: see the module docs.
pub async fn upgrade(
    ctx: &Context,
    cache_dir: &Path,
    req: UpgradeRequest,
    progress: Option<InstallProgress>,
) -> Result<UpgradeReport, Error> {
    let on_wait = {
        let (p, r) = (progress.clone(), req.pack_ref.clone());
        Arc::new(move || {
            if let Some(p) = &p {
                p(install::InstallEvent::Waiting(format!(
                    "another attune process is switching versions of {r}; waiting for it"
                )))
            }
        })
    };
    let switches = ctx.lock_switches(&req.pack_ref, on_wait).await?;
    let result = upgrade_locked(ctx, cache_dir, req, progress).await;
    switches.release().await;
    result
}

async fn upgrade_locked(
    ctx: &Context,
    cache_dir: &Path,
    req: UpgradeRequest,
    progress: Option<InstallProgress>,
) -> Result<UpgradeReport, Error> {
    let pack_ref = req.pack_ref.clone();
    let Some(old) = ctx.db.active_version(&ctx.machine, &pack_ref).await? else {
        return Err(UpgradeError::NoActive { pack_ref }.into());
    };
    let old_v =
        semver::Version::parse(&old).map_err(|e| Error::Corrupt(format!("{pack_ref}: active version {old:?}: {e}")))?;
    let up_to_date = |to: String| UpgradeReport {
        pack_ref: pack_ref.clone(),
        from: old.clone(),
        to,
        upgraded: false,
        installed: false,
        dependencies: vec![],
        ignored_runtime_requirements: vec![],
    };

    // 1. The new version: installed by this upgrade (`ours`) or already there.
    let mut deps_added: Vec<String> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    // Installed from a plugin's version list: that list, not the indexes,
    // says what is newer (`listed_from`, recorded by the install).
    let listed_from = match &req.from {
        Some(_) => None,
        None => (ctx.db.current(&pack_ref, &old, &ctx.machine).await?)
            .and_then(|i| i.metadata_json.get("listed_from")?.as_str().map(str::to_string)),
    };
    let from = match (&req.from, listed_from) {
        (Some(source), _) => Some((source.clone(), None)),
        (None, Some(base)) => {
            let range = match &req.to {
                Some(to) => match semver::Version::parse(to) {
                    Ok(v) => semver::VersionReq::parse(&format!("={v}")),
                    Err(_) => semver::VersionReq::parse(to),
                }
                .map_err(|e| Error::Usage(format!("--to {to}: not a version or range: {e}")))?,
                None => semver::VersionReq::parse(&format!(">{old}")).expect("a version makes a range"),
            };
            let listed = crate::listed::versions(ctx, &base, None, &req.base.list_options()).await?.map(|(_, v)| v);
            match crate::listed::highest(&listed.unwrap_or_default(), &range) {
                Some((v, info)) if v != old_v => Some((info.source.clone(), Some(base))),
                Some(_) => return Ok(up_to_date(old.clone())),
                None if req.to.is_none() => return Ok(up_to_date(old.clone())),
                None => {
                    return Err(Error::Usage(format!(
                        "{pack_ref}: {} lists no version matching {range}",
                        crate::sources::redact_url(&base)
                    )));
                }
            }
        }
        (None, None) => None,
    };
    let (new_v, ours) = match &from {
        Some((source, listed_from)) => {
            let r = InstallRequest {
                source: source.clone(),
                force: false,
                listed_from: listed_from.clone(),
                ..req.base.clone()
            };
            match install::install(ctx, r, progress).await {
                Ok(report) => {
                    let v = semver::Version::parse(&report.version).expect("the pipeline installs semver versions");
                    if report.pack_ref != pack_ref {
                        let spec = PackSpec { pack_ref: report.pack_ref.clone(), version: Some(v.clone()) };
                        let _ =
                            packs::uninstall(ctx, &spec, req.base.method, req.base.api_token.as_deref(), true).await;
                        return Err(UpgradeError::WrongPack {
                            source_str: source.clone(),
                            pack_ref,
                            found: format!("{}@{}", report.pack_ref, report.version),
                        }
                        .into());
                    }
                    ignored = report.ignored_runtime_requirements;
                    (v, true)
                }
                Err(Error::AlreadyInstalled { pack_ref: r, version, .. }) if r == pack_ref => {
                    if version == old {
                        return Ok(up_to_date(old.clone()));
                    }
                    (semver::Version::parse(&version).expect("installed versions are semver"), false)
                }
                Err(e) => return Err(failed(&pack_ref, &old, "?", "install", e, vec![kept(&old)])),
            }
        }
        None => {
            let text = match &req.to {
                Some(to) => format!("{pack_ref}@{to}"),
                None => format!("{pack_ref}@>{old}"),
            };
            let request = PackRequest::parse(&text)?;
            let indexes = crate::indexes::load_all(ctx, cache_dir).await?;
            let resolved = match registry::resolve(&indexes, &request) {
                Ok(r) => r,
                Err(registry::RegistryError::NoMatch { .. }) if req.to.is_none() => {
                    return Ok(up_to_date(old.clone()));
                }
                Err(e) => return Err(e.into()),
            };
            let target = resolved.pack.version.clone();
            if target == old_v {
                return Ok(up_to_date(old.clone()));
            }
            if ctx.db.current(&pack_ref, &target.to_string(), &ctx.machine).await?.is_some() {
                (target, false)
            } else {
                let spec = format!("{pack_ref}@={target}");
                match crate::by_name::install_by_name(ctx, cache_dir, &spec, req.base.clone(), progress, false).await {
                    Ok(named) => {
                        deps_added = named
                            .dependencies
                            .iter()
                            .filter(|d| d.action == "installed")
                            .map(|d| format!("{}@{}", d.pack_ref, d.version))
                            .collect();
                        ignored = named.ignored_runtime_requirements;
                        (target, true)
                    }
                    Err(e) => {
                        return Err(failed(&pack_ref, &old, &target.to_string(), "install", e, vec![kept(&old)]));
                    }
                }
            }
        }
    };
    let new = new_v.to_string();

    // 2. Switch, 3. verify the new active tree.
    let step = match switch_and_verify(ctx, &pack_ref, &new_v).await {
        Ok(()) => {
            return Ok(UpgradeReport {
                pack_ref,
                from: old,
                to: new,
                upgraded: true,
                installed: ours,
                dependencies: deps_added,
                ignored_runtime_requirements: ignored,
            });
        }
        Err(step) => step,
    };

    // Roll back: the old version active again and verified, ours uninstalled.
    let (step, error) = step;
    let mut done = Vec::new();
    let back = async {
        let lock = ctx.lock_pack(&pack_ref, Arc::new(|| {})).await?;
        if ctx.db.active_version(&ctx.machine, &pack_ref).await?.as_deref() != Some(old.as_str()) {
            activate_locked(ctx, &pack_ref, &old_v, "upgrade-rollback").await?;
        } else {
            ctx.store.set_active(&pack_ref, &old_v)?;
        }
        lock.release().await;
        let spec = PackSpec { pack_ref: pack_ref.clone(), version: Some(old_v.clone()) };
        let report = packs::verify(ctx, &[spec]).await?;
        if report.iter().any(|r| r.status != VerifyStatus::Ok) {
            return Err(Error::Usage(format!("{pack_ref}@{old} is active again but does not verify")));
        }
        Ok::<(), Error>(())
    };
    if let Err(e) = back.await {
        return Err(UpgradeError::RollbackFailed {
            pack_ref: pack_ref.clone(),
            from: old,
            to: new,
            step,
            error,
            rollback_error: e.to_string(),
        }
        .into());
    }
    done.push(format!("{pack_ref}@{old} is active again and verifies"));
    let mut undo: Vec<String> = Vec::new();
    if ours {
        undo.push(format!("{pack_ref}@{new}"));
    }
    undo.extend(deps_added.iter().rev().cloned());
    for label in undo {
        let (r, v) = label.split_once('@').expect("labels are ref@version");
        let spec = PackSpec { pack_ref: r.into(), version: v.parse().ok() };
        match packs::uninstall(ctx, &spec, req.base.method, req.base.api_token.as_deref(), true).await {
            Ok(_) => done.push(format!("{label} uninstalled")),
            Err(e) => done.push(format!("{label} could not be uninstalled ({e})")),
        }
    }
    Err(UpgradeError::Failed { pack_ref, from: old, to: new, step, error, rolled_back: done }.into())
}

/// One pack of `upgrade --all` / `upgrade a b c`: its report, why it was
/// held back, or why it failed (that pack rolled back; the others are not
/// affected).
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeOutcome {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<UpgradeReport>,
    /// A newer version exists, but no newer one every installed dependent
    /// accepts: left as it is, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The refs `upgrade --all` upgrades: every pack active on this host.
pub async fn active_refs(ctx: &Context) -> Result<Vec<String>, Error> {
    let activations = ctx.db.activations(&ctx.machine).await?;
    Ok(activations.into_iter().filter(|a| a.version.is_some()).map(|a| a.pack_ref).collect())
}

/// Upgrades each of `refs` in turn, each through [`upgrade`] (its own
/// transaction: a failure rolls back that pack alone and the next one is
/// tried), to the newest version the indexes offer that the installed packs
/// depending on it accept (what `attune outdated` calls compatible; a pack
/// with none is held back). Each pack's own dependencies are solved with
/// what is installed by then. `progress(ref)` gives one pack's progress sink.
pub async fn upgrade_many(
    ctx: &Context,
    cache_dir: &Path,
    refs: &[String],
    base: &InstallRequest,
    progress: impl Fn(&str) -> Option<InstallProgress>,
) -> Result<Vec<UpgradeOutcome>, Error> {
    let outdated = crate::discover::outdated(ctx, cache_dir).await?;
    let mut out = Vec::new();
    for pack_ref in refs {
        let outcome =
            |report, held_back, error| UpgradeOutcome { pack_ref: pack_ref.clone(), report, held_back, error };
        let to = match outdated.outdated.iter().find(|o| &o.pack_ref == pack_ref) {
            Some(o) => match &o.compatible {
                Some(v) => Some(format!("={v}")),
                None => {
                    let why = format!("{} is newer, but {}", o.newest, o.requirements_text());
                    out.push(outcome(None, Some(why), None));
                    continue;
                }
            },
            None => None,
        };
        let req = UpgradeRequest { pack_ref: pack_ref.clone(), to, from: None, base: base.clone() };
        out.push(match upgrade(ctx, cache_dir, req, progress(pack_ref)).await {
            Ok(report) => outcome(Some(report), None, None),
            Err(e) => outcome(None, None, Some(e.to_string())),
        });
    }
    Ok(out)
}

fn kept(old: &str) -> String {
    format!("nothing was switched; {old} stays active")
}

fn failed(pack_ref: &str, from: &str, to: &str, step: &'static str, e: Error, rolled_back: Vec<String>) -> Error {
    UpgradeError::Failed {
        pack_ref: pack_ref.into(),
        from: from.into(),
        to: to.into(),
        step,
        error: e.to_string(),
        rolled_back,
    }
    .into()
}

/// Switches to `version` and verifies it; on failure, which step and why.
async fn switch_and_verify(
    ctx: &Context,
    pack_ref: &str,
    version: &semver::Version,
) -> Result<(), (&'static str, String)> {
    let switch = async {
        let lock = ctx.lock_pack(pack_ref, Arc::new(|| {})).await?;
        failpoint("switch", pack_ref)?;
        activate_locked(ctx, pack_ref, version, "upgrade").await?;
        lock.release().await;
        Ok::<(), Error>(())
    };
    switch.await.map_err(|e| ("switch", e.to_string()))?;
    let verify = async {
        failpoint("verify", pack_ref)?;
        if ctx.store.linked_version(pack_ref).as_ref() != Some(version) {
            return Err(Error::Usage(format!(
                "{} does not link to {pack_ref}-{version}",
                ctx.store.active_link(pack_ref).display()
            )));
        }
        let spec = PackSpec { pack_ref: pack_ref.into(), version: Some(version.clone()) };
        for r in packs::verify(ctx, &[spec]).await? {
            if r.status != VerifyStatus::Ok {
                let changes: Vec<String> = r.changes.iter().map(|c| c.to_string()).collect();
                return Err(Error::Usage(format!(
                    "{pack_ref}@{version} does not match its checksum ({:?}{}{})",
                    r.status,
                    if changes.is_empty() { "" } else { ": " },
                    changes.join(", ")
                )));
            }
        }
        Ok(())
    };
    verify.await.map_err(|e| ("verify", e.to_string()))
}

/// Test hook (debug builds only): `ATTUNE_TEST_UPGRADE_FAIL=switch|verify`
/// makes that step of an upgrade fail (`verify:REF`: only that pack's), so
/// the rollback after a switch can be tested end to end. Release builds
/// ignore it.
fn failpoint(step: &str, pack_ref: &str) -> Result<(), Error> {
    let hit = |s: String| s == step || s == format!("{step}:{pack_ref}");
    if cfg!(debug_assertions) && std::env::var("ATTUNE_TEST_UPGRADE_FAIL").is_ok_and(hit) {
        return Err(Error::Usage(format!("injected failure at {step} (ATTUNE_TEST_UPGRADE_FAIL)")));
    }
    Ok(())
}

/// One version `gc` removed (or would remove, with `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct GcItem {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub path: String,
    pub removed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub keep: usize,
    pub dry_run: bool,
    pub items: Vec<GcItem>,
}

/// `attune gc`: per pack, keeps the `keep` highest versions and the active
/// one; uninstalls the rest through [`packs::uninstall`] (so each is recorded).
pub async fn gc(ctx: &Context, keep: usize, dry_run: bool, method: Channel) -> Result<GcReport, Error> {
    let mut by_ref: std::collections::BTreeMap<String, Vec<(semver::Version, String)>> = Default::default();
    for row in ctx.db.installed(&ctx.machine).await? {
        if let Ok(v) = semver::Version::parse(&row.version) {
            by_ref.entry(row.pack_ref).or_default().push((v, row.storage_path));
        }
    }
    let mut items = Vec::new();
    for (pack_ref, mut versions) in by_ref {
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        // Held while this pack's versions go, so the active one cannot change underneath.
        let _switches = ctx.lock_switches(&pack_ref, Arc::new(|| {})).await?;
        let active = ctx.db.active_version(&ctx.machine, &pack_ref).await?;
        for (v, path) in versions.into_iter().skip(keep) {
            if active.as_deref() == Some(v.to_string().as_str()) {
                continue;
            }
            let mut item =
                GcItem { pack_ref: pack_ref.clone(), version: v.to_string(), path, removed: false, error: None };
            if !dry_run {
                let spec = PackSpec { pack_ref: pack_ref.clone(), version: Some(v) };
                match packs::uninstall(ctx, &spec, method, None, false).await {
                    Ok(_) => item.removed = true,
                    Err(e) => item.error = Some(e.to_string()),
                }
            }
            items.push(item);
        }
    }
    Ok(GcReport { keep, dry_run, items })
}
