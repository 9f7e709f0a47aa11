//! Attune's registry index (`index.json`, `"version": "1.0"`), as written by
//! Attune's index builder and read by attune-system/attune
//! `crates/common/src/pack_registry/mod.rs`.
//!
//! ```json
//! { "registry_name": "…", "registry_url": "…", "version": "1.0", "last_updated": "…",
//!   "packs": [ { "ref": "core_utils", "version": "1.4.2", "label": "…", "description": "…",
//!                "runtime_deps": ["python3"],
//!                "install_sources": [ {"type": "git", "url": "…", "ref": "v1.4.2", "checksum": "sha256:…"},
//!                                     {"type": "archive", "url": "…", "checksum": "sha256:…"} ],
//!                "dependencies": {"python_version": ">=3.9", "packs": ["core@1.0.0"]},
//!                "contents": {…}, "meta": {…} } ] }
//! ```
//!
//! Read leniently: unknown keys are ignored and an entry that cannot be read
//! is skipped (and reported) instead of failing the whole index.
//!
//! The `checksum` of every source reads `sha256:<hex>`, but means two things:
//! for an archive the SHA-256 of its bytes, for git Attune's directory
//! checksum of the checked-out tree (`attune-pack-file-v1`). `source` maps
//! it by source type.
//!
//! Attune's reader denies unknown fields everywhere except inside `meta`, so
//! attune's extensions live in `meta.x_attune`:
//! `{"tree_checksum": "sha256-tree-v1:…", "dependencies": {"core": "^1.2"}}`.
//! An index may list a ref more than once, one entry per version (Attune
//! itself reads the first).

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::dep_spec::{self, Declared};
use super::{
    Dependency, Index, IndexFormat, IndexSource, IndexSourceKind, PackVersion, RegistryError, RuntimeNeeds,
    UrlDependency,
};
use crate::checksum::{Checksum, ChecksumKind};

#[derive(Debug, Deserialize)]
struct Top {
    #[serde(default)]
    registry_name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    packs: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "ref")]
    pack_ref: String,
    version: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    keywords: Vec<serde_json::Value>,
    #[serde(default)]
    runtime_deps: Vec<String>,
    #[serde(default)]
    install_sources: Vec<Source>,
    #[serde(default)]
    dependencies: Option<Dependencies>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Source {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Dependencies {
    #[serde(default)]
    python_version: Option<String>,
    #[serde(default)]
    nodejs_version: Option<String>,
    #[serde(default)]
    packs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    x_attune: Option<Extension>,
}

/// attune's extension, inside `meta` where Attune's reader allows any key.
#[derive(Debug, Default, Deserialize)]
struct Extension {
    #[serde(default)]
    tree_checksum: Option<String>,
    /// ref → semver range; replaces what `dependencies.packs` says of that ref.
    #[serde(default)]
    dependencies: std::collections::BTreeMap<String, String>,
}

pub(super) fn read(value: serde_json::Value, origin: &str) -> Result<Index, RegistryError> {
    let top: Top =
        serde_json::from_value(value).map_err(|_| RegistryError::UnknownFormat { origin: origin.to_owned() })?;
    if let Some(v) = &top.version
        && v.split('.').next() != Some("1")
    {
        return Err(RegistryError::UnsupportedVersion { origin: origin.to_owned(), version: v.clone() });
    }
    let mut index = Index {
        format: IndexFormat::Attune,
        registry_name: top.registry_name,
        packs: Default::default(),
        skipped: vec![],
    };
    for (i, raw) in top.packs.into_iter().enumerate() {
        let label = raw.get("ref").and_then(|r| r.as_str()).map_or_else(|| format!("packs[{i}]"), str::to_owned);
        match serde_json::from_value::<Entry>(raw).map_err(|e| e.to_string()).and_then(entry) {
            Ok(v) => index.add(v),
            Err(reason) => index.skipped.push(format!("{label}: {reason}")),
        }
    }
    Ok(index)
}

fn entry(e: Entry) -> Result<PackVersion, String> {
    if !super::is_ref(&e.pack_ref) {
        return Err(format!("ref {:?} is not a pack ref (1-64 of a-z, 0-9, _ and -)", e.pack_ref));
    }
    let version = Version::parse(&e.version).map_err(|err| format!("version {:?} is not semver: {err}", e.version))?;
    let sources = e.install_sources.iter().map(source).collect::<Result<Vec<_>, _>>()?;
    let ext = e.meta.and_then(|m| m.x_attune).unwrap_or_default();
    let tree_checksum = ext
        .tree_checksum
        .map(|c| c.parse::<Checksum>().map_err(|err| format!("meta.x_attune.tree_checksum: {err}")))
        .transpose()?;
    let deps = e.dependencies.unwrap_or_default();
    let mut dependencies = Vec::new();
    let mut url_dependencies = Vec::new();
    for d in &deps.packs {
        match dependency(d)? {
            Declared::Pack { pack_ref, req } => {
                if !ext.dependencies.contains_key(&pack_ref) {
                    dependencies.push(Dependency { pack_ref, req });
                }
            }
            Declared::Url { url, version } => url_dependencies.push(UrlDependency { url, version }),
        }
    }
    for (r, range) in &ext.dependencies {
        if !super::is_ref(r) {
            return Err(format!("meta.x_attune.dependencies: {r:?} is not a pack ref (1-64 of a-z, 0-9, _ and -)"));
        }
        let req =
            VersionReq::parse(range).map_err(|err| format!("meta.x_attune.dependencies.{r}: {range:?}: {err}"))?;
        dependencies.push(Dependency { pack_ref: r.clone(), req });
    }
    dependencies.sort_by(|a, b| a.pack_ref.cmp(&b.pack_ref));
    Ok(PackVersion {
        pack_ref: e.pack_ref,
        version,
        name: e.label,
        description: e.description,
        keywords: super::keywords(&e.keywords),
        sources,
        tree_checksum,
        dependencies,
        url_dependencies,
        runtime: RuntimeNeeds {
            python: deps.python_version,
            nodejs: deps.nodejs_version,
            requires: e.runtime_deps,
            python_versions: vec![],
        },
    })
}

/// One `install_sources` item; its `sha256:` checksum mapped by type.
fn source(s: &Source) -> Result<IndexSource, String> {
    let kind = match s.kind.as_str() {
        "git" => IndexSourceKind::Git,
        "archive" => IndexSourceKind::Archive,
        other => return Err(format!("install source type {other:?} is not git or archive")),
    };
    let checksum = match &s.checksum {
        None => None,
        Some(text) => {
            let c: Checksum = text.parse().map_err(|e| format!("{} source checksum: {e}", s.kind))?;
            Some(match (kind, c.kind()) {
                // Attune's git checksum is its directory checksum, written `sha256:`.
                (IndexSourceKind::Git, ChecksumKind::Sha256) => {
                    Checksum::new(ChecksumKind::AttunePackFileV1, *c.bytes())
                }
                (IndexSourceKind::Archive, ChecksumKind::AttunePackFileV1) => {
                    return Err("an archive source's checksum is the SHA-256 of the archive (sha256:…)".into());
                }
                _ => c,
            })
        }
    };
    Ok(IndexSource { kind, url: s.url.clone(), reference: s.reference.clone(), checksum })
}

/// `"ref@version"` (exactly that version), `"ref@^1.2"` (a range), `"ref"`
/// (any), and, as Attune's builder copies StackStorm manifests as written,
/// `"ref=1.2.3"` and repository URLs ([`dep_spec`]).
fn dependency(text: &str) -> Result<Declared, String> {
    dep_spec::parse(text).map_err(|e| format!("dependency {text:?}: {e}"))
}
