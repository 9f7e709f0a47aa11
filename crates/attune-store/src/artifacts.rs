//! The artifact cache: every downloaded archive, kept by its SHA-256.
//!
//! `{cache_dir}/artifacts-v1/sha256/<hex>` holds the bytes of an http(s)
//! archive an install downloaded, so a later `--offline` install (or `sync
//! --locked --offline`) can run the same pipeline from the file instead of
//! the network. Files are written to a temporary name and renamed, so a
//! reader never sees half a file, and re-hashed on every read, so a
//! corrupted entry is never used. `urls/<sha256 of the URL>` maps a
//! (redacted) URL to the hex of the bytes it last served, for installs that
//! name only the URL.
//!
//! A git install keeps the pack it downloaded the same way (the host hashed
//! it as it arrived, so keeping it costs a link); `git/<sha256 of URL and
//! ref>` and `git/<sha256 of URL and commit>` find it again, so a lockfile's
//! commit or an index's tag installs offline: the git fetcher reads the
//! pack instead of the network. Entries an older attune wrote name a tar of
//! the published tree instead, installed through the archive fetcher.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error("artifact cache {path}: {source}; check that the cache folder (--cache-dir) is writable")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "--offline: {what} is not in the artifact cache ({dir}); run the same install once without --offline \
         to download and cache it"
    )]
    NotCached { what: String, dir: PathBuf },
    #[error(
        "--offline: {what} cannot be installed offline: only http(s) archives and git trees are cached; run \
         without --offline"
    )]
    NotCacheable { what: String },
    #[error("--offline needs a cache folder (--cache-dir)")]
    NoCacheDir,
}

/// The cache under one cache folder.
#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
}

impl Artifacts {
    pub fn new(cache_dir: &Path) -> Artifacts {
        Artifacts { root: cache_dir.join("artifacts-v1") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex.to_ascii_lowercase())
    }

    fn url_path(&self, url: &str) -> PathBuf {
        self.root.join("urls").join(hex::encode(Sha256::digest(url.as_bytes())))
    }

    /// Stores the file at `from` (whose SHA-256 is checked to be `hex`) and
    /// remembers that `url` served it. Returns false if `from` does not hash
    /// to `hex` (nothing is stored). `hashed` is the SHA-256 attune itself
    /// took of `from` as it was written, if it did: then `from` is not read
    /// again to check it (a fetcher's claim is never taken for one).
    pub fn put_file(
        &self,
        from: &Path,
        hex: &str,
        hashed: Option<&str>,
        url: Option<&str>,
    ) -> Result<bool, ArtifactError> {
        let actual = match hashed {
            Some(h) => h.to_ascii_lowercase(),
            None => sha256_file(from).map_err(|e| self.io(from, e))?,
        };
        if actual != hex.to_ascii_lowercase() {
            return Ok(false);
        }
        let dest = self.blob_path(hex);
        if !dest.is_file() {
            let dir = dest.parent().expect("blob has a parent");
            fs_err::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(dir, e))?;
            // A link where `from` is on the same filesystem (a download in
            // scratch, unlinked after), a copy elsewhere.
            let linked = tmp.path().with_extension("link");
            let tmp = match std::fs::hard_link(from, &linked) {
                Ok(()) => tempfile::TempPath::try_from_path(&linked).map_err(|e| self.io(&linked, e))?,
                Err(_) => {
                    fs_err::copy(from, tmp.path()).map_err(|e| self.io(tmp.path(), e))?;
                    tmp.into_temp_path()
                }
            };
            fs_err::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| self.io(&tmp, e))?;
            tmp.persist(&dest).map_err(|e| self.io(&dest, e.error))?;
        }
        if let Some(url) = url {
            self.write_entry(&self.url_path(url), &format!("{}\n{url}\n", hex.to_ascii_lowercase()))?;
        }
        Ok(true)
    }

    /// The cached file with this SHA-256, re-hashed before it is handed out
    /// (a corrupt entry is removed and reported as missing).
    pub fn get(&self, hex: &str) -> Result<Option<PathBuf>, ArtifactError> {
        let path = self.blob_path(hex);
        if !path.is_file() {
            return Ok(None);
        }
        if sha256_file(&path).map_err(|e| self.io(&path, e))? != hex.to_ascii_lowercase() {
            tracing::warn!("{}: cached artifact does not match its name; removed", path.display());
            let _ = fs_err::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(path))
    }

    /// Keeps the pack at `from`, whose SHA-256 attune took as it was
    /// written (`hex`), fetched from git `url` for `commit` and asked for as
    /// `reference`: findable by the URL with either the ref or the commit.
    pub fn put_git_pack(
        &self,
        from: &Path,
        hex: &str,
        url: &str,
        reference: Option<&str>,
        commit: &str,
    ) -> Result<(), ArtifactError> {
        self.put_file(from, hex, Some(hex), None)?;
        let entry = format!("{}\n{commit}\n{url}\n{PACK}\n", hex.to_ascii_lowercase());
        self.write_entry(&self.git_path(url, &format!("commit:{commit}")), &entry)?;
        self.write_entry(&self.git_path(url, &format!("ref:{}", reference.unwrap_or("HEAD"))), &entry)?;
        Ok(())
    }

    /// What the cache holds of git `url` at `reference` (a full commit SHA is
    /// looked up as a commit, anything else as the ref last fetched).
    pub fn git_tree(&self, url: &str, reference: Option<&str>) -> Result<Option<CachedGit>, ArtifactError> {
        let key = match reference {
            Some(r) if r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()) => {
                format!("commit:{}", r.to_ascii_lowercase())
            }
            r => format!("ref:{}", r.unwrap_or("HEAD")),
        };
        let path = self.git_path(url, &key);
        let text = match fs_err::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path, e)),
        };
        // hex, commit, URL, and `pack` since packs are kept (a tar before).
        let mut lines = text.lines();
        let (Some(hex), Some(commit)) = (lines.next(), lines.next()) else { return Ok(None) };
        let pack = lines.nth(1) == Some(PACK);
        Ok(self.get(hex)?.map(|path| CachedGit { path, commit: commit.to_string(), pack }))
    }

    fn git_path(&self, url: &str, key: &str) -> PathBuf {
        self.root.join("git").join(hex::encode(Sha256::digest(format!("{url}\n{key}").as_bytes())))
    }

    fn write_entry(&self, path: &Path, text: &str) -> Result<(), ArtifactError> {
        attune_core::fs::write_atomic(path, text.as_bytes()).map_err(|e| self.io(path, e))
    }

    /// The SHA-256 of what `url` served when it was last downloaded.
    pub fn hex_for_url(&self, url: &str) -> Result<Option<String>, ArtifactError> {
        let path = self.url_path(url);
        match fs_err::read_to_string(&path) {
            Ok(s) => Ok(s.lines().next().map(str::to_string).filter(|h| h.len() == 64)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn io(&self, path: &Path, source: std::io::Error) -> ArtifactError {
        ArtifactError::Io { path: path.to_path_buf(), source }
    }
}

/// The last line of a git entry that names a pack.
const PACK: &str = "pack";

/// A git commit the artifact cache holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedGit {
    pub path: PathBuf,
    pub commit: String,
    /// `path` is the pack the commit was fetched in; otherwise a tar of its
    /// tree (what attune cached before it kept packs).
    pub pack: bool,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_url_map() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(t.path());
        let src = t.path().join("x");
        std::fs::write(&src, b"bytes").unwrap();
        let hex = hex::encode(Sha256::digest(b"bytes"));
        assert!(!a.put_file(&src, &"0".repeat(64), None, None).unwrap(), "a wrong hash stores nothing");
        // A hash taken on the way that disagrees with the claim stores nothing either.
        assert!(!a.put_file(&src, &hex, Some(&"1".repeat(64)), None).unwrap());
        assert!(a.get(&hex).unwrap().is_none());
        assert!(a.put_file(&src, &hex, None, Some("http://h/x.tgz")).unwrap());
        assert_eq!(std::fs::read(a.get(&hex).unwrap().unwrap()).unwrap(), b"bytes");
        assert_eq!(a.hex_for_url("http://h/x.tgz").unwrap().as_deref(), Some(hex.as_str()));
        assert_eq!(a.hex_for_url("http://h/y.tgz").unwrap(), None);
        // Corrupted on disk: not handed out.
        std::fs::write(a.blob_path(&hex), b"other").unwrap();
        assert!(a.get(&hex).unwrap().is_none());
    }

    #[test]
    fn git_packs_are_found_by_ref_or_commit() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(&t.path().join("cache"));
        let from = t.path().join("scratch-0");
        std::fs::write(&from, b"PACK...").unwrap();
        let hex = hex::encode(Sha256::digest(b"PACK..."));
        let commit = "ab".repeat(20);
        a.put_git_pack(&from, &hex, "http://h/r.git", Some("v1.0.0"), &commit).unwrap();
        // The scratch file goes when the install ends; the cached one stays.
        std::fs::remove_file(&from).unwrap();
        let by_ref = a.git_tree("http://h/r.git", Some("v1.0.0")).unwrap().unwrap();
        assert_eq!((by_ref.commit.as_str(), by_ref.pack), (commit.as_str(), true));
        assert_eq!(std::fs::read(&by_ref.path).unwrap(), b"PACK...");
        let by_commit = a.git_tree("http://h/r.git", Some(&commit.to_uppercase())).unwrap().unwrap();
        assert_eq!(by_ref, by_commit);
        assert!(a.git_tree("http://h/r.git", Some("v2.0.0")).unwrap().is_none());
        assert!(a.git_tree("http://h/other.git", Some("v1.0.0")).unwrap().is_none());
        // Corrupted on disk: not handed out.
        std::fs::write(&by_ref.path, b"PACK..!").unwrap();
        assert!(a.git_tree("http://h/r.git", Some("v1.0.0")).unwrap().is_none());
    }

    #[test]
    fn a_git_tree_an_older_attune_cached_as_a_tar_is_still_found() {
        // Its entries have three lines (hex, commit, URL) and name a tar.
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(&t.path().join("cache"));
        let tar = t.path().join("tree.tar");
        std::fs::write(&tar, b"a tar").unwrap();
        let hex = hex::encode(Sha256::digest(b"a tar"));
        assert!(a.put_file(&tar, &hex, None, None).unwrap());
        let commit = "cd".repeat(20);
        let entry = format!("{hex}\n{commit}\nhttp://h/r.git\n");
        a.write_entry(&a.git_path("http://h/r.git", "ref:HEAD"), &entry).unwrap();
        let found = a.git_tree("http://h/r.git", None).unwrap().unwrap();
        assert_eq!((found.commit.as_str(), found.pack), (commit.as_str(), false));
        assert_eq!(std::fs::read(&found.path).unwrap(), b"a tar");
    }
}
