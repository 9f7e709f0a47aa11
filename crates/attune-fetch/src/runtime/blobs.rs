//! The host side of `blobs`: the read-only input file and scratch space.
//!
//! An archive fetcher sees exactly one file, not the folder around it, and a
//! downloader can keep bytes it must read back (a zip's index is at its end)
//! without any writable filesystem. Scratch bytes count against the same
//! byte limit as the pack. Hashing runs here, natively, on a thread of its
//! own beside the fetcher: an input file from its first read, a scratch
//! blob as it is appended to, so asking for the SHA-256 at the end costs
//! (almost) nothing.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::staging::{StagingError, StagingWriter};

/// The most one `read` returns, so a guest cannot make the host allocate
/// without bound.
pub const MAX_READ: u32 = 16 << 20;
/// Scratch blobs one fetch may create.
pub const MAX_SCRATCH: u32 = 16;

/// Where the `n`th scratch blob of a fetch lives in its scratch folder. The
/// install pipeline reads the first one back to cache a download.
pub fn scratch_file(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("scratch-{n}"))
}

pub enum Blob {
    Input { file: Arc<File>, size: u64, sha256: Mutex<Hashing> },
    Scratch { file: File, n: u32, size: u64, sha256: Hashing },
}

/// A blob's SHA-256, computed on another thread.
pub enum Hashing {
    /// Not started, or out of date: hashed from the file when asked.
    Idle,
    /// The whole file, being read by a thread.
    Reading(JoinHandle<std::io::Result<String>>),
    /// Fed every append as it happens.
    Feeding(SyncSender<Vec<u8>>, JoinHandle<String>),
    Done(String),
}

impl Hashing {
    fn feeding() -> Hashing {
        let (tx, rx) = sync_channel::<Vec<u8>>(16);
        let thread = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for data in rx {
                h.update(&data);
            }
            hex::encode(h.finalize())
        });
        Hashing::Feeding(tx, thread)
    }

    /// Starts reading `file` on a thread, if nothing is under way yet.
    fn start_reading(&mut self, file: &Arc<File>) {
        if matches!(self, Hashing::Idle) {
            let file = file.clone();
            *self = Hashing::Reading(std::thread::spawn(move || sha256_of(&file)));
        }
    }

    fn get(&mut self, file: &File) -> Result<String, String> {
        let s = match std::mem::replace(self, Hashing::Idle) {
            Hashing::Done(s) => s,
            Hashing::Idle => sha256_of(file).map_err(|e| format!("hashing the blob: {e}"))?,
            Hashing::Reading(t) => match t.join() {
                Ok(r) => r.map_err(|e| format!("hashing the blob: {e}"))?,
                Err(_) => return Err("hashing the blob: the thread stopped".into()),
            },
            Hashing::Feeding(tx, t) => {
                drop(tx);
                t.join().map_err(|_| "hashing the blob: the thread stopped".to_string())?
            }
        };
        *self = Hashing::Done(s.clone());
        Ok(s)
    }
}

impl Blob {
    pub fn input(file: Arc<File>) -> std::io::Result<Blob> {
        let size = file.metadata()?.len();
        Ok(Blob::Input { file, size, sha256: Mutex::new(Hashing::Idle) })
    }

    /// A new scratch file in `dir`, the `n`th of this fetch, at [`scratch_file`].
    pub fn scratch(dir: &Path, n: u32) -> Result<Blob, StagingError> {
        if n >= MAX_SCRATCH {
            return Err(StagingError::Io(format!("more than {MAX_SCRATCH} scratch blobs")));
        }
        let io = |e: std::io::Error| StagingError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = scratch_file(dir, n);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io)?;
        Ok(Blob::Scratch { file, n, size: 0, sha256: Hashing::feeding() })
    }

    pub fn size(&self) -> u64 {
        match self {
            Blob::Input { size, .. } | Blob::Scratch { size, .. } => *size,
        }
    }

    pub fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        let file = match self {
            Blob::Input { file, sha256, .. } => {
                // Read once, likely read whole: hashed meanwhile, on the other core.
                sha256.lock().expect("blob hash lock").start_reading(file);
                file.as_ref()
            }
            Blob::Scratch { file, .. } => file,
        };
        let want = u64::from(len.min(MAX_READ)).min(self.size().saturating_sub(offset));
        let mut buf = vec![0u8; want as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading the blob at {offset}: {e}")),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub fn append(&mut self, data: &[u8], staging: &mut StagingWriter) -> Result<(), StagingError> {
        match self {
            Blob::Input { .. } => Err(StagingError::Io("the input file is read-only".into())),
            Blob::Scratch { file, size, sha256, .. } => {
                staging.count_bytes(data.len() as u64)?;
                file.write_all(data).map_err(|e| StagingError::Io(format!("scratch: {e}")))?;
                match sha256 {
                    Hashing::Feeding(tx, _) => {
                        if tx.send(data.to_vec()).is_err() {
                            *sha256 = Hashing::Idle;
                        }
                    }
                    // Asked for before this append: hashed from the file next time.
                    other => *other = Hashing::Idle,
                }
                *size += data.len() as u64;
                Ok(())
            }
        }
    }

    /// A scratch blob's number and the SHA-256 the host took of all of it, if
    /// the fetcher asked for it and appended nothing after: the host's own
    /// word, not the fetcher's, so the artifact cache need not hash it again.
    pub fn finished_scratch(&self) -> Option<(u32, String)> {
        match self {
            Blob::Scratch { n, sha256: Hashing::Done(s), .. } => Some((*n, s.clone())),
            _ => None,
        }
    }

    pub fn sha256(&mut self) -> Result<String, String> {
        match self {
            Blob::Input { file, sha256, .. } => sha256.get_mut().expect("blob hash lock").get(file),
            Blob::Scratch { file, sha256, .. } => sha256.get(file),
        }
    }
}

/// SHA-256 of a whole file from its start, streaming.
pub fn sha256_of(file: &File) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::WriteLimits;

    #[test]
    fn scratch_counts_against_the_byte_limit_and_reads_back() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("pack")).unwrap();
        let mut w =
            StagingWriter::new(&t.path().join("pack"), WriteLimits { max_bytes: 10, ..Default::default() }).unwrap();
        let mut b = Blob::scratch(&t.path().join("scratch"), 0).unwrap();
        b.append(b"hello", &mut w).unwrap();
        b.append(b"world", &mut w).unwrap();
        assert_eq!(b.read(3, 4).unwrap(), b"lowo");
        assert_eq!(b.read(8, 100).unwrap(), b"ld");
        assert!(b.read(50, 1).unwrap().is_empty());
        assert_eq!(b.sha256().unwrap(), hex::encode(Sha256::digest(b"helloworld")));
        assert_eq!(b.append(b"!", &mut w), Err(StagingError::TooManyBytes(10)));
        assert!(w.finish().is_err(), "the violation is sticky");
    }

    #[test]
    fn a_scratch_blob_is_hashed_when_asked_and_again_after_an_append() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("pack")).unwrap();
        let mut w = StagingWriter::new(&t.path().join("pack"), WriteLimits::default()).unwrap();
        let mut b = Blob::scratch(&t.path().join("scratch"), 3).unwrap();
        assert_eq!(b.finished_scratch(), None, "not asked for yet");
        b.append(b"ab", &mut w).unwrap();
        assert_eq!(b.sha256().unwrap(), hex::encode(Sha256::digest(b"ab")));
        assert_eq!(b.finished_scratch(), Some((3, hex::encode(Sha256::digest(b"ab")))));
        b.append(b"c", &mut w).unwrap();
        // Appended to since: no finished hash until asked again.
        assert_eq!(b.finished_scratch(), None);
        assert_eq!(b.sha256().unwrap(), hex::encode(Sha256::digest(b"abc")));
        assert_eq!(b.finished_scratch(), Some((3, hex::encode(Sha256::digest(b"abc")))));
        // The input file is not the host's to vouch for.
        std::fs::write(t.path().join("in"), b"x").unwrap();
        let mut input = Blob::input(Arc::new(File::open(t.path().join("in")).unwrap())).unwrap();
        input.sha256().unwrap();
        assert_eq!(input.finished_scratch(), None);
    }

    #[test]
    fn input_is_read_only() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), b"abc").unwrap();
        std::fs::create_dir(t.path().join("pack")).unwrap();
        let mut w = StagingWriter::new(&t.path().join("pack"), WriteLimits::default()).unwrap();
        let mut b = Blob::input(Arc::new(File::open(t.path().join("a")).unwrap())).unwrap();
        assert_eq!(b.size(), 3);
        assert!(b.append(b"x", &mut w).is_err());
        assert_eq!(b.sha256().unwrap(), sha256_of(&File::open(t.path().join("a")).unwrap()).unwrap());
    }
}
