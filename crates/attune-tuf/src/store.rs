//! The trusted metadata of one repository, kept in a folder the caller gives:
//! `trusted.json` (every role's metadata exactly as received) and the last
//! verified target as `target-{sha256}`.
//!
//! One file for all roles, replaced by one rename, so a crash or a refused
//! update never leaves a new root beside an old timestamp: the folder holds
//! either the previous trusted state or the next one. What is read back is
//! verified again from the root (a tampered file fails like a tampered
//! download), so this module only moves bytes.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "trusted.json";
const FORMAT: &str = "attune-tuf-trusted-v1";
const TARGET_PREFIX: &str = "target-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("trusted metadata: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("trusted metadata {path}: {reason}; remove the folder and add the index again with its root")]
    Corrupt { path: PathBuf, reason: String },
    #[error("trusted metadata {path}: larger than {limit} bytes; remove the folder and add the index again")]
    TooLarge { path: PathBuf, limit: u64 },
}

impl From<std::io::Error> for StoreError {
    fn from(source: std::io::Error) -> Self {
        StoreError::Io { source }
    }
}

/// Every role's metadata as the repository served it (UTF-8 JSON text).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub format: String,
    pub root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
    /// Delegated targets roles by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delegated: BTreeMap<String, String>,
    /// The target verified last, kept for offline use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<StoredTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTarget {
    pub name: String,
    pub sha256: String,
}

impl State {
    pub fn new(root: String) -> State {
        State { format: FORMAT.to_owned(), root, ..State::default() }
    }
}

/// Reads a file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let file = fs_err::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::TooLarge { path: path.to_owned(), limit });
    }
    Ok(bytes)
}

/// The stored state, or `None` when the folder holds none yet.
pub fn load(dir: &Path, limit: u64) -> Result<Option<State>, StoreError> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(&path, limit)?;
    let state: State = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    if state.format != FORMAT {
        return Err(StoreError::Corrupt { path, reason: format!("format {:?}, expected {FORMAT:?}", state.format) });
    }
    Ok(Some(state))
}

/// The stored copy of the last verified target (its hash is checked by the caller).
pub fn load_target(dir: &Path, target: &StoredTarget, limit: u64) -> Result<Vec<u8>, StoreError> {
    if target.sha256.len() != 64 || !target.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Corrupt { path: dir.join(STATE_FILE), reason: "bad target hash".into() });
    }
    read_bounded(&dir.join(format!("{TARGET_PREFIX}{}", target.sha256)), limit)
}

/// Writes `bytes` to `path` atomically: a synced temporary file renamed over
/// the old one, then the folder synced.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| StoreError::Io { source: std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())) })?;
    let with_path = |e: std::io::Error| StoreError::Io {
        source: std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    };
    tmp.write_all(bytes).map_err(with_path)?;
    tmp.as_file().sync_all().map_err(with_path)?;
    tmp.persist(path).map_err(|e| with_path(e.error))?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Commits a new trusted state: the target copy first (named by its hash, so
/// writing it changes nothing the old state refers to), then `trusted.json`
/// in one rename, then older target copies are removed.
pub fn save(dir: &Path, state: &State, target: Option<&[u8]>) -> Result<(), StoreError> {
    fs_err::create_dir_all(dir)?;
    if let (Some(stored), Some(bytes)) = (&state.target, target) {
        let path = dir.join(format!("{TARGET_PREFIX}{}", stored.sha256));
        if !path.exists() {
            write_atomic(dir, &path, bytes)?;
        }
    }
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| StoreError::Corrupt { path: dir.join(STATE_FILE), reason: e.to_string() })?;
    write_atomic(dir, &dir.join(STATE_FILE), &json)?;
    let keep = state.target.as_ref().map(|t| format!("{TARGET_PREFIX}{}", t.sha256));
    for entry in fs_err::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TARGET_PREFIX) && Some(name.as_ref()) != keep.as_deref() {
            // A leftover copy only wastes space; failing here would misreport a committed update.
            let _ = fs_err::remove_file(dir.join(name.as_ref()));
        }
    }
    Ok(())
}
