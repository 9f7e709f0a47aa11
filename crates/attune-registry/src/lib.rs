//! attune-registry: registry indexes, JSON files listing packs, their versions, where each
//! version comes from and what it must hash to.
//!
//! attune reads two formats into one model ([`Index`]):
//! * Attune's registry index (`"version": "1.0"`, [`attune_format`]), so
//!   existing Attune registries work unchanged, and
//! * the StackStorm Exchange index (`v1/index.json`, [`exchange`]), where every
//!   version is a git tag `v<version>` of the pack's repository.
//!
//! [`resolve`] picks the version an install spec (`core_utils@^1.4`) means,
//! [`deps`] solves it together with its dependencies, [`search`] finds packs
//! by words, and [`publish`] writes
//! index entries for pack folders. Fetching, caching and installing from an
//! index are the app's (`attune_app::indexes`, `attune_app::by_name`).
//!
//! May import: `attune-core`. Pure: no network, no database, no packs folder.

pub mod attune_format;
pub mod dep_spec;
pub mod deps;
pub mod exchange;
pub mod publish;
pub mod search;

use std::collections::BTreeMap;
use std::fmt;

use semver::{Version, VersionReq};
use serde::Serialize;

use attune_core::checksum::{self, Checksum};
use attune_core::manifest;

/// Which format an index was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexFormat {
    /// Attune's `index.json`, version 1.x.
    Attune,
    /// StackStorm Exchange `v1/index.json`.
    Exchange,
}

impl IndexFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexFormat::Attune => "attune",
            IndexFormat::Exchange => "exchange",
        }
    }
}

impl fmt::Display for IndexFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed index, whatever its format.
#[derive(Debug, Clone, Serialize)]
pub struct Index {
    pub format: IndexFormat,
    /// The registry's own name (`registry_name`), when it gives one.
    pub registry_name: Option<String>,
    /// Pack ref → its versions, highest first.
    pub packs: BTreeMap<String, Vec<PackVersion>>,
    /// Entries that could not be read, each with the reason; the rest of the
    /// index is still usable.
    pub skipped: Vec<String>,
}

impl Index {
    /// Number of (pack, version) pairs.
    pub fn version_count(&self) -> usize {
        self.packs.values().map(Vec::len).sum()
    }

    fn add(&mut self, v: PackVersion) {
        let versions = self.packs.entry(v.pack_ref.clone()).or_default();
        if versions.iter().any(|o| o.version == v.version) {
            self.skipped.push(format!("{}@{}: listed twice; the first entry is used", v.pack_ref, v.version));
            return;
        }
        versions.push(v);
        versions.sort_by(|a, b| b.version.cmp(&a.version));
    }
}

/// One version of one pack, as an index describes it.
#[derive(Debug, Clone, Serialize)]
pub struct PackVersion {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: Version,
    /// Display name (Attune `label`, Exchange `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// In the index's order of preference.
    pub sources: Vec<IndexSource>,
    /// attune's own tree checksum of the pack, when the index carries it (an
    /// extension field; see `docs/registry.md`). Covers what the legacy
    /// checksums do not (exec bits, symlinks, empty folders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_checksum: Option<Checksum>,
    pub dependencies: Vec<Dependency>,
    /// Dependencies named by repository URL (StackStorm's `https://…/repo.git=1.0.0`):
    /// resolved to the pack whose git source is that repository, if an index lists one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub url_dependencies: Vec<UrlDependency>,
    pub runtime: RuntimeNeeds,
}

/// A dependency written as a repository URL, with the version after its `=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlDependency {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Where a version can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSource {
    #[serde(rename = "type")]
    pub kind: IndexSourceKind,
    pub url: String,
    /// The git ref (tag, branch or commit) for a git source.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// What the fetched source must hash to: `sha256:` of an archive's bytes,
    /// or `attune-pack-file-v1:` of a git tree. `None`: the index gives none
    /// (Exchange), and the install is unverified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexSourceKind {
    Git,
    Archive,
}

/// A pack this version needs, with the versions it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    #[serde(serialize_with = "serialize_display")]
    pub req: VersionReq,
}

fn serialize_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What a version needs from the host, as the index states it (not checked yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeNeeds {
    /// e.g. `>=3.9` (Attune `dependencies.python_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// e.g. `>=18` (Attune `dependencies.nodejs_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodejs: Option<String>,
    /// Runtimes by name (Attune `runtime_deps`: python3, nodejs, shell).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Python major versions the pack supports (Exchange `python_versions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub python_versions: Vec<String>,
}

/// Everything that can go wrong reading an index or resolving a spec.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{origin}: not a JSON index: {source}; check the URL or path points at an index.json")]
    NotJson { origin: String, source: serde_json::Error },
    #[error(
        "{origin}: not a registry index: expected an Attune index (`registry_name`, `packs: [...]`) or a \
         StackStorm Exchange index (`packs: {{...}}`); check the URL or path"
    )]
    UnknownFormat { origin: String },
    #[error("{origin}: Attune index format version {version:?} is not supported (attune reads 1.x); upgrade attune")]
    UnsupportedVersion { origin: String, version: String },
    #[error("{spec:?}: not a pack spec: {reason}; write `ref`, `ref@1.2.3` (or `ref=1.2.3`) or `ref@^1.2`")]
    BadSpec { spec: String, reason: String },
    #[error(
        "{spec}: no such file or folder, and no index is configured to look it up in; \
         add one with `attune index add <name> <url|path>`"
    )]
    NoIndexes { spec: String },
    #[error("{spec}: no matching version in {searched}{}", available_hint(available))]
    NoMatch { spec: String, searched: String, available: Vec<String> },
    #[error("{spec}: the dependencies cannot all be satisfied:\n{chain}\n(install just the pack with --skip-deps)")]
    Conflict { spec: String, chain: String },
    #[error(
        "{spec}: installing {failed} failed: {error}; nothing of the set stays installed{}",
        if rolled_back.is_empty() { String::new() } else { format!(" (rolled back: {})", rolled_back.join(", ")) }
    )]
    SetFailed { spec: String, failed: String, error: String, rolled_back: Vec<String> },
    #[error("{name}: not a valid index name: use 1-64 of a-z, 0-9, `_` and `-`")]
    BadName { name: String },
    #[error("index {name:?} is not configured (configured: {known}); see `attune index list`")]
    UnknownIndex { name: String, known: String },
    #[error("index {name:?} is already configured ({location}); remove it first or pick another name")]
    Exists { name: String, location: String },
    #[error("index {name:?} has not been fetched on this host yet; run `attune index update {name}`")]
    NotCached { name: String },
    #[error(
        "{location}: an index URL may not carry credentials (they would be stored); serve the index \
         without them"
    )]
    Credentials { location: String },
    #[error("{pack_ref}@{version} in index {index}: it lists no install source; fix the index")]
    NoSource { pack_ref: String, version: String, index: String },
    #[error(
        "{pack_ref}@{version}: every source the index lists failed, nothing was installed:\n  {}",
        attempts.join("\n  ")
    )]
    AllSourcesFailed { pack_ref: String, version: String, attempts: Vec<String> },
    #[error(
        "{pack_ref}@{version} from {origin}: the fetched pack is {actual_ref}@{actual_version}; \
         the index does not describe this content (fix the index), nothing was installed"
    )]
    WrongPack { pack_ref: String, version: String, origin: String, actual_ref: String, actual_version: String },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        " (no version of this pack is listed, and no file or folder of that name exists here)".into()
    } else {
        format!(" (available: {})", available.join(", "))
    }
}

/// Reads an index of either format. `origin` (a URL or path) names it in errors.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Index, RegistryError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| RegistryError::NotJson { origin: origin.to_owned(), source })?;
    match value.get("packs") {
        Some(serde_json::Value::Array(_)) => attune_format::read(value, origin),
        Some(serde_json::Value::Object(_)) => exchange::read(value),
        _ => Err(RegistryError::UnknownFormat { origin: origin.to_owned() }),
    }
}

/// An entry's `keywords`: the strings among them (an index may hold anything).
fn keywords(raw: &[serde_json::Value]) -> Vec<String> {
    raw.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect()
}

/// A pack ref as pack.yaml allows it: 1–64 of `a-z 0-9 _ -`.
pub fn is_ref(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What `attune install <spec>` asks an index for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRequest {
    pub pack_ref: String,
    pub req: VersionReq,
    /// As typed, for messages.
    pub text: String,
}

/// A spec's ref and what follows its separator: `ref@range`, or StackStorm's
/// `ref=version` (`st2 pack install ref=1.2.3`). `@` wins, so `ref@=1.2.3`
/// stays a range.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@').or_else(|| spec.split_once('=')) {
        Some((r, v)) => (r, Some(v)),
        None => (spec, None),
    }
}

impl PackRequest {
    /// `ref` (highest release), `ref@1.2.3` or `ref=1.2.3` (exactly that),
    /// `ref@^1.2`, `ref@~1.2.3`, `ref@>=1.0, <2` (a semver range), `ref@latest`.
    pub fn parse(spec: &str) -> Result<PackRequest, RegistryError> {
        let bad = |reason: &str| RegistryError::BadSpec { spec: spec.to_owned(), reason: reason.to_owned() };
        let (r, v) = split_spec(spec);
        let v = v.map(str::trim);
        if !is_ref(r) {
            return Err(bad("a pack ref is 1-64 of a-z, 0-9, `_` and `-`"));
        }
        let req = match v {
            None | Some("latest") | Some("*") => VersionReq::STAR,
            Some("") => return Err(bad("nothing after `@`")),
            // A bare version means exactly it (semver's own default would be `^`).
            Some(v) => match Version::parse(v) {
                Ok(exact) => VersionReq::parse(&format!("={exact}")).expect("an exact version is a valid range"),
                Err(_) => {
                    VersionReq::parse(v).map_err(|e| bad(&format!("{v:?} is neither a version nor a range ({e})")))?
                }
            },
        };
        Ok(PackRequest { pack_ref: r.to_owned(), req, text: spec.to_owned() })
    }
}

/// Whether `source` (as given to `attune install`) is meant as an index
/// spec rather than a folder, archive or URL. An existing path always wins;
/// see `docs/registry.md`.
pub fn is_spec(source: &str) -> bool {
    is_ref_shaped(source) && !std::path::Path::new(source).exists()
}

/// Whether `source` has the shape of an index spec (`ref`, `ref@range`),
/// whatever exists on disk: over the API such a source is always an index
/// lookup, so the answer never depends on the server's files.
pub fn is_ref_shaped(source: &str) -> bool {
    is_ref(split_spec(source).0)
}

/// The version an index picked for a request.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    /// The configured name of the index it came from.
    pub index: String,
    #[serde(flatten)]
    pub pack: PackVersion,
}

/// The highest version of `request.pack_ref` matching its range across
/// `indexes` (in the order given; on equal versions the earlier index wins).
pub fn resolve(indexes: &[(String, Index)], request: &PackRequest) -> Result<Resolved, RegistryError> {
    if indexes.is_empty() {
        return Err(RegistryError::NoIndexes { spec: request.text.clone() });
    }
    let mut best: Option<(&str, &PackVersion)> = None;
    let mut available = Vec::new();
    for (name, index) in indexes {
        for v in index.packs.get(&request.pack_ref).into_iter().flatten() {
            available.push(format!("{} in {name}", v.version));
            if request.req.matches(&v.version) && best.is_none_or(|(_, b)| v.version > b.version) {
                best = Some((name, v));
            }
        }
    }
    match best {
        Some((index, pack)) => Ok(Resolved { index: index.to_owned(), pack: pack.clone() }),
        None => Err(RegistryError::NoMatch {
            spec: request.text.clone(),
            searched: format!(
                "index{} {}",
                if indexes.len() == 1 { "" } else { "es" },
                indexes.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
            available,
        }),
    }
}

/// How a resolved version is fetched and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// A source string for the install pipeline (`git+https://…`, `https://…`).
    pub source: String,
    /// The git ref, for git sources.
    pub reference: Option<String>,
    /// What the install must hash to (`None`: the index gives nothing to check).
    pub expected: Option<Checksum>,
}

impl Resolved {
    /// Picks the source and the checksum to hold it to: attune's own tree
    /// checksum when the index carries one (it covers the most), else the
    /// first source with a checksum (an archive's bytes preferred), else the
    /// first source, unverified.
    pub fn plan(&self) -> Result<Plan, RegistryError> {
        let p = &self.pack;
        let with_sum = |kind| p.sources.iter().find(|s| s.kind == kind && s.checksum.is_some());
        let (src, expected) = match (&p.tree_checksum, p.sources.first()) {
            (_, None) => {
                return Err(RegistryError::NoSource {
                    pack_ref: p.pack_ref.clone(),
                    version: p.version.to_string(),
                    index: self.index.clone(),
                });
            }
            (Some(tree), Some(first)) => (first, Some(*tree)),
            (None, Some(first)) => {
                match with_sum(IndexSourceKind::Archive).or_else(|| with_sum(IndexSourceKind::Git)) {
                    Some(s) => (s, s.checksum),
                    None => (first, None),
                }
            }
        };
        Ok(Plan::of(src, expected))
    }

    /// Every way to fetch this version, best first: [`Resolved::plan`]'s
    /// pick, then the index's other sources in its order. When the pick is
    /// verified, only sources that are verified too follow (a mirror that
    /// failed is never replaced by an unchecked one).
    pub fn plans(&self) -> Result<Vec<Plan>, RegistryError> {
        let first = self.plan()?;
        let mut out = vec![first.clone()];
        for s in &self.pack.sources {
            let expected = self.pack.tree_checksum.or(s.checksum);
            let plan = Plan::of(s, expected);
            if (first.expected.is_some() && expected.is_none()) || out.contains(&plan) {
                continue;
            }
            out.push(plan);
        }
        Ok(out)
    }
}

impl Plan {
    fn of(src: &IndexSource, expected: Option<Checksum>) -> Plan {
        let source = match src.kind {
            IndexSourceKind::Git => attune_core::source::git_source(&src.url),
            IndexSourceKind::Archive => src.url.clone(),
        };
        let reference = match src.kind {
            IndexSourceKind::Git => src.reference.clone(),
            IndexSourceKind::Archive => None,
        };
        Plan { source, reference, expected }
    }
}

#[cfg(test)]
mod tests;
