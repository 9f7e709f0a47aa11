//! The external programs an environment is built with (`uv`, `npm`): where
//! they are, and one way to run them: bounded output, a time limit, a
//! scrubbed environment, killed when dropped.
//!
//! `uv` is looked for in `ATTUNE_UV`, then the config's `uv`, then `PATH`
//! (the order `runtimes.rs` uses for interpreters); `npm` in `ATTUNE_NPM`,
//! the config's `npm`, then `PATH`. A missing one is an error naming how to
//! install it, raised only when a pack needs an environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How long `--version` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// What a tool may print, and the largest file it writes that is read back.
pub(crate) const OUTPUT_LIMIT: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("uv not found: {why}; install it with `pip install uv`, or name it with ATTUNE_UV or `uv` in the config")]
    UvMissing { why: String },
    #[error(
        "npm not found: {why}; install Node.js with npm (e.g. `apt-get install npm`), or name it with ATTUNE_NPM or `npm` in the config"
    )]
    NpmMissing { why: String },
    #[error("{program}: could not run {what}: {source}; check that it is an executable for this machine")]
    Spawn { program: PathBuf, what: String, source: std::io::Error },
    #[error("{program}: {what} did not finish within {}s and was stopped; raise the time limit or check the network", .after.as_secs())]
    Timeout { program: PathBuf, what: String, after: Duration },
    #[error("{program}: reading the output of {what} failed: {source}")]
    Output { program: PathBuf, what: String, source: std::io::Error },
    #[error("{program}: `--version` printed {printed:?}, not a version; point attune at a working {name}")]
    NotAVersion { program: PathBuf, name: &'static str, printed: String },
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Ran {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Lossy text, bounded; what the tool said when it failed.
    pub stderr: String,
}

/// Runs `cmd` (stdin closed), keeping at most [`OUTPUT_LIMIT`] bytes of each stream.
pub(crate) async fn run(
    mut cmd: tokio::process::Command,
    program: &Path,
    what: &str,
    timeout: Duration,
) -> Result<Ran, ToolError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        program: program.to_path_buf(),
        what: what.to_owned(),
        source,
    })?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("both streams were asked for as pipes");
    };
    let work = async {
        let (out, err, status) = tokio::join!(bounded(out), bounded(err), child.wait());
        Ok::<_, std::io::Error>((out?, err?, status?))
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(ToolError::Timeout { program: program.to_path_buf(), what: what.to_owned(), after: timeout }),
        Ok(Err(source)) => Err(ToolError::Output { program: program.to_path_buf(), what: what.to_owned(), source }),
        // What is cut is the end: JSON or a message, it then fails to read as such.
        Ok(Ok((stdout, stderr, status))) => {
            Ok(Ran { status, stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() })
        }
    }
}

/// Reads up to the limit, then drains (and drops) the rest so the child never blocks.
async fn bounded(mut r: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut r).take(OUTPUT_LIMIT).read_to_end(&mut kept).await?;
    tokio::io::copy(&mut r, &mut tokio::io::sink()).await?;
    Ok(kept)
}

/// The last `n` lines of a tool's complaint, for an error message: at most
/// 4000 characters, control characters escaped (the text may quote what an
/// index served, and it reaches terminals and logs).
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .join("\n")
        .chars()
        .take(4000)
        .flat_map(|c| match c {
            '\n' | '\t' => vec![c],
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}

/// A URL as it may be shown: no user name or password.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => text.to_owned(),
    }
}

/// A program named by an override (`ATTUNE_UV`, config) or searched on `PATH`.
fn locate(
    env_value: Option<OsString>,
    env_name: &str,
    config: Option<&Path>,
    config_key: &str,
    path_var: Option<OsString>,
    program: &str,
) -> Result<PathBuf, String> {
    let (named, origin) = match (env_value.filter(|v| !v.is_empty()), config) {
        (Some(v), _) => (PathBuf::from(v), env_name.to_owned()),
        (None, Some(c)) => (c.to_path_buf(), format!("`{config_key}` in the config")),
        (None, None) => {
            let found = path_var
                .as_deref()
                .and_then(|p| std::env::split_paths(p).map(|d| d.join(program)).find(|p| is_executable(p)));
            return found.ok_or_else(|| format!("no `{program}` on PATH"));
        }
    };
    let found = if named.components().count() > 1 {
        is_executable(&named).then(|| named.clone())
    } else {
        path_var.as_deref().and_then(|p| std::env::split_paths(p).map(|d| d.join(&named)).find(|p| is_executable(p)))
    };
    found.ok_or_else(|| format!("{origin}={} is not an executable file", named.display()))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program --version`: its first line.
async fn probe(program: &Path, name: &'static str) -> Result<String, ToolError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--version");
    let ran = run(cmd, program, "`--version`", PROBE_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&ran.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    if !ran.status.success() || !line.chars().any(|c| c.is_ascii_digit()) || line.len() > 200 {
        return Err(ToolError::NotAVersion { program: program.to_path_buf(), name, printed: tail(&text, 2) });
    }
    Ok(line.to_owned())
}

/// The `uv` binary that builds Python environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uv {
    pub program: PathBuf,
    /// What `uv --version` printed (`uv 0.13.9 (…)`), for reports.
    pub version: String,
}

impl Uv {
    /// From this process's `ATTUNE_UV`, the config's `uv`, then `PATH`.
    pub async fn discover(config: Option<&Path>) -> Result<Uv, ToolError> {
        Uv::find(std::env::var_os("ATTUNE_UV"), config, std::env::var_os("PATH")).await
    }

    /// As [`Uv::discover`], with the environment given (tests, embedders).
    pub async fn find(
        attune_uv: Option<OsString>,
        config: Option<&Path>,
        path_var: Option<OsString>,
    ) -> Result<Uv, ToolError> {
        let program =
            locate(attune_uv, "ATTUNE_UV", config, "uv", path_var, "uv").map_err(|why| ToolError::UvMissing { why })?;
        let version = probe(&program, "uv").await?;
        Ok(Uv { program, version })
    }

    /// A `uv` command that reads no config file and no `UV_*` variable, and
    /// never downloads an interpreter: only what attune passes counts.
    pub(crate) fn command(&self, cwd: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("UV_") || k == "VIRTUAL_ENV" || k == "CONDA_PREFIX" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(cwd).env("NO_COLOR", "1");
        cmd.args(["--no-config", "--no-python-downloads", "--color", "never", "--no-progress"]);
        cmd
    }
}

/// The `npm` that installs node packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Npm {
    pub program: PathBuf,
    pub version: String,
}

impl Npm {
    /// From this process's `ATTUNE_NPM`, the config's `npm`, then `PATH`.
    pub async fn discover(config: Option<&Path>) -> Result<Npm, ToolError> {
        Npm::find(std::env::var_os("ATTUNE_NPM"), config, std::env::var_os("PATH")).await
    }

    pub async fn find(
        attune_npm: Option<OsString>,
        config: Option<&Path>,
        path_var: Option<OsString>,
    ) -> Result<Npm, ToolError> {
        let program = locate(attune_npm, "ATTUNE_NPM", config, "npm", path_var, "npm")
            .map_err(|why| ToolError::NpmMissing { why })?;
        let version = probe(&program, "npm").await?;
        Ok(Npm { program, version })
    }

    /// An `npm` command run in `cwd`, a folder attune wrote (so no `.npmrc`
    /// of the pack is read; the operator's own npm config still applies).
    pub(crate) fn command(&self, cwd: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.current_dir(cwd).env("NO_COLOR", "1");
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_messages_reach_the_terminal_without_control_characters() {
        let said = "ok\nerror: \u{1b}[2Jpackage `x\u{7}` a\rb\n\n  cause: gone\n";
        let shown = tail(said, 2);
        assert_eq!(shown, "error: \\u{1b}[2Jpackage `x\\u{7}` a\\rb\n  cause: gone");
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n'));
        assert_eq!(tail(&"x".repeat(10_000), 1).len(), 4000);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redact_url("https://user:secret@index.example/simple/"), "https://index.example/simple/");
        assert_eq!(redact_url("http://127.0.0.1:1/simple/"), "http://127.0.0.1:1/simple/");
        assert_eq!(redact_url("/srv/wheels"), "/srv/wheels");
    }
}
