//! A copy of an environment made of hard links: reusing the build of
//! another pack version with the same lock costs one link per file.
//!
//! Links share inodes: a file changed in one environment changes in both
//! (as with uv's own default of hard-linking from its cache), which is why
//! the source is verified against its lock before it is linked.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}; check that the environments folder is on one filesystem and writable")]
    Io(#[from] std::io::Error),
    #[error("{path}: walking the environment to link failed: {source}; check the folder's permissions")]
    Walk { path: PathBuf, source: walkdir::Error },
    #[error("{path}: not a file, folder or symlink; remove it from the environment")]
    Special { path: PathBuf },
}

/// Recreates `src` at `dest` (which must not exist): folders made, files
/// hard-linked, symlinks copied as they are. Returns the files linked.
pub fn hardlink_tree(src: &Path, dest: &Path) -> Result<u64, LinkError> {
    let mut files = 0;
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry.map_err(|source| LinkError::Walk { path: src.to_path_buf(), source })?;
        let rel = entry.path().strip_prefix(src).expect("walkdir yields paths under its root");
        let to = dest.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs_err::create_dir(&to)?;
        } else if ft.is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            fs_err::os::unix::fs::symlink(&target, &to)?;
        } else if ft.is_file() {
            fs_err::hard_link(entry.path(), &to)?;
            files += 1;
        } else {
            return Err(LinkError::Special { path: entry.path().to_path_buf() });
        }
    }
    Ok(files)
}
