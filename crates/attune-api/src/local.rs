//! Which sources the API may install from the server's own filesystem.
//!
//! Why it exists: a client must not make the server read its files. A source
//! that names this machine (a folder, a `file://` URL, an archive file) is
//! refused unless the server was started with `--allow-local-source DIR`,
//! and then it is opened once, through DIR's handle, never leaving DIR and
//! never following a symlink as its last component; that open handle is
//! what the fetcher reads (a path checked, then opened again by
//! name, could be swapped for a symlink in between). A path that does not
//! exist is refused the same way, so the answer does not reveal what
//! exists on the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ApiError;
use crate::context::Context;
use crate::install::OpenedInput;

#[derive(Debug, Clone)]
pub struct LocalSources {
    /// Canonical; `None`: no local source is allowed.
    allowed: Option<PathBuf>,
    /// `allowed`, opened at start: every local source is opened through it.
    dir: Option<Arc<cap_std::fs::Dir>>,
}

impl LocalSources {
    /// Canonicalizes `dir` now, so later changes to it cannot widen it.
    pub fn new(dir: Option<&Path>) -> Result<LocalSources, crate::Error> {
        let allowed = dir
            .map(|d| {
                std::fs::canonicalize(d).map_err(|e| {
                    crate::Error::Usage(format!("--allow-local-source {}: {e}; name an existing folder", d.display()))
                })
            })
            .transpose()?;
        if let Some(a) = &allowed
            && !a.is_dir()
        {
            return Err(crate::Error::Usage(format!("--allow-local-source {}: not a folder", a.display())));
        }
        let dir = allowed
            .as_ref()
            .map(|a| cap_std::fs::Dir::open_ambient_dir(a, cap_std::ambient_authority()).map(Arc::new))
            .transpose()
            .map_err(|e| crate::Error::Usage(format!("--allow-local-source: {e}")))?;
        Ok(LocalSources { allowed, dir })
    }

    /// Network sources pass unchanged (`None`). A local one is opened here,
    /// once, relative to the allowed folder's handle: no component may
    /// leave it (cap-std), the last one is not followed if it is a symlink,
    /// and the open handle is what the fetcher will read, so replacing the
    /// path afterwards changes nothing. 403 when it is not allowed.
    pub async fn check(&self, ctx: &Context, source: &str) -> Result<Option<Arc<OpenedInput>>, ApiError> {
        let lower = source.to_ascii_lowercase();
        if attune_app::source::is_network_source(source) {
            return Ok(None);
        }
        if source.contains("://") && !lower.starts_with("file://") {
            // An added plugin may handle the scheme; if it may read local
            // input, what it would read is held to the same rule.
            let plugin = crate::plugins::for_source(ctx, source, None).await?;
            if let Some(p) = plugin {
                let grants = ctx.db.grants(&p.name, false).await.map_err(crate::Error::from)?;
                if grants.iter().any(|g| g.capability == "read-input")
                    && let Ok(path) = std::fs::canonicalize(source.strip_prefix("file://").unwrap_or(source))
                {
                    self.allow(source, &path)?;
                }
            }
            return Ok(None);
        }
        self.open(source).map(|o| Some(Arc::new(o)))
    }

    /// Opens a local source under the allowed folder (see [`Self::check`]).
    pub fn open(&self, source: &str) -> Result<OpenedInput, ApiError> {
        let Some((root, dir)) = self.allowed.as_ref().zip(self.dir.as_ref()) else {
            return Err(self.refused(source));
        };
        let raw = source.get(..7).filter(|p| p.eq_ignore_ascii_case("file://")).map_or(source, |_| &source[7..]);
        let path = Path::new(raw);
        // Only the folder holding it is resolved by name, to find where it
        // sits under the allowed folder; the rest is opened through `dir`.
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) if path.is_absolute() => (p, n),
            _ => return Err(self.refused(source)),
        };
        let parent = std::fs::canonicalize(parent).map_err(|_| self.refused(source))?;
        let full = parent.join(name);
        let rel = full.strip_prefix(root).map_err(|_| self.refused(source))?;
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true);
        cap_fs_ext::OpenOptionsFollowExt::follow(&mut opts, cap_fs_ext::FollowSymlinks::No);
        let file = dir.open_with(rel, &opts).map_err(|_| self.refused(source))?;
        let meta = file.metadata().map_err(|_| self.refused(source))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(self.refused(source));
        }
        Ok(OpenedInput { path: full, handle: file.into_std(), is_dir: meta.is_dir() })
    }

    fn allow(&self, source: &str, canonical: &Path) -> Result<String, ApiError> {
        match &self.allowed {
            Some(dir) if canonical.starts_with(dir) => Ok(canonical.display().to_string()),
            _ => Err(self.refused(source)),
        }
    }

    fn refused(&self, source: &str) -> ApiError {
        let message = match &self.allowed {
            None => format!(
                "{source:?} is a path on the server; local sources are refused over the API \
                 (the server's operator can allow a folder with `attune serve --allow-local-source DIR`)"
            ),
            Some(_) => format!(
                "{source:?} is not a file or folder under the folder this server allows local sources from \
                 (--allow-local-source)"
            ),
        };
        ApiError::forbidden("local_source_refused", message)
    }
}
