//! A pack version's runtime environment as part of its install: the Python
//! virtualenv its `requirements.txt` asks for and the `node_modules` its
//! `package.json` locks, built by `attune-env` and kept in a second folder
//! tree, `{envs_dir}/{ref}-{version}/`, with `{envs_dir}/{ref}` linking to the
//! active version's, exactly as the packs folder does.
//!
//! The environment is one unit with the pack: it is built in the envs
//! folder's own staging before anything is recorded, published by rename
//! just before the pack, and put back as it was if the pack's publish fails.
//! What it was built from (the resolved requirements with their hashes) is
//! recorded in the installation's metadata (`environment`), so `verify`,
//! `doctor --repair`, `lock` and `sync --locked` can check it, rebuild it and
//! reproduce it.

use std::path::{Path, PathBuf};

use attune_env::{EnvEvent, NodeLock, PythonLock};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::interpreters::{Found, Kind};
use crate::store::StagingDir;
use crate::{Error, store::Store};

/// What one install asks of the environment.
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// `--no-env`: install the pack without its environment.
    pub skip: bool,
    /// `--rebuild-env`: build it afresh, never linked from another version's.
    pub rebuild: bool,
    /// `--allow-source-builds`: let uv run build backends for sdists.
    pub allow_source_builds: bool,
    /// `--with-tests`: `requirements-tests.txt` too.
    pub with_tests: bool,
    /// `--allow-unlocked`: a `package.json` without a lockfile is resolved.
    pub allow_unlocked: bool,
    /// Install exactly this (`sync --locked`, a rebuild by `doctor --repair`).
    pub locked: Option<EnvRecord>,
}

/// What an environment was built from: recorded with the installation
/// (`metadata.environment`), shown by `info`, written by `lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonRecord {
    pub lock: PythonLock,
    /// A build backend ran (`--allow-source-builds` and an sdist-only requirement).
    #[serde(default)]
    pub built_from_source: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub lock: NodeLock,
    /// Resolved without a lockfile (`--allow-unlocked`).
    #[serde(default)]
    pub unlocked: bool,
}

impl EnvRecord {
    /// The record stored with an installation, if it has one.
    pub fn of_metadata(metadata: &serde_json::Value) -> Result<Option<EnvRecord>, String> {
        match metadata.get("environment") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| e.to_string()),
        }
    }

    /// One line for humans: `python cpython 3.11.7 (linux-x86_64), 3 packages; node, 2 packages`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.python {
            let n = p.lock.requirements.len();
            parts.push(format!("python {}, {n} package{}", p.lock.python, if n == 1 { "" } else { "s" }));
        }
        if let Some(n) = &self.node {
            let c = n.lock.packages.len();
            parts.push(format!("node, {c} package{}", if c == 1 { "" } else { "s" }));
        }
        parts.join("; ")
    }
}

/// Why an environment could not be built or checked.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Python(#[from] attune_env::PythonError),
    #[error(transparent)]
    Node(#[from] attune_env::NodeError),
    #[error(transparent)]
    Tool(#[from] attune_env::ToolError),
    #[error("it needs a Python interpreter to build its environment, and {why}; install one or set ATTUNE_PYTHON")]
    NoPython { why: String },
    #[error(
        "the lock records a {runtime} environment, but the pack has no {file}; write the lock again from this pack"
    )]
    LockWithoutFile { runtime: &'static str, file: &'static str },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// A built environment, still in staging until [`publish`].
#[derive(Debug)]
pub struct Built {
    staging: StagingDir,
    pub record: EnvRecord,
    /// What to show: reused from another version, built from source.
    pub notes: Vec<String>,
}

/// Which environments the staged pack at `pack_dir` needs: (python, node).
pub fn needed(pack_dir: &Path, opts: &EnvOptions) -> (bool, bool) {
    let python = match &opts.locked {
        Some(l) => l.python.is_some(),
        None => !attune_env::requirement_files(pack_dir, opts.with_tests).is_empty(),
    };
    let node = match &opts.locked {
        Some(l) => l.node.is_some(),
        None => attune_env::node_lockfile(pack_dir).is_some(),
    };
    (python, node)
}

/// Builds the environment the pack at `pack_dir` needs into the envs
/// folder's staging; `None` when it needs none (or `--no-env`).
pub async fn build(
    ctx: &Context,
    pack_dir: &Path,
    pack_ref: &str,
    opts: &EnvOptions,
    offline: bool,
    events: &(dyn Fn(EnvEvent) + Send + Sync),
) -> Result<Option<Built>, Error> {
    let (python, node) = needed(pack_dir, opts);
    if opts.skip || !(python || node) {
        return Ok(None);
    }
    let wrap = |e: EnvError| Error::Environment { pack: pack_ref.to_owned(), error: Box::new(e) };
    let staging = ctx.envs.new_staging()?;
    let dest = staging.pack_path();
    // attune-env builds into a folder that does not exist yet.
    std::fs::remove_dir(&dest).map_err(|error| wrap(EnvError::Io { path: dest.clone(), error }))?;
    let mut record = EnvRecord { python: None, node: None };
    let mut notes = Vec::new();
    if python {
        let interpreter = match ctx.interpreters.find(Kind::Python).await {
            Found::At { program, .. } => program,
            Found::Missing(why) => return Err(wrap(EnvError::NoPython { why })),
        };
        let uv = attune_env::Uv::discover(ctx.env_config.uv.as_deref()).await.map_err(|e| wrap(e.into()))?;
        let mut req = attune_env::PythonRequest::new(pack_dir, interpreter, ctx.env_config.python_sources());
        req.with_tests = opts.with_tests;
        req.allow_source_builds = opts.allow_source_builds;
        req.offline = offline;
        req.locked = opts.locked.as_ref().and_then(|l| l.python.as_ref()).map(|p| p.lock.clone());
        if req.locked.is_none() && attune_env::requirement_files(pack_dir, opts.with_tests).is_empty() {
            return Err(wrap(EnvError::LockWithoutFile { runtime: "python", file: "requirements.txt" }));
        }
        if !opts.rebuild {
            req.reuse_from = other_versions(&ctx.envs, pack_ref);
        }
        let built = attune_env::build_python(&uv, &req, &dest, events).await.map_err(|e| wrap(e.into()))?;
        if let Some(from) = &built.reused_from {
            notes.push(format!("python environment linked from {}", from.display()));
        }
        if built.built_from_source {
            notes.push("a build backend ran: a requirement has no wheel (--allow-source-builds)".to_owned());
        }
        record.python = Some(PythonRecord { lock: built.lock, built_from_source: built.built_from_source });
    }
    if node {
        if attune_env::node_lockfile(pack_dir).is_none() {
            return Err(wrap(EnvError::LockWithoutFile { runtime: "node", file: "package.json" }));
        }
        let npm = attune_env::Npm::discover(ctx.env_config.npm.as_deref()).await.map_err(|e| wrap(e.into()))?;
        let mut req = attune_env::NodeRequest::new(pack_dir);
        req.allow_unlocked = opts.allow_unlocked;
        req.offline = offline;
        req.registry = ctx.env_config.npm_registry.clone();
        let built = attune_env::build_node(&npm, &req, &dest, events).await.map_err(|e| wrap(e.into()))?;
        if built.unlocked {
            notes.push("node packages resolved without a lockfile (--allow-unlocked)".to_owned());
        }
        record.node = Some(NodeRecord { lock: built.lock, unlocked: built.unlocked });
    }
    Ok(Some(Built { staging, record, notes }))
}

/// The environment folders of `pack_ref`'s other versions, newest first:
/// one built from the same lock is linked instead of installed.
fn other_versions(envs: &Store, pack_ref: &str) -> Vec<PathBuf> {
    let mut found: Vec<(semver::Version, PathBuf)> = envs
        .scan()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, r, _)| r == pack_ref)
        .map(|(name, _, v)| (v, envs.root().join(name)))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A published environment, until the pack's own publish is known to have
/// worked: [`Published::undo`] puts back what was there before.
#[derive(Debug)]
pub struct Published {
    staging: StagingDir,
    pack_ref: String,
    version: semver::Version,
    /// The environment this one replaced sits in `staging` now.
    replaced: bool,
}

/// Moves a built environment to `{envs_dir}/{ref}-{version}`, replacing
/// (atomically) whatever is there: with the pack lock held, a folder there
/// belongs to the version being reinstalled or to an install that died.
pub fn publish(ctx: &Context, built: Built, pack_ref: &str, version: &semver::Version) -> Result<Published, Error> {
    let from = built.staging.pack_path();
    let replaced = std::fs::symlink_metadata(ctx.envs.pack_dir(pack_ref, version)).is_ok();
    ctx.envs.commit(&built.staging, &from, pack_ref, version, true)?;
    Ok(Published { staging: built.staging, pack_ref: pack_ref.to_owned(), version: version.clone(), replaced })
}

impl Published {
    /// The pack's publish failed: the environment before this install comes back.
    pub fn undo(self, ctx: &Context) {
        if self.replaced {
            let _ = ctx.envs.commit(&self.staging, &self.staging.pack_path(), &self.pack_ref, &self.version, true);
        } else if let Ok(aside) = ctx.envs.take_out(&self.pack_ref, &self.version) {
            ctx.envs.discard(&aside);
        }
    }
}

/// Points `{envs_dir}/{ref}` at `version`'s environment, or removes the link
/// when that version has none.
pub fn link(ctx: &Context, pack_ref: &str, version: Option<&semver::Version>) -> Result<(), Error> {
    match version {
        Some(v) if ctx.envs.pack_dir(pack_ref, v).is_dir() => ctx.envs.set_active(pack_ref, v)?,
        _ => ctx.envs.clear_active(pack_ref)?,
    }
    Ok(())
}

/// Checks an installed environment against its record: every distribution
/// and every file its `RECORD` lists. Empty: as built.
pub fn verify(ctx: &Context, pack_ref: &str, version: &semver::Version, record: &EnvRecord) -> Vec<String> {
    let dir = ctx.envs.pack_dir(pack_ref, version);
    if !dir.is_dir() {
        return vec![format!("{}: the environment is missing", dir.display())];
    }
    let mut out = Vec::new();
    if let Some(p) = &record.python {
        match attune_env::verify_python(&dir, &p.lock) {
            Ok(diffs) => out.extend(diffs.iter().map(|d| d.to_string())),
            Err(e) => out.push(e.to_string()),
        }
    }
    if record.node.is_some() && !dir.join("node").is_dir() {
        out.push(format!("{}: node_modules are missing", dir.join("node").display()));
    }
    out
}
