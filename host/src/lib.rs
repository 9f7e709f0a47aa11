//! attune: a sandboxed installer for automation packs.
//!
//! Every source fetcher runs as a WebAssembly component ([`runtime`]) that
//! writes only through the host's validated [`staging`] writer; the
//! [`install`] pipeline checks the result ([`manifest`]), checksums it
//! ([`checksum`]), moves it atomically into versioned storage ([`store`]) and
//! records it ([`db`]).

pub mod api;
pub mod artifacts;
pub mod checksum;
pub mod config;
pub mod context;
pub mod db;
pub mod install;
pub mod lockfile;
pub mod manifest;
pub mod ops;
pub mod plugins;
pub mod registry;
pub mod runtime;
pub mod runtimes;
pub mod sources;
pub mod staging;
pub mod store;
pub mod untrusted;
pub mod upgrade;

use std::path::PathBuf;

/// Everything an operation can fail with; each variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Checksum(#[from] checksum::ChecksumError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Artifact(#[from] artifacts::ArtifactError),
    #[error(transparent)]
    Lockfile(#[from] lockfile::LockfileError),
    #[error(transparent)]
    Runtimes(#[from] runtimes::RuntimesError),
    /// Boxed: its rollback report is large, and every `Result<_, Error>` carries the largest variant.
    #[error(transparent)]
    Upgrade(Box<upgrade::UpgradeError>),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{source_str}: checksum mismatch: expected {expected}, got {actual}; nothing was installed")]
    ChecksumMismatch { source_str: String, expected: String, actual: String },
    #[error("{pack_ref}@{version} is already installed at {path}; use --force to reinstall it")]
    AlreadyInstalled { pack_ref: String, version: String, path: PathBuf },
    #[error("{spec} is not installed{}", if installed.is_empty() { String::new() } else { format!(" (installed: {})", installed.join(", ")) })]
    NotInstalled { spec: String, installed: Vec<String> },
    #[error(
        "{source_str}: no pack.yaml at the archive's root or inside its single top-level folder; \
         a pack archive holds the pack folder's contents, or one folder with them"
    )]
    NoManifest { source_str: String },
    #[error("{0}")]
    Usage(String),
    #[error("the metadata database is inconsistent: {0}; run `attune doctor`")]
    Corrupt(String),
}

impl From<upgrade::UpgradeError> for Error {
    fn from(e: upgrade::UpgradeError) -> Error {
        Error::Upgrade(Box::new(e))
    }
}
