//! The one error of every operation: each lower crate's error, and the app's
//! own (upgrade and lockfile problems), so a caller matches on one enum.
//! Defined here, apart from the operations, so that no operation module and
//! this module import each other.

use std::path::PathBuf;

/// Everything an operation can fail with; each variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Checksum(#[from] crate::checksum::ChecksumError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Artifact(#[from] crate::artifacts::ArtifactError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Runtimes(#[from] crate::interpreters::RuntimesError),
    /// Boxed: a TUF error with its context is large too.
    #[error(transparent)]
    Signed(Box<SignedIndexError>),
    /// Boxed: its rollback report is large, and every `Result<_, Error>` carries the largest variant.
    #[error(transparent)]
    Upgrade(Box<UpgradeError>),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The pack's runtime environment (its Python or node packages); the
    /// pack was not installed. Boxed: the builders' errors are large.
    #[error(
        "{pack}: its environment was not built, so the pack was not installed: {error}\n\
         (--no-env installs the pack without its environment)"
    )]
    Environment { pack: String, error: Box<crate::environments::EnvError> },
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

impl From<SignedIndexError> for Error {
    fn from(e: SignedIndexError) -> Error {
        Error::Signed(Box::new(e))
    }
}

impl From<UpgradeError> for Error {
    fn from(e: UpgradeError) -> Error {
        Error::Upgrade(Box::new(e))
    }
}

/// An upgrade, activation or rollback that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{pack_ref}: no version is active on this host; activate one with `attune activate {pack_ref}@<version>`")]
    NoActive { pack_ref: String },
    #[error(
        "{pack_ref}@{version}: not installed on this host{}; install it first",
        if installed.is_empty() { String::new() } else { format!(" (installed: {})", installed.join(", ")) }
    )]
    NotInstalled { pack_ref: String, version: String, installed: Vec<String> },
    #[error("{pack_ref}: nothing to roll back to: {reason}")]
    NoPrevious { pack_ref: String, reason: String },
    #[error(
        "{pack_ref}@{version} is the active version and {others} also installed; \
         activate another first (`attune activate {pack_ref}@<version>`) or uninstall with --force \
         to leave {pack_ref} with no active version"
    )]
    UninstallActive { pack_ref: String, version: String, others: String },
    #[error("{source_str}: holds {found}, not a version of {pack_ref}; it was not kept")]
    WrongPack { source_str: String, pack_ref: String, found: String },
    #[error(
        "upgrade of {pack_ref} from {from} to {to} failed at {step}: {error}; rolled back: {}",
        rolled_back.join("; ")
    )]
    Failed { pack_ref: String, from: String, to: String, step: &'static str, error: String, rolled_back: Vec<String> },
    #[error(
        "upgrade of {pack_ref} from {from} to {to} failed at {step}: {error}; the rollback failed too ({rollback_error}); \
         run `attune verify {pack_ref}` and `attune activate {pack_ref}@{from}`"
    )]
    RollbackFailed {
        pack_ref: String,
        from: String,
        to: String,
        step: &'static str,
        error: String,
        rollback_error: String,
    },
}

/// A lockfile that cannot be read or honoured.
#[derive(Debug, thiserror::Error)]
pub enum LockfileError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a lockfile: {reason}; write one with `attune lock`")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "{path}: lockfile version {version} is not supported (this attune reads version {supported}); use a newer attune"
    )]
    UnsupportedVersion { path: PathBuf, version: u32, supported: u32 },
    #[error("{path}: {pack}: {reason}; fix the entry or write the lockfile again with `attune lock`")]
    BadEntry { path: PathBuf, pack: String, reason: String },
    #[error(
        "{pack}: checksum mismatch: the lockfile expects {expected}, the installed pack has {actual}; \
         nothing was changed; uninstall it (or write a new lockfile) and sync again"
    )]
    Mismatch { pack: String, expected: String, actual: String },
    #[error(
        "{pack}: the installed tree at {path} no longer matches: expected {expected}, found {actual}; \
         nothing was changed; see `attune verify {pack}`, then reinstall it"
    )]
    Tampered { pack: String, path: String, expected: String, actual: String },
    #[error(
        "{pack}: {source_str} no longer holds what the lockfile locked: expected {expected}, got {actual}; \
         nothing was installed"
    )]
    SourceChanged { pack: String, source_str: String, expected: String, actual: String },
    #[error("{pack}: the installed folder {path} is missing; nothing was changed; run `attune doctor --repair`")]
    Missing { pack: String, path: String },
}

/// A signed (TUF) index that could not be added, updated or read (see `signed_index`).
/// The TUF error is boxed: it is large, and every `Result` here would carry it.
#[derive(Debug, thiserror::Error)]
pub enum SignedIndexError {
    #[error("index {name}: not added: {error}")]
    AddRefused { name: String, error: Box<attune_tuf::TufError> },
    #[error("update refused: {error}; the cached index and the trusted metadata are unchanged")]
    UpdateRefused { name: String, error: Box<attune_tuf::TufError> },
    #[error("index {name}: cannot be used offline: {error}; run `attune index update {name}` while online")]
    Offline { name: String, error: Box<attune_tuf::TufError> },
    #[error("index {name}: the trusted metadata on this host cannot be used: {error}")]
    Trusted { name: String, error: Box<attune_tuf::TufError> },
    #[error(
        "index {name}: {location} is not an http(s) URL; a signed index is a TUF repository served over http(s) \
         (metadata/ and targets/ under the URL)"
    )]
    NotUrl { name: String, location: String },
    #[error(
        "index {name}: unsigned, and signed indexes are required (--require-signed or require_signed_indexes in \
         the config); add it with --root FILE or --root-sha256 HEX, or drop the requirement"
    )]
    Unsigned { name: String },
    #[error("{path}: cannot read the root metadata: {source}; give the root.json the index's publisher distributes")]
    RootFile { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{pack} (from index {index}): {error}; nothing was changed")]
    LockRollback { pack: String, index: String, error: Box<attune_tuf::TufError> },
}
