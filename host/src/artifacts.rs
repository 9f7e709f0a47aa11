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

use std::io::Write;
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
    #[error("--offline: {what} cannot be installed offline: only http(s) archives are cached; run without --offline")]
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
    /// to `hex` (nothing is stored).
    pub fn put_file(&self, from: &Path, hex: &str, url: Option<&str>) -> Result<bool, ArtifactError> {
        if sha256_file(from).map_err(|e| self.io(from, e))? != hex.to_ascii_lowercase() {
            return Ok(false);
        }
        let dest = self.blob_path(hex);
        if !dest.is_file() {
            let dir = dest.parent().expect("blob has a parent");
            fs_err::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(dir, e))?;
            fs_err::copy(from, tmp.path()).map_err(|e| self.io(tmp.path(), e))?;
            tmp.as_file().sync_all().map_err(|e| self.io(tmp.path(), e))?;
            tmp.persist(&dest).map_err(|e| self.io(&dest, e.error))?;
        }
        if let Some(url) = url {
            let path = self.url_path(url);
            let dir = path.parent().expect("url entry has a parent");
            fs_err::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(dir, e))?;
            writeln!(tmp, "{}\n{url}", hex.to_ascii_lowercase()).map_err(|e| self.io(tmp.path(), e))?;
            tmp.persist(&path).map_err(|e| self.io(&path, e.error))?;
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
        assert!(!a.put_file(&src, &"0".repeat(64), None).unwrap(), "a wrong hash stores nothing");
        assert!(a.get(&hex).unwrap().is_none());
        assert!(a.put_file(&src, &hex, Some("http://h/x.tgz")).unwrap());
        assert_eq!(std::fs::read(a.get(&hex).unwrap().unwrap()).unwrap(), b"bytes");
        assert_eq!(a.hex_for_url("http://h/x.tgz").unwrap().as_deref(), Some(hex.as_str()));
        assert_eq!(a.hex_for_url("http://h/y.tgz").unwrap(), None);
        // Corrupted on disk: not handed out.
        std::fs::write(a.blob_path(&hex), b"other").unwrap();
        assert!(a.get(&hex).unwrap().is_none());
    }
}
