//! What installing a set of packs by name is doing, pack by pack, for
//! progress displays and event streams ([`crate::by_name::install_by_name_with`]).
//!
//! A single install reports [`InstallEvent`]s; a set adds what only the set
//! knows: the plan (the solved set), which pack an install event belongs to,
//! each pack finishing, dependencies left alone, a failure and the rollback
//! after it. The CLI turns these into one line per pack plus an overall bar
//! on a terminal, or JSON lines with `--json`; the wire format lives there.
//!

use std::sync::Arc;

use crate::install::{InstallEvent, InstallProgress, InstallReport};

/// One pack of the solved set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedPack {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    /// The index it comes from (`None`: from a lockfile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// `install`, `keep` (this version is already installed), or `remove`
    /// (`sync --locked`: installed, not in the lockfile).
    pub action: &'static str,
}

/// Why a pack of the set is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// This version is installed already; it is kept as it is.
    AlreadyInstalled,
    /// `--skip-deps`: a dependency the index lists, with its range.
    SkipDeps { req: String },
}

#[derive(Debug, Clone)]
pub enum SetEvent {
    /// The solved set, in install order (dependencies first), before anything is fetched.
    Plan { spec: String, packs: Vec<PlannedPack> },
    /// What the install pipeline is doing for one pack.
    Pack { pack_ref: String, version: String, event: InstallEvent },
    /// One pack is installed (boxed: a report is large beside the other events).
    Done { report: Box<InstallReport> },
    /// One pack is not installed, and why.
    Skipped { pack_ref: String, version: Option<String>, reason: Skip },
    /// One pack failed; the set stops here (and is rolled back).
    Failed { pack_ref: String, version: String, error: String },
    /// A pack this run installed was uninstalled again (`error`: it could not be).
    RolledBack { pack_ref: String, version: String, error: Option<String> },
    /// `sync --locked` removed a pack the lockfile does not list.
    Removed { pack_ref: String, version: String },
}

pub type SetProgress = Arc<dyn Fn(&SetEvent) + Send + Sync>;

/// A set sink that passes each pack's install events to a single-install
/// display and drops the rest (the one-spinner view).
pub fn forward_to(progress: InstallProgress) -> SetProgress {
    Arc::new(move |e: &SetEvent| {
        if let SetEvent::Pack { event, .. } = e {
            progress(event.clone())
        }
    })
}

/// The install-event sink of one pack of the set.
pub fn for_pack(set: &SetProgress, pack_ref: &str, version: &str) -> InstallProgress {
    let (set, pack_ref, version) = (set.clone(), pack_ref.to_owned(), version.to_owned());
    Arc::new(move |event: InstallEvent| {
        set(&SetEvent::Pack { pack_ref: pack_ref.clone(), version: version.clone(), event })
    })
}
