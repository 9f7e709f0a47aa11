//! attune-app: the operations, one pipeline for every entry point.
//!
//! A [`context::Context`] holds the plain handles (packs folder, database,
//! runtime); opening one runs the start-up check ([`recovery`]). On it run
//! [`install`] (the one pipeline every channel uses), [`packs`] (list, info,
//! verify, uninstall, doctor), [`activation`] and [`upgrade`] (active
//! versions, upgrades, rollback, gc), [`indexes`] and [`by_name`] (indexes
//! and installs by name with dependencies; [`signed_index`] verifies the
//! signed ones with TUF), [`discover`] (search, show, outdated), [`lockfile`] (lock and sync),
//! [`plugins`] (third-party fetchers and their grants; [`listed`] asks them for
//! versions) and [`interpreters`]
//! (the runtimes a pack requires). Everything fails with [`Error`].
//!
//! May import: `attune-core`, `attune-net`, `attune-tuf`, `attune-env`, `attune-registry`,
//! `attune-fetch`, `attune-store`; re-exports them so that a front end (the CLI, the API)
//! needs this crate alone. Knows nothing of HTTP serving or the terminal.

pub mod activation;
pub mod by_name;
pub mod context;
pub mod discover;
pub mod environments;
mod error;
pub mod indexes;
pub mod install;
pub mod interpreters;
pub mod listed;
pub mod lockfile;
pub mod packs;
pub mod plugins;
pub mod recovery;
pub mod request;
pub mod set_progress;
pub mod signed_index;
pub mod upgrade;

pub use attune_core::{checksum, fs, keys, manifest, source, untrusted};
pub use attune_env as env;
pub use attune_fetch::{builtins, runtime, sources, staging};
pub use attune_registry as registry;
pub use attune_store::{artifacts, db, store};
pub use attune_tuf as tuf;
pub use error::{Error, LockfileError, SignedIndexError, UpgradeError};
pub use recovery::open;
