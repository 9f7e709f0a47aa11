//! A pack version's Python virtualenv, built with uv into a folder the
//! caller publishes by rename together with the pack.
//!
//! Steps: check the pack's requirements files (plain requirements only) →
//! ask the interpreter what it is → resolve once (`uv pip compile
//! --generate-hashes`, for that interpreter) or take the recorded lock →
//! reuse an identical environment of another version by hard links, or
//! `uv venv --relocatable` and `uv pip sync --require-hashes`. Wheels only
//! unless source builds are allowed (`--no-build`, at resolution too, since
//! uv would build an sdist to read its metadata). Only the operator's
//! indexes are passed, with `--no-index` when there is none; uv reads no
//! config file and no `UV_*` variable.
//!
//! The venv is relocatable (relative activation scripts and entry point
//! launchers), so it works after the rename; `pyvenv.cfg` and `bin/python`
//! name only the base interpreter, which does not move.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::events::{EnvEvent, Runtime};
use crate::lock::{self, LockError, LockedRequirement, PythonLock, PythonTarget, REQUIREMENTS_FILE_LIMIT};
use crate::tool::{self, ToolError, Uv, redact_url};
use crate::verify;

/// Where the lock and base interpreter of a built environment are written
/// inside it, for reuse by the next version.
pub const STAMP_FILE: &str = "attune-env.json";
/// Largest stamp read back.
const STAMP_LIMIT: u64 = 4 << 20;
const PROBE_SCRIPT: &str = "import json,os,platform,sys,sysconfig;print(json.dumps({'implementation':sys.implementation.name,'version':platform.python_version(),'platform':sysconfig.get_platform(),'base':os.path.realpath(getattr(sys,'_base_executable',None) or sys.executable)}))";

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}; check the folder's permissions and free space")]
    Io(#[from] std::io::Error),
    #[error("{dest}: already exists; the environment is built into a new folder (remove it, or pick another)")]
    DestinationExists { dest: PathBuf },
    #[error("{interpreter}: could not be asked what it is: {why}; point attune at a working python (ATTUNE_PYTHON)")]
    Interpreter { interpreter: PathBuf, why: String },
    #[error(
        "the locked requirements were resolved for {locked}, this host's interpreter is {host}; \
         write the lock again on a matching host, or rebuild without the lock"
    )]
    LockedForOtherPython { locked: String, host: String },
    #[error(
        "no requirement set satisfies {files}:\n{detail}\nnothing was installed; fix the pack's requirements or the indexes it is resolved from"
    )]
    Unsatisfiable { files: String, detail: String },
    #[error(
        "{} {} no wheel for this interpreter, only a source distribution; building it would run its build code \
         (setup.py), which attune does not do by default; nothing was installed; ask for a wheel on the index, \
         or pass --allow-source-builds",
        .packages.join(", "), if .packages.len() == 1 { "has" } else { "have" }
    )]
    SourceBuildRefused { packages: Vec<String> },
    #[error(
        "the locked requirements were resolved with source builds (a requirement has no wheel), and installing them \
         would run build code (setup.py); nothing was installed; pass --allow-source-builds, or lock again from an \
         index with wheels"
    )]
    LockNeedsSourceBuilds,
    #[error(
        "offline, and not in the cache: {}; nothing was installed; build once online (or with the index reachable) to fill uv's cache, then retry",
        .missing.join(", ")
    )]
    OfflineMissing { missing: Vec<String> },
    #[error(
        "{}: the index now serves other bytes than the lock recorded (hash mismatch); nothing was installed; \
         find out why the distribution changed, then write the lock again",
        .packages.join(", ")
    )]
    HashMismatch { packages: Vec<String> },
    #[error("uv {what} failed:\n{detail}\nnothing was installed; see uv's message above")]
    Uv { what: String, detail: String },
    #[error(transparent)]
    Link(#[from] crate::link::LinkError),
}

/// Where distributions may come from: the operator's configuration, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PythonSources {
    /// A PEP 503 simple index (`python_index_url`); `None` passes `--no-index`.
    pub index_url: Option<String>,
    /// Folders or pages of distribution files (`python_find_links`).
    pub find_links: Vec<String>,
}

impl PythonSources {
    /// PyPI, as a config with nothing set means.
    pub fn pypi() -> PythonSources {
        PythonSources { index_url: Some("https://pypi.org/simple".into()), find_links: vec![] }
    }

    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        match &self.index_url {
            Some(u) => a.extend(["--index-url".to_owned(), u.clone()]),
            None => a.push("--no-index".into()),
        }
        for f in &self.find_links {
            a.extend(["--find-links".to_owned(), f.clone()]);
        }
        a
    }
}

/// How uv puts files from its cache into the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// Copies: nothing is shared with the cache, so an action that writes
    /// into its own environment cannot change the cache or another pack.
    #[default]
    Copy,
    /// Copy-on-write clones where the filesystem has them (btrfs, xfs);
    /// elsewhere uv falls back to hard links, with `Hardlink`'s sharing.
    Clone,
    /// Hard links into uv's cache (uv's fallback on ext4): fastest, but a
    /// file changed in one environment changes in the cache and in every
    /// environment linked from it.
    Hardlink,
}

impl LinkMode {
    fn as_uv(self) -> &'static str {
        match self {
            LinkMode::Copy => "copy",
            LinkMode::Clone => "clone",
            LinkMode::Hardlink => "hardlink",
        }
    }
}

/// What to build; [`PythonRequest::new`] sets the defaults.
#[derive(Debug, Clone)]
pub struct PythonRequest {
    /// The pack folder (staged or installed): its `requirements.txt` is read.
    pub pack_dir: PathBuf,
    /// Also `requirements-tests.txt`.
    pub with_tests: bool,
    /// The host's checked interpreter (`runtimes::Interpreters::find`).
    pub interpreter: PathBuf,
    pub sources: PythonSources,
    /// Let uv build source distributions (runs their build code).
    pub allow_source_builds: bool,
    /// uv's `--offline`: the cache only.
    pub offline: bool,
    /// uv's cache (`--cache-dir`); `None`: uv's default, shared by every build.
    pub cache_dir: Option<PathBuf>,
    /// Install exactly this set instead of resolving (`sync --locked`, reinstall).
    pub locked: Option<PythonLock>,
    /// Environments of other versions of the pack; one built from the same
    /// lock with the same interpreter is hard-linked instead of installed.
    pub reuse_from: Vec<PathBuf>,
    pub link_mode: LinkMode,
    /// For each uv command.
    pub timeout: Duration,
}

impl PythonRequest {
    pub fn new(pack_dir: impl Into<PathBuf>, interpreter: impl Into<PathBuf>, sources: PythonSources) -> PythonRequest {
        PythonRequest {
            pack_dir: pack_dir.into(),
            with_tests: false,
            interpreter: interpreter.into(),
            sources,
            allow_source_builds: false,
            offline: false,
            cache_dir: None,
            locked: None,
            reuse_from: vec![],
            link_mode: LinkMode::default(),
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PythonEnv {
    /// The folder built (the `dest` given).
    pub path: PathBuf,
    /// What to record with the installation and write to lockfiles.
    pub lock: PythonLock,
    /// Source builds were allowed and needed (some requirement has no wheel):
    /// a build backend ran. The report should say so.
    pub built_from_source: bool,
    /// The environment this one was hard-linked from, if any.
    pub reused_from: Option<PathBuf>,
}

/// The stamp kept in each environment: what it was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    base_python: PathBuf,
    lock: PythonLock,
}

/// The requirements files of a pack that make it need a Python
/// environment; empty: it needs none.
pub fn requirement_files(pack_dir: &Path, with_tests: bool) -> Vec<PathBuf> {
    let names: &[&str] =
        if with_tests { &["requirements.txt", "requirements-tests.txt"] } else { &["requirements.txt"] };
    names.iter().map(|n| pack_dir.join(n)).filter(|p| p.is_file()).collect()
}

/// Builds the environment into `dest` (which must not exist; its parent
/// must). On failure `dest` is removed: nothing is left half-built.
pub async fn build_python(
    uv: &Uv,
    req: &PythonRequest,
    dest: &Path,
    events: &(dyn Fn(EnvEvent) + Send + Sync),
) -> Result<PythonEnv, PythonError> {
    if fs_err::symlink_metadata(dest).is_ok() {
        return Err(PythonError::DestinationExists { dest: dest.to_path_buf() });
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new().prefix(".attune-env-").tempdir_in(parent).map_err(|e| {
        std::io::Error::new(e.kind(), format!("creating a scratch folder in {}: {e}", parent.display()))
    })?;
    let result = build(uv, req, dest, scratch.path(), events).await;
    if result.is_err() {
        let _ = fs_err::remove_dir_all(dest);
    }
    result
}

async fn build(
    uv: &Uv,
    req: &PythonRequest,
    dest: &Path,
    scratch: &Path,
    events: &(dyn Fn(EnvEvent) + Send + Sync),
) -> Result<PythonEnv, PythonError> {
    // The probe first: uv is then handed the real executable, not a wrapper
    // (a pyenv shim costs a shell and `pyenv exec` each time it is run).
    let (target, base) = probe_interpreter(&req.interpreter, scratch, req.timeout).await?;
    // The resolution and the venv do not depend on each other: run them at
    // once (the venv only when no reuse may make it unnecessary).
    let create_venv_now = req.reuse_from.is_empty();
    let resolution = async {
        match &req.locked {
            Some(l) => l.validate().map(|()| None).map_err(PythonError::from),
            None => {
                events(EnvEvent::Resolving { runtime: Runtime::Python });
                resolve(uv, req, &base, scratch).await.map(Some)
            }
        }
    };
    let venv = async { if create_venv_now { create_venv(uv, req, &base, dest, scratch).await } else { Ok(()) } };
    let (resolved, venv) = tokio::join!(resolution, venv);
    let lock = match (resolved?, &req.locked) {
        (Some(r), _) => {
            PythonLock { python: target, requirements: r.requirements, needs_source_builds: r.needs_source_builds }
        }
        (None, Some(l)) => {
            if !l.python.compatible_with(&target) {
                return Err(PythonError::LockedForOtherPython {
                    locked: l.python.to_string(),
                    host: target.to_string(),
                });
            }
            if l.needs_source_builds && !req.allow_source_builds {
                return Err(PythonError::LockNeedsSourceBuilds);
            }
            l.clone()
        }
        (None, None) => unreachable!("no lock given means a resolution"),
    };
    venv?;
    events(EnvEvent::Resolved {
        runtime: Runtime::Python,
        packages: lock.requirements.len(),
        from_lock: req.locked.is_some(),
    });
    let stamp = Stamp { base_python: base, lock };

    if !create_venv_now {
        for candidate in &req.reuse_from {
            if reusable(candidate, &stamp) {
                events(EnvEvent::Reused { runtime: Runtime::Python, from: candidate.clone() });
                crate::link::hardlink_tree(candidate, dest)?;
                return Ok(PythonEnv {
                    path: dest.to_path_buf(),
                    built_from_source: false,
                    lock: stamp.lock,
                    reused_from: Some(candidate.clone()),
                });
            }
        }
        create_venv(uv, req, &stamp.base_python, dest, scratch).await?;
    }

    let n = stamp.lock.requirements.len();
    events(EnvEvent::Installing { runtime: Runtime::Python, packages: n });
    if n > 0 {
        // Installed from names, versions and hashes, found on the index, as
        // a recorded lock is: a fresh build and a rebuild take one path and
        // fill uv's cache alike (uv caches a pylock's file URLs apart, so an
        // offline rebuild from the record would miss them).
        let locked_txt = scratch.join("locked.txt");
        fs_err::write(&locked_txt, stamp.lock.requirements_txt())?;
        let mut sync = uv.command(scratch);
        sync.args(["pip", "sync", "--quiet", "--require-hashes", "--python"]).arg(dest.join("bin/python"));
        common_args(&mut sync, req, stamp.lock.needs_source_builds);
        sync.args(["--link-mode", req.link_mode.as_uv()]);
        sync.arg(&locked_txt);
        expect_success(tool::run(sync, &uv.program, "pip sync", req.timeout).await?, "pip sync", &req.sources)?;
    }
    fs_err::write(dest.join(STAMP_FILE), serde_json::to_vec_pretty(&stamp).expect("a stamp serialises"))?;
    events(EnvEvent::Installed { runtime: Runtime::Python, packages: n });
    Ok(PythonEnv {
        path: dest.to_path_buf(),
        built_from_source: stamp.lock.needs_source_builds,
        lock: stamp.lock,
        reused_from: None,
    })
}

/// `uv venv --relocatable`: activation scripts and launchers find the
/// environment from where they are, so it works after the rename.
async fn create_venv(
    uv: &Uv,
    req: &PythonRequest,
    python: &Path,
    dest: &Path,
    scratch: &Path,
) -> Result<(), PythonError> {
    let mut venv = uv.command(scratch);
    venv.args(["venv", "--quiet", "--relocatable", "--python"]).arg(python).arg(dest);
    expect_success(tool::run(venv, &uv.program, "venv", req.timeout).await?, "venv", &req.sources)
}

/// Flags every uv command that reaches an index shares.
fn common_args(cmd: &mut tokio::process::Command, req: &PythonRequest, source_builds: bool) {
    cmd.args(req.sources.args());
    if !source_builds {
        cmd.arg("--no-build");
    }
    if req.offline {
        cmd.arg("--offline");
    }
    if let Some(c) = &req.cache_dir {
        cmd.arg("--cache-dir").arg(c);
    }
}

/// The interpreter's identity and the real base executable the venv will point at.
async fn probe_interpreter(
    interpreter: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<(PythonTarget, PathBuf), PythonError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        implementation: String,
        version: String,
        platform: String,
        base: PathBuf,
    }
    let fail = |why: String| PythonError::Interpreter { interpreter: interpreter.to_path_buf(), why };
    let mut cmd = tokio::process::Command::new(interpreter);
    cmd.args(["-I", "-c", PROBE_SCRIPT]).current_dir(scratch);
    let ran = tool::run(cmd, interpreter, "the interpreter probe", timeout).await.map_err(|e| fail(e.to_string()))?;
    if !ran.status.success() {
        return Err(fail(format!("{}: {}", ran.status, tool::tail(&ran.stderr, 5))));
    }
    let p: Probe = serde_json::from_slice(&ran.stdout).map_err(|e| fail(format!("it printed no identity ({e})")))?;
    Ok((PythonTarget { implementation: p.implementation, version: p.version, platform: p.platform }, p.base))
}

/// A resolution: the pinned set and whether it needs source builds.
struct Resolved {
    requirements: Vec<LockedRequirement>,
    needs_source_builds: bool,
}

/// `uv pip compile` of the pack's checked requirements for `python`.
async fn resolve(uv: &Uv, req: &PythonRequest, python: &Path, scratch: &Path) -> Result<Resolved, PythonError> {
    let files = requirement_files(&req.pack_dir, req.with_tests);
    let mut input = String::new();
    for f in &files {
        let shown = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = read_bounded(f, &shown, REQUIREMENTS_FILE_LIMIT)?;
        for line in lock::check_requirements(&shown, &text)? {
            input.push_str(&line);
            input.push('\n');
        }
    }
    let shown_files = files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>();
    let shown_files =
        if shown_files.is_empty() { "the pack's requirements".to_owned() } else { shown_files.join(" + ") };
    if input.trim().is_empty() {
        return Ok(Resolved { requirements: vec![], needs_source_builds: false });
    }
    let input_path = scratch.join("requirements.in");
    fs_err::write(&input_path, &input)?;
    let pylock = scratch.join("pylock.toml");

    let compile = |source_builds: bool| {
        let mut cmd = uv.command(scratch);
        cmd.args(["pip", "compile", "--quiet", "--format", "pylock.toml", "--generate-hashes", "--python"])
            .arg(python)
            .arg("--output-file")
            .arg(&pylock);
        common_args(&mut cmd, req, source_builds);
        cmd.arg(&input_path);
        tool::run(cmd, &uv.program, "pip compile", req.timeout)
    };
    // Wheels only first; with source builds allowed, a refusal tells that they are needed.
    let mut ran = compile(false).await?;
    let mut needs_source_builds = false;
    if !ran.status.success() && req.allow_source_builds && !refused_builds(&ran.stderr).is_empty() {
        ran = compile(true).await?;
        needs_source_builds = true;
    }
    if !ran.status.success() {
        return Err(classify(&ran.stderr, "pip compile", &shown_files, &req.sources));
    }
    let text = read_bounded(&pylock, "uv's pylock.toml", tool::OUTPUT_LIMIT as usize)?;
    let requirements = lock::parse_pylock(&text, &uv.version)?;
    lock::validate_requirements(&requirements)?;
    Ok(Resolved { requirements, needs_source_builds })
}

fn read_bounded(path: &Path, shown: &str, limit: usize) -> Result<String, PythonError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs_err::File::open(path)?.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(LockError::TooLarge { file: shown.to_owned(), reason: "too large".into(), limit }.into());
    }
    String::from_utf8(bytes).map_err(|_| {
        LockError::Refused { file: shown.to_owned(), line: 0, reason: "it is not UTF-8 text".into() }.into()
    })
}

fn expect_success(ran: tool::Ran, what: &str, sources: &PythonSources) -> Result<(), PythonError> {
    if ran.status.success() { Ok(()) } else { Err(classify(&ran.stderr, what, "the locked requirements", sources)) }
}

/// uv's complaint as the error that says what to do.
fn classify(stderr: &str, what: &str, files: &str, sources: &PythonSources) -> PythonError {
    let refused = refused_builds(stderr);
    if !refused.is_empty() {
        return PythonError::SourceBuildRefused { packages: refused };
    }
    let mismatched = backticked(stderr, "Hash mismatch for `");
    if !mismatched.is_empty() {
        return PythonError::HashMismatch { packages: mismatched };
    }
    if stderr.contains("Network connectivity is disabled") || stderr.contains("not found in the cache") {
        let mut missing = backticked(stderr, "Failed to download `");
        for line in stderr.lines() {
            if let Some(rest) = line.split("Because ").nth(1)
                && let Some((name, _)) = rest.split_once(" was not found in the cache")
            {
                missing.push(name.trim().to_owned());
            }
        }
        if missing.is_empty() {
            missing.push(tool::tail(stderr, 3));
        }
        missing.sort();
        missing.dedup();
        return PythonError::OfflineMissing { missing };
    }
    let mut detail = tool::tail(stderr, 12);
    for u in sources.index_url.iter().chain(&sources.find_links) {
        let shown = redact_url(u);
        if shown != *u {
            detail = detail.replace(u.as_str(), &shown);
        }
    }
    if stderr.contains("No solution found") {
        return PythonError::Unsatisfiable { files: files.to_owned(), detail };
    }
    PythonError::Uv { what: what.to_owned(), detail }
}

/// The packages uv would have had to build: its `--no-build` hint names them.
fn refused_builds(stderr: &str) -> Vec<String> {
    let mut names = backticked(stderr, "Wheels are required for `");
    for line in stderr.lines() {
        if let Some(rest) = line.split("Because ").nth(1)
            && let Some((pin, _)) = rest.split_once(" has no usable wheels")
        {
            names.push(pin.split("==").next().unwrap_or(pin).trim().to_owned());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Every `NAME` in `{prefix}NAME` + "`".
fn backticked(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| text[i + prefix.len()..].split('`').next())
        .filter(|s| !s.is_empty() && s.len() < 200)
        .map(str::to_owned)
        .collect()
}

/// Whether `candidate` was built from the same lock and interpreter and
/// still verifies clean.
fn reusable(candidate: &Path, stamp: &Stamp) -> bool {
    use std::io::Read;
    // A real folder: an active-version link would be copied as a link.
    if !fs_err::symlink_metadata(candidate).is_ok_and(|m| m.is_dir()) {
        return false;
    }
    let mut bytes = Vec::new();
    let read = fs_err::File::open(candidate.join(STAMP_FILE))
        .and_then(|f| f.take(STAMP_LIMIT).read_to_end(&mut bytes).map(|_| ()));
    if read.is_err() {
        return false;
    }
    match serde_json::from_slice::<Stamp>(&bytes) {
        Ok(s) if s == *stamp => verify::verify_python(candidate, &stamp.lock).is_ok_and(|d| d.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uv_refusals_name_the_packages() {
        let stderr = "error: No solution found when resolving dependencies\n  cause: Because gamma==1.0.0 has no usable wheels and only gamma==1.0.0 is available, we can conclude that all versions of gamma cannot be used.\n\nhint: Wheels are required for `gamma` because building from source is disabled for all packages (i.e., with `--no-build`)\n";
        let e = classify(stderr, "pip compile", "requirements.txt", &PythonSources::default());
        assert!(matches!(&e, PythonError::SourceBuildRefused { packages } if packages == &["gamma"]), "{e}");
        assert!(e.to_string().starts_with("gamma has no wheel"), "{e}");

        let offline = "error: Failed to download `alpha==1.0.0`\n  cause: Network connectivity is disabled, but the requested data wasn't found in the cache: http://127.0.0.1:1/simple/alpha/alpha-1.0.0-py3-none-any.whl\n";
        let e = classify(offline, "pip sync", "x", &PythonSources::default());
        assert!(matches!(&e, PythonError::OfflineMissing { missing } if missing == &["alpha==1.0.0"]), "{e}");
    }
}
