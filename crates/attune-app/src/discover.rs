//! Finding packs and keeping them current, from the cached indexes alone (no
//! network: `attune index update` refreshes them): `attune search`,
//! `attune show` and `attune outdated` (whose "compatible" version is what
//! `attune upgrade --all` upgrades to).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use semver::{Version, VersionReq};
use serde::Serialize;

use crate::Error;
use crate::context::Context;
use crate::registry::{self, Index, PackRequest, PackVersion, search::Hit};

/// One search hit, and what of it is installed here.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    #[serde(flatten)]
    pub hit: Hit,
    /// This host's active version of the pack, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
}

/// `attune search <terms>`: the packs of the cached indexes matching every term, best first.
pub async fn search(ctx: &Context, cache_dir: &Path, terms: &[String]) -> Result<Vec<SearchHit>, Error> {
    let indexes = loaded(ctx, cache_dir).await?;
    let active = active_versions(ctx).await?;
    Ok(registry::search::search(&indexes, terms)
        .into_iter()
        .map(|hit| SearchHit { active: active.get(&hit.pack_ref).map(Version::to_string), hit })
        .collect())
}

/// The cached indexes; none configured is an error that says how to add one.
async fn loaded(ctx: &Context, cache_dir: &Path) -> Result<Vec<(String, Index)>, Error> {
    let indexes = crate::indexes::load_all(ctx, cache_dir).await?;
    if indexes.is_empty() {
        return Err(Error::Usage(
            "no index is configured to look packs up in; add one with `attune index add <name> <url|path>`".into(),
        ));
    }
    Ok(indexes)
}

/// This host's active version of each pack.
async fn active_versions(ctx: &Context) -> Result<BTreeMap<String, Version>, Error> {
    Ok(ctx
        .db
        .activations(&ctx.machine)
        .await?
        .into_iter()
        .filter_map(|a| Some((a.pack_ref, a.version?.parse().ok()?)))
        .collect())
}

/// One version an index offers.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub index: String,
    #[serde(flatten)]
    pub pack: PackVersion,
}

/// What `attune show <ref>[@range]` tells of a pack.
#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    /// The range asked for (`*`: any).
    pub range: String,
    /// Every matching version each index offers, index by index, newest first.
    pub offers: Vec<Offer>,
    /// The versions installed on this host, lowest first.
    pub installed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
}

/// `attune show <ref>[@range]`.
pub async fn show(ctx: &Context, cache_dir: &Path, spec: &str) -> Result<ShowReport, Error> {
    let request = PackRequest::parse(spec)?;
    let indexes = crate::indexes::load_all(ctx, cache_dir).await?;
    let offers: Vec<Offer> = indexes
        .iter()
        .flat_map(|(name, index)| {
            let versions = index.packs.get(&request.pack_ref).into_iter().flatten();
            versions.filter(|v| request.req.matches(&v.version)).map(|v| Offer { index: name.clone(), pack: v.clone() })
        })
        .collect();
    let mut installed: Vec<Version> = (ctx.db.installed_versions(&request.pack_ref, &ctx.machine).await?)
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    installed.sort();
    if offers.is_empty() && installed.is_empty() {
        // Says what the indexes do list, or that none is configured.
        registry::resolve(&indexes, &request)?;
    }
    let active = ctx.db.active_version(&ctx.machine, &request.pack_ref).await?;
    Ok(ShowReport {
        pack_ref: request.pack_ref,
        range: request.req.to_string(),
        offers,
        installed: installed.iter().map(Version::to_string).collect(),
        active,
    })
}

/// An installed pack an index has a newer version of.
#[derive(Debug, Clone, Serialize)]
pub struct Outdated {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    /// The active version here.
    pub current: String,
    /// The newest version every installed dependent accepts (`None`: no
    /// version newer than the current one does).
    pub compatible: Option<String>,
    /// The newest version any index offers.
    pub newest: String,
    /// The index offering `newest` (or, for a pack installed from a
    /// plugin's version list, that source and plugin).
    pub index: String,
    /// What the installed packs that depend on it require of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_by: Vec<Requirement>,
}

/// An installed pack's requirement on another.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    /// The dependent, `ref@version`.
    pub by: String,
    /// The versions it accepts.
    pub range: String,
}

impl Outdated {
    /// `app@1.0.0 requires ^1, …`, for messages.
    pub fn requirements_text(&self) -> String {
        let each: Vec<String> = self.required_by.iter().map(|r| format!("{} requires {}", r.by, r.range)).collect();
        each.join(", ")
    }
}

/// What `attune outdated` found.
#[derive(Debug, Clone, Serialize)]
pub struct OutdatedReport {
    pub outdated: Vec<Outdated>,
    /// Active packs no configured index lists (they cannot be checked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_in_indexes: Vec<String>,
}

/// `attune outdated`: every active pack with a newer release in an index.
/// A pre-release counts only for a pack whose active version is one.
/// A pack installed from a plugin's version list is checked against that
/// list instead (see [`crate::listed`]).
pub async fn outdated(ctx: &Context, cache_dir: &Path) -> Result<OutdatedReport, Error> {
    let active = active_versions(ctx).await?;
    let mut listed_from: BTreeMap<&str, String> = BTreeMap::new();
    for (pack_ref, current) in &active {
        let row = ctx.db.current(pack_ref, &current.to_string(), &ctx.machine).await?;
        if let Some(from) = row.and_then(|i| i.metadata_json.get("listed_from")?.as_str().map(str::to_string)) {
            listed_from.insert(pack_ref, from);
        }
    }
    let indexes = match listed_from.is_empty() {
        true => loaded(ctx, cache_dir).await?,
        false => crate::indexes::load_all(ctx, cache_dir).await?,
    };
    let requirements = requirements(ctx, &indexes, &active);
    let mut report = OutdatedReport { outdated: vec![], not_in_indexes: vec![] };
    for (pack_ref, current) in &active {
        if let Some(from) = listed_from.get(pack_ref.as_str()) {
            let options = crate::listed::ListOptions::default();
            let Some((plugin, listed)) = crate::listed::versions(ctx, from, None, &options).await? else { continue };
            let newer = |req: &str| {
                let req = VersionReq::parse(req).expect("a version makes a range");
                crate::listed::highest(&listed, &req).map(|(v, _)| v)
            };
            let Some(newest) = newer(&format!(">{current}")) else { continue };
            let reqs: Vec<&(String, VersionReq)> = requirements.get(pack_ref).into_iter().flatten().collect();
            let compatible = (listed.iter().filter_map(|v| Version::parse(&v.version).ok()))
                .filter(|v| v > current && reqs.iter().all(|(_, r)| r.matches(v)))
                .max()
                .map(|v| v.to_string());
            report.outdated.push(Outdated {
                pack_ref: pack_ref.clone(),
                current: current.to_string(),
                compatible,
                newest: newest.to_string(),
                index: format!("{} (plugin {plugin})", crate::sources::redact_url(from)),
                required_by: reqs.iter().map(|(by, r)| Requirement { by: by.clone(), range: r.to_string() }).collect(),
            });
            continue;
        }
        let offered: Vec<(&str, &Version)> = (indexes.iter())
            .flat_map(|(name, index)| {
                index.packs.get(pack_ref).into_iter().flatten().map(|v| (name.as_str(), &v.version))
            })
            .filter(|(_, v)| v.pre.is_empty() || !current.pre.is_empty())
            .collect();
        if offered.is_empty() {
            report.not_in_indexes.push(format!("{pack_ref}@{current}"));
            continue;
        }
        // On equal versions the earlier index, as installs pick.
        let newest = offered.iter().fold(None, |best: Option<(&str, &Version)>, &(i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        });
        let Some((index, newest)) = newest.filter(|(_, v)| *v > current) else { continue };
        let reqs: Vec<&(String, VersionReq)> = requirements.get(pack_ref).into_iter().flatten().collect();
        let compatible = (offered.iter().map(|(_, v)| *v))
            .filter(|v| *v > current && reqs.iter().all(|(_, r)| r.matches(v)))
            .max()
            .map(Version::to_string);
        report.outdated.push(Outdated {
            pack_ref: pack_ref.clone(),
            current: current.to_string(),
            compatible,
            newest: newest.to_string(),
            index: index.to_owned(),
            required_by: reqs.iter().map(|(by, r)| Requirement { by: by.clone(), range: r.to_string() }).collect(),
        });
    }
    Ok(report)
}

/// What the active packs require of each other: ref → (`dependent@version`,
/// range). A dependent's dependencies are the index's entry for its active
/// version when an index lists it, else its installed pack.yaml's.
fn requirements(
    ctx: &Context,
    indexes: &[(String, Index)],
    active: &BTreeMap<String, Version>,
) -> BTreeMap<String, Vec<(String, VersionReq)>> {
    let mut out: BTreeMap<String, Vec<(String, VersionReq)>> = BTreeMap::new();
    for (dependent, version) in active {
        let listed = (indexes.iter())
            .find_map(|(_, i)| i.packs.get(dependent)?.iter().find(|v| &v.version == version))
            .map(|v| v.dependencies.iter().map(|d| (d.pack_ref.clone(), d.req.clone())).collect::<Vec<_>>());
        let deps = listed.unwrap_or_else(|| {
            let manifest = crate::manifest::read(&ctx.store.pack_dir(dependent, version));
            let declared = manifest.map(|m| m.dependencies).unwrap_or_default();
            (declared.iter())
                .filter_map(|d| match registry::dep_spec::parse(d) {
                    Ok(registry::dep_spec::Declared::Pack { pack_ref, req }) => Some((pack_ref, req)),
                    _ => None,
                })
                .collect()
        });
        let mut seen = BTreeSet::new();
        for (r, req) in deps {
            if seen.insert(r.clone()) {
                out.entry(r).or_default().push((format!("{dependent}@{version}"), req));
            }
        }
    }
    out
}
