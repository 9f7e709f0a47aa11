//! `attune-pack-file-v1`: the directory checksum of Attune (attune-system/attune,
//! `calculate_directory_checksum` in `crates/common/src/pack_registry/storage.rs`).
//!
//! It exists so that Attune registry indexes verify unchanged: they write
//! `sha256:<hex>` for a git entry and mean this checksum of the checked-out
//! tree. It is weaker than `sha256-tree-v1` (no exec bits, no empty folders,
//! no symlinks at all), so attune only computes it to check an index that
//! names it; what attune records is always its own tree checksum.
//!
//! The format is reproduced exactly, including its quirks; see
//! `docs/checksum.md` for the byte layout.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BUF_SIZE, Checksum, ChecksumError, ChecksumKind};

/// Hashed before every file's path: the name of the framing.
const FRAME: &[u8] = b"attune-pack-file-v1";

/// The Attune directory checksum of `root`, printed `attune-pack-file-v1:<hex>`.
///
/// Every regular file below `root` is hashed, except anything named `.git`
/// (at any depth, file or folder); folders themselves, modes and special
/// files are not hashed; a symlink anywhere (the root included) is an error,
/// as in Attune.
pub fn attune_pack_file_v1(root: &Path) -> Result<Checksum, ChecksumError> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| ChecksumError::io(root, e))?;
    if meta.file_type().is_symlink() {
        return Err(ChecksumError::LegacySymlink { path: root.to_owned() });
    }
    if !meta.is_dir() {
        return Err(ChecksumError::NotADirectory { path: root.to_owned() });
    }

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let walk = walkdir::WalkDir::new(root).min_depth(1).follow_links(false);
    for item in walk.into_iter().filter_entry(|e| e.file_name() != ".git") {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            let source = e.into_io_error().unwrap_or_else(|| io::Error::other("filesystem loop"));
            ChecksumError::Io { path, source }
        })?;
        let ft = item.file_type();
        if ft.is_symlink() {
            // Relative: the root is often a staging folder nobody knows.
            let rel = item.path().strip_prefix(root).unwrap_or(item.path());
            return Err(ChecksumError::LegacySymlink { path: rel.to_owned() });
        }
        if ft.is_file() {
            files.push((super::relative_path(root, item.path())?, item.path().to_owned()));
        }
    }
    // Attune sorts `Path`s, which compare component by component: `lib/x`
    // comes before `lib.txt` (`lib` < `lib.txt`), unlike a byte-wise sort.
    files.sort_by(|a, b| component_cmp(&a.0, &b.0));

    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    for (rel, full) in &files {
        h.update(FRAME);
        h.update((rel.len() as u64).to_be_bytes());
        h.update(rel.as_bytes());
        let err = |e| ChecksumError::io(full, e);
        let mut f = File::open(full).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        h.update(len.to_be_bytes());
        let mut read = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            h.update(&buf[..n]);
            read += n as u64;
        }
        if read != len {
            return Err(err(io::Error::other("the file changed while it was hashed; retry")));
        }
    }
    Ok(Checksum::new(ChecksumKind::AttunePackFileV1, h.finalize().into()))
}

/// Orders `/`-separated paths the way Rust orders `Path`s: by components.
fn component_cmp(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use crate::checksum::tests::DOC;

    /// Attune's own test vector (`directory_checksum_uses_canonical_nested_path_test_vector`
    /// in storage.rs, and the same in its index builder's tests).
    const ATTUNE_VECTOR: &str = "attune-pack-file-v1:e9837162383488cb9b187ea585ce8963634d7d04f75abeb0c43d5456de0d6b13";
    /// The quirks tree below, from the Python reference in docs/checksum.md.
    const QUIRKS_VECTOR: &str = "attune-pack-file-v1:92fab70bae92e3949f2cf2797cbb1ef7932ad81b3ae33bdbc97e2fdf12549503";
    /// SHA-256 of nothing: an empty (or files-less) folder.
    const EMPTY_VECTOR: &str = "attune-pack-file-v1:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn attune_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("nested")).unwrap();
        fs::write(d.path().join("nested/file.txt"), b"fixture\n").unwrap();
        d
    }

    /// Component order, `.git` at two depths, an empty folder, an exec bit.
    fn quirks_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in ["lib", "empty", ".git", "sub"] {
            fs::create_dir(p.join(dir)).unwrap();
        }
        fs::write(p.join("lib.txt"), "top\n").unwrap();
        fs::write(p.join("lib/util.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("lib/util.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(p.join("pack.yaml"), "ref: demo\nversion: 1.0.0\n").unwrap();
        fs::write(p.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(p.join("sub/.git"), "gitdir: x\n").unwrap();
        d
    }

    #[test]
    fn attune_test_vector() {
        assert_eq!(attune_pack_file_v1(attune_tree().path()).unwrap().to_string(), ATTUNE_VECTOR);
    }

    #[test]
    fn quirks_vector_and_what_is_not_hashed() {
        let d = quirks_tree();
        assert_eq!(attune_pack_file_v1(d.path()).unwrap().to_string(), QUIRKS_VECTOR);
        // Exec bits, empty folders and anything under .git are not covered.
        fs::set_permissions(d.path().join("lib/util.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::create_dir(d.path().join("empty2")).unwrap();
        fs::write(d.path().join(".git/index"), "x").unwrap();
        assert_eq!(attune_pack_file_v1(d.path()).unwrap().to_string(), QUIRKS_VECTOR);
        // Content is.
        fs::write(d.path().join("lib.txt"), "top!\n").unwrap();
        assert_ne!(attune_pack_file_v1(d.path()).unwrap().to_string(), QUIRKS_VECTOR);
    }

    #[test]
    fn empty_folder_is_sha256_of_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(attune_pack_file_v1(d.path()).unwrap().to_string(), EMPTY_VECTOR);
    }

    #[test]
    fn symlinks_are_refused() {
        let d = attune_tree();
        std::os::unix::fs::symlink("nested/file.txt", d.path().join("link")).unwrap();
        let e = attune_pack_file_v1(d.path()).unwrap_err();
        assert!(matches!(e, ChecksumError::LegacySymlink { .. }), "{e}");
        assert!(e.to_string().contains("link"), "{e}");
    }

    #[test]
    fn framing_separates_path_and_content() {
        // Attune's own collision case: "a"+"bc", "d"+"" against "a"+"b", "cd"+"".
        let one = tempfile::tempdir().unwrap();
        fs::write(one.path().join("a"), "bc").unwrap();
        fs::write(one.path().join("d"), "").unwrap();
        let two = tempfile::tempdir().unwrap();
        fs::write(two.path().join("a"), "b").unwrap();
        fs::write(two.path().join("cd"), "").unwrap();
        assert_ne!(attune_pack_file_v1(one.path()).unwrap(), attune_pack_file_v1(two.path()).unwrap());
    }

    #[test]
    fn component_order_is_not_byte_order() {
        assert_eq!(component_cmp("lib/util.sh", "lib.txt"), Ordering::Less);
        assert_eq!("lib/util.sh".cmp("lib.txt"), Ordering::Greater);
        assert_eq!(component_cmp("a/b", "a/b/c"), Ordering::Less);
    }

    #[test]
    fn printed_form_parses_back() {
        let c: Checksum = ATTUNE_VECTOR.parse().unwrap();
        assert_eq!(c.kind(), ChecksumKind::AttunePackFileV1);
        assert_eq!(c.algorithm(), None);
        assert_eq!(c.to_string(), ATTUNE_VECTOR);
    }

    #[test]
    fn python_reference_agrees() {
        // The reference lives in the doc (the block starting with this marker).
        let marker = "# attune-pack-file-v1: Attune's legacy directory checksum\n";
        let start = DOC.find(marker).expect("legacy python block in docs/checksum.md");
        for (dir, want) in [(attune_tree(), ATTUNE_VECTOR), (quirks_tree(), QUIRKS_VECTOR)] {
            let Some(printed) = crate::checksum::tests::doc_python(start, dir.path()) else { return };
            assert_eq!(printed, want);
        }
    }
}
