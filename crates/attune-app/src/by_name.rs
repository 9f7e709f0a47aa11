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
    let mut all = install_set_by_name_with(ctx, cache_dir, &[spec], base, events, skip_deps).await?;
    Ok(all.pop().expect("one spec gives one install"))
}

/// Several packs by name as one set (`attune install a b=1.0.0 c@^2`): solved
/// together with their dependencies ([`crate::registry::deps::solve_set`]),
/// installed dependencies first, all or nothing as for one pack. Returns one
/// [`NamedInstall`] per spec, in the order given, each with the dependencies
/// it brought; the set's warnings and ignored runtime requirements are on the last.
/// `--force` applies to the named packs; a dependency already installed at the
/// chosen version is left as it is.
pub async fn install_set_by_name_with(
    ctx: &Context,
    cache_dir: &Path,
    specs: &[&str],
    base: InstallRequest,
    events: Option<SetProgress>,
    skip_deps: bool,
) -> Result<Vec<NamedInstall>, Error> {
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
    let requests = specs.iter().map(|s| PackRequest::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let spec_text = specs.join(" ");
    let (indexes, offline_warnings) = if base.offline {
        crate::indexes::load_all_offline(ctx, cache_dir, base.allow_expired).await?
    } else {
        (crate::indexes::load_all(ctx, cache_dir).await?, vec![])
    };
    let trust = crate::indexes::trusted_facts(ctx, cache_dir).await?;

    // The set in install order; with --skip-deps, just the named packs.
    let mut steps: Vec<crate::registry::deps::Step> = if skip_deps {
        let resolved = requests.iter().map(|q| crate::registry::resolve(&indexes, q)).collect::<Result<Vec<_>, _>>()?;
        resolved
            .into_iter()
            .map(|resolved| crate::registry::deps::Step { resolved, installed: false, unresolved: vec![] })
            .collect()
    } else {
        let mut installed: BTreeMap<String, BTreeSet<semver::Version>> = BTreeMap::new();
        for (pack_ref, version) in ctx.db.installed_refs(&ctx.machine).await? {
            if let Ok(v) = version.parse() {
                installed.entry(pack_ref).or_default().insert(v);
            }
        }
        crate::registry::deps::solve_set(&indexes, &requests, &installed)?
    };
    let named = |r: &str| requests.iter().any(|q| q.pack_ref == r);
    // A named pack is always installed (an installed one is refused unless --force).
    for s in steps.iter_mut().filter(|s| named(&s.resolved.pack.pack_ref)) {
        s.installed = false;
    }
    // Before anything is fetched: every pack to install must be able to run here.
    let to_install = steps.iter().filter(|s| !s.installed).map(|s| &s.resolved);
    let mut ignored =
        crate::interpreters::check_set(&ctx.interpreters, to_install, base.ignore_runtime_requirements).await?;
    let mut warnings: Vec<String> = steps.iter().flat_map(crate::registry::deps::Step::unresolved_warnings).collect();
    if skip_deps {
        // URL dependencies have no ref for `skipped_dependencies`: say so here.
        let urls = steps.iter().flat_map(|s| &s.resolved.pack.url_dependencies);
        warnings.extend(urls.map(|u| format!("--skip-deps: not installed either: dependency {}", u.url)));
    }
    warnings.extend(offline_warnings);
    emit(SetEvent::Plan {
        spec: spec_text.clone(),
        packs: steps.iter().map(|s| planned(&s.resolved, s.installed)).collect(),
    });
    if skip_deps {
        for d in steps.iter().flat_map(|s| &s.resolved.pack.dependencies) {
            let reason = Skip::SkipDeps { req: d.req.to_string() };
            emit(SetEvent::Skipped { pack_ref: d.pack_ref.clone(), version: None, reason });
        }
    }

    let mut done: Vec<NamedInstall> = Vec::new();
    let mut dependencies = Vec::new();
    // Packs this run installed, to take back out if a later one fails.
    let mut added: Vec<(String, String)> = Vec::new();
    let dep_base = InstallRequest { force: false, ..base.clone() };
    let mut failure: Option<(String, Error)> = None;
    for step in &steps {
        let r = &step.resolved;
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
        let is_named = named(&r.pack.pack_ref);
        let req = if is_named { &base } else { &dep_base };
        match install_resolved(ctx, r, req, events.as_ref(), &trust).await {
            Ok((report, expected)) => {
                crate::interpreters::merge(&mut ignored, &report.ignored_runtime_requirements);
                added.push((report.pack_ref.clone(), report.version.clone()));
                if is_named {
                    done.push(NamedInstall {
                        resolved: r.clone(),
                        expected_checksum: expected,
                        install: report,
                        dependencies: std::mem::take(&mut dependencies),
                        skipped_dependencies: if skip_deps { r.pack.dependencies.clone() } else { vec![] },
                        ignored_runtime_requirements: vec![],
                        warnings: vec![],
                    });
                } else {
                    dependencies.push(DependencyOutcome {
                        pack_ref: r.pack.pack_ref.clone(),
                        version: r.pack.version.to_string(),
                        index: r.index.clone(),
                        action: "installed",
                        expected_checksum: expected,
                    });
                }
            }
            Err(e) => {
                failure = Some((format!("{}@{}", r.pack.pack_ref, r.pack.version), e));
                break;
            }
        }
    }
    let (failed, error) = match failure {
        None => {
            // In the order the specs were given.
            done.sort_by_key(|n| requests.iter().position(|q| q.pack_ref == n.resolved.pack.pack_ref));
            if let Some(last) = done.last_mut() {
                last.ignored_runtime_requirements = ignored;
                last.warnings = warnings;
            }
            return Ok(done);
        }
        Some(f) => f,
    };
    // Nothing of ours to take back: the pipeline's own error says it best.
    if added.is_empty() {
        return Err(error);
    }
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
    Err(RegistryError::SetFailed { spec: spec_text, failed, error: error.to_string(), rolled_back }.into())
}
