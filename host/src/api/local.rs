//! Which sources the API may install from the server's own filesystem.
//!
//! Why it exists: a client must not make the server read its files. A source
//! that [`crate::sources::parse`] resolves to this machine (a folder, a
//! `file://` URL, an archive file) is refused unless the server was started
//! with `--allow-local-source DIR`, and then only when its canonical path
//! (symlinks and `..` resolved) lies under DIR's canonical path. A path that
//! does not exist is refused the same way, so the answer does not reveal
//! what exists on the server.

use std::path::{Path, PathBuf};

use super::error::ApiError;
use crate::context::Context;
use crate::sources::{SourceError, SourceSpec};

#[derive(Debug, Clone)]
pub struct LocalSources {
    /// Canonical; `None`: no local source is allowed.
    allowed: Option<PathBuf>,
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
        Ok(LocalSources { allowed })
    }

    /// The source to install: unchanged for network sources; for a local
    /// one, its checked canonical path (so the pipeline opens exactly what
    /// was checked). 403 when it is not allowed.
    pub async fn check(&self, ctx: &Context, source: &str) -> Result<String, ApiError> {
        match crate::sources::parse(source) {
            Ok(SourceSpec::Local(p) | SourceSpec::Archive(p)) => self.allow(source, &p),
            Ok(_) => Ok(source.to_string()),
            Err(SourceError::NotFound { .. } | SourceError::Io { .. } | SourceError::Unsupported { .. }) => {
                Err(self.refused(source))
            }
            Err(SourceError::UnknownScheme { .. }) => {
                // An added plugin may handle the scheme; if it may read local
                // input, what it would read is held to the same rule.
                let plugin = crate::plugins::admin::for_source(ctx, source, None).await?;
                if let Some(p) = plugin {
                    let grants = ctx.db.grants(&p.name, false).await.map_err(crate::Error::from)?;
                    if grants.iter().any(|g| g.capability == "read-input")
                        && let Ok(path) = std::fs::canonicalize(source.strip_prefix("file://").unwrap_or(source))
                    {
                        self.allow(source, &path)?;
                    }
                }
                Ok(source.to_string())
            }
            // Bad URLs and the like: the pipeline reports them.
            Err(_) => Ok(source.to_string()),
        }
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
