//! A pack version's node packages: `npm ci --ignore-scripts` from the
//! pack's lockfile into `{env}/node/node_modules`, never touching the pack.
//!
//! npm runs in a folder attune fills: the pack's `package.json`, its
//! lockfile and the local tarballs (`file:…tgz`) the lockfile names, each
//! checked to lie inside the pack. The pack's own `.npmrc` is not copied, so
//! it cannot point npm at another registry; no install script runs. No
//! lockfile is an error unless unlocked installs are allowed (then `npm
//! install --ignore-scripts` resolves, and the lockfile it writes is what is
//! recorded).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::events::{EnvEvent, Runtime};
use crate::lock::{NodeLock, NodePackage};
use crate::tool::{self, Npm, ToolError};

/// The folder inside an environment that holds the node project.
pub const NODE_DIR: &str = "node";
const PACKAGE_JSON_LIMIT: u64 = 1 << 20;
const LOCKFILE_LIMIT: u64 = 64 << 20;
const LOCKFILES: [&str; 2] = ["npm-shrinkwrap.json", "package-lock.json"];

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{0}; check the folder's permissions and free space")]
    Io(#[from] std::io::Error),
    #[error(
        "{pack}: package.json has no package-lock.json or npm-shrinkwrap.json, so what npm installs is not pinned; \
         commit a lockfile with the pack (`npm install --package-lock-only`), or pass --allow-unlocked"
    )]
    Unlocked { pack: PathBuf },
    #[error("{file}: {reason}; fix the pack's file")]
    BadFile { file: PathBuf, reason: String },
    #[error("{file}: {entry}: {reason}; local dependencies must be tarballs inside the pack (`npm pack`)")]
    LocalDependency { file: PathBuf, entry: String, reason: String },
    #[error("{dest}: already exists; the node environment is built into a new folder")]
    DestinationExists { dest: PathBuf },
    #[error(
        "offline, and npm's cache lacks what the lockfile pins:\n{detail}\nnothing was installed; install once online (or with the registry reachable) to fill the cache, then retry"
    )]
    OfflineMissing { detail: String },
    #[error("npm {what} failed:\n{detail}\nnothing was installed; see npm's message above")]
    Npm { what: String, detail: String },
}

/// What to build; [`NodeRequest::new`] sets the defaults.
#[derive(Debug, Clone)]
pub struct NodeRequest {
    pub pack_dir: PathBuf,
    /// Without a lockfile, resolve with `npm install` instead of failing.
    pub allow_unlocked: bool,
    /// npm's `--offline`: its cache only.
    pub offline: bool,
    /// The operator's registry (`--registry`); `None`: npm's own config.
    pub registry: Option<String>,
    /// npm's cache (`--cache`); `None`: npm's default.
    pub cache_dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl NodeRequest {
    pub fn new(pack_dir: impl Into<PathBuf>) -> NodeRequest {
        NodeRequest {
            pack_dir: pack_dir.into(),
            allow_unlocked: false,
            offline: false,
            registry: None,
            cache_dir: None,
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEnv {
    /// `{env}/node`; its `node_modules` is what actions resolve from.
    pub path: PathBuf,
    pub lock: NodeLock,
    /// Installed without a lockfile in the pack (`--allow-unlocked`).
    pub unlocked: bool,
}

/// Whether the pack needs a node environment (it has a `package.json`),
/// and the lockfile it has, if any.
pub fn node_lockfile(pack_dir: &Path) -> Option<Option<&'static str>> {
    if !pack_dir.join("package.json").is_file() {
        return None;
    }
    Some(LOCKFILES.into_iter().find(|l| pack_dir.join(l).is_file()))
}

/// Installs the pack's node packages into `{env_dir}/node` (created; it must
/// not exist). `env_dir` is created if missing. On failure what this call
/// created is removed.
pub async fn build_node(
    npm: &Npm,
    req: &NodeRequest,
    env_dir: &Path,
    events: &(dyn Fn(EnvEvent) + Send + Sync),
) -> Result<NodeEnv, NodeError> {
    let work = env_dir.join(NODE_DIR);
    if fs_err::symlink_metadata(&work).is_ok() {
        return Err(NodeError::DestinationExists { dest: work });
    }
    let created_env = !env_dir.exists();
    fs_err::create_dir_all(&work)?;
    let result = build(npm, req, &work, events).await;
    if result.is_err() {
        let _ = fs_err::remove_dir_all(if created_env { env_dir } else { &work });
    }
    result
}

async fn build(
    npm: &Npm,
    req: &NodeRequest,
    work: &Path,
    events: &(dyn Fn(EnvEvent) + Send + Sync),
) -> Result<NodeEnv, NodeError> {
    let Some(lockfile) = node_lockfile(&req.pack_dir) else {
        return Err(NodeError::BadFile { file: req.pack_dir.join("package.json"), reason: "it is missing".into() });
    };
    if lockfile.is_none() && !req.allow_unlocked {
        return Err(NodeError::Unlocked { pack: req.pack_dir.clone() });
    }
    let package_json = read_bounded(&req.pack_dir.join("package.json"), PACKAGE_JSON_LIMIT)?;
    fs_err::write(work.join("package.json"), &package_json)?;
    let mut locked_count = 0;
    if let Some(name) = lockfile {
        let from = req.pack_dir.join(name);
        let bytes = read_bounded(&from, LOCKFILE_LIMIT)?;
        locked_count = packages(&from, &bytes)?.keys().filter(|k| !k.is_empty()).count();
        for local in local_tarballs(&from, &bytes)? {
            let to = work.join(&local);
            if let Some(parent) = to.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::copy(req.pack_dir.join(&local), &to)?;
        }
        fs_err::write(work.join(name), &bytes)?;
    }

    match lockfile {
        Some(_) => events(EnvEvent::Resolved { runtime: Runtime::Node, packages: locked_count, from_lock: true }),
        None => events(EnvEvent::Resolving { runtime: Runtime::Node }),
    }
    let what = if lockfile.is_some() { "ci" } else { "install" };
    let mut cmd = npm.command(work);
    cmd.args([what, "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel", "error"]);
    if req.offline {
        cmd.arg("--offline");
    }
    if let Some(r) = &req.registry {
        cmd.arg("--registry").arg(r);
    }
    if let Some(c) = &req.cache_dir {
        cmd.arg("--cache").arg(c);
    }
    // Unlocked, the count is known only afterwards (0 here).
    events(EnvEvent::Installing { runtime: Runtime::Node, packages: locked_count });
    let ran = tool::run(cmd, &npm.program, what, req.timeout).await?;
    if !ran.status.success() {
        let detail = tool::tail(&ran.stderr, 12);
        let detail = req.registry.iter().fold(detail, |d, r| d.replace(r.as_str(), &tool::redact_url(r)));
        if req.offline && ran.stderr.contains("ENOTCACHED") {
            return Err(NodeError::OfflineMissing { detail });
        }
        return Err(NodeError::Npm { what: what.into(), detail });
    }
    let name = lockfile.unwrap_or("package-lock.json");
    let written = work.join(name);
    let bytes = read_bounded(&written, LOCKFILE_LIMIT)?;
    let lock = node_lock(&written, name, &bytes)?;
    if lockfile.is_none() {
        events(EnvEvent::Resolved { runtime: Runtime::Node, packages: lock.packages.len(), from_lock: false });
    }
    events(EnvEvent::Installed { runtime: Runtime::Node, packages: lock.packages.len() });
    Ok(NodeEnv { path: work.to_path_buf(), lock, unlocked: lockfile.is_none() })
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, NodeError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs_err::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(NodeError::BadFile { file: path.to_path_buf(), reason: format!("larger than {limit} bytes") });
    }
    Ok(bytes)
}

fn packages(file: &Path, bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, NodeError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| NodeError::BadFile { file: file.to_path_buf(), reason: format!("not JSON: {e}") })?;
    match v.get("packages") {
        Some(serde_json::Value::Object(m)) => Ok(m.clone()),
        _ => Err(NodeError::BadFile {
            file: file.to_path_buf(),
            reason: "no \"packages\" (lockfileVersion 2 or 3 is needed; npm 7 and later write it)".into(),
        }),
    }
}

/// The pack-relative tarballs the lockfile installs from (`file:x.tgz`);
/// directory links and paths leaving the pack are refused.
fn local_tarballs(file: &Path, bytes: &[u8]) -> Result<Vec<PathBuf>, NodeError> {
    let mut out = Vec::new();
    for (entry, meta) in packages(file, bytes)? {
        let refuse =
            |reason: String| NodeError::LocalDependency { file: file.to_path_buf(), entry: entry.clone(), reason };
        if meta.get("link").and_then(|l| l.as_bool()) == Some(true) {
            return Err(refuse("a linked folder is not installed by attune".into()));
        }
        let Some(local) = meta.get("resolved").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix("file:")) else {
            continue;
        };
        let p = Path::new(local);
        if !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refuse(format!("{local:?} is not a path inside the pack")));
        }
        out.push(p.to_path_buf());
    }
    Ok(out)
}

/// What the lockfile pins, for the record.
fn node_lock(file: &Path, name: &str, bytes: &[u8]) -> Result<NodeLock, NodeError> {
    let mut pkgs: Vec<NodePackage> = packages(file, bytes)?
        .into_iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, meta)| NodePackage {
            path,
            version: meta.get("version").and_then(|v| v.as_str()).map(str::to_owned),
            integrity: meta.get("integrity").and_then(|v| v.as_str()).map(str::to_owned),
        })
        .collect();
    pkgs.sort();
    Ok(NodeLock { lockfile: name.to_owned(), sha256: format!("sha256:{:x}", Sha256::digest(bytes)), packages: pkgs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dependencies_must_be_tarballs_inside_the_pack() {
        let f = Path::new("package-lock.json");
        let lock = |resolved: &str| {
            format!(r#"{{"packages":{{"":{{}},"node_modules/d":{{"version":"1.0.0","resolved":"{resolved}"}}}}}}"#)
        };
        assert_eq!(
            local_tarballs(f, lock("file:deps/d-1.0.0.tgz").as_bytes()).unwrap(),
            [PathBuf::from("deps/d-1.0.0.tgz")]
        );
        assert!(local_tarballs(f, lock("https://registry.example/d.tgz").as_bytes()).unwrap().is_empty());
        for bad in ["file:../d.tgz", "file:/etc/d.tgz", "file:./x/../../d.tgz"] {
            let e = local_tarballs(f, lock(bad).as_bytes()).unwrap_err();
            assert!(matches!(e, NodeError::LocalDependency { .. }), "{bad}: {e}");
        }
        let linked = r#"{"packages":{"node_modules/d":{"resolved":"d","link":true}}}"#;
        assert!(local_tarballs(f, linked.as_bytes()).is_err());
    }
}
