//! Reading and checking a pack's `pack.yaml`.
//!
//! The manifest names the pack (`ref`) and its version, which decide where it
//! is stored, so it is read with the rules real StackStorm and Attune packs
//! need (a leading `---`, unknown keys kept, `ref` defaulting to `name`) and
//! the limits hostile input needs (size checked before reading, alias
//! expansion bounded, strict semver, a safe `ref`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

pub const MANIFEST_FILE: &str = "pack.yaml";
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
const MAX_REF_LEN: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct PackManifest {
    #[serde(rename = "ref")]
    pub r#ref: String,
    pub name: String,
    pub version: semver::Version,
    pub description: Option<String>,
    pub author: Option<String>,
    pub email: Option<String>,
    pub keywords: Vec<String>,
    /// Pack dependencies as written (StackStorm lists refs or URLs).
    pub dependencies: Vec<String>,
    pub python_versions: Vec<String>,
    /// Every other top-level key, unchanged.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{}: pack.yaml not found{}", .dir.display(), hint_text(.hint))]
    NotFound { dir: PathBuf, hint: Option<PathBuf> },
    #[error("{}: must be a regular file (symlinks and folders are refused)", .path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: {size} bytes is larger than the {max}-byte limit for a manifest", .path.display())]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{}: invalid YAML{}: {message}", .path.display(), location(*.line, *.column))]
    Yaml { path: PathBuf, line: Option<usize>, column: Option<usize>, message: String },
    #[error("{}: the top level must be a mapping of keys (name, version, …)", .path.display())]
    NotAMapping { path: PathBuf },
    #[error("{}: required field `{field}` is missing", .path.display())]
    MissingField { path: PathBuf, field: &'static str },
    #[error("{}: field `{field}` must be {expected}", .path.display())]
    WrongType { path: PathBuf, field: String, expected: &'static str },
    #[error("{}ref {value:?} is invalid: {reason}", path_prefix(.path))]
    InvalidRef { path: Option<PathBuf>, value: String, reason: String },
    #[error("{}: version {value} is not strict semver ({reason}); write it as MAJOR.MINOR.PATCH, e.g. version: 1.0.0", .path.display())]
    InvalidVersion { path: PathBuf, value: String, reason: String },
    #[error("{}: too many YAML aliases or too deep nesting (refused to expand a possible alias bomb)", .path.display())]
    AliasBomb { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn hint_text(hint: &Option<PathBuf>) -> String {
    match hint {
        Some(p) => format!("; found {} — is the pack inside that subfolder?", p.display()),
        None => " (a pack is a folder with pack.yaml at its root)".to_string(),
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

/// Reads `pack_dir/pack.yaml`.
pub fn read(pack_dir: &Path) -> Result<PackManifest, ManifestError> {
    let path = pack_dir.join(MANIFEST_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::NotFound { dir: pack_dir.to_path_buf(), hint: find_nested(pack_dir) });
        }
        Err(e) => return Err(ManifestError::Io { path, source: e }),
    };
    if !meta.file_type().is_file() {
        return Err(ManifestError::NotAFile { path });
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: meta.len(), max: MAX_MANIFEST_BYTES });
    }
    let bytes = std::fs::read(&path).map_err(|e| ManifestError::Io { path: path.clone(), source: e })?;
    // The file may have grown since the stat.
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: bytes.len() as u64, max: MAX_MANIFEST_BYTES });
    }
    let text = String::from_utf8(bytes).map_err(|_| ManifestError::Yaml {
        path: path.clone(),
        line: None,
        column: None,
        message: "not UTF-8".into(),
    })?;
    parse(&text, &path)
}

/// A `pack.yaml` one folder down, for the "is the pack in a subfolder?" hint.
fn find_nested(dir: &Path) -> Option<PathBuf> {
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(MANIFEST_FILE))
        .filter(|p| p.is_file());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Parses manifest text; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<PackManifest, ManifestError> {
    let path = origin.to_path_buf();
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path, size: text.len() as u64, max: MAX_MANIFEST_BYTES });
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&path, e))?;
    let serde_yaml_ng::Value::Mapping(map) = yaml else {
        return Err(ManifestError::NotAMapping { path });
    };
    let mut fields = Map::new();
    for (k, v) in map {
        let key = match k {
            serde_yaml_ng::Value::String(s) => s,
            other => {
                return Err(ManifestError::WrongType { path, field: format!("{other:?}"), expected: "a string key" });
            }
        };
        let value = serde_json::to_value(&v).map_err(|_| ManifestError::WrongType {
            path: path.clone(),
            field: key.clone(),
            expected: "plain YAML data",
        })?;
        fields.insert(key, value);
    }

    let name = take_string(&mut fields, "name", &path)?
        .ok_or(ManifestError::MissingField { path: path.clone(), field: "name" })?;
    let (r#ref, from_name) = match take_string(&mut fields, "ref", &path)? {
        Some(r) => (r, false),
        None => (name.clone(), true),
    };
    if let Err(reason) = ref_rules(&r#ref) {
        let reason = if from_name {
            format!("{reason} (the ref comes from `name` because `ref` is not set; set `ref:` explicitly)")
        } else {
            reason
        };
        return Err(ManifestError::InvalidRef { path: Some(path), value: r#ref, reason });
    }
    let version = match fields.remove("version") {
        None | Some(Value::Null) => return Err(ManifestError::MissingField { path, field: "version" }),
        Some(Value::String(s)) => semver::Version::parse(s.trim()).map_err(|e| ManifestError::InvalidVersion {
            path: path.clone(),
            value: format!("{s:?}"),
            reason: e.to_string(),
        })?,
        Some(Value::Number(n)) => {
            return Err(ManifestError::InvalidVersion {
                path,
                value: n.to_string(),
                reason: "YAML read it as a number".into(),
            });
        }
        Some(_) => {
            return Err(ManifestError::WrongType { path, field: "version".into(), expected: "a string like 1.0.0" });
        }
    };
    Ok(PackManifest {
        r#ref,
        name,
        version,
        description: take_string(&mut fields, "description", &path)?,
        author: take_string(&mut fields, "author", &path)?,
        email: take_string(&mut fields, "email", &path)?,
        keywords: take_list(&mut fields, "keywords", &path)?,
        dependencies: take_list(&mut fields, "dependencies", &path)?,
        python_versions: take_list(&mut fields, "python_versions", &path)?,
        extra: fields,
    })
}

fn yaml_error(path: &Path, e: serde_yaml_ng::Error) -> ManifestError {
    let message = e.to_string();
    if message.contains("repetition limit") || message.contains("recursion limit") {
        return ManifestError::AliasBomb { path: path.to_path_buf() };
    }
    let loc = e.location();
    ManifestError::Yaml {
        path: path.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message,
    }
}

fn take_string(
    fields: &mut Map<String, Value>,
    key: &'static str,
    path: &Path,
) -> Result<Option<String>, ManifestError> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        // `author: 42` is odd but harmless; a number where a name goes is kept as text.
        Some(Value::Number(n)) if key != "name" && key != "ref" => Ok(Some(n.to_string())),
        Some(_) => Err(ManifestError::WrongType { path: path.to_path_buf(), field: key.into(), expected: "a string" }),
    }
}

/// A list of scalars (`python_versions: [2, 3]` gives "2", "3"); a single
/// scalar is a one-item list. Anything else is kept in `extra`.
fn take_list(fields: &mut Map<String, Value>, key: &'static str, path: &Path) -> Result<Vec<String>, ManifestError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match fields.get(key) {
        None | Some(Value::Null) => {
            fields.remove(key);
            Ok(vec![])
        }
        Some(Value::Array(items)) => {
            let out: Option<Vec<String>> = items.iter().map(scalar).collect();
            match out {
                Some(v) => {
                    fields.remove(key);
                    Ok(v)
                }
                None if key == "dependencies" => Ok(vec![]),
                None => Err(ManifestError::WrongType {
                    path: path.to_path_buf(),
                    field: key.into(),
                    expected: "a list of strings",
                }),
            }
        }
        Some(v) => match scalar(v) {
            Some(s) => {
                fields.remove(key);
                Ok(vec![s])
            }
            // Attune writes dependencies as a mapping; keep it whole in `extra`.
            None if key == "dependencies" => Ok(vec![]),
            None => Err(ManifestError::WrongType {
                path: path.to_path_buf(),
                field: key.into(),
                expected: "a list of strings",
            }),
        },
    }
}

fn ref_rules(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_REF_LEN {
        return Err(format!("use 1-{MAX_REF_LEN} characters from a-z, 0-9, '_' and '-'"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        return Err(format!("{c:?} is not allowed; use 1-{MAX_REF_LEN} characters from a-z, 0-9, '_' and '-'"));
    }
    Ok(())
}

/// Checks a pack ref typed by a user (`attune info <ref>`).
pub fn validate_ref(s: &str) -> Result<(), ManifestError> {
    ref_rules(s).map_err(|reason| ManifestError::InvalidRef { path: None, value: s.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<PackManifest, ManifestError> {
        parse(text, Path::new("pack.yaml"))
    }

    #[test]
    fn stackstorm_style_manifest() {
        // Shape of StackStorm-Exchange packs: leading ---, no ref, extra keys.
        let m = p("---\nname: aws\ndescription: st2 content pack containing Amazon Web Services integrations.\nkeywords:\n  - aws\n  - amazon web services\nversion: 2.0.1\nauthor: StackStorm, Inc.\nemail: info@stackstorm.com\npython_versions:\n  - \"3\"\ncontributors:\n  - a\nstackstorm_version: \">=3.0.0\"\n").unwrap();
        assert_eq!(m.r#ref, "aws");
        assert_eq!(m.version, semver::Version::new(2, 0, 1));
        assert_eq!(m.keywords, vec!["aws", "amazon web services"]);
        assert_eq!(m.python_versions, vec!["3"]);
        assert_eq!(m.extra["stackstorm_version"], ">=3.0.0");
        assert!(m.extra.contains_key("contributors"));
    }

    #[test]
    fn attune_style_manifest() {
        let m = p("ref: core_utils\nlabel: Core Utilities\nname: Core Utilities\nversion: \"1.4.2\"\ndependencies:\n  packs: [\"core@^1.0.0\"]\n  python_version: \">=3.9\"\nruntime_deps:\n  python: \">=3.9\"\n").unwrap();
        assert_eq!(m.r#ref, "core_utils");
        assert_eq!(m.name, "Core Utilities");
        assert!(m.dependencies.is_empty());
        assert!(m.extra["dependencies"]["packs"].is_array());
    }

    #[test]
    fn refs() {
        for bad in ["My Pack", "UPPER", "", "naïve", &"a".repeat(65), "dots.no"] {
            let e = p(&format!("ref: {bad:?}\nname: x\nversion: 1.0.0\n")).unwrap_err();
            assert!(matches!(e, ManifestError::InvalidRef { .. }), "{bad:?}: {e}");
        }
        assert!(p(&format!("ref: {}\nname: x\nversion: 1.0.0\n", "a".repeat(64))).is_ok());
        let e = p("name: My Pack\nversion: 1.0.0\n").unwrap_err().to_string();
        assert!(e.contains("comes from `name`"), "{e}");
        assert!(validate_ref("ok_ref-1").is_ok() && validate_ref("Nope").is_err());
    }

    #[test]
    fn versions() {
        assert!(p("name: x\nversion: 1.0.0-rc.1\n").is_ok());
        let e = p("name: x\nversion: 1.0\n").unwrap_err().to_string();
        assert!(e.contains("version 1 is not strict semver") || e.contains("version 1.0 is not"), "{e}");
        assert!(e.contains("number") && e.contains("1.0.0"), "{e}");
        assert!(matches!(p("name: x\nversion: v1.0.0\n"), Err(ManifestError::InvalidVersion { .. })));
        assert!(matches!(p("name: x\n"), Err(ManifestError::MissingField { field: "version", .. })));
        assert!(matches!(p("version: 1.0.0\n"), Err(ManifestError::MissingField { field: "name", .. })));
        assert!(matches!(p("- a\n- b\n"), Err(ManifestError::NotAMapping { .. })));
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            bomb.push_str(&format!("{}: &{} [*{x},*{x},*{x},*{x},*{x},*{x},*{x},*{x},*{x}]\n", w[1], w[1], x = w[0]));
        }
        bomb.push_str("name: x\nversion: 1.0.0\n");
        let t = std::time::Instant::now();
        let e = p(&bomb).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(matches!(e, ManifestError::AliasBomb { .. }), "{e}");
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(p(&deep).is_err());
    }

    #[test]
    fn files_on_disk() {
        let t = tempfile::tempdir().unwrap();
        let e = read(t.path()).unwrap_err();
        assert!(matches!(e, ManifestError::NotFound { hint: None, .. }));
        std::fs::create_dir(t.path().join("inner")).unwrap();
        std::fs::write(t.path().join("inner/pack.yaml"), "name: x\nversion: 1.0.0\n").unwrap();
        let e = read(t.path()).unwrap_err().to_string();
        assert!(e.contains("is the pack inside that subfolder"), "{e}");
        std::os::unix::fs::symlink("inner/pack.yaml", t.path().join("pack.yaml")).unwrap();
        assert!(matches!(read(t.path()), Err(ManifestError::NotAFile { .. })));
        std::fs::remove_file(t.path().join("pack.yaml")).unwrap();
        std::fs::write(
            t.path().join("pack.yaml"),
            format!("name: x\nversion: 1.0.0\ndescription: \"{}\"\n", "x".repeat(1 << 20)),
        )
        .unwrap();
        assert!(matches!(read(t.path()), Err(ManifestError::TooLarge { .. })));
    }
}
