//! Signed registry indexes: an index that is a TUF repository is verified
//! with [`attune_tuf`] before attune reads it, so a compromised index host
//! cannot make attune install what the index's publisher did not sign.
//!
//! Every metadata and target fetch goes through the sandboxed http fetcher
//! ([`install::download`], the same allowlist and limits as any install): the
//! [`FetcherTransport`] here is the TUF client's only way out. The trusted
//! metadata of each index lives in a folder next to its cached copy
//! (`{cache_dir}/indexes-v1/{name}-{key}.tuf/`, see `indexes`). Its errors
//! are [`SignedIndexError`] (in `error`, with the other operation errors).

use std::path::Path;

use attune_tuf::{Anchor, Client, Clock, Facts, Limits, Repository, Transport, TransportError, Verified};

use crate::context::Context;
use crate::runtime::{FetchError, RuntimeError};
use crate::staging::StagingError;
use crate::{Error, SignedIndexError, install, sources};

/// Where trust in a signed index starts, and which target is the index document.
#[derive(Debug, Clone)]
pub struct Signing {
    pub anchor: Anchor,
    /// `index.json` (Attune format) or `v1/index.json` (StackStorm Exchange).
    pub target: String,
}

impl Signing {
    /// `--root FILE`: the root metadata obtained out of band.
    pub fn from_root_file(path: &Path, target: &str) -> Result<Signing, SignedIndexError> {
        let bytes =
            std::fs::read(path).map_err(|source| SignedIndexError::RootFile { path: path.to_owned(), source })?;
        Ok(Signing { anchor: Anchor::Root(bytes), target: target.to_owned() })
    }
}

/// A TUF [`Transport`] over the sandboxed http fetcher.
pub struct FetcherTransport<'a> {
    ctx: &'a Context,
    options: sources::SourceOptions,
}

impl<'a> FetcherTransport<'a> {
    pub fn new(ctx: &'a Context, options: sources::SourceOptions) -> FetcherTransport<'a> {
        FetcherTransport { ctx, options }
    }
}

impl Transport for FetcherTransport<'_> {
    async fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, TransportError> {
        // The fetcher's byte quota is the role's length limit, so it stops
        // writing past it. The http fetcher stages a download twice (its
        // scratch blob, then the file), both against the quota: twice the limit.
        let mut limits = self.ctx.limits;
        limits.write.max_bytes = max_len.saturating_mul(2).min(limits.write.max_bytes);
        install::download(self.ctx, url, self.options.clone(), &limits)
            .await
            .map_err(|e| transport_error(url, max_len, e))
    }
}

/// The fetcher's "not found" is how the client learns there is no newer
/// root; its byte quota is the endless-data limit.
fn transport_error(url: &str, limit: u64, e: Error) -> TransportError {
    let runtime = match &e {
        Error::Runtime(r) => Some(r),
        Error::Source(sources::SourceError::Runtime(r)) => Some(r),
        _ => None,
    };
    match runtime {
        Some(RuntimeError::Fetch { error: FetchError::NotFound(_), .. }) => {
            TransportError::NotFound { url: url.to_owned() }
        }
        Some(RuntimeError::Staging { error: StagingError::TooManyBytes(_), .. }) => {
            TransportError::TooLarge { url: url.to_owned(), limit }
        }
        // A fetcher that reports the quota it hit as its own error.
        Some(RuntimeError::Fetch { error: FetchError::Staging(m), .. }) if m.contains("byte limit") => {
            TransportError::TooLarge { url: url.to_owned(), limit }
        }
        _ => TransportError::Other { url: url.to_owned(), reason: e.to_string() },
    }
}

fn client<'a>(
    ctx: &'a Context,
    name: &str,
    location: &str,
    dir: &Path,
    options: sources::SourceOptions,
) -> Result<Client<FetcherTransport<'a>>, SignedIndexError> {
    if !crate::source::is_http_url(location) {
        return Err(SignedIndexError::NotUrl { name: name.to_owned(), location: location.to_owned() });
    }
    Ok(Client::new(FetcherTransport::new(ctx, options), Repository::under(location), dir, Limits::default()))
}

/// `index add … --root`: trust starts from the anchor; on success the trusted
/// metadata is in `dir` and the verified index document is returned.
pub async fn init(
    ctx: &Context,
    name: &str,
    location: &str,
    dir: &Path,
    signing: &Signing,
    options: sources::SourceOptions,
) -> Result<Verified, SignedIndexError> {
    let client = client(ctx, name, location, dir, options)?;
    client
        .init(&signing.anchor, &signing.target, &Clock::system())
        .await
        .map_err(|error| SignedIndexError::AddRefused { name: name.to_owned(), error: Box::new(error) })
}

/// `index update`: the TUF client workflow from the trusted metadata in `dir`;
/// a refusal leaves `dir` as it was.
pub async fn update(
    ctx: &Context,
    name: &str,
    location: &str,
    dir: &Path,
    target: &str,
    options: sources::SourceOptions,
) -> Result<Verified, SignedIndexError> {
    let client = client(ctx, name, location, dir, options)?;
    client
        .update(target, &Clock::system())
        .await
        .map_err(|error| SignedIndexError::UpdateRefused { name: name.to_owned(), error: Box::new(error) })
}

/// What this host trusts for the index now (no network), or `None` before its first verified fetch here.
pub async fn trusted(
    ctx: &Context,
    name: &str,
    location: &str,
    dir: &Path,
    target: &str,
) -> Result<Option<Facts>, SignedIndexError> {
    let client = client(ctx, name, location, dir, sources::SourceOptions::default())?;
    client
        .trusted(target)
        .await
        .map_err(|error| SignedIndexError::Trusted { name: name.to_owned(), error: Box::new(error) })
}

/// The index document from the trusted metadata on disk alone (`install
/// --offline`): verified again, refused once expired unless `allow_expired`.
pub async fn offline(
    ctx: &Context,
    name: &str,
    location: &str,
    dir: &Path,
    target: &str,
    allow_expired: bool,
) -> Result<Verified, SignedIndexError> {
    let client = client(ctx, name, location, dir, sources::SourceOptions::default())?;
    client
        .offline(target, &Clock::system(), allow_expired)
        .await
        .map_err(|error| SignedIndexError::Offline { name: name.to_owned(), error: Box::new(error) })
}

/// Removes an index's trusted metadata folder (absent is fine).
pub fn forget(dir: &Path) -> Result<(), SignedIndexError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SignedIndexError::Io { path: dir.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetcher_not_found_and_quota_map_to_the_transport_errors() {
        let fetch = |error| Error::Runtime(RuntimeError::Fetch { plugin: "http".into(), error });
        let url = "http://127.0.0.1:1/metadata/2.root.json";
        assert!(matches!(
            transport_error(url, 10, fetch(FetchError::NotFound("404".into()))),
            TransportError::NotFound { .. }
        ));
        let quota = Error::Source(sources::SourceError::Runtime(RuntimeError::Staging {
            plugin: "http".into(),
            error: StagingError::TooManyBytes(10),
        }));
        assert!(matches!(transport_error(url, 10, quota), TransportError::TooLarge { limit: 10, .. }));
        assert!(matches!(
            transport_error(url, 10, fetch(FetchError::Network("refused".into()))),
            TransportError::Other { .. }
        ));
    }
}
