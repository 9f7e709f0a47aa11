//! The StackStorm Exchange index (`https://index.stackstorm.org/v1/index.json`):
//!
//! ```json
//! { "packs": { "aws": { "name": "aws", "ref": "aws", "version": "1.2.0", "versions": ["1.0.0", "1.2.0"],
//!                       "repo_url": "https://github.com/StackStorm-Exchange/stackstorm-aws",
//!                       "python_versions": ["3"], "author": "…", "keywords": […], "content": {…}, … } },
//!   "metadata": { "generated_ts": 1700000000, "hash": "…" } }
//! ```
//!
//! Every version is the git tag `v<version>` of `repo_url`; `ref` defaults to
//! `name`. The Exchange publishes no checksums, so these installs are
//! unverified (the fetched pack's ref and version are still checked).
//! Versions that are not strict semver (early packs used `0.3`) are skipped.
//!
//! `dependencies` is the pack.yaml list, copied into the index as written
//! (`ref`, `ref=1.2.3`, or a repository URL with an optional `=version`;
//! see [`dep_spec`]). The Exchange keeps one pack.yaml per pack, its latest,
//! so like `python_versions` its dependencies are applied to every listed
//! version: the best the index tells. A URL is resolved when the solver runs,
//! to the pack whose repository it is ([`super::deps`]). A dependency on a
//! pack that ships with StackStorm itself (`core`, `linux`, …; never in the
//! Exchange) is dropped and reported, as is one that cannot be read; the
//! pack stays installable.

use semver::Version;
use serde::Deserialize;

use super::dep_spec::{self, Declared};
use super::{
    Dependency, Index, IndexFormat, IndexSource, IndexSourceKind, PackVersion, RegistryError, RuntimeNeeds,
    UrlDependency,
};

#[derive(Debug, Deserialize)]
struct Top {
    packs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Pack {
    #[serde(rename = "ref", default)]
    pack_ref: Option<String>,
    name: String,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    versions: Vec<serde_json::Value>,
    repo_url: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    keywords: Vec<serde_json::Value>,
    #[serde(default)]
    python_versions: Vec<serde_json::Value>,
    /// A list; `null` or a missing key is none, and a single string is one.
    #[serde(default)]
    dependencies: serde_json::Value,
}

/// Packs StackStorm installs with itself (`st2/contrib`): a dependency on one
/// is met by StackStorm, and no index of Exchange packs lists it.
pub const STACKSTORM_BUNDLED: &[&str] = &["core", "linux", "packs", "chatops", "default"];

pub(super) fn read(value: serde_json::Value) -> Result<Index, RegistryError> {
    let top: Top = serde_json::from_value(value).expect("caller checked `packs` is an object");
    let mut index =
        Index { format: IndexFormat::Exchange, registry_name: None, packs: Default::default(), skipped: vec![] };
    for (key, raw) in top.packs {
        let p: Pack = match serde_json::from_value(raw) {
            Ok(p) => p,
            Err(e) => {
                index.skipped.push(format!("{key}: {e}"));
                continue;
            }
        };
        let pack_ref = p.pack_ref.clone().unwrap_or_else(|| p.name.clone());
        if !super::is_ref(&pack_ref) {
            index.skipped.push(format!("{key}: ref {pack_ref:?} is not a pack ref (1-64 of a-z, 0-9, _ and -)"));
            continue;
        }
        let mut versions: Vec<String> = p.versions.iter().map(text).collect();
        if let Some(v) = &p.version {
            let v = text(v);
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        let python_versions: Vec<String> = p.python_versions.iter().map(text).collect();
        let raw = match &p.dependencies {
            serde_json::Value::Array(items) => items.clone(),
            serde_json::Value::Null => vec![],
            other => vec![other.clone()],
        };
        let (dependencies, url_dependencies) = dependencies(&pack_ref, &raw, &mut index.skipped);
        for v in versions {
            // A short `0.1` is 0.1.0, as its pack.yaml reads (its tag stays `v0.1`).
            let version = match Version::parse(&v).map_err(|e| (attune_core::manifest::short_version(&v), e)) {
                Ok(version) | Err((Some(version), _)) => version,
                Err((None, e)) => {
                    index.skipped.push(format!("{pack_ref}@{v}: not a semver version ({e})"));
                    continue;
                }
            };
            index.add(PackVersion {
                pack_ref: pack_ref.clone(),
                name: Some(p.name.clone()),
                description: p.description.clone(),
                keywords: super::keywords(&p.keywords),
                sources: vec![IndexSource {
                    kind: IndexSourceKind::Git,
                    url: p.repo_url.clone(),
                    reference: Some(format!("v{v}")),
                    checksum: None,
                }],
                version,
                tree_checksum: None,
                dependencies: dependencies.clone(),
                url_dependencies: url_dependencies.clone(),
                runtime: RuntimeNeeds { python_versions: python_versions.clone(), ..Default::default() },
            });
        }
    }
    Ok(index)
}

/// The pack's `dependencies` as the solver reads them; what cannot be used
/// is reported in `skipped` (the pack itself stays listed).
fn dependencies(
    pack_ref: &str,
    raw: &[serde_json::Value],
    skipped: &mut Vec<String>,
) -> (Vec<Dependency>, Vec<UrlDependency>) {
    let (mut deps, mut urls) = (Vec::new(), Vec::new());
    for item in raw {
        let serde_json::Value::String(t) = item else {
            skipped.push(format!("{pack_ref}'s dependency {item}: not a string; ignored"));
            continue;
        };
        match dep_spec::parse(t) {
            Ok(Declared::Pack { pack_ref: r, .. }) if STACKSTORM_BUNDLED.contains(&r.as_str()) => {
                skipped.push(format!(
                    "{pack_ref}'s dependency {t:?}: {r} ships with StackStorm and is in no Exchange index; not required"
                ))
            }
            Ok(Declared::Pack { pack_ref: r, req }) => {
                if !deps.iter().any(|d: &Dependency| d.pack_ref == r) {
                    deps.push(Dependency { pack_ref: r, req });
                }
            }
            Ok(Declared::Url { url, version }) => urls.push(UrlDependency { url, version }),
            Err(e) => skipped.push(format!("{pack_ref}'s dependency {t:?}: {e}; ignored")),
        }
    }
    deps.sort_by(|a, b| a.pack_ref.cmp(&b.pack_ref));
    (deps, urls)
}

/// A JSON string as is; a number (early indexes wrote `"version": 0.3`) as written.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! `dependencies` read from a fixture cut from the real Exchange index
    //! (aoscx, reviewboard, aws, jira and sensu as published; their `content`
    //! shortened), plus one pack written for the tests with every form a
    //! StackStorm pack.yaml allows.

    use std::collections::BTreeMap;

    use super::super::{PackRequest, deps, parse};

    const FIXTURE: &str = include_str!("../../../host/tests/fixtures/registry/exchange-deps-index.json");

    #[test]
    fn dependencies_are_read_in_every_stackstorm_form() {
        let i = parse(FIXTURE.as_bytes(), "exchange-deps-index.json").unwrap();
        // The real index: only `core`, which ships with StackStorm.
        for r in ["aoscx", "reviewboard"] {
            assert!(i.packs[r].iter().all(|v| v.dependencies.is_empty() && v.url_dependencies.is_empty()));
            assert!(
                i.skipped
                    .iter()
                    .any(|s| s.starts_with(&format!("{r}'s dependency \"core\": core ships with StackStorm")))
            );
        }
        // Applied to every listed version, as python_versions is.
        for v in &i.packs["st2_ops"] {
            let d: Vec<String> = v.dependencies.iter().map(|d| format!("{} {}", d.pack_ref, d.req)).collect();
            assert_eq!(d, ["aws =1.2.0", "jira *"], "{}", v.version);
            let u: Vec<(String, Option<String>)> =
                v.url_dependencies.iter().map(|u| (u.url.clone(), u.version.clone())).collect();
            assert_eq!(
                u,
                [
                    ("https://github.com/StackStorm-Exchange/stackstorm-sensu.git".into(), Some("v1.0.0".into())),
                    ("https://github.com/example/stackstorm-private.git".into(), None),
                ]
            );
        }
        assert!(
            i.skipped
                .iter()
                .any(|s| s.starts_with("st2_ops's dependency \"sensu=master\": ") && s.contains("branch or commit")),
            "{:?}",
            i.skipped
        );
    }

    #[test]
    fn the_solver_pulls_refs_and_known_repositories_and_reports_the_rest() {
        let i = parse(FIXTURE.as_bytes(), "exchange-deps-index.json").unwrap();
        let steps =
            deps::solve(&[("exchange".into(), i)], &PackRequest::parse("st2_ops").unwrap(), &BTreeMap::new()).unwrap();
        let names: Vec<String> =
            steps.iter().map(|s| format!("{}@{}", s.resolved.pack.pack_ref, s.resolved.pack.version)).collect();
        // sensu is the repository of the URL dependency, at the tag's version.
        assert_eq!(names, ["aws@1.2.0", "jira@3.3.0", "sensu@1.0.0", "st2_ops@2.0.0"]);
        let last = steps.last().unwrap();
        let w = last.unresolved_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("st2_ops@2.0.0: dependency https://github.com/example/stackstorm-private.git is a repository no registered index lists"), "{w:?}");
        assert!(steps[..3].iter().all(|s| s.unresolved.is_empty()));
    }
}
