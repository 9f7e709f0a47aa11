//! The floor under a local install: a folder copied and every byte of it
//! SHA-256 hashed, on every core, with nothing else (no sandbox, no path
//! rules, no limits, no database).
//!
//! `scripts/bench.sh` runs it beside `attune install DIR` and `cp -a`: `cp`
//! only copies, while attune must also hash what it copied, so this program,
//! not `cp`, is the least a local install can cost on the machine.
//!
//! `cargo run --release -p attune-core --example copy_floor -- FROM TO`

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        eprintln!("usage: copy_floor FROM TO");
        std::process::exit(2);
    };
    let (from, to) = (Path::new(from), Path::new(to));
    let mut files: Vec<(PathBuf, PathBuf, u32)> = Vec::new();
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap_or_else(|e| fail(e));
        let out = to.join(entry.path().strip_prefix(from).expect("under FROM"));
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&out).unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap_or_else(|e| fail(e));
            std::os::unix::fs::symlink(target, &out).unwrap_or_else(|e| fail(e));
        } else if kind.is_file() {
            let mode = entry.metadata().unwrap_or_else(|e| fail(e)).permissions().mode();
            files.push((entry.into_path(), out, mode));
        }
    }
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let digests: Vec<u8> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut folded = 0u8;
                    while let Some((from, to, mode)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        folded ^= copy(from, to, *mode, &mut buf)
                            .unwrap_or_else(|e| fail(format!("{}: {e}", from.display())))[0];
                    }
                    folded
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("copy thread")).collect()
    });
    // The digests are used, so none of the hashing is optimised away.
    std::hint::black_box(digests);
}

/// Read, written, and hashed while in cache: what attune's staging does.
fn copy(from: &Path, to: &Path, mode: u32, buf: &mut [u8]) -> std::io::Result<[u8; 32]> {
    let mut input = File::open(from)?;
    let mut output = OpenOptions::new().write(true).create_new(true).mode(mode & 0o777).open(to)?;
    let mut hasher = Sha256::new();
    loop {
        let n = input.read(buf)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("copy_floor: {e}");
    std::process::exit(1);
}
