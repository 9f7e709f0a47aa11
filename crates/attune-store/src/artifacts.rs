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
//! A git install has no archive to keep, so its published tree is packed
//! into a deterministic tar and kept the same way; `git/<sha256 of URL and
//! ref>` and `git/<sha256 of URL and commit>` find it again, so a lockfile's
//! commit or an index's tag installs offline through the archive fetcher.

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
            fs_err::copy(from, tmp.path()).map_err(|e| self.io(tmp.path(), e))?;
            tmp.as_file().sync_all().map_err(|e| self.io(tmp.path(), e))?;
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

    /// Packs the published tree at `dir` (fetched from git `url` at
    /// `commit`, asked for as `reference`) into a deterministic tar in the
    /// cache, findable by the URL with either the ref or the commit.
    pub fn put_git_tree(
        &self,
        dir: &Path,
        url: &str,
        reference: Option<&str>,
        commit: &str,
    ) -> Result<String, ArtifactError> {
        let blobs = self.root.join("sha256");
        fs_err::create_dir_all(&blobs).map_err(|e| self.io(&blobs, e))?;
        let tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(|e| self.io(&blobs, e))?;
        let hex = {
            let mut out = HashingWriter::new(tmp.as_file());
            write_tar(dir, &mut out).map_err(|e| self.io(dir, e))?;
            out.finish().map_err(|e| self.io(tmp.path(), e))?
        };
        tmp.as_file().sync_all().map_err(|e| self.io(tmp.path(), e))?;
        let dest = self.blob_path(&hex);
        tmp.persist(&dest).map_err(|e| self.io(&dest, e.error))?;
        let entry = format!("{hex}\n{commit}\n{url}\n");
        self.write_entry(&self.git_path(url, &format!("commit:{commit}")), &entry)?;
        self.write_entry(&self.git_path(url, &format!("ref:{}", reference.unwrap_or("HEAD"))), &entry)?;
        Ok(hex)
    }

    /// The cached tree of git `url` at `reference` (a full commit SHA is
    /// looked up as a commit, anything else as the ref last fetched):
    /// the tar's path and the commit it holds.
    pub fn git_tree(&self, url: &str, reference: Option<&str>) -> Result<Option<(PathBuf, String)>, ArtifactError> {
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
        let mut lines = text.lines();
        let (Some(hex), Some(commit)) = (lines.next(), lines.next()) else { return Ok(None) };
        Ok(self.get(hex)?.map(|p| (p, commit.to_string())))
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

/// Writes through 1 MiB buffers and hashes each one on a thread of its own
/// once it is written, so the SHA-256 of a tar overlaps reading and writing
/// the tree (at the end of every git install, nothing else runs beside it).
struct HashingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    to_hash: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: Option<std::thread::JoinHandle<[u8; 32]>>,
}

const HASH_CHUNK: usize = 1 << 20;

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        let (to_hash, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, spare) = std::sync::mpsc::channel();
        let hasher = std::thread::spawn(move || {
            let mut hash = Sha256::new();
            for chunk in chunks {
                hash.update(&chunk);
                // The writer may be gone already; then the buffer is just freed.
                let _ = give_back.send(chunk);
            }
            hash.finalize().into()
        });
        HashingWriter {
            inner,
            buf: Vec::with_capacity(HASH_CHUNK),
            to_hash: Some(to_hash),
            spare,
            hasher: Some(hasher),
        }
    }

    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.buf)?;
        let next = self.spare.try_recv().map(|mut b| {
            b.clear();
            b
        });
        let full = std::mem::replace(&mut self.buf, next.unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK)));
        let sent = self.to_hash.as_ref().is_some_and(|tx| tx.send(full).is_ok());
        if !sent {
            return Err(std::io::Error::other("the hashing thread stopped"));
        }
        Ok(())
    }

    /// Writes what is left; the hex SHA-256 of everything written.
    fn finish(mut self) -> std::io::Result<String> {
        self.flush_chunk()?;
        self.inner.flush()?;
        drop(self.to_hash.take());
        let hash = self
            .hasher
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread panicked"))?;
        Ok(hex::encode(hash))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(HASH_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == HASH_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for HashingWriter<W> {
    fn drop(&mut self) {
        // An early return (a failed write): the thread ends with its channel.
        drop(self.to_hash.take());
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

/// A tar of `dir` that depends only on what the tree checksum covers (names,
/// contents, exec bits, symlink targets, empty folders): sorted, mtime 0,
/// no owners.
fn write_tar(dir: &Path, out: impl Write) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut tar = tar::Builder::new(out);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under its root");
        let meta = entry.path().symlink_metadata()?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if meta.file_type().is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, rel, fs_err::read_link(entry.path())?)?;
        } else if meta.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, rel, std::io::empty())?;
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            tar.append_data(&mut h, rel, fs_err::File::open(entry.path())?)?;
        }
    }
    tar.into_inner()?.flush()
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
    fn the_hashing_writer_hashes_what_it_wrote_across_chunks_and_flushes() {
        let data: Vec<u8> = (0..(3 * HASH_CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        let mut w = HashingWriter::new(&mut out);
        // Odd pieces, and a flush mid-chunk, as tar's writes come.
        for (i, piece) in data.chunks(70_001).enumerate() {
            w.write_all(piece).unwrap();
            if i == 5 {
                w.flush().unwrap();
            }
        }
        let hex = w.finish().unwrap();
        assert_eq!(hex, hex::encode(Sha256::digest(&data)));
        assert_eq!(out, data);
    }

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
    fn git_trees_are_found_by_ref_or_commit_and_reproduce_the_tree_checksum() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let pack = t.path().join("pack");
        std::fs::create_dir_all(pack.join("actions/empty")).unwrap();
        std::fs::write(pack.join("pack.yaml"), "ref: p\nversion: 1.0.0\n").unwrap();
        std::fs::write(pack.join("actions/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(pack.join("actions/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("actions/run.sh", pack.join("run")).unwrap();
        let a = Artifacts::new(&t.path().join("cache"));
        let commit = "ab".repeat(20);
        let hex = a.put_git_tree(&pack, "http://h/r.git", Some("v1.0.0"), &commit).unwrap();
        assert_eq!(a.put_git_tree(&pack, "http://h/r.git", None, &commit).unwrap(), hex, "deterministic");
        let (by_ref, c) = a.git_tree("http://h/r.git", Some("v1.0.0")).unwrap().unwrap();
        assert_eq!(c, commit);
        let (by_commit, _) = a.git_tree("http://h/r.git", Some(&commit.to_uppercase())).unwrap().unwrap();
        assert_eq!(by_ref, by_commit);
        assert!(a.git_tree("http://h/r.git", Some("v2.0.0")).unwrap().is_none());
        assert!(a.git_tree("http://h/other.git", Some("v1.0.0")).unwrap().is_none());

        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        tar::Archive::new(std::fs::File::open(&by_ref).unwrap()).unpack(&out).unwrap();
        assert_eq!(
            attune_core::checksum::tree(&out).unwrap().digest,
            attune_core::checksum::tree(&pack).unwrap().digest
        );
    }
}
