//! The host side of the `staging` interface: the only way a fetcher writes.
//!
//! A fetcher has no writable filesystem. Every file, folder and symlink it
//! produces goes through [`StagingWriter`], which checks the path rules,
//! refuses duplicates and case collisions, never writes through a symlink,
//! keeps symlink targets inside the pack, reduces modes to 0644/0755 and
//! counts every byte and file against the fetch's limits. All writes go
//! through a cap-std [`Dir`], so even a bug here cannot reach outside the
//! staging folder. The first violation is sticky: a fetcher that ignores an
//! error and reports success still fails the install.
//!
//! The bytes themselves are written and hashed on other threads
//! (the `pipeline` module), so [`StagingWriter::finish`] hands back the pack's
//! checksum manifest without reading a file again.

pub mod paths;
mod pipeline;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use attune_core::checksum::{Entry, EntryKind};
use cap_std::fs::{Dir, OpenOptions, Permissions};
use thiserror::Error;

pub use paths::PathError;
use pipeline::{Job, Pipeline};

/// Limits on what one fetch may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    pub max_bytes: u64,
    pub max_files: u64,
    pub max_open_files: u32,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits { max_bytes: 1 << 30, max_files: 100_000, max_open_files: 64 }
    }
}

/// Why a staging call failed. Mirrors the WIT `staging-error`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StagingError {
    #[error("invalid path {0}")]
    InvalidPath(#[from] PathError),
    #[error("{}", already_exists(.0, .1))]
    AlreadyExists(String, String),
    #[error("{0:?}: a parent ({1:?}) is a file or symlink, not a directory")]
    NotADirectory(String, String),
    #[error("{0:?}: symlink target {1:?} leaves the pack")]
    SymlinkEscapes(String, String),
    #[error("{0:?}: hard link to {1:?}, which is not an earlier regular file of this pack")]
    BadLink(String, String),
    #[error("the pack is larger than the byte limit of {0} bytes (raise it with --limit-bytes)")]
    TooManyBytes(u64),
    #[error("the pack has more than the file limit of {0} entries (raise it with --limit-files)")]
    TooManyFiles(u64),
    #[error("more than {0} files open at once")]
    TooManyOpenFiles(u32),
    #[error("write to a file that was already finished")]
    Closed,
    #[error("{0}")]
    Io(String),
}

fn already_exists(path: &str, first: &str) -> String {
    if path == first {
        format!("{path:?}: written twice; each path may be written once")
    } else {
        format!(
            "{path:?}: equal to the earlier path {first:?} but for case; two such paths collide on many filesystems"
        )
    }
}

/// How many symlinks one resolution may pass through (as Linux's ELOOP).
const MAX_LINK_HOPS: usize = 40;

impl StagingError {
    /// Whether this error fails the whole fetch even if the fetcher ignores it.
    fn is_violation(&self) -> bool {
        !matches!(self, StagingError::Io(_) | StagingError::Closed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    /// `id` names the file; `lane` is where its bytes are written (a copy
    /// of an earlier file goes where that file's writes went).
    File {
        executable: bool,
        id: u64,
        lane: u64,
    },
    Symlink,
}

/// Counters shared with whoever draws progress.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub files: AtomicU64,
}

/// What a finished staging run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub entries: u64,
    /// Every entry as written, paths relative to the staging root, in no
    /// particular order: what [`attune_core::checksum::tree`] would find
    /// there, hashed on the way in.
    pub tree: Vec<Entry>,
}

/// A validated writer rooted at one staging folder.
pub struct StagingWriter {
    root: PathBuf,
    scratch: Option<PathBuf>,
    dir: Dir,
    limits: WriteLimits,
    entries: HashMap<String, Kind>,
    /// Symlink path → its target, to resolve chains of links at the end.
    links: HashMap<String, String>,
    /// Case-folded path → the spelling that was written first.
    folded: HashMap<String, String>,
    open_files: u32,
    next_id: u64,
    /// Bytes counted for each file so far, by id.
    sizes: HashMap<u64, u64>,
    counters: Arc<Counters>,
    violation: Option<StagingError>,
    pipeline: Pipeline,
}

/// An open staged file, owned by the fetcher through the resource table.
pub struct StagedFile {
    id: u64,
    open: bool,
}

impl StagingWriter {
    /// Opens `root`, an empty folder the caller created for this fetch.
    pub fn new(root: &Path, limits: WriteLimits) -> std::io::Result<Self> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        let counters = Arc::new(Counters::default());
        Ok(StagingWriter {
            root: root.to_path_buf(),
            scratch: None,
            dir,
            limits,
            entries: HashMap::new(),
            links: HashMap::new(),
            folded: HashMap::new(),
            open_files: 0,
            next_id: 0,
            sizes: HashMap::new(),
            pipeline: Pipeline::new(root.to_path_buf(), counters.clone()),
            counters,
            violation: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where scratch blobs go: a folder outside `root`, discarded with it.
    pub fn with_scratch(mut self, dir: PathBuf) -> Self {
        self.scratch = Some(dir);
        self
    }

    pub fn scratch_dir(&self) -> Option<PathBuf> {
        self.scratch.clone()
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The first rule the fetcher broke, if any.
    pub fn violation(&self) -> Option<&StagingError> {
        self.violation.as_ref()
    }

    /// Ends the run once every byte is on disk: the first violation, or
    /// what was written. Symlinks are checked once more here, through each
    /// other: each alone may stay inside while a chain of them leads out, in
    /// whatever order they came.
    pub fn finish(mut self) -> Result<Summary, StagingError> {
        let written = self.pipeline.finish();
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        let mut written = written?;
        let mut links: Vec<(&String, &String)> = self.links.iter().collect();
        links.sort();
        for (path, target) in links {
            if self.resolve_through_links(path, target).is_none() {
                return Err(StagingError::SymlinkEscapes(path.clone(), target.clone()));
            }
        }
        let mut tree = Vec::with_capacity(self.entries.len());
        for (path, kind) in &self.entries {
            let (kind, size, sha256, target) = match *kind {
                Kind::Dir => (EntryKind::Dir, 0, None, None),
                Kind::Symlink => (EntryKind::Symlink, 0, None, self.links.get(path).cloned()),
                Kind::File { executable, .. } => {
                    let w = written.remove(path).ok_or_else(|| {
                        StagingError::Io(format!("{}: never written", self.root.join(path).display()))
                    })?;
                    let kind = if executable { EntryKind::Executable } else { EntryKind::File };
                    (kind, w.size, Some(hex::encode(w.sha256)), None)
                }
            };
            tree.push(Entry { path: path.clone(), kind, size, sha256, target });
        }
        Ok(Summary { bytes: self.counters.bytes.load(Ordering::Relaxed), entries: self.entries.len() as u64, tree })
    }

    /// A path too long to be copied out of the guest at all: refused (and
    /// remembered, like every broken rule) without seeing it.
    pub fn refuse_long_path(&mut self, len: usize) -> StagingError {
        let e = StagingError::InvalidPath(paths::PathError::TooLong { len });
        let _ = self.note::<()>(Err(e.clone()));
        e
    }

    fn note<T>(&mut self, r: Result<T, StagingError>) -> Result<T, StagingError> {
        // A write that failed on the pipeline answers the calls after it.
        let r = match (r, self.pipeline.failure()) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        };
        if let Err(e) = &r
            && e.is_violation()
            && self.violation.is_none()
        {
            self.violation = Some(e.clone());
        }
        r
    }

    fn io(&self, path: &str, e: std::io::Error) -> StagingError {
        StagingError::Io(format!("{}: {e}", self.root.join(path).display()))
    }

    /// Checks a new path: rules, uniqueness, parents; creates missing parents.
    fn prepare(&mut self, path: &str) -> Result<(), StagingError> {
        if let Some(v) = &self.violation {
            // Once broken, nothing more is written.
            return Err(v.clone());
        }
        let parts = paths::check(path)?;
        if let Some(first) = self.folded.get(&paths::case_key(path)) {
            return Err(StagingError::AlreadyExists(path.to_string(), first.clone()));
        }
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            match self.entries.get(&parent) {
                Some(Kind::Dir) => {}
                Some(_) => return Err(StagingError::NotADirectory(path.to_string(), parent)),
                None => self.add_dir(&parent)?,
            }
        }
        Ok(())
    }

    fn new_file_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn register(&mut self, path: &str, kind: Kind) -> Result<(), StagingError> {
        let n = self.entries.len() as u64;
        if n >= self.limits.max_files {
            return Err(StagingError::TooManyFiles(self.limits.max_files));
        }
        self.entries.insert(path.to_string(), kind);
        self.folded.insert(paths::case_key(path), path.to_string());
        self.counters.files.store(n + 1, Ordering::Relaxed);
        Ok(())
    }

    fn add_dir(&mut self, path: &str) -> Result<(), StagingError> {
        if let Some(first) = self.folded.get(&paths::case_key(path)) {
            return Err(StagingError::AlreadyExists(path.to_string(), first.clone()));
        }
        self.register(path, Kind::Dir)?;
        self.dir.create_dir(path).map_err(|e| self.io(path, e))
    }

    fn add_bytes(&mut self, n: u64) -> Result<(), StagingError> {
        let total = self.counters.bytes.load(Ordering::Relaxed).saturating_add(n);
        if total > self.limits.max_bytes {
            return Err(StagingError::TooManyBytes(self.limits.max_bytes));
        }
        self.counters.bytes.store(total, Ordering::Relaxed);
        Ok(())
    }

    /// Counts bytes written elsewhere for this fetch (scratch space).
    pub fn count_bytes(&mut self, n: u64) -> Result<(), StagingError> {
        let r = match &self.violation {
            Some(v) => Err(v.clone()),
            None => self.add_bytes(n),
        };
        self.note(r)
    }

    /// `create-dir`: idempotent for a folder written before (archives often
    /// list a folder after its files).
    pub fn create_dir(&mut self, path: &str) -> Result<(), StagingError> {
        let r = (|| {
            if self.violation.is_none() && self.entries.get(path) == Some(&Kind::Dir) {
                return Ok(());
            }
            self.prepare(path)?;
            self.add_dir(path)
        })();
        self.note(r)
    }

    /// `create-file`.
    pub fn create_file(&mut self, path: &str, executable: bool) -> Result<StagedFile, StagingError> {
        let r = (|| {
            self.prepare(path)?;
            if self.open_files >= self.limits.max_open_files {
                return Err(StagingError::TooManyOpenFiles(self.limits.max_open_files));
            }
            let id = self.new_file_id();
            self.register(path, Kind::File { executable, id, lane: id })?;
            let file = self.open_new(path, executable)?;
            self.pipeline.send(id, Job::Open { id, path: path.to_string(), file })?;
            self.open_files += 1;
            Ok(StagedFile { id, open: true })
        })();
        self.note(r)
    }

    /// A new file in the staging folder, with its normalized mode; readable
    /// too, so that a copy can be hashed where it landed.
    fn open_new(&self, path: &str, executable: bool) -> Result<std::fs::File, StagingError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        let file = self.dir.open_with(path, &opts).map_err(|e| self.io(path, e))?;
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(mode)))
            .map_err(|e| self.io(path, e))?;
        Ok(file.into_std())
    }

    /// `file.write`.
    pub fn write(&mut self, file: &mut StagedFile, data: &[u8]) -> Result<(), StagingError> {
        self.write_owned(file, data.to_vec())
    }

    /// `file.write` of bytes already copied out of the guest: they go to the
    /// pipeline as they are.
    pub fn write_owned(&mut self, file: &mut StagedFile, data: Vec<u8>) -> Result<(), StagingError> {
        let r = (|| {
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
            if !file.open {
                return Err(StagingError::Closed);
            }
            self.add_bytes(data.len() as u64)?;
            *self.sizes.entry(file.id).or_default() += data.len() as u64;
            self.pipeline.send(file.id, Job::Write { id: file.id, data })
        })();
        self.note(r)
    }

    /// `file.finish`, and what dropping a file resource does.
    pub fn close(&mut self, file: &mut StagedFile) -> Result<(), StagingError> {
        if !std::mem::replace(&mut file.open, false) {
            return Err(StagingError::Closed);
        }
        self.open_files = self.open_files.saturating_sub(1);
        self.pipeline.send(file.id, Job::Close { id: file.id })
    }

    /// `write-file`.
    pub fn write_file(&mut self, path: &str, executable: bool, data: &[u8]) -> Result<(), StagingError> {
        let mut f = self.create_file(path, executable)?;
        let r = self.write(&mut f, data);
        let _ = self.close(&mut f);
        r
    }

    /// `create-symlink`.
    pub fn create_symlink(&mut self, path: &str, target: &str) -> Result<(), StagingError> {
        let r = (|| {
            self.prepare(path)?;
            let parts = paths::check(path)?;
            if paths::resolve_link_target(&parts, target).is_none() {
                return Err(StagingError::SymlinkEscapes(path.to_string(), target.to_string()));
            }
            self.register(path, Kind::Symlink)?;
            self.links.insert(path.to_string(), target.to_string());
            self.dir.symlink(target, path).map_err(|e| self.io(path, e))
        })();
        self.note(r)
    }

    /// `copy-input-file`: a new file at `path` with the contents of
    /// `input_path`, a regular file under `input` (the read-only input
    /// folder), copied file to file on a staging thread (a clone where the
    /// filesystem has them) and counted like a write. The mode is
    /// 0755 when the input file has an executable bit. Returns the bytes
    /// copied.
    pub fn copy_from_input(&mut self, path: &str, input: &Dir, input_path: &str) -> Result<u64, StagingError> {
        use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
        let r = (|| {
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
            paths::check(input_path)?;
            let input_io = |e: std::io::Error| StagingError::Io(format!("input {input_path:?}: {e}"));
            // cap-std keeps every step inside `input`; the last one is not
            // followed at all, so a symlink is refused rather than copied.
            let mut opts = OpenOptions::new();
            opts.read(true).follow(FollowSymlinks::No);
            let from = input.open_with(input_path, &opts).map_err(input_io)?.into_std();
            let meta = from.metadata().map_err(input_io)?;
            if !meta.is_file() {
                return Err(StagingError::Io(format!("input {input_path:?}: not a regular file")));
            }
            let executable = meta.permissions().mode() & 0o111 != 0;
            let len = meta.len();
            self.prepare(path)?;
            // Counted before it is copied: at most `len` bytes are, even if
            // the file grows meanwhile (one that shrinks counts what was).
            self.add_bytes(len)?;
            let id = self.new_file_id();
            self.register(path, Kind::File { executable, id, lane: id })?;
            self.sizes.insert(id, len);
            let to = self.open_new(path, executable)?;
            self.pipeline.send(id, Job::Copy { path: path.to_string(), from, to, len })?;
            Ok(len)
        })();
        self.note(r)
    }

    /// Where the link at `path` leads, following staged symlinks on the way;
    /// `None` if it leaves the pack or loops.
    fn resolve_through_links(&self, path: &str, target: &str) -> Option<Vec<String>> {
        let mut at: Vec<String> = path.split('/').map(str::to_string).collect();
        at.pop();
        let mut todo: std::collections::VecDeque<String> = target.split('/').map(str::to_string).collect();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => {}
                ".." => {
                    at.pop()?;
                }
                name => {
                    at.push(name.to_string());
                    if let Some(next) = self.links.get(&at.join("/")) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS || next.starts_with('/') {
                            return None;
                        }
                        at.pop();
                        for p in next.split('/').rev() {
                            todo.push_front(p.to_string());
                        }
                    }
                }
            }
        }
        Some(at)
    }

    /// `link-file`: a copy of an earlier regular file (hard links would let a
    /// later write change two entries).
    pub fn link_file(&mut self, path: &str, existing: &str) -> Result<(), StagingError> {
        let r = (|| {
            let (executable, of, lane) = match paths::check(existing).ok().and_then(|_| self.entries.get(existing)) {
                Some(Kind::File { executable, id, lane }) => (*executable, *id, *lane),
                _ => return Err(StagingError::BadLink(path.to_string(), existing.to_string())),
            };
            self.prepare(path)?;
            // On the earlier file's lane, so its queued writes land before
            // this copy reads it; as long as what was counted for it so far.
            let from = self.dir.open(existing).map_err(|e| self.io(existing, e))?.into_std();
            let size = self.sizes.get(&of).copied().unwrap_or(0);
            self.add_bytes(size)?;
            let id = self.new_file_id();
            self.register(path, Kind::File { executable, id, lane })?;
            self.sizes.insert(id, size);
            let to = self.open_new(path, executable)?;
            self.pipeline.send(lane, Job::Copy { path: path.to_string(), from, to, len: size })
        })();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(limits: WriteLimits) -> (tempfile::TempDir, StagingWriter) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("stage");
        std::fs::create_dir(&root).unwrap();
        let w = StagingWriter::new(&root, limits).unwrap();
        (t, w)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn sorted(mut tree: Vec<Entry>) -> Vec<Entry> {
        tree.sort_by(|a, b| a.path.cmp(&b.path));
        tree
    }

    #[test]
    fn the_tree_hashed_while_staging_is_the_tree_on_disk() {
        let input = tempfile::tempdir().unwrap();
        std::fs::write(input.path().join("big"), vec![7u8; 3 << 20]).unwrap();
        let dir = Dir::open_ambient_dir(input.path(), cap_std::ambient_authority()).unwrap();

        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("pack.yaml", false, b"ref: x\nversion: 1.0.0\n").unwrap();
        // Many files, several chunks each, interleaved: every lane is busy.
        let mut open: Vec<StagedFile> =
            (0..20).map(|i| w.create_file(&format!("actions/a{i}.sh"), i % 3 == 0).unwrap()).collect();
        for round in 0..5u8 {
            for (i, f) in open.iter_mut().enumerate() {
                w.write(f, &vec![round ^ i as u8; 70_000 + i]).unwrap();
            }
        }
        for f in open.iter_mut().take(19) {
            w.close(f).unwrap();
        }
        // Linked while its writes may still be queued: a copy of all of them.
        w.link_file("copy.sh", "actions/a3.sh").unwrap();
        w.copy_from_input("data/big", &dir, "big").unwrap();
        w.link_file("data/big2", "data/big").unwrap();
        w.write_file("empty", false, b"").unwrap();
        w.create_dir("lib/empty").unwrap();
        w.create_symlink("lib/up", "../pack.yaml").unwrap();
        w.create_symlink("dangling", "nowhere").unwrap();
        // The last file is never finished: what was written of it counts.
        let root = w.root().to_path_buf();
        let summary = w.finish().unwrap();
        let on_disk = attune_core::checksum::tree(&root).unwrap();
        assert_eq!(sorted(summary.tree.clone()), on_disk.entries);
        assert_eq!(summary.entries as usize, on_disk.entries.len());
        assert_eq!(summary.bytes, on_disk.total_bytes());
        drop(open);
    }

    #[test]
    fn copies_input_files_counted_and_confined_to_the_input() {
        let input = tempfile::tempdir().unwrap();
        std::fs::write(input.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(input.path().join("bin")).unwrap();
        std::fs::write(input.path().join("bin/run"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(input.path().join("bin/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("a.txt", input.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", input.path().join("out")).unwrap();
        let dir = Dir::open_ambient_dir(input.path(), cap_std::ambient_authority()).unwrap();

        let (_t, mut w) = writer(WriteLimits { max_bytes: 20, ..WriteLimits::default() });
        assert_eq!(w.copy_from_input("x/a.txt", &dir, "a.txt").unwrap(), 5);
        assert_eq!(w.copy_from_input("run", &dir, "bin/run").unwrap(), 10);
        // Not copied, and not a broken rule: a symlink, a missing file, no folder.
        for from in ["link", "out", "missing", "bin"] {
            assert!(matches!(w.copy_from_input("y", &dir, from), Err(StagingError::Io(_))), "{from}");
        }
        assert!(w.violation().is_none());
        let root = w.root().to_path_buf();
        let tree = w.finish().unwrap().tree;
        assert_eq!(std::fs::read(root.join("x/a.txt")).unwrap(), b"hello");
        assert_eq!(mode(&root.join("x/a.txt")), 0o644);
        assert_eq!(mode(&root.join("run")), 0o755);
        assert_eq!(sorted(tree), attune_core::checksum::tree(&root).unwrap().entries);

        // Outside the input: refused by the path rules, and remembered.
        let (_t, mut w) = writer(WriteLimits::default());
        assert!(matches!(w.copy_from_input("z", &dir, "../etc/passwd"), Err(StagingError::InvalidPath(_))));
        assert!(w.violation().is_some());

        // The byte limit holds as for a write.
        let (_t, mut w) = writer(WriteLimits { max_bytes: 12, ..WriteLimits::default() });
        w.copy_from_input("a", &dir, "a.txt").unwrap();
        assert_eq!(w.copy_from_input("b", &dir, "bin/run"), Err(StagingError::TooManyBytes(12)));
        assert_eq!(w.counters().bytes.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn writes_files_dirs_links_with_normalized_modes() {
        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("pack.yaml", false, b"ref: x").unwrap();
        w.write_file("actions/run.sh", true, b"#!/bin/sh").unwrap();
        w.create_dir("empty").unwrap();
        w.create_dir("actions").unwrap();
        w.create_symlink("actions/alias.sh", "run.sh").unwrap();
        w.create_symlink("up", "actions/../pack.yaml").unwrap();
        w.link_file("copy.sh", "actions/run.sh").unwrap();
        let root = w.root().to_path_buf();
        let s = w.finish().unwrap();
        assert_eq!(s.bytes, 6 + 9 + 9);
        assert_eq!(mode(&root.join("pack.yaml")), 0o644);
        assert_eq!(mode(&root.join("actions/run.sh")), 0o755);
        assert_eq!(mode(&root.join("copy.sh")), 0o755);
        assert_eq!(std::fs::read_link(root.join("actions/alias.sh")).unwrap(), Path::new("run.sh"));
        assert!(root.join("empty").is_dir());
    }

    #[test]
    fn refuses_duplicates_and_case_collisions() {
        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("README.md", false, b"").unwrap();
        assert!(matches!(w.write_file("README.md", false, b""), Err(StagingError::AlreadyExists(..))));
        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("README.md", false, b"").unwrap();
        assert!(matches!(w.write_file("readme.md", false, b""), Err(StagingError::AlreadyExists(..))));
        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("Dir/a", false, b"").unwrap();
        assert!(matches!(w.write_file("dir/b", false, b""), Err(StagingError::AlreadyExists(..))));
    }

    #[test]
    fn never_writes_through_a_symlink_or_a_file() {
        let (t, mut w) = writer(WriteLimits::default());
        std::fs::create_dir(t.path().join("outside")).unwrap();
        w.create_symlink("inside", "sub").unwrap();
        w.create_dir("sub").unwrap();
        assert!(matches!(w.write_file("inside/x", false, b"x"), Err(StagingError::NotADirectory(..))));
        let (_t, mut w) = writer(WriteLimits::default());
        w.write_file("f", false, b"").unwrap();
        assert!(matches!(w.write_file("f/x", false, b"x"), Err(StagingError::NotADirectory(..))));
    }

    #[test]
    fn refuses_escaping_symlinks_and_paths() {
        let (t, mut w) = writer(WriteLimits::default());
        assert!(matches!(w.create_symlink("l", "../x"), Err(StagingError::SymlinkEscapes(..))));
        let (_t2, mut w2) = writer(WriteLimits::default());
        assert!(matches!(w2.create_symlink("l", "/etc/passwd"), Err(StagingError::SymlinkEscapes(..))));
        assert!(matches!(w.write_file("../x", false, b""), Err(StagingError::SymlinkEscapes(..))));
        assert!(!t.path().join("x").exists());
        let (_t3, mut w3) = writer(WriteLimits::default());
        assert!(matches!(
            w3.write_file("/abs", false, b""),
            Err(StagingError::InvalidPath(PathError::Absolute { .. }))
        ));
    }

    #[test]
    fn regression_symlink_chain_escapes_in_either_order() {
        // Each target alone stays inside; together `x/out` is the packs folder.
        for order in [["x/y/root", "x/out"], ["x/out", "x/y/root"]] {
            let (_t, mut w) = writer(WriteLimits::default());
            w.create_dir("x/y").unwrap();
            for link in order {
                let target = if link == "x/y/root" { "../.." } else { "y/root/.." };
                w.create_symlink(link, target).unwrap();
            }
            assert!(matches!(w.finish(), Err(StagingError::SymlinkEscapes(p, _)) if p == "x/out"), "{order:?}");
        }
        // Chains that stay inside, and dangling links, are fine.
        let (_t, mut w) = writer(WriteLimits::default());
        w.create_dir("a/b").unwrap();
        w.create_symlink("a/b/up", "..").unwrap();
        w.create_symlink("a/top", "b/up/..").unwrap();
        w.create_symlink("dangling", "nowhere/x").unwrap();
        w.finish().unwrap();
        // A loop is refused, not followed forever.
        let (_t, mut w) = writer(WriteLimits::default());
        w.create_symlink("l1", "l2").unwrap();
        w.create_symlink("l2", "l1/x").unwrap();
        assert!(matches!(w.finish(), Err(StagingError::SymlinkEscapes(..))));
    }

    #[test]
    fn first_violation_is_sticky() {
        let (_t, mut w) = writer(WriteLimits::default());
        let _ = w.write_file("../escape", false, b"x");
        assert!(w.write_file("pack.yaml", false, b"ok").is_err(), "nothing more is written after a violation");
        assert!(matches!(w.finish(), Err(StagingError::InvalidPath(PathError::ParentDir { .. }))));
    }

    #[test]
    fn enforces_byte_and_file_limits() {
        let (_t, mut w) = writer(WriteLimits { max_bytes: 10, ..Default::default() });
        let mut f = w.create_file("a", false).unwrap();
        w.write(&mut f, b"12345").unwrap();
        w.write(&mut f, b"12345").unwrap();
        assert_eq!(w.write(&mut f, b"1"), Err(StagingError::TooManyBytes(10)));
        assert!(matches!(w.finish(), Err(StagingError::TooManyBytes(10))));

        let (_t, mut w) = writer(WriteLimits { max_files: 3, ..Default::default() });
        w.write_file("a/b", false, b"").unwrap(); // a, a/b
        w.write_file("c", false, b"").unwrap();
        assert_eq!(w.write_file("d", false, b""), Err(StagingError::TooManyFiles(3)));

        let (_t, mut w) = writer(WriteLimits { max_open_files: 2, ..Default::default() });
        let _a = w.create_file("a", false).unwrap();
        let mut b = w.create_file("b", false).unwrap();
        assert_eq!(w.create_file("c", false).err(), Some(StagingError::TooManyOpenFiles(2)));
        w.close(&mut b).unwrap();
    }

    #[test]
    fn hard_links_only_to_earlier_regular_files() {
        let (_t, mut w) = writer(WriteLimits::default());
        w.create_symlink("l", "x").unwrap();
        assert!(matches!(w.link_file("a", "l"), Err(StagingError::BadLink(..))));
        let (_t, mut w) = writer(WriteLimits::default());
        assert!(matches!(w.link_file("a", "missing"), Err(StagingError::BadLink(..))));
        let (_t, mut w) = writer(WriteLimits::default());
        assert!(matches!(w.link_file("a", "../../etc/passwd"), Err(StagingError::BadLink(..))));
    }
}
