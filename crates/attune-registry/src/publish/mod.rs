//! Publishing: `attune pack index-entry` and `attune pack index-update`, the
//! registry maintainer's side of indexes. A CI job that has the pack's
//! checkout (and, for archives, the archive it uploads or its SHA-256) turns
//! the pack folder into one Attune-format entry and merges it into the
//! registry's `index.json`.
//!
//! The entry is written the way Attune's own builder writes it
//! (attune-system/attune `crates/cli/src/commands/pack_index.rs`, read by
//! `PackIndexEntry` in `crates/common/src/pack_registry/mod.rs`, which denies
//! unknown fields): the same keys, in the same order, with the same defaults,
//! so Attune installs from what attune publishes. The one checksum Attune
//! reads is `sha256:<hex>`, meaning Attune's directory checksum for a git
//! source and the archive's bytes for an archive. What attune adds (its own
//! tree checksum for git sources, and dependency ranges) goes in
//! `meta.x_attune`, the one place Attune's reader accepts any key.
//!
//! The merge keeps everything it does not replace as it was (other entries,
//! unknown keys, their order), writes nothing when nothing changed, and
//! replaces the file atomically, so a failed run leaves it byte-identical.

pub mod json;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::Serialize;
use serde_json::Value;

use self::json::Json;
use super::dep_spec::{self, Declared};
use crate::checksum::{self, Checksum, ChecksumError, ChecksumKind, TreeManifest};
use crate::manifest::{self, ManifestError, PackManifest};

/// The largest component definition (`actions/x.yaml`) read for `contents`.
const MAX_COMPONENT_BYTES: u64 = 1024 * 1024;

/// Where the published version is installed from: exactly one per entry.
#[derive(Debug, Clone)]
pub enum PublishedSource {
    /// A git repository whose `ref` (tag, branch or commit) holds this folder's
    /// content at its root.
    Git { url: String, reference: String },
    /// An archive of this folder at `url`, with the SHA-256 of its bytes.
    Archive { url: String, checksum: ArchiveChecksum },
}

/// The archive's SHA-256: given, or computed from a local copy of the archive.
#[derive(Debug, Clone)]
pub enum ArchiveChecksum {
    Given(String),
    File(PathBuf),
}

/// Everything that can go wrong producing or merging an entry.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{}: {source}", .path.display())]
    Checksum { path: PathBuf, source: ChecksumError },
    #[error(
        "give exactly one install source: --git-url URL --git-ref REF, or --archive-url URL with \
         --archive-checksum sha256:<hex> or --archive FILE ({problem})"
    )]
    Sources { problem: &'static str },
    #[error("--git-ref {reference:?}: {reason}; give the tag, branch or commit the index should install")]
    GitRef { reference: String, reason: &'static str },
    #[error("--archive-checksum {input:?}: {reason}; write sha256:<64 hex digits> of the archive's bytes")]
    ArchiveChecksum { input: String, reason: String },
    #[error("{}: field `{field}` must be {expected}; fix pack.yaml", .path.display())]
    Field { path: PathBuf, field: String, expected: &'static str },
    #[error("{}: dependency {text:?}: {reason}; fix pack.yaml", .path.display())]
    Dependency { path: PathBuf, text: String, reason: String },
    #[error("{}: {reason}; fix or remove it (it is read for the entry's `contents`)", .path.display())]
    Component { path: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not an Attune registry index: {reason}; fix it, or give another --index file", .path.display())]
    BadIndex { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io { path: path.to_owned(), source }
}

/// One entry, ready to print or merge.
#[derive(Debug, Clone)]
pub struct Built {
    pub pack_ref: String,
    pub version: Version,
    /// The entry, keys in Attune's order.
    pub entry: Json,
    /// `git` or `archive`.
    pub source_type: &'static str,
    /// The source's checksum as attune reads it back: `attune-pack-file-v1:`
    /// for git (written `sha256:` in the entry, as Attune does), `sha256:` of
    /// the archive's bytes.
    pub checksum: Checksum,
    /// attune's tree checksum (`meta.x_attune.tree_checksum`), for git sources.
    pub tree_checksum: Option<Checksum>,
    /// Things left out of the entry, for the user to read.
    pub warnings: Vec<String>,
}

// The entry's shape: Attune's `PackIndexEntry` and friends, field for field
// and in their order (serde writes struct fields in declaration order).

#[derive(Serialize)]
struct Entry {
    #[serde(rename = "ref")]
    pack_ref: String,
    label: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    use_case: Option<String>,
    version: String,
    author: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    license: String,
    keywords: Vec<String>,
    runtime_deps: Vec<String>,
    install_sources: Vec<Source>,
    contents: Contents,
    #[serde(skip_serializing_if = "Option::is_none")]
    dependencies: Option<Dependencies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Json>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Source {
    Git {
        url: String,
        #[serde(rename = "ref")]
        git_ref: String,
        checksum: String,
    },
    Archive {
        url: String,
        checksum: String,
    },
}

#[derive(Serialize, Default)]
struct Contents {
    actions: Vec<Component>,
    sensors: Vec<Component>,
    triggers: Vec<Component>,
    rules: Vec<Component>,
    workflows: Vec<Component>,
}

#[derive(Serialize)]
struct Component {
    name: String,
    description: String,
}

#[derive(Serialize, Default)]
struct Dependencies {
    #[serde(skip_serializing_if = "Option::is_none")]
    attune_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    python_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodejs_version: Option<String>,
    packs: Vec<String>,
}

/// The install source the command-line flags describe: `--git-url` with
/// `--git-ref`, or `--archive-url` with `--archive-checksum` or `--archive`.
pub fn source_from_flags(
    git_url: Option<&str>,
    git_ref: Option<&str>,
    archive_url: Option<&str>,
    archive_checksum: Option<&str>,
    archive: Option<&Path>,
) -> Result<PublishedSource, PublishError> {
    let problem = |problem| Err(PublishError::Sources { problem });
    let git = git_url.is_some() || git_ref.is_some();
    let arch = archive_url.is_some() || archive_checksum.is_some() || archive.is_some();
    match (git, arch) {
        (true, true) => problem("both a git and an archive source were given; publish each as its own entry"),
        (false, false) => problem("none was given"),
        (true, false) => match (git_url, git_ref) {
            (Some(url), Some(r)) => Ok(PublishedSource::Git { url: url.to_owned(), reference: r.to_owned() }),
            (None, _) => problem("--git-ref needs --git-url"),
            (_, None) => problem("--git-url needs --git-ref (the tag, branch or commit to install)"),
        },
        (false, true) => {
            let Some(url) = archive_url else { return problem("--archive-checksum and --archive need --archive-url") };
            let checksum = match (archive_checksum, archive) {
                (Some(c), None) => ArchiveChecksum::Given(c.to_owned()),
                (None, Some(f)) => ArchiveChecksum::File(f.to_owned()),
                (Some(_), Some(_)) => return problem("give --archive-checksum or --archive, not both"),
                (None, None) => return problem("--archive-url needs --archive-checksum or --archive"),
            };
            Ok(PublishedSource::Archive { url: url.to_owned(), checksum })
        }
    }
}

/// `last_updated` for now: UTC to the second (`2026-01-20T12:00:00Z`), or
/// `SOURCE_DATE_EPOCH` when it is set, for reproducible CI output.
pub fn now_rfc3339() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&f).expect("a UTC time formats")
}

/// Builds the index entry for the pack folder `dir` installed from `source`.
pub fn entry(dir: &Path, source: &PublishedSource) -> Result<Built, PublishError> {
    let m = manifest::read(dir)?;
    let yaml = dir.join(manifest::MANIFEST_FILE);
    let fields = Fields { m: &m, path: &yaml };
    let mut warnings = Vec::new();

    let (source_entry, checksum, tree_checksum) = match source {
        PublishedSource::Git { url, reference } => {
            check_git_ref(reference)?;
            let legacy = checksum::attune_pack_file_v1(dir)
                .map_err(|source| PublishError::Checksum { path: dir.to_owned(), source })?;
            let tree = tree_without_git(dir)?;
            let written = format!("sha256:{}", legacy.to_hex());
            (Source::Git { url: url.clone(), git_ref: reference.clone(), checksum: written }, legacy, Some(tree))
        }
        PublishedSource::Archive { url, checksum } => {
            let sum = archive_checksum(checksum)?;
            (Source::Archive { url: url.clone(), checksum: sum.to_string() }, sum, None)
        }
    };
    let url = match &source_entry {
        Source::Git { url, .. } | Source::Archive { url, .. } => url,
    };
    if !url.starts_with("https://") {
        warnings
            .push(format!("{url}: not an https URL; attune installs from it, but Attune's own index tools refuse it"));
    }

    let meta_in = match m.extra.get("meta") {
        None => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => return Err(fields.wrong("meta", "a mapping")),
    };
    let meta_str = |key: &str| -> Result<Option<String>, PublishError> {
        match meta_in.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v).map(Some).ok_or_else(|| fields.wrong(&format!("meta.{key}"), "a string")),
        }
    };

    let (dependencies, ranges) = dependencies(&fields, &mut warnings)?;
    let keywords = match (m.extra.get("tags"), m.keywords.is_empty(), meta_in.and_then(|o| o.get("keywords"))) {
        (Some(tags), _, _) => fields.list(tags, "tags")?,
        (None, false, _) => sorted(m.keywords.clone()),
        (None, true, Some(k)) => fields.list(k, "meta.keywords")?,
        (None, true, None) => vec![],
    };

    let mut x_attune = serde_json::Map::new();
    if let Some(t) = &tree_checksum {
        x_attune.insert("tree_checksum".into(), Value::String(t.to_string()));
    }
    if !ranges.is_empty() {
        x_attune.insert("dependencies".into(), serde_json::to_value(&ranges).expect("strings serialize"));
    }
    // Attune reads these three typed (`PackMeta`): anything else would make it refuse the entry.
    if let Some(o) = meta_in {
        for key in ["downloads", "stars"] {
            if o.get(key).is_some_and(|v| !v.is_u64()) {
                return Err(fields.wrong(&format!("meta.{key}"), "a whole number"));
            }
        }
        if o.get("tested_attune_versions")
            .is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err(fields.wrong("meta.tested_attune_versions", "a list of strings"));
        }
    }
    let meta = meta_json(meta_in, x_attune);

    let e = Entry {
        pack_ref: m.r#ref.clone(),
        label: fields.text("label")?.unwrap_or_else(|| m.name.clone()),
        description: m.description.clone().unwrap_or_default(),
        use_case: fields.text("use_case")?.or(meta_str("use_case")?),
        version: m.version.to_string(),
        author: m.author.clone().unwrap_or_else(|| "Unknown".into()),
        email: m.email.clone(),
        homepage: fields.text("homepage")?.or(meta_str("documentation_url")?),
        repository: fields.text("repository")?.or(meta_str("repository_url")?),
        license: fields.text("license")?.or(meta_str("license")?).unwrap_or_else(|| "NOASSERTION".into()),
        keywords,
        runtime_deps: match m.extra.get("runtime_deps") {
            Some(v) => fields.list(v, "runtime_deps")?,
            None => vec![],
        },
        install_sources: vec![source_entry],
        contents: contents(dir, &m)?,
        dependencies,
        meta,
    };
    let source_type = match source {
        PublishedSource::Git { .. } => "git",
        PublishedSource::Archive { .. } => "archive",
    };
    Ok(Built {
        pack_ref: m.r#ref.clone(),
        version: m.version.clone(),
        entry: Json::from_serialize(&e).expect("an entry serializes"),
        source_type,
        checksum,
        tree_checksum,
        warnings,
    })
}

/// Attune refuses a git source without a usable ref (`pack_index.rs`).
fn check_git_ref(reference: &str) -> Result<(), PublishError> {
    let bad = |reason| Err(PublishError::GitRef { reference: reference.to_owned(), reason });
    if reference.trim().is_empty() {
        return bad("it is empty");
    }
    if reference.trim() != reference || reference.starts_with('-') || reference.chars().any(char::is_control) {
        return bad("no surrounding spaces, leading `-` or control characters");
    }
    Ok(())
}

/// attune's tree checksum of what the git fetcher writes for this folder: the
/// folder without `.git` (a CI checkout has one; a fetched tree never does).
fn tree_without_git(dir: &Path) -> Result<Checksum, PublishError> {
    let err = |source| PublishError::Checksum { path: dir.to_owned(), source };
    let full = checksum::tree(dir).map_err(err)?;
    let entries = full.entries.into_iter().filter(|e| !e.path.split('/').any(|c| c == ".git")).collect();
    Ok(TreeManifest::from_entries(full.algorithm, entries).map_err(err)?.digest)
}

fn archive_checksum(c: &ArchiveChecksum) -> Result<Checksum, PublishError> {
    match c {
        ArchiveChecksum::Given(text) => {
            let bad = |reason: String| PublishError::ArchiveChecksum { input: text.clone(), reason };
            let sum: Checksum = text.parse().map_err(|e: ChecksumError| bad(e.to_string()))?;
            if sum.kind() != ChecksumKind::Sha256 {
                return Err(bad(format!("{} is not the archive's SHA-256", sum.kind().prefix())));
            }
            Ok(sum)
        }
        ArchiveChecksum::File(path) => {
            checksum::file(path).map_err(|source| PublishError::Checksum { path: path.clone(), source })
        }
    }
}

/// pack.yaml's top-level fields beyond what [`PackManifest`] names.
struct Fields<'a> {
    m: &'a PackManifest,
    path: &'a Path,
}

impl Fields<'_> {
    fn wrong(&self, field: &str, expected: &'static str) -> PublishError {
        PublishError::Field { path: self.path.to_owned(), field: field.to_owned(), expected }
    }

    /// A string field (numbers as written); absent or null is `None`.
    fn text(&self, key: &str) -> Result<Option<String>, PublishError> {
        match self.m.extra.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v).map(Some).ok_or_else(|| self.wrong(key, "a string")),
        }
    }

    /// A list of strings, sorted and without repeats (as Attune's builder writes them).
    fn list(&self, v: &Value, key: &str) -> Result<Vec<String>, PublishError> {
        let Value::Array(items) = v else { return Err(self.wrong(key, "a list of strings")) };
        let items =
            items.iter().map(scalar).collect::<Option<Vec<_>>>().ok_or_else(|| self.wrong(key, "a list of strings"))?;
        Ok(sorted(items))
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Attune's `dependencies` (`python_version`, `nodejs_version`, `packs` as
/// `ref@version` or `ref`) and attune's ranges (ref → semver range) from
/// either pack.yaml dialect. URL dependencies (StackStorm) name no ref, so
/// they cannot go in an index; they are left out with a warning.
fn dependencies(
    f: &Fields,
    warnings: &mut Vec<String>,
) -> Result<(Option<Dependencies>, BTreeMap<String, String>), PublishError> {
    let raw = f.m.extra.get("dependencies");
    if raw.is_none() && f.m.dependencies.is_empty() {
        return Ok((None, BTreeMap::new()));
    }
    let mut out = Dependencies::default();
    if let Some(Value::Object(o)) = raw {
        let field = |key: &str| match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v).map(Some).ok_or_else(|| f.wrong(&format!("dependencies.{key}"), "a string")),
        };
        out.attune_version = field("attune_version")?;
        out.python_version = field("python_version")?;
        out.nodejs_version = field("nodejs_version")?;
    }
    let mut ranges = BTreeMap::new();
    for text in &f.m.dependencies {
        let bad = |reason: String| PublishError::Dependency { path: f.path.to_owned(), text: text.clone(), reason };
        match dep_spec::parse(text).map_err(bad)? {
            Declared::Pack { pack_ref, req } => {
                let range = req.to_string();
                let written = match range.strip_prefix('=').map(Version::parse) {
                    Some(Ok(exact)) => format!("{pack_ref}@{exact}"),
                    _ if req == semver::VersionReq::STAR => pack_ref.clone(),
                    _ => format!("{pack_ref}@{range}"),
                };
                if let Some(other) = ranges.insert(pack_ref.clone(), range.clone())
                    && other != range
                {
                    return Err(bad(format!("{pack_ref} is listed twice, as {other} and as {range}")));
                }
                out.packs.push(written);
            }
            Declared::Url { .. } => warnings.push(format!(
                "dependency {text:?}: a repository URL, not a pack ref; an index resolves dependencies by \
                 ref, so it is left out of the entry (depend on the pack's ref, and publish that pack to an \
                 index, to have it installed with this one)"
            )),
        }
    }
    out.packs = sorted(out.packs);
    Ok((Some(out), ranges))
}

/// `meta` as Attune's `PackMeta` writes it (`downloads`, `stars`,
/// `tested_attune_versions`, then every other key sorted), with attune's
/// extension in `x_attune`; `None` when there is nothing to write.
fn meta_json(
    meta_in: Option<&serde_json::Map<String, Value>>,
    x_attune: serde_json::Map<String, Value>,
) -> Option<Json> {
    if meta_in.is_none() && x_attune.is_empty() {
        return None;
    }
    let mut rest: BTreeMap<String, Value> = meta_in.cloned().unwrap_or_default().into_iter().collect();
    let mut fields = Vec::new();
    for key in ["downloads", "stars"] {
        if let Some(v) = rest.remove(key) {
            fields.push((key.to_owned(), v));
        }
    }
    let tested = rest.remove("tested_attune_versions").unwrap_or(Value::Array(vec![]));
    fields.push(("tested_attune_versions".to_owned(), tested));
    if x_attune.is_empty() {
        rest.remove("x_attune");
    } else {
        rest.insert("x_attune".to_owned(), Value::Object(x_attune));
    }
    fields.extend(rest);
    let fields = fields.into_iter().map(|(k, v)| (k, Json::from_serialize(&v).expect("JSON re-reads"))).collect();
    Some(Json::Object(fields))
}

/// `contents`, as Attune's builder finds it: the `*.yaml`/`*.yml` files
/// directly in `actions/`, `sensors/`, `triggers/`, `rules/` and
/// `workflows/` (an action with a `workflow_file` counts as a workflow),
/// else the component mappings in pack.yaml; each `{name, description}`,
/// sorted by name.
fn contents(dir: &Path, m: &PackManifest) -> Result<Contents, PublishError> {
    let mut c = Contents::default();
    let mut workflows = Vec::new();
    for kind in ["actions", "sensors", "triggers", "rules", "workflows"] {
        let found = match component_files(dir, kind, &m.r#ref)? {
            Some(files) => files,
            None => inline_components(m, kind),
        };
        let list = match kind {
            "actions" => &mut c.actions,
            "sensors" => &mut c.sensors,
            "triggers" => &mut c.triggers,
            "rules" => &mut c.rules,
            _ => &mut workflows,
        };
        for (component, is_workflow) in found {
            if is_workflow && kind == "actions" {
                c.workflows.push(component);
            } else {
                list.push(component);
            }
        }
    }
    c.workflows.extend(workflows);
    for list in [&mut c.actions, &mut c.sensors, &mut c.triggers, &mut c.rules, &mut c.workflows] {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(c)
}

/// The components defined by files in `dir/kind`, with whether each is a
/// workflow action; `None` when there are no such files.
fn component_files(dir: &Path, kind: &str, pack_ref: &str) -> Result<Option<Vec<(Component, bool)>>, PublishError> {
    let folder = dir.join(kind);
    match std::fs::symlink_metadata(&folder) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(None),
    }
    let mut paths = Vec::new();
    for item in std::fs::read_dir(&folder).map_err(io(&folder))? {
        let item = item.map_err(io(&folder))?;
        let path = item.path();
        let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if is_yaml && item.file_type().map_err(io(&path))?.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Ok(None);
    }
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bad = |reason: String| PublishError::Component { path: path.clone(), reason };
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len > MAX_COMPONENT_BYTES {
            return Err(bad(format!("{len} bytes is over the {MAX_COMPONENT_BYTES}-byte limit for a definition")));
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("invalid YAML: {e}")))?;
        if !value.is_mapping() {
            return Err(bad("must be a YAML mapping".into()));
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let name = first_text(&value, &["ref", "name"]).unwrap_or(stem);
        let name = name.strip_prefix(&format!("{pack_ref}.")).map(str::to_owned).unwrap_or(name);
        let description = first_text(&value, &["description", "label"]).unwrap_or_default();
        let is_workflow = first_text(&value, &["workflow_file"]).is_some();
        out.push((Component { name, description }, is_workflow));
    }
    Ok(Some(out))
}

fn first_text(v: &serde_yaml_ng::Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(str::to_owned))
}

/// Components declared inline in pack.yaml (`actions: {name: {description: …}}`).
fn inline_components(m: &PackManifest, kind: &str) -> Vec<(Component, bool)> {
    let Some(Value::Object(o)) = m.extra.get(kind) else { return vec![] };
    o.iter()
        .map(|(name, def)| {
            let text = |k: &str| def.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
            let description = text("description").or_else(|| text("label")).unwrap_or_default();
            (Component { name: name.clone(), description }, text("workflow_file").is_some())
        })
        .collect()
}

/// How the entry changed the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new ref@version.
    Added,
    /// The same ref@version was there with other content.
    Replaced,
    /// The same entry was already there: the file was not written.
    Unchanged,
}

/// Top-level fields for a new index (or to change in an existing one).
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    pub registry_name: Option<String>,
    pub registry_url: Option<String>,
    /// `last_updated` for this change, RFC 3339 (`2026-01-20T12:00:00Z`).
    pub now: String,
}

/// What `index-update` did.
#[derive(Debug, Clone, Serialize)]
pub struct Updated {
    pub index: PathBuf,
    pub action: Action,
    /// The file did not exist and was created.
    pub created: bool,
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub source_type: &'static str,
    /// How many entries (ref@version) the index lists now.
    pub entries: usize,
    pub checksum: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_checksum: Option<String>,
    pub warnings: Vec<String>,
}

/// The registry name of a new index when `--registry-name` is not given.
pub const DEFAULT_REGISTRY_NAME: &str = "Pack registry";

/// Merges `built` into the Attune index at `path` (created if missing): the
/// same ref@version is replaced where it stands, a new one goes beside the
/// ref's other versions (highest first, so Attune, which reads a ref's first
/// entry, sees the newest) or, for a new ref, before the first greater ref;
/// nothing else changes. The file is replaced atomically, and only when
/// something changed.
pub fn update_index(path: &Path, built: &Built, opts: &IndexOptions) -> Result<Updated, PublishError> {
    let bad = |reason: String| PublishError::BadIndex { path: path.to_owned(), reason };
    let (mut top, created) = match std::fs::read(path) {
        Ok(bytes) => (existing(&bytes).map_err(bad)?, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (new_index(opts), true),
        Err(e) => return Err(io(path)(e)),
    };
    let before = top.clone();
    if let Some(name) = &opts.registry_name {
        top.set("registry_name", Json::String(name.clone()));
    }
    if let Some(url) = &opts.registry_url {
        top.set("registry_url", Json::String(url.clone()));
    }
    let Some(Json::Array(packs)) = top.get_mut("packs") else { unreachable!("checked by existing()") };
    let same_ref = |e: &Json| e.get("ref").and_then(Json::as_str) == Some(built.pack_ref.as_str());
    let version_of = |e: &Json| e.get("version").and_then(Json::as_str).and_then(|v| Version::parse(v).ok());
    let same = packs.iter().position(|e| same_ref(e) && version_of(e).as_ref() == Some(&built.version));
    let action = match same {
        Some(i) if packs[i] == built.entry => Action::Unchanged,
        Some(i) => {
            packs[i] = built.entry.clone();
            // Later copies of the same version would never be read; drop them.
            let mut n = 0;
            packs.retain(|e| {
                n += 1;
                n - 1 <= i || !(same_ref(e) && version_of(e).as_ref() == Some(&built.version))
            });
            Action::Replaced
        }
        None => {
            let at = match packs.iter().rposition(same_ref) {
                Some(last) => packs
                    .iter()
                    .position(|e| same_ref(e) && version_of(e).is_some_and(|v| v < built.version))
                    .unwrap_or(last + 1),
                None => packs
                    .iter()
                    .position(|e| e.get("ref").and_then(Json::as_str).is_some_and(|r| r > built.pack_ref.as_str()))
                    .unwrap_or(packs.len()),
            };
            packs.insert(at, built.entry.clone());
            Action::Added
        }
    };
    let entries = packs.len();
    let changed = created || top != before;
    if changed {
        top.set("last_updated", Json::String(opts.now.clone()));
    }
    // What is written must read back, with this entry in it.
    let text = top.to_pretty();
    let index = super::parse(text.as_bytes(), &path.display().to_string()).map_err(|e| bad(e.to_string()))?;
    let listed = index.packs.get(&built.pack_ref).is_some_and(|vs| vs.iter().any(|v| v.version == built.version));
    if !listed {
        let why = index.skipped.iter().find(|s| s.starts_with(&built.pack_ref)).cloned().unwrap_or_default();
        return Err(bad(format!("the merged entry would not be read back ({why})")));
    }
    if changed {
        write_atomically(path, text.as_bytes())?;
    }
    Ok(Updated {
        index: path.to_owned(),
        action: if created { Action::Added } else { action },
        created,
        pack_ref: built.pack_ref.clone(),
        version: built.version.to_string(),
        source_type: built.source_type,
        entries,
        checksum: built.checksum.to_string(),
        tree_checksum: built.tree_checksum.map(|c| c.to_string()),
        warnings: built.warnings.clone(),
    })
}

fn new_index(opts: &IndexOptions) -> Json {
    let s = |v: &str| Json::String(v.to_owned());
    Json::Object(vec![
        ("registry_name".into(), s(opts.registry_name.as_deref().unwrap_or(DEFAULT_REGISTRY_NAME))),
        ("registry_url".into(), s(opts.registry_url.as_deref().unwrap_or(""))),
        ("version".into(), s("1.0")),
        ("last_updated".into(), s(&opts.now)),
        ("packs".into(), Json::Array(vec![])),
    ])
}

/// An existing index, checked to be an Attune 1.x index before anything is changed.
fn existing(bytes: &[u8]) -> Result<Json, String> {
    let top: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let Json::Object(_) = top else { return Err("the top level is not an object".into()) };
    match top.get("packs") {
        Some(Json::Array(packs)) => {
            if let Some(i) = packs.iter().position(|e| !matches!(e, Json::Object(_))) {
                return Err(format!("packs[{i}] is not an object"));
            }
        }
        Some(Json::Object(_)) => {
            return Err("it is a StackStorm Exchange index (`packs` is an object); index-update writes \
                        Attune indexes"
                .into());
        }
        Some(_) => return Err("`packs` is not a list".into()),
        None => return Err("it has no `packs` list".into()),
    }
    match top.get("version") {
        None => {}
        Some(Json::String(v)) if v.split('.').next() == Some("1") => {}
        Some(v) => return Err(format!("format version {} is not 1.x", serde_json::to_string(v).unwrap_or_default())),
    }
    Ok(top)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    attune_core::fs::write_atomic(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests;
