//! Deterministic SHA-256 checksums of pack directories and single files.
//!
//! attune proves an installed pack's integrity with a tree checksum, and
//! `attune verify` has to say *which* files changed, so a tree checksum is
//! always computed together with the per-entry [`TreeManifest`] it is the
//! digest of. The manifest is stored (as JSON) next to the digest;
//! [`diff`] compares two manifests and [`TreeManifest::recompute_digest`]
//! proves a stored manifest still matches its digest.
//!
//! The byte format is specified in `docs/checksum.md` (with golden vectors and
//! a reference implementation); change it only by adding a new [`Algorithm`].
//!
//! A single file (not a directory) is checksummed as the plain SHA-256 of its
//! bytes, printed `sha256:<hex>`, so it can be compared with `sha256sum`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod legacy;
#[cfg(all(test, unix))]
mod tests;

pub use legacy::attune_pack_file_v1;

/// Read buffer per hashing thread. Large enough that syscall overhead is
/// negligible next to SHA-NI (~2 GB/s/core), small enough to stay in L2.
const BUF_SIZE: usize = 256 * 1024;

/// Domain-separation header hashed before the entries of a `sha256-tree-v1` tree.
const TREE_V1_HEADER: &[u8] = b"attune-tree-v1\n";

/// Prefix of a plain single-file checksum.
const SHA256_PREFIX: &str = "sha256";

/// Prefix of Attune's legacy directory checksum (see [`attune_pack_file_v1`]).
const ATTUNE_PACK_FILE_V1_PREFIX: &str = "attune-pack-file-v1";

/// A named tree-hash algorithm. New formats are added as new variants; existing
/// ones never change, so stored checksums stay verifiable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha256-tree-v1`, specified in `docs/checksum.md`.
    TreeV1,
}

impl Algorithm {
    /// All known algorithms, for error messages and `--help` texts.
    pub const ALL: &[Algorithm] = &[Algorithm::TreeV1];

    /// What new installs are checksummed with.
    pub const CURRENT: Algorithm = Algorithm::TreeV1;

    /// The algorithm a stored tree checksum (`sha256-tree-v1:…`) was made
    /// with; [`Algorithm::CURRENT`] for text that names none.
    pub fn of_stored(checksum: &str) -> Algorithm {
        checksum.parse::<Checksum>().ok().and_then(|c| c.algorithm()).unwrap_or(Algorithm::CURRENT)
    }

    /// The name used as the prefix of the printed checksum.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TreeV1 => "sha256-tree-v1",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = ChecksumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| ChecksumError::UnknownAlgorithm { name: s.to_owned() })
    }
}

impl Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a [`Checksum`] is a digest of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// Plain SHA-256 of one file's bytes (`sha256:<hex>`).
    Sha256,
    /// A directory tree hashed with the given algorithm (`<name>:<hex>`).
    Tree(Algorithm),
    /// Attune's legacy directory checksum (`attune-pack-file-v1:<hex>`):
    /// regular files only, framed path and content, no manifest. Only checked
    /// against registry indexes, never recorded as a pack's checksum.
    AttunePackFileV1,
}

impl ChecksumKind {
    /// The printed prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            ChecksumKind::Sha256 => SHA256_PREFIX,
            ChecksumKind::Tree(a) => a.name(),
            ChecksumKind::AttunePackFileV1 => ATTUNE_PACK_FILE_V1_PREFIX,
        }
    }
}

/// A printed-and-parsed checksum: `sha256-tree-v1:<hex>`, `sha256:<hex>` or
/// `attune-pack-file-v1:<hex>`.
///
/// Equality compares kind and digest, so a file checksum never equals a tree
/// checksum. Serialized as its printed string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum {
    kind: ChecksumKind,
    bytes: [u8; 32],
}

impl Checksum {
    pub fn new(kind: ChecksumKind, bytes: [u8; 32]) -> Self {
        Checksum { kind, bytes }
    }

    pub fn kind(&self) -> ChecksumKind {
        self.kind
    }

    /// The tree algorithm, or `None` for a plain file checksum (or Attune's
    /// legacy one, which has no manifest).
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.kind {
            ChecksumKind::Sha256 | ChecksumKind::AttunePackFileV1 => None,
            ChecksumKind::Tree(a) => Some(a),
        }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The digest as 64 lowercase hex digits, without prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

impl FromStr for Checksum {
    type Err = ChecksumError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ChecksumError::InvalidChecksum { input: input.to_owned(), reason };
        let Some((prefix, digest)) = input.split_once(':') else {
            return Err(invalid(format!(
                "expected `<algorithm>:<hex>`, e.g. `{}:<64 hex digits>`",
                Algorithm::TreeV1.name()
            )));
        };
        let kind = if prefix == SHA256_PREFIX {
            ChecksumKind::Sha256
        } else if prefix == ATTUNE_PACK_FILE_V1_PREFIX {
            ChecksumKind::AttunePackFileV1
        } else if let Ok(a) = prefix.parse::<Algorithm>() {
            ChecksumKind::Tree(a)
        } else {
            let mut known: Vec<&str> = vec![SHA256_PREFIX];
            known.extend(Algorithm::ALL.iter().map(|a| a.name()));
            known.push(ATTUNE_PACK_FILE_V1_PREFIX);
            return Err(invalid(format!("unknown algorithm `{prefix}` (known: {})", known.join(", "))));
        };
        if digest.len() != 64 {
            return Err(invalid(format!("digest must be 64 hex digits, got {}", digest.len())));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest, &mut bytes).map_err(|e| invalid(format!("digest is not hex: {e}")))?;
        Ok(Checksum { kind, bytes })
    }
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The type of a tree entry. Part of the digest, so flipping the exec bit or
/// replacing a file with a symlink changes the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    /// A regular file with any of the `0o111` mode bits set.
    Executable,
    Symlink,
}

impl EntryKind {
    /// The kind byte of the v1 record.
    fn tag(self) -> u8 {
        match self {
            EntryKind::Dir => b'd',
            EntryKind::File => b'f',
            EntryKind::Executable => b'x',
            EntryKind::Symlink => b'l',
        }
    }

    fn is_regular(self) -> bool {
        matches!(self, EntryKind::File | EntryKind::Executable)
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Dir => "dir",
            EntryKind::File => "file",
            EntryKind::Executable => "executable",
            EntryKind::Symlink => "symlink",
        })
    }
}

/// One entry of a tree: everything the digest covers, plus the size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the root, `/`-separated, no `.`/`..`/empty components.
    pub path: String,
    pub kind: EntryKind,
    /// Content length for files; 0 for dirs and symlinks. Not hashed (the
    /// content digest already commits to it); kept for progress and reports.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content, for files and executables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The link target exactly as stored (not resolved), for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A tree checksum together with the sorted entries it was computed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeManifest {
    pub algorithm: Algorithm,
    pub digest: Checksum,
    /// Sorted by the bytes of `path`, unique.
    pub entries: Vec<Entry>,
}

impl TreeManifest {
    /// Builds a manifest from entries in any order, computing its digest.
    pub fn from_entries(algorithm: Algorithm, mut entries: Vec<Entry>) -> Result<Self, ChecksumError> {
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let digest = digest_entries(algorithm, &entries)?;
        Ok(TreeManifest { algorithm, digest, entries })
    }

    /// Recomputes the digest from `entries` alone (e.g. after loading the
    /// manifest from the database). Fails if an entry is malformed.
    pub fn recompute_digest(&self) -> Result<Checksum, ChecksumError> {
        digest_entries(self.algorithm, &self.entries)
    }

    /// Checks that `digest` is the digest of `entries`, i.e. the stored
    /// manifest was not altered.
    pub fn validate(&self) -> Result<(), ChecksumError> {
        let actual = self.recompute_digest()?;
        if actual == self.digest {
            Ok(())
        } else {
            Err(ChecksumError::ManifestMismatch { expected: self.digest, actual })
        }
    }

    /// Sum of the sizes of all regular files.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().filter(|e| e.kind.is_regular()).map(|e| e.size).sum()
    }

    /// Number of regular files (plain and executable).
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.kind.is_regular()).count()
    }
}

/// What [`path`] computed: a tree for a directory, a plain hash for a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Computed {
    Tree(TreeManifest),
    File { checksum: Checksum, size: u64 },
}

impl Computed {
    pub fn checksum(&self) -> &Checksum {
        match self {
            Computed::Tree(m) => &m.digest,
            Computed::File { checksum, .. } => checksum,
        }
    }
}

/// One difference between an expected and an actual manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Same kind (file or executable), different content.
    Modified {
        path: String,
    },
    Added {
        path: String,
        kind: EntryKind,
    },
    Removed {
        path: String,
        kind: EntryKind,
    },
    KindChanged {
        path: String,
        from: EntryKind,
        to: EntryKind,
    },
    Retargeted {
        path: String,
        from: String,
        to: String,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Modified { path }
            | Change::Added { path, .. }
            | Change::Removed { path, .. }
            | Change::KindChanged { path, .. }
            | Change::Retargeted { path, .. } => path,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Modified { path } => write!(f, "modified: {path}"),
            Change::Added { path, kind } => write!(f, "added: {path} ({kind})"),
            Change::Removed { path, kind } => write!(f, "removed: {path} ({kind})"),
            Change::KindChanged { path, from, to } => {
                write!(f, "kind changed: {path} ({from} -> {to})")
            }
            Change::Retargeted { path, from, to } => {
                write!(f, "retargeted: {path} ({from} -> {to})")
            }
        }
    }
}

/// Errors read "path: what went wrong".
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: unsupported file type: {kind} (packs may contain only files, directories and symlinks)", path.display())]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    #[error("{}: file name is not valid UTF-8 (packs must use UTF-8 names)", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("{}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{input}: invalid checksum: {reason}")]
    InvalidChecksum { input: String, reason: String },
    #[error("{name}: unknown checksum algorithm")]
    UnknownAlgorithm { name: String },
    #[error("{path}: invalid manifest entry: {reason}")]
    InvalidEntry { path: String, reason: String },
    #[error("manifest digest {expected} does not match its entries ({actual})")]
    ManifestMismatch { expected: Checksum, actual: Checksum },
    #[error(
        "{}: is a symlink, and Attune's legacy checksum (attune-pack-file-v1) cannot cover symlinks; \
         publish this pack with a sha256-tree-v1 checksum instead",
        path.display()
    )]
    LegacySymlink { path: PathBuf },
}

impl ChecksumError {
    fn io(path: &Path, source: io::Error) -> Self {
        ChecksumError::Io { path: path.to_owned(), source }
    }
}

/// Checksums the directory `root` with the current algorithm.
pub fn tree(root: &Path) -> Result<TreeManifest, ChecksumError> {
    tree_with_progress(root, &|_| {})
}

/// Checksums `root` with `algorithm`: how a stored checksum is checked, with
/// the algorithm it was made with, never the one new installs use.
pub fn tree_as(root: &Path, algorithm: Algorithm) -> Result<TreeManifest, ChecksumError> {
    tree_impl(root, algorithm, &|_| {})
}

/// Like [`tree`], calling `progress` with the number of bytes hashed since its
/// previous call (an increment, suitable for `ProgressBar::inc`). It is called
/// from several threads.
pub fn tree_with_progress(root: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<TreeManifest, ChecksumError> {
    tree_impl(root, Algorithm::CURRENT, progress)
}

fn tree_impl(
    root: &Path,
    algorithm: Algorithm,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<TreeManifest, ChecksumError> {
    // The root (only) is followed if it is a symlink.
    let meta = std::fs::metadata(root).map_err(|e| ChecksumError::io(root, e))?;
    if !meta.is_dir() {
        return Err(ChecksumError::NotADirectory { path: root.to_owned() });
    }
    let (mut entries, files) = walk(root)?;

    // Hashing dominates, so files are hashed in parallel; each rayon job
    // reuses one buffer (map_init) instead of allocating per file.
    let hashed: Vec<Entry> = files
        .into_par_iter()
        .map_init(
            || vec![0u8; BUF_SIZE],
            |buf, (path, full)| {
                let h = hash_file(&full, buf, progress)?;
                Ok(Entry {
                    path,
                    kind: if h.executable { EntryKind::Executable } else { EntryKind::File },
                    size: h.size,
                    sha256: Some(hex::encode(h.digest)),
                    target: None,
                })
            },
        )
        .collect::<Result<_, ChecksumError>>()?;
    entries.extend(hashed);
    TreeManifest::from_entries(algorithm, entries)
}

/// Plain SHA-256 of one file's bytes (symlinks followed), equal to `sha256sum`.
pub fn file(path: &Path) -> Result<Checksum, ChecksumError> {
    let meta = std::fs::metadata(path).map_err(|e| ChecksumError::io(path, e))?;
    check_regular(path, &meta)?;
    let mut buf = vec![0u8; BUF_SIZE];
    let h = hash_file(path, &mut buf, &|_| {})?;
    Ok(Checksum::new(ChecksumKind::Sha256, h.digest))
}

/// Checksums whatever `p` is: a directory as a tree, a file as plain SHA-256.
pub fn path(p: &Path) -> Result<Computed, ChecksumError> {
    let meta = std::fs::metadata(p).map_err(|e| ChecksumError::io(p, e))?;
    if meta.is_dir() {
        return tree(p).map(Computed::Tree);
    }
    check_regular(p, &meta)?;
    let mut buf = vec![0u8; BUF_SIZE];
    let h = hash_file(p, &mut buf, &|_| {})?;
    Ok(Computed::File { checksum: Checksum::new(ChecksumKind::Sha256, h.digest), size: h.size })
}

/// Compares two manifests entry by entry; the result is sorted by path.
///
/// A file whose kind changed between plain and executable *and* whose content
/// changed yields both `KindChanged` and `Modified`.
pub fn diff(expected: &TreeManifest, actual: &TreeManifest) -> Vec<Change> {
    // Maps, not a merge of the vectors: a hand-edited manifest may be unsorted.
    let old: BTreeMap<&str, &Entry> = expected.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &Entry> = actual.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();

    let mut changes = Vec::new();
    for p in paths {
        let path = p.to_owned();
        match (old.get(p), new.get(p)) {
            (Some(o), None) => changes.push(Change::Removed { path, kind: o.kind }),
            (None, Some(n)) => changes.push(Change::Added { path, kind: n.kind }),
            (Some(o), Some(n)) => {
                if o.kind != n.kind {
                    changes.push(Change::KindChanged { path: path.clone(), from: o.kind, to: n.kind });
                }
                if o.kind.is_regular() && n.kind.is_regular() && o.sha256 != n.sha256 {
                    changes.push(Change::Modified { path });
                } else if o.kind == EntryKind::Symlink && n.kind == EntryKind::Symlink && o.target != n.target {
                    changes.push(Change::Retargeted {
                        path,
                        from: o.target.clone().unwrap_or_default(),
                        to: n.target.clone().unwrap_or_default(),
                    });
                }
            }
            (None, None) => unreachable!("path came from one of the maps"),
        }
    }
    changes
}

/// Walks `root` without following symlinks. Returns the finished dir/symlink
/// entries and the regular files still to hash as (relative, full) paths.
type Walked = (Vec<Entry>, Vec<(String, PathBuf)>);

fn walk(root: &Path) -> Result<Walked, ChecksumError> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    // The file type comes from readdir (d_type), so the walk itself costs no
    // stat per file; mode and size are taken from the open file while hashing.
    for item in walkdir::WalkDir::new(root).min_depth(1).follow_links(false).follow_root_links(true) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            let source = e.into_io_error().unwrap_or_else(|| io::Error::other("filesystem loop"));
            ChecksumError::Io { path, source }
        })?;
        let full = item.path();
        let rel = relative_path(root, full)?;
        let ft = item.file_type();
        if ft.is_dir() {
            entries.push(Entry { path: rel, kind: EntryKind::Dir, size: 0, sha256: None, target: None });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(full).map_err(|e| ChecksumError::io(full, e))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| ChecksumError::NonUtf8Path { path: full.to_owned() })?;
            entries.push(Entry { path: rel, kind: EntryKind::Symlink, size: 0, sha256: None, target: Some(target) });
        } else if ft.is_file() {
            files.push((rel, full.to_owned()));
        } else {
            return Err(ChecksumError::UnsupportedFileType { path: full.to_owned(), kind: special_kind(&ft) });
        }
    }
    Ok((entries, files))
}

/// `full` relative to `root`, as a `/`-separated UTF-8 string.
fn relative_path(root: &Path, full: &Path) -> Result<String, ChecksumError> {
    let rel = full.strip_prefix(root).expect("walkdir yields paths under the root");
    let mut out = String::with_capacity(rel.as_os_str().len());
    for component in rel.components() {
        let name =
            component.as_os_str().to_str().ok_or_else(|| ChecksumError::NonUtf8Path { path: full.to_owned() })?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(name);
    }
    Ok(out)
}

fn special_kind(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        } else if ft.is_socket() {
            return "socket";
        } else if ft.is_block_device() {
            return "block device";
        } else if ft.is_char_device() {
            return "character device";
        }
    }
    let _ = ft;
    "special file"
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), ChecksumError> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(ChecksumError::UnsupportedFileType { path: path.to_owned(), kind: special_kind(&meta.file_type()) })
    }
}

struct Hashed {
    digest: [u8; 32],
    size: u64,
    executable: bool,
}

/// Streams one regular file through SHA-256. Mode and type come from the
/// opened descriptor, so they describe the same inode as the hashed bytes.
fn hash_file(path: &Path, buf: &mut [u8], progress: &(dyn Fn(u64) + Sync)) -> Result<Hashed, ChecksumError> {
    let err = |e| ChecksumError::io(path, e);
    let mut f = File::open(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    check_regular(path, &meta)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        progress(n as u64);
    }
    Ok(Hashed { digest: hasher.finalize().into(), size, executable: is_executable(&meta) })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// The v1 digest over entries that must already be sorted by path bytes.
fn digest_entries(algorithm: Algorithm, entries: &[Entry]) -> Result<Checksum, ChecksumError> {
    match algorithm {
        Algorithm::TreeV1 => {}
    }
    let mut h = Sha256::new();
    h.update(TREE_V1_HEADER);
    let mut prev: Option<&str> = None;
    for e in entries {
        let bad = |reason: &str| ChecksumError::InvalidEntry { path: e.path.clone(), reason: reason.to_owned() };
        // Sorted and unique is what makes the digest independent of walk order.
        if prev.is_some_and(|p| p >= e.path.as_str()) {
            return Err(bad("entries are not sorted by path or contain duplicates"));
        }
        prev = Some(&e.path);
        validate_path(&e.path).map_err(bad)?;

        h.update([e.kind.tag()]);
        update_bytes(&mut h, e.path.as_bytes());
        match e.kind {
            EntryKind::Dir => {}
            EntryKind::File | EntryKind::Executable => {
                let hex_digest = e.sha256.as_deref().ok_or_else(|| bad("file without sha256"))?;
                let mut content = [0u8; 32];
                // Lowercase only, so the stored manifest has one spelling.
                if hex_digest.len() != 64 || hex_digest.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(bad("sha256 must be 64 lowercase hex digits"));
                }
                hex::decode_to_slice(hex_digest, &mut content)
                    .map_err(|_| bad("sha256 must be 64 lowercase hex digits"))?;
                h.update(content);
            }
            EntryKind::Symlink => {
                let target = e.target.as_deref().ok_or_else(|| bad("symlink without target"))?;
                update_bytes(&mut h, target.as_bytes());
            }
        }
    }
    Ok(Checksum::new(ChecksumKind::Tree(algorithm), h.finalize().into()))
}

/// Length-prefixed (u64 big-endian), so no two entry lists share an encoding.
fn update_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("path must be relative with no empty, `.` or `..` components");
    }
    Ok(())
}
