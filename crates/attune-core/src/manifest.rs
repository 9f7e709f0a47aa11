//! Reading and checking a pack's `pack.yaml`.
//!
//! The manifest names the pack (`ref`) and its version, which decide where it
//! is stored, so it is read with the rules real StackStorm and Attune packs
//! need (a leading `---`, unknown keys kept, `ref` defaulting to `name`) and
//! the limits hostile input needs: the size is checked before reading, flow
//! nesting and alias expansion are bounded before anything is built, the
//! version is strict semver and the `ref` is safe to use as a folder name.

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_json::{Map, Value};
use thiserror::Error;

pub const MANIFEST_FILE: &str = "pack.yaml";
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
const MAX_REF_LEN: usize = 64;
/// libyaml re-checks every open flow level on each token, so deep `[`/`{`
/// nesting is quadratic (1 MiB of `{a: ` takes over a minute). Counting the
/// raw characters (closing ones ignored, quotes not trusted) cannot be
/// fooled, and real manifests have a handful.
const MAX_FLOW_OPENINGS: usize = 256;
/// Nodes an alias-free manifest of `len` bytes can hold is about `len`; aliases
/// may not take a document beyond that (plus slack for tiny files).
const fn node_budget(len: usize) -> usize {
    2 * len + 10_000
}

#[derive(Debug, Clone, Serialize)]
pub struct PackManifest {
    #[serde(rename = "ref")]
    pub r#ref: String,
    /// Display name; Attune packs may omit it and give `label` or just `ref`.
    pub name: String,
    pub version: semver::Version,
    /// The version as pack.yaml wrote it, when it was short (`0.2`, `1`) and
    /// [`version`](Self::version) is its normalized form (`0.2.0`, `1.0.0`),
    /// as StackStorm does since 2.1.
    #[serde(skip)]
    pub version_written: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub email: Option<String>,
    pub keywords: Vec<String>,
    /// Pack dependencies as written: StackStorm lists `<ref or URL>[=<version>]`;
    /// Attune writes a mapping whose `packs` list (`ref@range`) lands here and
    /// whose raw form stays in `extra["dependencies"]`.
    pub dependencies: Vec<String>,
    pub python_versions: Vec<String>,
    /// Every other top-level key, unchanged.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("pack.yaml not found in {}{}", .dir.display(), not_found_hint(.hint))]
    NotFound { dir: PathBuf, hint: Option<PathBuf> },
    #[error("{}: must be a regular file at the pack root (symlinks, folders and devices are refused)", .path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: {size} bytes is over the {max}-byte limit for a pack manifest", .path.display())]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{}: invalid YAML{}: {message}", .path.display(), location(*.line, *.column))]
    Yaml { path: PathBuf, line: Option<usize>, column: Option<usize>, message: String },
    #[error("{}: the top level must be a mapping of keys (name: …, version: …)", .path.display())]
    NotAMapping { path: PathBuf },
    #[error("{}: required field `{field}` is missing{}", .path.display(), missing_hint(.field))]
    MissingField { path: PathBuf, field: &'static str },
    #[error("{}: field `{field}` must be {expected}", .path.display())]
    WrongType { path: PathBuf, field: String, expected: &'static str },
    #[error("{}ref {value:?} is invalid: {reason}", path_prefix(.path))]
    InvalidRef { path: Option<PathBuf>, value: String, reason: String },
    #[error("{}: version {value} is not strict semver ({reason}); {}", .path.display(), version_hint(.value))]
    InvalidVersion { path: PathBuf, value: String, reason: String },
    #[error(
        "{}: YAML aliases expand too far (possible \"billion laughs\" alias bomb); a manifest needs no anchors (&) or aliases (*): write the values out",
        .path.display()
    )]
    AliasBomb { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl ManifestError {
    /// The same error with paths under `root` (where a fetched pack was
    /// staged) shown under `shown` (the source the user gave), so that it
    /// names `./my_pack`, not a staging folder.
    pub fn shown_as(self, root: &Path, shown: &str) -> ManifestError {
        let fix = |p: PathBuf| match p.strip_prefix(root) {
            Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from(shown),
            Ok(rest) => Path::new(shown).join(rest),
            Err(_) => p,
        };
        use ManifestError as E;
        match self {
            E::NotFound { dir, hint } => E::NotFound { dir: fix(dir), hint: hint.map(fix) },
            E::NotAFile { path } => E::NotAFile { path: fix(path) },
            E::TooLarge { path, size, max } => E::TooLarge { path: fix(path), size, max },
            E::Yaml { path, line, column, message } => E::Yaml { path: fix(path), line, column, message },
            E::NotAMapping { path } => E::NotAMapping { path: fix(path) },
            E::MissingField { path, field } => E::MissingField { path: fix(path), field },
            E::WrongType { path, field, expected } => E::WrongType { path: fix(path), field, expected },
            E::InvalidRef { path, value, reason } => E::InvalidRef { path: path.map(fix), value, reason },
            E::InvalidVersion { path, value, reason } => E::InvalidVersion { path: fix(path), value, reason },
            E::AliasBomb { path } => E::AliasBomb { path: fix(path) },
            E::Io { path, source } => E::Io { path: fix(path), source },
        }
    }
}

fn not_found_hint(hint: &Option<PathBuf>) -> String {
    match hint {
        Some(p) if p.file_name().is_some_and(|n| n != MANIFEST_FILE) => {
            format!("; found {} — only pack.yaml is read: rename it", p.display())
        }
        Some(p) => format!("; found {} — is the pack inside a subfolder?", p.display()),
        None => " (a pack is a folder with pack.yaml at its root; pack.yml is not read)".to_string(),
    }
}

fn missing_hint(field: &str) -> &'static str {
    match field {
        "name" => " (Attune-style manifests may give `ref` instead)",
        "version" => " (add e.g. version: 1.0.0)",
        _ => "",
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

/// Suggests the semver spelling of what was written (`1.0` → `1.0.0`, `v2.1.3` → `2.1.3`).
fn version_hint(written: &str) -> String {
    let bare = written.trim_matches(|c| c == '"' || c == '\'').trim_start_matches(['v', 'V']);
    let parts: Vec<&str> = bare.split('.').collect();
    let numeric = !bare.is_empty() && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let fixed = match parts.len() {
        1 if numeric => format!("{bare}.0.0"),
        2 if numeric => format!("{bare}.0"),
        _ => bare.to_string(),
    };
    match semver::Version::parse(&fixed) {
        Ok(v) => format!("write version: {v}"),
        Err(_) => "write it as MAJOR.MINOR.PATCH, e.g. version: 1.0.0".to_string(),
    }
}

/// Reads `pack_dir/pack.yaml`.
pub fn read(pack_dir: &Path) -> Result<PackManifest, ManifestError> {
    let path = pack_dir.join(MANIFEST_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Io { path, source }
    };
    // lstat first: a symlink must not be followed and a FIFO must not be opened.
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::NotFound { dir: pack_dir.to_path_buf(), hint: find_elsewhere(pack_dir) });
        }
        Err(e) => return Err(io(&path)(e)),
    };
    if !meta.file_type().is_file() {
        return Err(ManifestError::NotAFile { path });
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: meta.len(), max: MAX_MANIFEST_BYTES });
    }
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let opened = file.metadata().map_err(io(&path))?;
    // The name may have been swapped for a symlink between lstat and open.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !opened.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(ManifestError::NotAFile { path });
        }
    }
    #[cfg(not(unix))]
    if !opened.is_file() {
        return Err(ManifestError::NotAFile { path });
    }
    // Read at most one byte past the limit, in case the file grew.
    let mut bytes = Vec::with_capacity(opened.len().min(MAX_MANIFEST_BYTES) as usize);
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes).map_err(io(&path))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: bytes.len() as u64, max: MAX_MANIFEST_BYTES });
    }
    let text = String::from_utf8(bytes).map_err(|e| ManifestError::Yaml {
        path: path.clone(),
        line: None,
        column: None,
        message: format!("not UTF-8 text (bad byte at offset {})", e.utf8_error().valid_up_to()),
    })?;
    parse(&text, &path)
}

/// For the not-found hint: a root `pack.yml`, or the `pack.yaml` of the only
/// subfolder that has one (a pack wrapped in a folder).
fn find_elsewhere(dir: &Path) -> Option<PathBuf> {
    let yml = dir.join("pack.yml");
    if std::fs::symlink_metadata(&yml).is_ok() {
        return Some(yml);
    }
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .take(1000) // a hint is not worth walking a huge folder
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(MANIFEST_FILE))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Parses manifest text; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<PackManifest, ManifestError> {
    let path = origin.to_path_buf();
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: text.len() as u64, max: MAX_MANIFEST_BYTES });
    }
    // libyaml does not skip a byte-order mark that Windows editors leave.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_flow_openings(text, &path)?;
    check_expansion(text, &path)?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&path, e))?;
    let serde_yaml_ng::Value::Mapping(map) = yaml else {
        return Err(ManifestError::NotAMapping { path });
    };
    let mut fields = Map::new();
    for (k, v) in map {
        let key = match k {
            serde_yaml_ng::Value::String(s) => s,
            // `1: x` or `true: x` at the top level: harmless, keep as text.
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            other => {
                return Err(ManifestError::WrongType {
                    path,
                    field: format!("{other:?}"),
                    expected: "a plain text key",
                });
            }
        };
        let value = serde_json::to_value(&v).map_err(|_| ManifestError::WrongType {
            path: path.clone(),
            field: key.clone(),
            expected: "plain YAML data (mapping keys must be text or numbers)",
        })?;
        fields.insert(key, value);
    }

    let explicit_ref = take_string(&mut fields, "ref", &path)?;
    let label = fields.get("label").and_then(Value::as_str).map(str::to_owned);
    let name = match (take_string(&mut fields, "name", &path)?, label, &explicit_ref) {
        (Some(n), _, _) => n,
        // Attune manifests name the pack with `ref` and `label` only.
        (None, Some(l), Some(_)) => l,
        (None, None, Some(r)) => r.clone(),
        (None, _, None) => return Err(ManifestError::MissingField { path, field: "name" }),
    };
    let from_name = explicit_ref.is_none();
    let r#ref = explicit_ref.unwrap_or_else(|| name.clone());
    if let Err(reason) = ref_rules(&r#ref) {
        let reason = if from_name {
            format!(
                "{reason} — it was taken from `name` because `ref` is not set (set `ref:` explicitly when `name` is not a valid ref)"
            )
        } else {
            reason
        };
        return Err(ManifestError::InvalidRef { path: Some(path), value: r#ref, reason });
    }
    let (version, version_written) = take_version(&mut fields, text, &path)?;
    Ok(PackManifest {
        r#ref,
        name,
        version,
        version_written,
        description: take_string(&mut fields, "description", &path)?,
        author: take_string(&mut fields, "author", &path)?,
        email: take_string(&mut fields, "email", &path)?,
        keywords: take_list(&mut fields, "keywords", &path)?,
        dependencies: take_dependencies(&mut fields),
        python_versions: take_list(&mut fields, "python_versions", &path)?,
        extra: fields,
    })
}

fn check_flow_openings(text: &str, path: &Path) -> Result<(), ManifestError> {
    let Some((at, _)) = text.match_indices(['[', '{']).nth(MAX_FLOW_OPENINGS) else {
        return Ok(());
    };
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
    Err(ManifestError::Yaml {
        path: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
        message: format!(
            "more than {MAX_FLOW_OPENINGS} '[' and '{{' characters (deeply nested flow collections are refused); write lists and mappings in block style"
        ),
    })
}

/// Walks the document as the deserializer will, counting every node an alias
/// replays, and stops at the budget instead of building an exponential value.
fn check_expansion(text: &str, path: &Path) -> Result<(), ManifestError> {
    let left = Cell::new(node_budget(text.len()));
    let over = Cell::new(false);
    match (Counter { left: &left, over: &over }).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Ok(()) => Ok(()),
        Err(_) if over.get() => Err(ManifestError::AliasBomb { path: path.to_path_buf() }),
        Err(e) => Err(yaml_error(path, e)),
    }
}

#[derive(Clone, Copy)]
struct Counter<'a> {
    left: &'a Cell<usize>,
    over: &'a Cell<bool>,
}

impl Counter<'_> {
    fn tick<E: de::Error>(self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => {
                self.over.set(true);
                Err(E::custom("node budget exceeded"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    // serde_yaml_ng reports `!tag value` as an enum.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

fn yaml_error(path: &Path, e: serde_yaml_ng::Error) -> ManifestError {
    let mut message = e.to_string();
    if message.starts_with("repetition limit exceeded") {
        return ManifestError::AliasBomb { path: path.to_path_buf() };
    }
    let loc = e.location();
    if let Some(l) = &loc {
        // The location is shown once, by ManifestError.
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        message = message.replacen(&suffix, "", 1);
    }
    if message.starts_with("recursion limit exceeded") {
        message = "nested too deeply (recursion limit exceeded)".into();
    }
    ManifestError::Yaml {
        path: path.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message,
    }
}

fn take_version(
    fields: &mut Map<String, Value>,
    text: &str,
    path: &Path,
) -> Result<(semver::Version, Option<String>), ManifestError> {
    let invalid =
        |value: String, reason: String| ManifestError::InvalidVersion { path: path.to_path_buf(), value, reason };
    match fields.remove("version") {
        None | Some(Value::Null) => Err(ManifestError::MissingField { path: path.to_path_buf(), field: "version" }),
        Some(Value::String(s)) => match semver::Version::parse(&s) {
            Ok(v) => Ok((v, None)),
            Err(e) => match short_version(&s) {
                Some(v) => Ok((v, Some(s))),
                None => Err(invalid(format!("{s:?}"), e.to_string())),
            },
        },
        // `version: 1.0` is a YAML float; read it as written, not as 1 or 1.0 re-rendered.
        Some(Value::Number(n)) => {
            let written = raw_top_level_value(text, "version").unwrap_or_else(|| n.to_string());
            match short_version(&written) {
                Some(v) => Ok((v, Some(written))),
                None => Err(invalid(written, "YAML reads it as a number; a version must be text like 1.0.0".into())),
            }
        }
        Some(_) => Err(ManifestError::WrongType {
            path: path.to_path_buf(),
            field: "version".into(),
            expected: "text like 1.0.0",
        }),
    }
}

/// StackStorm's short versions (`0.2`, `1`, quoted or not), padded with
/// `.0` to semver as st2 has done since 2.1; anything else is not one. The
/// one rule for pack.yaml and for index entries.
pub fn short_version(written: &str) -> Option<semver::Version> {
    let bare = written.trim_matches(|c| c == '"' || c == '\'');
    let parts: Vec<&str> = bare.split('.').collect();
    let numeric = parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    match parts.len() {
        1 | 2 if numeric => semver::Version::parse(&format!("{bare}{}", ".0".repeat(3 - parts.len()))).ok(),
        _ => None,
    }
}

/// The plain text after `key:` on an unindented line, for messages only.
fn raw_top_level_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.trim_start();
        let value = rest.strip_prefix(':')?;
        let value = value.split(" #").next()?.trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

fn take_string(
    fields: &mut Map<String, Value>,
    key: &'static str,
    path: &Path,
) -> Result<Option<String>, ManifestError> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        // `author: 42` is odd but harmless; an identifier must be written as text.
        Some(Value::Number(n)) if key != "name" && key != "ref" => Ok(Some(n.to_string())),
        Some(_) => Err(ManifestError::WrongType { path: path.to_path_buf(), field: key.into(), expected: "text" }),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list of scalars (`python_versions: [2, 3]` gives "2", "3"); a single
/// scalar is a one-item list.
fn take_list(fields: &mut Map<String, Value>, key: &'static str, path: &Path) -> Result<Vec<String>, ManifestError> {
    let wrong = || ManifestError::WrongType { path: path.to_path_buf(), field: key.into(), expected: "a list of text" };
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items.iter().map(scalar_text).collect::<Option<_>>().ok_or_else(wrong),
        Some(v) => scalar_text(&v).map(|s| vec![s]).ok_or_else(wrong),
    }
}

/// StackStorm: a list of strings, taken out of `extra`. Any other shape (Attune's
/// `{packs: [...], python_version: ...}`) stays raw in `extra`; its `packs`
/// strings are listed.
fn take_dependencies(fields: &mut Map<String, Value>) -> Vec<String> {
    let Some(raw) = fields.get("dependencies") else { return vec![] };
    if let Some(list) = raw.as_array().and_then(|items| items.iter().map(scalar_text).collect::<Option<Vec<_>>>()) {
        fields.remove("dependencies");
        return list;
    }
    raw.get("packs")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(scalar_text).collect())
        .unwrap_or_default()
}

fn ref_rules(s: &str) -> Result<(), String> {
    const RULE: &str = "use 1-64 characters from a-z, 0-9, '_' and '-'";
    if s.is_empty() {
        return Err(format!("{RULE} (it is empty)"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        return Err(format!("{RULE} ({c:?} is not allowed)"));
    }
    if s.len() > MAX_REF_LEN {
        return Err(format!("{RULE} (it has {})", s.len()));
    }
    Ok(())
}

/// Checks a pack ref typed by a user (`attune info <ref>`).
pub fn validate_ref(s: &str) -> Result<(), ManifestError> {
    ref_rules(s).map_err(|reason| ManifestError::InvalidRef { path: None, value: s.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn p(text: &str) -> Result<PackManifest, ManifestError> {
        parse(text, Path::new("/packs/x/pack.yaml"))
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    // StackStorm-Exchange/stackstorm-aws, pack.yaml @ 0dfdf621 (note `name : aws`).
    const AWS: &str = include_str!("../../../host/tests/fixtures/manifests/stackstorm-aws.pack.yaml");
    // StackStorm-Exchange/stackstorm-st2, pack.yaml @ 0fc8c16f.
    const ST2: &str = include_str!("../../../host/tests/fixtures/manifests/stackstorm-st2.pack.yaml");
    // StackStorm-Exchange/stackstorm-jira, pack.yaml @ 031c6bf0.
    const JIRA: &str = include_str!("../../../host/tests/fixtures/manifests/stackstorm-jira.pack.yaml");
    // StackStorm-Exchange/stackstorm-github, pack.yaml @ 02b22295 (an old one: no `ref`).
    const GITHUB: &str = include_str!("../../../host/tests/fixtures/manifests/stackstorm-github.pack.yaml");
    // attune-system/attune, packs/core/pack.yaml @ 252ce12e, abridged (nested
    // blocks shortened): `ref` and `label`, no `name`, quoted version.
    const ATTUNE_CORE: &str = include_str!("../../../host/tests/fixtures/manifests/attune-core.pack.yaml");

    #[test]
    fn real_stackstorm_manifests() {
        let aws = p(AWS).unwrap();
        assert_eq!((aws.r#ref.as_str(), aws.name.as_str()), ("aws", "aws"));
        assert_eq!(aws.version, semver::Version::new(1, 3, 4));
        assert_eq!(aws.keywords.len(), 16);
        assert_eq!(aws.python_versions, ["2", "3"]);
        assert_eq!(aws.author.as_deref(), Some("StackStorm, Inc."));
        assert!(aws.extra.is_empty(), "{:?}", aws.extra);

        let st2 = p(ST2).unwrap();
        assert_eq!(st2.r#ref, "st2");
        assert_eq!(st2.extra["contributors"][0], "Igor Cherkaev <igor.cherkaev@copart.com>");

        let jira = p(JIRA).unwrap();
        assert_eq!((jira.r#ref.as_str(), jira.version.to_string().as_str()), ("jira", "3.2.3"));
        assert_eq!(jira.keywords, ["issues", "ticket management", "project management"]);

        let github = p(GITHUB).unwrap();
        assert_eq!(github.r#ref, "github", "ref defaults to name");
        assert_eq!(github.description.as_deref(), Some("st2 content pack containing github integrations"));
    }

    #[test]
    fn real_attune_manifest() {
        let m = p(ATTUNE_CORE).unwrap();
        assert_eq!(m.r#ref, "core");
        assert_eq!(m.name, "Core Pack", "name falls back to label");
        assert_eq!(m.version, semver::Version::new(1, 0, 3));
        assert!(m.keywords.is_empty(), "Attune keeps keywords under meta");
        assert_eq!(m.extra["system"], true);
        assert_eq!(m.extra["label"], "Core Pack");
        assert_eq!(m.extra["runtime_deps"][2], "native");
        assert_eq!(m.extra["testing"]["min_pass_rate"], 1.0);
    }

    #[test]
    fn dependencies_as_written() {
        let st = p("name: a\nversion: 1.0.0\ndependencies:\n  - aws\n  - https://github.com/x/y.git=v1.2.0\n").unwrap();
        assert_eq!(st.dependencies, ["aws", "https://github.com/x/y.git=v1.2.0"]);
        assert!(!st.extra.contains_key("dependencies"));
        // Attune's mapping form (crates/common/src/pack_registry/mod.rs, PackDependencies).
        let at = p("ref: a\nversion: 1.0.0\ndependencies:\n  attune_version: \">=0.3\"\n  packs: [\"core@^1.0.0\"]\n")
            .unwrap();
        assert_eq!(at.dependencies, ["core@^1.0.0"]);
        assert_eq!(at.extra["dependencies"]["attune_version"], ">=0.3");
    }

    #[test]
    fn leading_document_marker_and_extra_keys() {
        let m = p("---\nname: x\nversion: 1.0.0\nstackstorm_version: \">=3.0.0\"\nsystem: {apt: [curl]}\n1: one\n")
            .unwrap();
        assert_eq!(m.extra["stackstorm_version"], ">=3.0.0");
        assert_eq!(m.extra["system"]["apt"][0], "curl");
        assert_eq!(m.extra["1"], "one");
        assert_eq!(m.extra.len(), 3);
        assert!(p("---\nname: x\nversion: 1.0.0\n...\n").is_ok(), "end marker");
        p("\u{feff}---\nname: x\nversion: 1.0.0\n").unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!((json["ref"].as_str(), json["version"].as_str()), (Some("x"), Some("1.0.0")));
    }

    #[test]
    fn refs() {
        for bad in ["My Pack", "UPPER", "", "naïve", &"a".repeat(65), "dots.no", "a/b", ".."] {
            let e = p(&format!("ref: {bad:?}\nname: x\nversion: 1.0.0\n")).unwrap_err();
            assert!(matches!(&e, ManifestError::InvalidRef { path: Some(_), .. }), "{bad:?}: {e}");
            assert!(validate_ref(bad).is_err(), "{bad:?}");
        }
        assert!(p(&format!("ref: {}\nname: x\nversion: 1.0.0\n", "a".repeat(64))).is_ok());
        for good in ["ok_ref-1", "a", "0", "st2"] {
            assert!(validate_ref(good).is_ok(), "{good}");
        }
        let e = err("name: My Pack\nversion: 1.0.0\n");
        assert!(e.starts_with("/packs/x/pack.yaml: ref \"My Pack\" is invalid: use 1-64 characters"), "{e}");
        assert!(e.contains("taken from `name`") && e.contains("set `ref:` explicitly"), "{e}");
        // An explicit ref with a display name is the way out.
        assert_eq!(p("ref: my_pack\nname: My Pack\nversion: 1.0.0\n").unwrap().name, "My Pack");
        let e = validate_ref("Nope").unwrap_err().to_string();
        assert_eq!(e, "ref \"Nope\" is invalid: use 1-64 characters from a-z, 0-9, '_' and '-' ('N' is not allowed)");
        assert!(matches!(p("name: [a]\nversion: 1.0.0\n"), Err(ManifestError::WrongType { .. })));
        assert!(matches!(p("name: 12\nversion: 1.0.0\n"), Err(ManifestError::WrongType { .. })));
    }

    #[test]
    fn short_versions_are_normalized_as_st2_does_and_say_how_they_were_written() {
        for (yaml, want, written) in [
            ("version: 0.2  # old style", "0.2.0", "0.2"),
            ("version: 1", "1.0.0", "1"),
            ("version: 1.10", "1.10.0", "1.10"),
            ("version: \"1.0\"", "1.0.0", "1.0"),
            ("version: '3'", "3.0.0", "3"),
        ] {
            let m = p(&format!("name: x\n{yaml}\n")).unwrap();
            assert_eq!(m.version.to_string(), want, "{yaml}");
            assert_eq!(m.version_written.as_deref(), Some(written), "{yaml}");
        }
        assert_eq!(p("name: x\nversion: 1.0.0\n").unwrap().version_written, None);
        for bad in ["version: 1.", "version: .1", "version: 1.x", "version: -1", "version: 1.0e3"] {
            assert!(matches!(p(&format!("name: x\n{bad}\n")), Err(ManifestError::InvalidVersion { .. })), "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(p("name: x\nversion: 1.0.0\n").unwrap().version, semver::Version::new(1, 0, 0));
        assert_eq!(p("name: x\nversion: 1.0.0-rc.1\n").unwrap().version.pre.as_str(), "rc.1");
        let e = err("name: x\nversion: v1.0.0\n");
        assert!(e.contains("version \"v1.0.0\" is not strict semver") && e.ends_with("write version: 1.0.0"), "{e}");
        let e = err("name: x\nversion: 1.0.0.1\n");
        assert!(e.contains("is not strict semver"), "{e}");
        assert!(err("name: x\nversion: banana\n").ends_with("e.g. version: 1.0.0"));
        assert!(matches!(p("name: x\nversion: [1]\n"), Err(ManifestError::WrongType { .. })));
    }

    #[test]
    fn missing_and_malformed() {
        assert!(matches!(p("name: x\n"), Err(ManifestError::MissingField { field: "version", .. })));
        assert!(matches!(p("name: x\nversion:\n"), Err(ManifestError::MissingField { field: "version", .. })));
        assert!(matches!(p("version: 1.0.0\n"), Err(ManifestError::MissingField { field: "name", .. })));
        assert!(matches!(p("label: X\nversion: 1.0.0\n"), Err(ManifestError::MissingField { field: "name", .. })));
        assert!(matches!(p("- a\n- b\n"), Err(ManifestError::NotAMapping { .. })));
        assert!(matches!(p(""), Err(ManifestError::NotAMapping { .. })));
        assert!(matches!(p("name: x\nkeywords: {a: b}\nversion: 1.0.0\n"), Err(ManifestError::WrongType { .. })));
        let e = p("name: x\nversion: 1.0.0\ndescription: [unclosed\n").unwrap_err();
        let ManifestError::Yaml { line: Some(_), message, .. } = &e else { panic!("{e}") };
        assert!(!message.contains("line 4 column 1"), "location shown once: {e}");
        assert!(matches!(p("name: x\nname: y\nversion: 1.0.0\n"), Err(ManifestError::Yaml { .. })), "duplicate key");
        assert!(matches!(p("name: x\nversion: 1.0.0\n---\nname: y\n"), Err(ManifestError::Yaml { .. })));
        // Tags are data like any other.
        assert!(p("name: x\nversion: 1.0.0\nodd: !custom {a: 1}\n").is_ok());
    }

    fn assert_fast(what: &str, text: &str, ok: impl Fn(&ManifestError) -> bool) {
        let t = Instant::now();
        let e = p(text).unwrap_err();
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
        assert!(ok(&e), "{what}: {e}");
    }

    #[test]
    fn billion_laughs_refused_fast() {
        let mut bomb = String::from(
            "name: x\nversion: 1.0.0\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            bomb.push_str(&format!("{}: &{} [*{x},*{x},*{x},*{x},*{x},*{x},*{x},*{x},*{x}]\n", w[1], w[1], x = w[0]));
        }
        assert_fast("billion laughs", &bomb, |e| matches!(e, ManifestError::AliasBomb { .. }));
        // Under serde_yaml_ng's own repetition limit (jumps <= 100 x events) but
        // quadratic: 23 KB expand to 10 million nodes.
        let quadratic =
            format!("name: x\nversion: 1.0.0\na: &a [{}]\nb: [{}]\n", ["x"; 10_000].join(","), "*a,".repeat(1000));
        assert_fast("quadratic aliases", &quadratic, |e| matches!(e, ManifestError::AliasBomb { .. }));
        // A few aliases are fine.
        assert!(p("name: x\nversion: 1.0.0\na: &a [1, 2]\nb: *a\n").unwrap().extra["b"][1] == 2);
    }

    #[test]
    fn deep_nesting_refused_fast() {
        let n = 20_000; // without the pre-scan libyaml needs ~1 s (release) to ~10 s (debug) here
        assert_fast("deep flow map", &format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)), |e| {
            matches!(e, ManifestError::Yaml { line: Some(1), .. })
        });
        let n = 200;
        assert_fast("deep flow seq", &format!("{}1{}", "[".repeat(n), "]".repeat(n)), |e| {
            e.to_string().contains("nested too deeply")
        });
        let mut block = String::new();
        for i in 0..1000 {
            block.push_str(&format!("{}k:\n", " ".repeat(i)));
        }
        assert_fast("deep block map", &block, |e| e.to_string().contains("nested too deeply"));
    }

    #[test]
    fn too_large_text() {
        let text = format!("name: x\nversion: 1.0.0\ndescription: \"{}\"\n", "x".repeat(1 << 20));
        assert!(matches!(p(&text), Err(ManifestError::TooLarge { .. })));
    }

    #[test]
    fn files_on_disk() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        std::fs::write(dir.join("pack.yaml"), "---\nname: x\nversion: 1.0.0\n").unwrap();
        assert_eq!(read(dir).unwrap().r#ref, "x");

        // Larger than the limit and not YAML at all: refused on size alone.
        let big = std::fs::File::create(dir.join("pack.yaml")).unwrap();
        big.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let e = read(dir).unwrap_err();
        assert!(matches!(e, ManifestError::TooLarge { size, .. } if size == MAX_MANIFEST_BYTES + 1), "{e}");
        std::fs::remove_file(dir.join("pack.yaml")).unwrap();

        std::fs::create_dir(dir.join("pack.yaml")).unwrap();
        assert!(matches!(read(dir), Err(ManifestError::NotAFile { .. })));
        std::fs::remove_dir(dir.join("pack.yaml")).unwrap();

        let e = read(dir).unwrap_err();
        assert!(matches!(e, ManifestError::NotFound { hint: None, .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("pack.yaml not found in {}", dir.display())), "{e}");
        assert!(e.to_string().contains("pack.yml is not read"), "{e}");

        std::fs::create_dir(dir.join("inner")).unwrap();
        std::fs::write(dir.join("inner/pack.yaml"), "name: x\nversion: 1.0.0\n").unwrap();
        let e = read(dir).unwrap_err().to_string();
        let want = format!(
            "pack.yaml not found in {d}; found {d}/inner/pack.yaml — is the pack inside a subfolder?",
            d = dir.display()
        );
        assert_eq!(e, want);
        // A fetched pack's error names the source the user gave, not where it was staged.
        let shown = read(dir).unwrap_err().shown_as(dir, "./my_pack").to_string();
        assert_eq!(
            shown,
            "pack.yaml not found in ./my_pack; found ./my_pack/inner/pack.yaml — is the pack inside a subfolder?"
        );

        std::os::unix::fs::symlink("inner/pack.yaml", dir.join("pack.yaml")).unwrap();
        let e = read(dir).unwrap_err();
        assert!(matches!(e, ManifestError::NotAFile { .. }), "{e}");
        std::fs::remove_file(dir.join("pack.yaml")).unwrap();

        std::fs::write(dir.join("pack.yml"), "name: x\nversion: 1.0.0\n").unwrap();
        let e = read(dir).unwrap_err().to_string();
        assert!(e.contains("pack.yml — only pack.yaml is read"), "{e}");
        std::fs::remove_file(dir.join("pack.yml")).unwrap();

        // Two candidates: no guess.
        std::fs::create_dir(dir.join("other")).unwrap();
        std::fs::write(dir.join("other/pack.yaml"), "name: y\nversion: 1.0.0\n").unwrap();
        assert!(matches!(read(dir), Err(ManifestError::NotFound { hint: None, .. })));
    }

    #[test]
    fn example_pack_reads() {
        let m = p(include_str!("../../../examples/packs/hello_world/pack.yaml")).unwrap();
        assert_eq!((m.r#ref.as_str(), m.version.to_string().as_str()), ("hello_world", "1.0.0"));
        assert!(m.description.is_some() && m.author.is_some() && !m.keywords.is_empty());
    }
}
