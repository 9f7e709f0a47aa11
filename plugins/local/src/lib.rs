//! The `local` fetcher: copies a pack from a folder on this machine.
//!
//! It exists so that even the simplest source goes through the same sandbox
//! as every other: the host mounts the folder read-only at
//! `request.input`, and this component walks it and tells the host what to
//! copy into staging: file contents are copied host side
//! (`copy-input-file`), so no byte passes through the sandbox. It leaves
//! version-control metadata out and keeps symlinks as symlinks (the host
//! refuses any that leave the pack).

use std::fs;
use std::io;

use attune_plugin_sdk::{Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, Staging, log};

/// Never part of a pack: a pack is its working tree, not its history.
const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn"];

struct Local;

impl Fetcher for Local {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Copies a pack from a folder on this machine".into(),
            schemes: vec!["file".into()],
            capabilities: vec![Capability::ReadInput],
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let root = request
            .input
            .clone()
            .ok_or_else(|| FetchError::InvalidSource("the local fetcher needs a folder as input".into()))?;
        let mut copied = 0u64;
        copy_dir(&root, "", &mut copied)?;
        log::progress(copied, Some(copied));
        Ok(FetchResult::new(request.source))
    }
}

fn io_err(path: &str, e: io::Error) -> FetchError {
    FetchError::Other(format!("{path}: {e}"))
}

/// Copies `root/rel` into staging at `rel`, depth first, in name order so
/// two runs make the same calls.
fn copy_dir(root: &str, rel: &str, copied: &mut u64) -> Result<(), FetchError> {
    let dir = join(root, rel);
    let mut entries = fs::read_dir(&dir)
        .map_err(|e| io_err(&dir, e))?
        .map(|e| e.map_err(|e| io_err(&dir, e)))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| FetchError::InvalidContent(format!("{dir}: file name {n:?} is not UTF-8")))?;
        let rel_path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let src = join(root, &rel_path);
        let kind = entry.file_type().map_err(|e| io_err(&src, e))?;
        if kind.is_dir() {
            if VCS_DIRS.contains(&name.as_str()) {
                continue;
            }
            Staging::create_dir(&rel_path)?;
            copy_dir(root, &rel_path, copied)?;
        } else if kind.is_symlink() {
            // WASI refuses to read a target that is absolute or leaves the
            // mounted folder, so that failure means "leaves the pack".
            let target = fs::read_link(&src).map_err(|e| {
                FetchError::InvalidContent(format!(
                    "{rel_path}: symlink target leaves the pack (absolute or outside the folder): {e}"
                ))
            })?;
            let target = target
                .to_str()
                .ok_or_else(|| FetchError::InvalidContent(format!("{src}: symlink target is not UTF-8")))?;
            Staging::create_symlink(&rel_path, target)?;
        } else if kind.is_file() {
            // The host copies it file to file, with its executable bit.
            *copied += Staging::copy_input_file(&rel_path, &rel_path)?;
            log::progress(*copied, None);
        } else {
            return Err(FetchError::InvalidContent(format!(
                "{src}: not a regular file, folder or symlink (sockets, devices and FIFOs cannot be part of a pack)"
            )));
        }
    }
    Ok(())
}

fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() { root.to_string() } else { format!("{}/{rel}", root.trim_end_matches('/')) }
}

attune_plugin_sdk::export_fetcher!(Local);
