//! Versioned pack storage: `{packs_dir}/{ref}-{version}/`.
//!
//! Nothing reaches a pack folder except by one rename of a finished, synced
//! tree. Fetches write into private staging folders under
//! `{packs_dir}/.attune/staging/`, each owned by a live process through a
//! lock file, so leftovers of a killed install are recognised (their lock is
//! free) and removed by the next run. Replacing a version swaps the two trees
//! atomically (`renameat2(RENAME_EXCHANGE)`), so the old copy stays valid
//! until the new one is in place. A per-pack lock file serialises processes
//! that install or remove the same pack.
//!
//! The active version of a pack is the symlink `{packs_dir}/{ref}` →
//! `{ref}-{version}` (relative, so the folder can move). It is switched by
//! creating a new link under `.attune/` and renaming it over the old one, so
//! a reader sees the old target or the new one, never no link.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{CWD, RenameFlags};
use thiserror::Error;

/// Our own state inside the packs folder; the name cannot be a pack's.
const META_DIR: &str = ".attune";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: already exists; reinstall with --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path}: not installed on disk")]
    Missing { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The packs folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A private folder a fetch writes into; removed when dropped.
#[derive(Debug)]
pub struct StagingDir {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl StagingDir {
    /// Where the pack goes (a child, so a swapped-out old tree lands here too).
    pub fn pack_path(&self) -> PathBuf {
        self.dir.join("pack")
    }

    /// Scratch space for the fetch, never part of the pack.
    pub fn scratch_path(&self) -> PathBuf {
        self.dir.join("scratch")
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Held while a process changes one pack.
#[derive(Debug)]
pub struct PackLock {
    _file: File,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for d in ["staging", "locks", "trash"] {
            let p = root.join(META_DIR).join(d);
            std::fs::create_dir_all(&p).map_err(|e| StoreError::Io { path: p.clone(), source: e })?;
        }
        let root = std::fs::canonicalize(root).map_err(|e| StoreError::Io { path: root.to_path_buf(), source: e })?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir_name(pack_ref: &str, version: &semver::Version) -> String {
        format!("{pack_ref}-{version}")
    }

    pub fn pack_dir(&self, pack_ref: &str, version: &semver::Version) -> PathBuf {
        self.root.join(Self::dir_name(pack_ref, version))
    }

    fn meta(&self, sub: &str) -> PathBuf {
        self.root.join(META_DIR).join(sub)
    }

    /// A new staging folder owned by this process.
    pub fn new_staging(&self) -> Result<StagingDir, StoreError> {
        let base = self.meta("staging");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let id = format!("{}-{nanos:x}", std::process::id());
        // The lock exists before the folder, so a folder without a held lock is garbage.
        let lock_path = base.join(format!("{id}.lock"));
        let lock = OpenOptions::new().create_new(true).write(true).open(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let dir = base.join(&id);
        std::fs::create_dir(&dir).map_err(|e| StoreError::Io { path: dir.clone(), source: e })?;
        std::fs::create_dir(dir.join("pack")).map_err(|e| StoreError::Io { path: dir.clone(), source: e })?;
        Ok(StagingDir { dir, lock_path, _lock: lock })
    }

    fn lock_file(&self, pack_ref: &str) -> Result<(File, PathBuf), StoreError> {
        let path = self.meta("locks").join(format!("{pack_ref}.lock"));
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        Ok((f, path))
    }

    /// Locks `pack_ref`, waiting for another process if needed (`on_wait`
    /// runs once before waiting, so the user knows why nothing happens).
    pub fn lock_pack(&self, pack_ref: &str, on_wait: impl FnOnce()) -> Result<PackLock, StoreError> {
        let (f, path) = self.lock_file(pack_ref)?;
        match f.try_lock() {
            Ok(()) => return Ok(PackLock { _file: f }),
            Err(TryLockError::WouldBlock) => on_wait(),
            Err(TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        f.lock().map_err(io(&path))?;
        Ok(PackLock { _file: f })
    }

    /// Locks `pack_ref` if no other process holds it.
    pub fn try_lock_pack(&self, pack_ref: &str) -> Result<Option<PackLock>, StoreError> {
        let (f, path) = self.lock_file(pack_ref)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(PackLock { _file: f })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Moves a finished tree inside `staging` (its pack folder, or a folder
    /// below it) to `{ref}-{version}/`; hold the pack lock. With `replace`, an
    /// existing tree is swapped out atomically and removed with the staging.
    pub fn commit(
        &self,
        staging: &StagingDir,
        from: &Path,
        pack_ref: &str,
        version: &semver::Version,
        replace: bool,
    ) -> Result<PathBuf, StoreError> {
        debug_assert!(from.starts_with(&staging.dir));
        let from = from.to_path_buf();
        let to = self.pack_dir(pack_ref, version);
        // One syncfs makes every staged file durable before it becomes visible.
        let root_dir = File::open(&self.root).map_err(io(&self.root))?;
        rustix::fs::syncfs(&root_dir).map_err(|e| StoreError::Io { path: self.root.clone(), source: e.into() })?;
        let exists = std::fs::symlink_metadata(&to).is_ok();
        if exists && !replace {
            return Err(StoreError::Exists { path: to });
        }
        let flags = if exists { RenameFlags::EXCHANGE } else { RenameFlags::NOREPLACE };
        match rustix::fs::renameat_with(CWD, &from, CWD, &to, flags) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => self.commit_fallback(&from, &to, exists)?,
            Err(rustix::io::Errno::EXIST) => return Err(StoreError::Exists { path: to }),
            Err(e) => return Err(StoreError::Io { path: to, source: e.into() }),
        }
        sync_dir(&self.root)?;
        Ok(to)
    }

    /// For filesystems without `renameat2` flags: two renames, a moment apart.
    fn commit_fallback(&self, from: &Path, to: &Path, exists: bool) -> Result<(), StoreError> {
        if exists {
            let aside = self.trash_path(to);
            std::fs::rename(to, &aside).map_err(|e| StoreError::Io { path: to.to_path_buf(), source: e })?;
            std::fs::rename(from, to).map_err(|e| StoreError::Io { path: to.to_path_buf(), source: e })?;
            let _ = std::fs::remove_dir_all(&aside);
        } else {
            std::fs::rename(from, to).map_err(|e| StoreError::Io { path: to.to_path_buf(), source: e })?;
        }
        Ok(())
    }

    fn trash_path(&self, of: &Path) -> PathBuf {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = of.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.meta("trash").join(format!("{name}.{}-{nanos:x}", std::process::id()))
    }

    /// Takes `{ref}-{version}/` out of the packs folder in one rename and
    /// returns where it went; [`Store::discard`] deletes it, [`Store::restore`] undoes.
    pub fn take_out(&self, pack_ref: &str, version: &semver::Version) -> Result<PathBuf, StoreError> {
        let from = self.pack_dir(pack_ref, version);
        if std::fs::symlink_metadata(&from).is_err() {
            return Err(StoreError::Missing { path: from });
        }
        let aside = self.trash_path(&from);
        std::fs::rename(&from, &aside).map_err(|e| StoreError::Io { path: from.clone(), source: e })?;
        sync_dir(&self.root)?;
        Ok(aside)
    }

    /// [`Store::take_out`], where a tree already gone is `None`, not an error.
    pub fn take_out_if_present(
        &self,
        pack_ref: &str,
        version: &semver::Version,
    ) -> Result<Option<PathBuf>, StoreError> {
        match self.take_out(pack_ref, version) {
            Ok(a) => Ok(Some(a)),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn restore(&self, aside: &Path, pack_ref: &str, version: &semver::Version) -> Result<(), StoreError> {
        let to = self.pack_dir(pack_ref, version);
        std::fs::rename(aside, &to).map_err(|e| StoreError::Io { path: to, source: e })
    }

    pub fn discard(&self, aside: &Path) {
        let _ = std::fs::remove_dir_all(aside);
    }

    /// Removes what killed runs left behind: staging folders whose owner is
    /// gone and anything in the trash. Returns how many were removed.
    pub fn clean_leftovers(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let staging = self.meta("staging");
        for entry in std::fs::read_dir(&staging).map_err(|e| StoreError::Io { path: staging.clone(), source: e })? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock") {
                continue;
            }
            let lock_path = path.with_extension("lock");
            let owner_alive = match OpenOptions::new().write(true).open(&lock_path) {
                Ok(f) => matches!(f.try_lock(), Err(TryLockError::WouldBlock)),
                Err(_) => false,
            };
            if !owner_alive {
                let _ = std::fs::remove_dir_all(&path);
                let _ = std::fs::remove_file(&lock_path);
                removed += 1;
            }
        }
        // Lock files whose folder is already gone.
        for entry in
            std::fs::read_dir(&staging).map_err(|e| StoreError::Io { path: staging.clone(), source: e })?.flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock")
                && !path.with_extension("").exists()
                && let Ok(f) = OpenOptions::new().write(true).open(&path)
                && f.try_lock().is_ok()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        let trash = self.meta("trash");
        for entry in std::fs::read_dir(&trash).map_err(|e| StoreError::Io { path: trash.clone(), source: e })?.flatten()
        {
            // Only folders whose owner is gone: a live uninstall may be mid-way.
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid =
                name.rsplit_once('.').and_then(|(_, t)| t.split_once('-')).and_then(|(p, _)| p.parse::<i32>().ok());
            if pid.is_some_and(process_alive) {
                continue;
            }
            let _ = std::fs::remove_dir_all(entry.path());
            removed += 1;
        }
        Ok(removed)
    }

    /// `{packs_dir}/{ref}`: the link to the active version.
    pub fn active_link(&self, pack_ref: &str) -> PathBuf {
        self.root.join(pack_ref)
    }

    /// Points `{ref}` at `{ref}-{version}` atomically: a new symlink is made
    /// under `.attune/` and renamed over the old link.
    pub fn set_active(&self, pack_ref: &str, version: &semver::Version) -> Result<(), StoreError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tmp = self.root.join(META_DIR).join(format!("link-{pack_ref}-{}-{nanos:x}", std::process::id()));
        let target = Self::dir_name(pack_ref, version);
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| StoreError::Io { path: tmp.clone(), source: e })?;
        let link = self.active_link(pack_ref);
        if let Err(e) = std::fs::rename(&tmp, &link) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Io { path: link, source: e });
        }
        Ok(())
    }

    /// Removes the `{ref}` link (the pack has no active version); a missing
    /// link is fine. Anything else at that name is left alone.
    pub fn clear_active(&self, pack_ref: &str) -> Result<(), StoreError> {
        let link = self.active_link(pack_ref);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::remove_file(&link).map_err(|e| StoreError::Io { path: link, source: e })
            }
            _ => Ok(()),
        }
    }

    /// The version `{ref}` links to, if it is a link to `{ref}-{version}`.
    pub fn linked_version(&self, pack_ref: &str) -> Option<semver::Version> {
        let target = std::fs::read_link(self.active_link(pack_ref)).ok()?;
        let (r, v) = split_dir_name(target.to_str()?)?;
        (r == pack_ref).then_some(v)
    }

    /// Pack folders on disk, as `(folder name, ref, version)`.
    pub fn scan(&self) -> Result<Vec<(String, String, semver::Version)>, StoreError> {
        let mut out = Vec::new();
        for entry in
            std::fs::read_dir(&self.root).map_err(|e| StoreError::Io { path: self.root.clone(), source: e })?.flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == META_DIR {
                continue;
            }
            if let Some((r, v)) = split_dir_name(&name) {
                out.push((name, r, v));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// `my-pack-1.2.3-rc.1` → (`my-pack`, `1.2.3-rc.1`). A ref has no `.` and a
/// version always has, so the first split whose right side is semver wins.
pub fn split_dir_name(name: &str) -> Option<(String, semver::Version)> {
    name.match_indices('-').find_map(|(i, _)| {
        let (r, v) = (&name[..i], &name[i + 1..]);
        let ok_ref =
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        ok_ref.then(|| semver::Version::parse(v).ok()).flatten().map(|v| (r.to_string(), v))
    })
}

fn process_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn dir_names_round_trip() {
        assert_eq!(split_dir_name("my-pack-1.2.3"), Some(("my-pack".into(), v("1.2.3"))));
        assert_eq!(split_dir_name("a-1-1.0.0-rc-1"), Some(("a-1".into(), v("1.0.0-rc-1"))));
        assert_eq!(split_dir_name("core_utils-0.1.0+build.5"), Some(("core_utils".into(), v("0.1.0+build.5"))));
        assert_eq!(split_dir_name(".attune"), None);
        assert_eq!(split_dir_name("notapack"), None);
    }

    #[test]
    fn commit_replaces_atomically_and_cleans_up() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let s1 = store.new_staging().unwrap();
        std::fs::write(s1.pack_path().join("a"), "one").unwrap();
        let dest = store.commit(&s1, &s1.pack_path(), "p", &v("1.0.0"), false).unwrap();
        drop(s1);
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "one");

        let s2 = store.new_staging().unwrap();
        std::fs::write(s2.pack_path().join("a"), "two").unwrap();
        assert!(matches!(store.commit(&s2, &s2.pack_path(), "p", &v("1.0.0"), false), Err(StoreError::Exists { .. })));
        store.commit(&s2, &s2.pack_path(), "p", &v("1.0.0"), true).unwrap();
        // The old tree was swapped into staging and goes with it.
        assert_eq!(std::fs::read_to_string(s2.pack_path().join("a")).unwrap(), "one");
        drop(s2);
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "two");
        assert_eq!(std::fs::read_dir(store.meta("staging")).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_of_dead_owners_are_removed_but_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let live = store.new_staging().unwrap();
        // A dead owner: a folder whose lock nobody holds.
        let dead = store.meta("staging").join("999999-dead");
        std::fs::create_dir_all(dead.join("pack")).unwrap();
        std::fs::write(dead.with_extension("lock"), "").unwrap();
        assert_eq!(store.clean_leftovers().unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.pack_path().exists());
    }

    #[test]
    fn pack_lock_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let held = store.lock_pack("p", || {}).unwrap();
        assert!(store.try_lock_pack("p").unwrap().is_none());
        assert!(store.try_lock_pack("q").unwrap().is_some());
        drop(held);
        assert!(store.try_lock_pack("p").unwrap().is_some());
    }

    #[test]
    fn take_out_and_restore() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let s = store.new_staging().unwrap();
        store.commit(&s, &s.pack_path(), "p", &v("1.0.0"), false).unwrap();
        let aside = store.take_out("p", &v("1.0.0")).unwrap();
        assert!(!store.pack_dir("p", &v("1.0.0")).exists());
        store.restore(&aside, "p", &v("1.0.0")).unwrap();
        assert!(store.pack_dir("p", &v("1.0.0")).exists());
    }
}
