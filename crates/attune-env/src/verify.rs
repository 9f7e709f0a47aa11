//! Checks a Python environment against what was recorded: the distributions
//! installed (`*.dist-info` in `site-packages`) are exactly the locked set,
//! and every file each `RECORD` lists with a hash still has that hash.
//!
//! Everything read here is treated as hostile (a pack's actions run in this
//! environment and can write to it): `RECORD` files are bounded, and a path
//! in one that leaves the environment is reported, never read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::lock::{PythonLock, normalize_name};

/// Largest `RECORD` read.
const RECORD_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}; check that the environment folder exists and is readable")]
    Io(#[from] std::io::Error),
    #[error("{env}: {reason}; rebuild the environment (install --rebuild-env)")]
    NotAnEnvironment { env: PathBuf, reason: String },
}

/// One way an environment differs from its record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// Recorded, not installed.
    Missing {
        name: String,
        version: String,
    },
    /// Installed, not recorded.
    Unexpected {
        name: String,
        version: String,
    },
    VersionChanged {
        name: String,
        recorded: String,
        installed: String,
    },
    /// A file a `RECORD` lists differs from its hash (`path` relative to the environment).
    FileModified {
        dist: String,
        path: String,
    },
    FileMissing {
        dist: String,
        path: String,
    },
    /// A `RECORD` that cannot be read, or lists a path outside the environment.
    BadRecord {
        dist: String,
        reason: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { name, version } => write!(f, "{name} {version}: recorded but not installed"),
            Difference::Unexpected { name, version } => write!(f, "{name} {version}: installed but not recorded"),
            Difference::VersionChanged { name, recorded, installed } => {
                write!(f, "{name}: recorded {recorded}, installed {installed}")
            }
            Difference::FileModified { dist, path } => write!(f, "{path}: modified (of {dist})"),
            Difference::FileMissing { dist, path } => write!(f, "{path}: missing (of {dist})"),
            Difference::BadRecord { dist, reason } => write!(f, "{dist}: RECORD {reason}"),
        }
    }
}

/// The environment's single `lib/python*/site-packages`.
pub fn site_packages(env: &Path) -> Result<PathBuf, VerifyError> {
    let lib = env.join("lib");
    let mut found = Vec::new();
    for entry in fs_err::read_dir(&lib)? {
        let entry = entry?;
        let p = entry.path().join("site-packages");
        if entry.file_name().to_string_lossy().starts_with("python") && p.is_dir() {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(VerifyError::NotAnEnvironment {
            env: env.to_path_buf(),
            reason: format!("{n} lib/python*/site-packages folders, expected one"),
        }),
    }
}

/// Every difference between `env` and `lock`; empty when they agree.
pub fn verify_python(env: &Path, lock: &PythonLock) -> Result<Vec<Difference>, VerifyError> {
    let site = site_packages(env)?;
    let mut installed: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for entry in fs_err::read_dir(&site)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file_name.strip_suffix(".dist-info") else { continue };
        // `{name}-{version}`: the name has its `-` escaped as `_`.
        let (name, version) = stem.split_once('-').unwrap_or((stem, ""));
        installed.insert(normalize_name(name), (version.to_owned(), entry.path()));
    }
    let mut diffs = Vec::new();
    let recorded: BTreeMap<String, &str> =
        lock.requirements.iter().map(|r| (normalize_name(&r.name), r.version.as_str())).collect();
    for (name, version) in &recorded {
        match installed.get(name) {
            None => diffs.push(Difference::Missing { name: name.clone(), version: (*version).to_owned() }),
            Some((v, _)) if v != version => diffs.push(Difference::VersionChanged {
                name: name.clone(),
                recorded: (*version).to_owned(),
                installed: v.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, (version, dist_info)) in &installed {
        if !recorded.contains_key(name) {
            diffs.push(Difference::Unexpected { name: name.clone(), version: version.clone() });
        }
        check_record(env, &site, name, dist_info, &mut diffs)?;
    }
    Ok(diffs)
}

/// Checks each hashed file one `RECORD` lists.
fn check_record(
    env: &Path,
    site: &Path,
    dist: &str,
    dist_info: &Path,
    diffs: &mut Vec<Difference>,
) -> Result<(), VerifyError> {
    let bad = |reason: String| Difference::BadRecord { dist: dist.to_owned(), reason };
    let record_path = dist_info.join("RECORD");
    let mut text = Vec::new();
    match fs_err::File::open(&record_path) {
        Ok(f) => f.take(RECORD_LIMIT + 1).read_to_end(&mut text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diffs.push(bad("is missing".into()));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if text.len() as u64 > RECORD_LIMIT {
        diffs.push(bad(format!("is larger than {RECORD_LIMIT} bytes")));
        return Ok(());
    }
    let mut rows = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_slice());
    for row in rows.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                diffs.push(bad(format!("is not CSV: {e}")));
                return Ok(());
            }
        };
        let (Some(path), Some(hash)) = (row.get(0), row.get(1)) else { continue };
        if hash.is_empty() {
            continue; // RECORD itself, byte code: listed without a hash.
        }
        let Some(full) = inside(env, &site.join(path)) else {
            diffs.push(bad(format!("lists {path:?}, outside the environment")));
            continue;
        };
        let shown = full.strip_prefix(env).unwrap_or(&full).display().to_string();
        let Some(expected) = hash.strip_prefix("sha256=") else {
            diffs.push(bad(format!("{path:?}: hash {:?} is not sha256", hash.chars().take(20).collect::<String>())));
            continue;
        };
        match digest(&full) {
            Ok(Some(actual)) if actual == expected => {}
            Ok(Some(_)) => diffs.push(Difference::FileModified { dist: dist.to_owned(), path: shown }),
            Ok(None) => diffs.push(Difference::FileMissing { dist: dist.to_owned(), path: shown }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `p` with `.` and `..` resolved lexically, if it stays under `root`.
fn inside(root: &Path, p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    (out.starts_with(root) && out != root).then_some(out)
}

/// A regular file's SHA-256 as `RECORD` writes it (URL-safe base64, no
/// padding); `None` if it is missing or not a regular file (a symlink is not
/// followed).
fn digest(p: &Path) -> std::io::Result<Option<String>> {
    match fs_err::symlink_metadata(p) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut fs_err::File::open(p)?, &mut hasher)?;
    Ok(Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_may_not_leave_the_environment() {
        let root = Path::new("/envs/a-1.0.0");
        let site = root.join("lib/python3.11/site-packages");
        assert_eq!(inside(root, &site.join("../../../bin/cli")), Some(root.join("bin/cli")));
        assert_eq!(inside(root, &site.join("../../../../etc/passwd")), None);
        // An absolute path in RECORD replaces the base when joined.
        let absolute = Path::new("/etc/passwd");
        assert_eq!(inside(root, &site.join(absolute)), None);
        assert_eq!(inside(root, &site.join("../../..")), None);
    }
}
