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

pub mod paths;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions, Permissions};
use thiserror::Error;

pub use paths::PathError;

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
    File { executable: bool },
    Symlink,
}

/// Counters shared with whoever draws progress.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub files: AtomicU64,
}

/// What a finished staging run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub entries: u64,
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
    counters: Arc<Counters>,
    violation: Option<StagingError>,
}

/// An open staged file, owned by the fetcher through the resource table.
pub struct StagedFile {
    path: String,
    file: Option<std::fs::File>,
}

impl StagingWriter {
    /// Opens `root`, an empty folder the caller created for this fetch.
    pub fn new(root: &Path, limits: WriteLimits) -> std::io::Result<Self> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        Ok(StagingWriter {
            root: root.to_path_buf(),
            scratch: None,
            dir,
            limits,
            entries: HashMap::new(),
            links: HashMap::new(),
            folded: HashMap::new(),
            open_files: 0,
            counters: Arc::new(Counters::default()),
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

    /// Ends the run: the first violation, or what was written. Symlinks are
    /// checked once more here, through each other: each alone may stay
    /// inside while a chain of them leads out, in whatever order they came.
    pub fn finish(self) -> Result<Summary, StagingError> {
        if let Some(v) = self.violation {
            return Err(v);
        }
        let mut links: Vec<(&String, &String)> = self.links.iter().collect();
        links.sort();
        for (path, target) in links {
            if self.resolve_through_links(path, target).is_none() {
                return Err(StagingError::SymlinkEscapes(path.clone(), target.clone()));
            }
        }
        Ok(Summary { bytes: self.counters.bytes.load(Ordering::Relaxed), entries: self.entries.len() as u64 })
    }

    /// A path too long to be copied out of the guest at all: refused (and
    /// remembered, like every broken rule) without seeing it.
    pub fn refuse_long_path(&mut self, len: usize) -> StagingError {
        let e = StagingError::InvalidPath(paths::PathError::TooLong { len });
        let _ = self.note::<()>(Err(e.clone()));
        e
    }

    fn note<T>(&mut self, r: Result<T, StagingError>) -> Result<T, StagingError> {
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
            self.register(path, Kind::File { executable })?;
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            let file = self.dir.open_with(path, &opts).map_err(|e| self.io(path, e))?;
            let mode = if executable { 0o755 } else { 0o644 };
            file.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(mode)))
                .map_err(|e| self.io(path, e))?;
            self.open_files += 1;
            Ok(StagedFile { path: path.to_string(), file: Some(file.into_std()) })
        })();
        self.note(r)
    }

    /// `file.write`.
    pub fn write(&mut self, file: &mut StagedFile, data: &[u8]) -> Result<(), StagingError> {
        let r = (|| {
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
            let f = file.file.as_mut().ok_or(StagingError::Closed)?;
            self.add_bytes(data.len() as u64)?;
            f.write_all(data).map_err(|e| StagingError::Io(format!("{}: {e}", self.root.join(&file.path).display())))
        })();
        self.note(r)
    }

    /// `file.finish`, and what dropping a file resource does.
    pub fn close(&mut self, file: &mut StagedFile) -> Result<(), StagingError> {
        match file.file.take() {
            Some(_) => {
                self.open_files = self.open_files.saturating_sub(1);
                Ok(())
            }
            None => Err(StagingError::Closed),
        }
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
    /// folder), copied file to file by the kernel where it can
    /// (`copy_file_range` on Linux) and counted like a write. The mode is
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
            let mut file = self.create_file(path, executable)?;
            let copied = (|| {
                self.add_bytes(len)?;
                let to = file.file.as_mut().ok_or(StagingError::Closed)?;
                // At most what was counted, even if the file grows meanwhile.
                let n = std::io::copy(&mut std::io::Read::take(from, len), to).map_err(|e| self.io(path, e))?;
                // A file that shrank meanwhile counts what was copied.
                self.counters.bytes.fetch_sub(len - n, Ordering::Relaxed);
                Ok(n)
            })();
            let _ = self.close(&mut file);
            copied
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
            let executable = match paths::check(existing).ok().and_then(|_| self.entries.get(existing)) {
                Some(Kind::File { executable }) => *executable,
                _ => return Err(StagingError::BadLink(path.to_string(), existing.to_string())),
            };
            self.prepare(path)?;
            let size = self.dir.metadata(existing).map_err(|e| self.io(existing, e))?.len();
            self.add_bytes(size)?;
            self.register(path, Kind::File { executable })?;
            self.dir.copy(existing, &self.dir, path).map_err(|e| self.io(path, e))?;
            let mode = if executable { 0o755 } else { 0o644 };
            self.dir
                .set_permissions(path, Permissions::from_std(std::fs::Permissions::from_mode(mode)))
                .map_err(|e| self.io(path, e))
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
        assert_eq!(std::fs::read(w.root().join("x/a.txt")).unwrap(), b"hello");
        assert_eq!(mode(&w.root().join("x/a.txt")), 0o644);
        assert_eq!(mode(&w.root().join("run")), 0o755);
        // Not copied, and not a broken rule: a symlink, a missing file, no folder.
        for from in ["link", "out", "missing", "bin"] {
            assert!(matches!(w.copy_from_input("y", &dir, from), Err(StagingError::Io(_))), "{from}");
        }
        assert!(w.violation().is_none());
        // Outside the input: refused by the path rules, and remembered.
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
