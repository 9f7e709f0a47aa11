//! `attune install <ref>[@range]`: a pack by name from the cached indexes,
//! solved together with its dependencies, each handed to the one install
//! pipeline with the index's checksum as the one it must match.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::context::Context;
use crate::install::{self, ExpectedPack, InstallReport, InstallRequest};
use crate::registry::{PackRequest, RegistryError, Resolved};
use crate::set_progress::{PlannedPack, SetEvent, SetProgress, Skip};

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
    pub skipped_dependencies: Vec<crate::registry::Dependency>,
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
/// What this host trusts for each signed index, by name (see `indexes::trusted_facts`).
type Trusted = std::collections::BTreeMap<String, crate::tuf::Facts>;

async fn install_resolved(
    ctx: &Context,
    resolved: &Resolved,
    base: &InstallRequest,
    events: Option<&SetProgress>,
    trust: &Trusted,
) -> Result<(InstallReport, Option<String>), Error> {
    let (r, v) = (&resolved.pack.pack_ref, resolved.pack.version.to_string());
    let progress = events.map(|e| crate::set_progress::for_pack(e, r, &v));
    let result = install_resolved_quietly(ctx, resolved, base, progress, trust).await;
    if let Some(e) = events {
        e(&match &result {
            Ok((report, _)) => SetEvent::Done { report: Box::new(report.clone()) },
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
    trust: &Trusted,
) -> Result<(InstallReport, Option<String>), Error> {
    let plans = resolved.plans()?;
    let index_trust = trust.get(&resolved.index).map(|f| install::IndexTrust {
        index: resolved.index.clone(),
        targets_version: f.targets_version,
        key_ids: f.key_ids.clone(),
    });
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
                index_trust: index_trust.clone(),
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
/// ([`crate::registry::deps::solve`]) and installed dependencies first; if any pack of
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
    let events = progress.map(crate::set_progress::forward_to);
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
    let (indexes, offline_warnings) = if base.offline {
        crate::indexes::load_all_offline(ctx, cache_dir, base.allow_expired).await?
    } else {
        (crate::indexes::load_all(ctx, cache_dir).await?, vec![])
    };
    let trust = crate::indexes::trusted_facts(ctx, cache_dir).await?;
    if skip_deps {
        let resolved = crate::registry::resolve(&indexes, &request)?;
        let mut ignored =
            crate::interpreters::check_set(&ctx.interpreters, [&resolved], base.ignore_runtime_requirements).await?;
        emit(SetEvent::Plan { spec: request.text.clone(), packs: vec![planned(&resolved, false)] });
        for d in &resolved.pack.dependencies {
            let reason = Skip::SkipDeps { req: d.req.to_string() };
            emit(SetEvent::Skipped { pack_ref: d.pack_ref.clone(), version: None, reason });
        }
        let (install, expected_checksum) = install_resolved(ctx, &resolved, &base, events.as_ref(), &trust).await?;
        crate::interpreters::merge(&mut ignored, &install.ignored_runtime_requirements);
        let skipped_dependencies = resolved.pack.dependencies.clone();
        // URL dependencies have no ref for `skipped_dependencies`: say so here.
        let warnings = (resolved.pack.url_dependencies.iter())
            .map(|u| format!("--skip-deps: not installed either: dependency {}", u.url))
            .chain(offline_warnings)
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
    for row in ctx.db.installed(&ctx.machine).await? {
        if let Ok(v) = row.version.parse() {
            installed.entry(row.pack_ref).or_default().insert(v);
        }
    }
    let mut steps = crate::registry::deps::solve(&indexes, &request, &installed)?;
    // Before anything is fetched: every pack to install must be able to run here.
    let to_install = steps.iter().filter(|s| !s.installed).map(|s| &s.resolved);
    let mut ignored =
        crate::interpreters::check_set(&ctx.interpreters, to_install, base.ignore_runtime_requirements).await?;
    let warnings: Vec<String> =
        (steps.iter().flat_map(crate::registry::deps::Step::unresolved_warnings)).chain(offline_warnings).collect();
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
        match install_resolved(ctx, r, &dep_base, events.as_ref(), &trust).await {
            Ok((report, expected)) => {
                crate::interpreters::merge(&mut ignored, &report.ignored_runtime_requirements);
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
        None => install_resolved(ctx, &last.resolved, &base, events.as_ref(), &trust)
            .await
            .map_err(|e| (format!("{}@{}", last.resolved.pack.pack_ref, last.resolved.pack.version), e)),
    };
    match result {
        Ok((install, expected_checksum)) => {
            crate::interpreters::merge(&mut ignored, &install.ignored_runtime_requirements);
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
                let spec = crate::packs::PackSpec { pack_ref: r.clone(), version: v.parse().ok() };
                let outcome = crate::packs::uninstall(ctx, &spec, base.method, base.api_token.as_deref(), true).await;
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
