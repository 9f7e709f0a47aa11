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

use semver::Version;
use serde::Deserialize;

use super::{Index, IndexFormat, IndexSource, IndexSourceKind, PackVersion, RegistryError, Runtime};

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
    python_versions: Vec<serde_json::Value>,
}

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
        for v in versions {
            let version = match Version::parse(&v) {
                Ok(version) => version,
                Err(e) => {
                    index.skipped.push(format!("{pack_ref}@{v}: not a semver version ({e})"));
                    continue;
                }
            };
            index.add(PackVersion {
                pack_ref: pack_ref.clone(),
                description: p.description.clone(),
                sources: vec![IndexSource {
                    kind: IndexSourceKind::Git,
                    url: p.repo_url.clone(),
                    reference: Some(format!("v{v}")),
                    checksum: None,
                }],
                version,
                tree_checksum: None,
                dependencies: vec![],
                runtime: Runtime { python_versions: python_versions.clone(), ..Default::default() },
            });
        }
    }
    Ok(index)
}

/// A JSON string as is; a number (early indexes wrote `"version": 0.3`) as written.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
