//! Runtime requirements: the interpreters a pack says it needs (Python,
//! Node.js), checked against the ones this host has, before anything is
//! installed.
//!
//! Not the WebAssembly runtime the fetchers run in ([`crate::runtime`]):
//! this module is about the pack's own actions, which run
//! later on the host's `python3` or `node`. A pack whose actions cannot run
//! here is better refused at install time, with the reason, than installed
//! and broken.
//!
//! Requirements come from an index entry ([`crate::registry::RuntimeNeeds`]: Attune's
//! `dependencies.python_version` / `nodejs_version` and `runtime_deps`, the
//! Exchange's `python_versions`) and from the fetched `pack.yaml` (StackStorm's
//! `python_versions`, Attune's `dependencies` mapping and `runtime_deps`).
//! Constraints are written loosely in the wild (`>=3.9`, `3.x`, `3`, `^18`,
//! `>=3.8,<4`, `>= 18 < 21`, `~=3.9`, `3.8+`); [`Constraint::parse`] maps them to
//! semver ranges, and one it cannot read is an error naming the pack and the
//! field, never a silent pass. Runtimes attune does not know (`shell`,
//! `native`, …) are accepted as they are.
//!
//! The interpreters are found on `PATH` (`python3` then `python`, `node` then
//! `nodejs`) unless `ATTUNE_PYTHON` / `ATTUNE_NODE` or the config's `python` /
//! `node` name another; each is asked its version once per process
//! (`--version`, with a timeout).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use semver::{Version, VersionReq};
use serde_json::Value;

use crate::manifest::PackManifest;

/// How long an interpreter may take to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The flag that installs despite unmet requirements, for messages.
pub const IGNORE_FLAG: &str = "--ignore-runtime-requirements";

#[derive(Debug, thiserror::Error)]
pub enum RuntimesError {
    #[error(
        "runtime requirements are not met, so nothing was installed:\n{}\n\
         install the missing interpreters (or point attune at them with ATTUNE_PYTHON / ATTUNE_NODE, or \
         `python` / `node` in the config), or pass {IGNORE_FLAG} (install, upgrade, sync --locked) to install anyway",
        .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
    )]
    NotMet { problems: Vec<Problem> },
}

/// An interpreter attune knows how to find and ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Python,
    Node,
}

impl Kind {
    /// The name packs and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Python => "python",
            Kind::Node => "nodejs",
        }
    }

    /// The environment variable that overrides where it is.
    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Python => "ATTUNE_PYTHON",
            Kind::Node => "ATTUNE_NODE",
        }
    }

    /// The config file key that names it.
    pub fn config_key(self) -> &'static str {
        match self {
            Kind::Python => "python",
            Kind::Node => "node",
        }
    }

    /// The programs looked for on `PATH`, in order.
    fn programs(self) -> &'static [&'static str] {
        match self {
            Kind::Python => &["python3", "python"],
            Kind::Node => &["node", "nodejs"],
        }
    }
}

/// Versions a requirement accepts: any of the alternatives (`||`, or an
/// Exchange `python_versions` list); no alternatives means any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    alternatives: Vec<VersionReq>,
}

impl Constraint {
    /// Any version at all (`runtime_deps: [python3]` asks only that Python 3 exists).
    pub fn any() -> Constraint {
        Constraint { alternatives: vec![] }
    }

    /// Reads a loosely written constraint: semver and npm ranges (`>=3.9`,
    /// `^18`, `~1.2`, `>=3.8,<4`, `>=18 <21`, `16 || 18`), wildcards (`3.x`,
    /// `3.*`, `*`), a bare version meaning that version and any below it
    /// (`3` is 3.x, `3.9` is 3.9.x, as in npm), PEP 440's `==3.9.*` and
    /// `~=3.9`, and `3.8+`. The error says what could not be read.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("it is empty".into());
        }
        let mut alternatives = Vec::new();
        for alt in t.split("||") {
            let alt = alt.trim();
            if alt.is_empty() {
                return Err("an alternative around `||` is empty".into());
            }
            alternatives.push(alternative(alt)?);
        }
        // `*` anywhere makes the whole constraint "any version".
        if alternatives.contains(&VersionReq::STAR) {
            return Ok(Constraint::any());
        }
        Ok(Constraint { alternatives })
    }

    /// Each of `texts` as an alternative (`python_versions: ["2", "3"]`).
    pub fn any_of<S: AsRef<str>>(texts: &[S]) -> Result<Constraint, String> {
        let mut alternatives = Vec::new();
        for t in texts {
            let c = Constraint::parse(t.as_ref()).map_err(|e| format!("{:?}: {e}", t.as_ref()))?;
            if c.alternatives.is_empty() {
                return Ok(Constraint::any());
            }
            alternatives.extend(c.alternatives);
        }
        Ok(Constraint { alternatives })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.alternatives.is_empty() || self.alternatives.iter().any(|r| r.matches(v))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.alternatives.is_empty() {
            return f.write_str("any version");
        }
        let parts: Vec<String> = self.alternatives.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(" || "))
    }
}

/// One alternative: comparators separated by commas and/or spaces.
fn alternative(text: &str) -> Result<VersionReq, String> {
    let mut comparators: Vec<String> = Vec::new();
    // An operator standing alone (`>= 3.9`) joins the version after it.
    let mut pending_op = String::new();
    for token in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
        if token.chars().all(|c| "<>=!~^".contains(c)) {
            pending_op.push_str(token);
            continue;
        }
        comparators.extend(comparator(&format!("{pending_op}{token}"))?);
        pending_op.clear();
    }
    if !pending_op.is_empty() {
        return Err(format!("{pending_op:?} is not followed by a version"));
    }
    if comparators.iter().any(|c| c == "*") {
        return Ok(VersionReq::STAR);
    }
    VersionReq::parse(&comparators.join(", ")).map_err(|e| e.to_string())
}

/// One comparator in semver's syntax (PEP 440 and `+` forms translated).
fn comparator(token: &str) -> Result<Vec<String>, String> {
    let split = token.find(|c: char| !"<>=!~^".contains(c)).unwrap_or(token.len());
    let (op, rest) = token.split_at(split);
    let rest = rest.strip_prefix(['v', 'V']).unwrap_or(rest);
    if matches!(rest, "*" | "x" | "X") && (op.is_empty() || op == "=" || op == "==") {
        return Ok(vec!["*".into()]);
    }
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{token:?} is not a version comparison"));
    }
    if let Some(base) = rest.strip_suffix('+')
        && op.is_empty()
    {
        return Ok(vec![format!(">={base}")]);
    }
    // Wildcards: semver reads `3.x` and `3.*`; PEP 440 writes `==3.9.*`.
    let rest = rest.strip_suffix(".*").unwrap_or(rest);
    Ok(match op {
        // semver reads `3.x` / `3.*` as wildcards only without an operator.
        "" | "=" | "==" if rest.contains(['x', 'X', '*']) => vec![rest.to_owned()],
        // A bare version is that version and every patch (npm, and `python_versions: ["3"]`).
        "" | "=" | "==" => vec![format!("={rest}")],
        ">=" | "<=" | ">" | "<" | "^" | "~" => vec![format!("{op}{rest}")],
        // PEP 440 compatible release: ~=3.9 is >=3.9, <4; ~=3.9.1 is >=3.9.1, <3.10.
        "~=" => {
            let parts: Vec<&str> = rest.split('.').collect();
            if parts.len() < 2 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
                return Err(format!("{token:?}: `~=` needs a version of two or three numbers, e.g. ~=3.9"));
            }
            let mut upper: Vec<u64> = parts[..parts.len() - 1].iter().map(|p| p.parse().expect("checked")).collect();
            *upper.last_mut().expect("at least one") += 1;
            let upper: Vec<String> = upper.iter().map(u64::to_string).collect();
            vec![format!(">={rest}"), format!("<{}", upper.join("."))]
        }
        "!=" => return Err(format!("{token:?}: exclusions (!=) are not supported; write a range around the version")),
        _ => return Err(format!("{token:?}: unknown operator {op:?}")),
    })
}

/// The version an interpreter reports: the first `N[.N[.N]]` in its output
/// (`Python 3.11.7`, `v20.1.0`, `Python 3.13.0rc1`), missing parts 0,
/// pre-release tags dropped (a host's 3.13.0rc1 counts as 3.13.0).
pub fn parse_reported(output: &str) -> Option<Version> {
    for word in output.split_whitespace() {
        let w = word.strip_prefix(['v', 'V']).unwrap_or(word);
        if !w.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let mut nums = [0u64; 3];
        for (i, part) in w.split('.').take(3).enumerate() {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                break;
            }
            nums[i] = digits.parse().ok()?;
            if digits.len() != part.len() {
                break;
            }
        }
        return Some(Version::new(nums[0], nums[1], nums[2]));
    }
    None
}

/// What one pack needs from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub kind: Kind,
    pub constraint: Constraint,
    /// Where it is declared: `pack.yaml python_versions`, `index main: dependencies.nodejs_version`.
    pub field: String,
}

/// Everything one pack declares, read but not yet checked.
#[derive(Debug, Clone, Default)]
pub struct PackRequirements {
    /// `ref@version`, for messages.
    pub pack: String,
    pub requirements: Vec<Requirement>,
    /// Constraints that could not be read.
    pub unreadable: Vec<Problem>,
}

impl PackRequirements {
    fn new(pack: String) -> PackRequirements {
        PackRequirements { pack, ..Default::default() }
    }

    fn add(&mut self, kind: Kind, field: String, parsed: Result<Constraint, String>, value: &str) {
        match parsed {
            Ok(constraint) => self.requirements.push(Requirement { kind, constraint, field }),
            Err(reason) => self.unreadable.push(Problem::Unreadable {
                pack: self.pack.clone(),
                field,
                // Lists come already written as lists.
                value: if value.starts_with('[') { value.to_owned() } else { format!("{value:?}") },
                reason,
            }),
        }
    }

    /// A runtime named in `runtime_deps` (`python3`, `nodejs`, `shell`): a
    /// versioned name (`python3`, `python3.9`) asks for that version; names
    /// attune does not know are accepted.
    fn add_named(&mut self, name: &str, field: String) {
        let lower = name.trim().to_ascii_lowercase();
        let (kind, rest) = if let Some(rest) = lower.strip_prefix("python") {
            (Kind::Python, rest)
        } else if let Some(rest) = lower.strip_prefix("nodejs").or_else(|| lower.strip_prefix("node")) {
            (Kind::Node, rest)
        } else {
            return;
        };
        let rest = rest.trim_start_matches(['-', '@']);
        let parsed = if rest.is_empty() { Ok(Constraint::any()) } else { Constraint::parse(rest) };
        self.add(kind, field, parsed, name);
    }

    /// What an index entry says (`origin`: e.g. `index main`).
    pub fn from_index(pack: String, origin: &str, rt: &crate::registry::RuntimeNeeds) -> PackRequirements {
        let mut p = PackRequirements::new(pack);
        if let Some(v) = &rt.python {
            p.add(Kind::Python, format!("{origin}: dependencies.python_version"), Constraint::parse(v), v);
        }
        if let Some(v) = &rt.nodejs {
            p.add(Kind::Node, format!("{origin}: dependencies.nodejs_version"), Constraint::parse(v), v);
        }
        if !rt.python_versions.is_empty() {
            let field = format!("{origin}: python_versions");
            p.add(Kind::Python, field, Constraint::any_of(&rt.python_versions), &format!("{:?}", rt.python_versions));
        }
        for name in &rt.requires {
            p.add_named(name, format!("{origin}: runtime_deps"));
        }
        p
    }

    /// What a fetched `pack.yaml` says: StackStorm's `python_versions`,
    /// Attune's `dependencies: {python_version, nodejs_version}` and `runtime_deps`.
    pub fn from_manifest(m: &PackManifest) -> PackRequirements {
        let mut p = PackRequirements::new(format!("{}@{}", m.r#ref, m.version));
        if !m.python_versions.is_empty() {
            let field = "pack.yaml python_versions".to_owned();
            p.add(Kind::Python, field, Constraint::any_of(&m.python_versions), &format!("{:?}", m.python_versions));
        }
        if let Some(deps) = m.extra.get("dependencies").and_then(Value::as_object) {
            for (key, kind) in [("python_version", Kind::Python), ("nodejs_version", Kind::Node)] {
                let field = format!("pack.yaml dependencies.{key}");
                match deps.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => p.add(kind, field, Constraint::parse(s), s),
                    Some(Value::Number(n)) => {
                        let s = n.to_string();
                        p.add(kind, field, Constraint::parse(&s), &s)
                    }
                    Some(other) => p.add(kind, field, Err("it is not text".into()), &other.to_string()),
                }
            }
        }
        match m.extra.get("runtime_deps") {
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(name) => p.add_named(name, "pack.yaml runtime_deps".into()),
                        None => p.unreadable.push(Problem::Unreadable {
                            pack: p.pack.clone(),
                            field: "pack.yaml runtime_deps".into(),
                            value: item.to_string(),
                            reason: "a runtime is named by text (python3, nodejs, shell)".into(),
                        }),
                    }
                }
            }
            Some(Value::String(name)) => p.add_named(name, "pack.yaml runtime_deps".into()),
            _ => {}
        }
        p
    }
}

/// One requirement that stops an install.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The host's interpreter is missing or the wrong version.
    Unmet { pack: String, runtime: String, needs: String, field: String, host: String },
    /// The constraint could not be read.
    Unreadable { pack: String, field: String, value: String, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unmet { pack, runtime, needs, field, host } => {
                write!(f, "{pack} needs {runtime} {needs} ({field}); this host: {host}")
            }
            Problem::Unreadable { pack, field, value, reason } => write!(
                f,
                "{pack}: {field} {value} is not a version constraint attune can read ({reason}); \
                 write e.g. \">=3.9\", \"3.x\", \"^18\" or \">=3.8, <4\""
            ),
        }
    }
}

/// Where this host's interpreters are: overrides (environment or config),
/// else `PATH`.
#[derive(Debug, Clone, Default)]
pub struct Interpreters {
    python: Option<Override>,
    node: Option<Override>,
}

#[derive(Debug, Clone)]
struct Override {
    /// `ATTUNE_PYTHON` or `python in the config`, for messages.
    origin: String,
    program: PathBuf,
}

/// An interpreter as found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    At {
        program: PathBuf,
        version: Version,
    },
    /// Why there is none, as a sentence fragment.
    Missing(String),
}

impl Interpreters {
    /// `ATTUNE_PYTHON` / `ATTUNE_NODE` from the environment, else the config
    /// file's `python` / `node`, else `PATH` at check time.
    pub fn from_env(config_python: Option<PathBuf>, config_node: Option<PathBuf>) -> Interpreters {
        let pick = |kind: Kind, config: Option<PathBuf>| match std::env::var_os(kind.env_var()) {
            Some(v) if !v.is_empty() => Some(Override { origin: kind.env_var().into(), program: v.into() }),
            _ => config.map(|program| Override { origin: format!("`{}` in the config", kind.config_key()), program }),
        };
        Interpreters { python: pick(Kind::Python, config_python), node: pick(Kind::Node, config_node) }
    }

    /// Exactly these programs (tests, embedders); `None` searches `PATH`.
    pub fn with(python: Option<PathBuf>, node: Option<PathBuf>) -> Interpreters {
        let o = |kind: Kind, p: Option<PathBuf>| p.map(|program| Override { origin: kind.env_var().into(), program });
        Interpreters { python: o(Kind::Python, python), node: o(Kind::Node, node) }
    }

    /// Finds `kind` and asks its version (once per program per process).
    pub async fn find(&self, kind: Kind) -> Found {
        let over = match kind {
            Kind::Python => &self.python,
            Kind::Node => &self.node,
        };
        let program = match over {
            Some(o) => {
                let named = o.program.to_string_lossy();
                let found = if named.contains('/') {
                    is_executable(&o.program).then(|| o.program.clone())
                } else {
                    on_path(&named)
                };
                match found {
                    Some(p) => p,
                    None => {
                        return Found::Missing(format!(
                            "{} not found: {}={} is not an executable file",
                            kind.name(),
                            o.origin,
                            o.program.display()
                        ));
                    }
                }
            }
            None => match kind.programs().iter().find_map(|p| on_path(p)) {
                Some(p) => p,
                None => {
                    return Found::Missing(format!(
                        "{} not found on PATH (looked for {}; set {} or `{}` in the config to its path)",
                        kind.name(),
                        kind.programs().join(", "),
                        kind.env_var(),
                        kind.config_key()
                    ));
                }
            },
        };
        match probe(&program).await {
            Ok(version) => Found::At { program, version },
            Err(why) => Found::Missing(format!("{} at {}: {why}", kind.name(), program.display())),
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

type ProbeCache = Mutex<HashMap<PathBuf, Result<Version, String>>>;

fn probe_cache() -> &'static ProbeCache {
    static CACHE: std::sync::OnceLock<ProbeCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// `program --version`, parsed; remembered for the rest of the process.
async fn probe(program: &Path) -> Result<Version, String> {
    if let Some(known) = probe_cache().lock().expect("probe cache").get(program) {
        return known.clone();
    }
    let run = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let result = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Err(_) => Err(format!("`--version` did not answer within {}s", PROBE_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("`--version` could not run: {e}")),
        Ok(Ok(out)) => {
            // Python 2 printed its version on stderr.
            let text = format!("{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            match (out.status.success(), parse_reported(&text)) {
                (true, Some(v)) => Ok(v),
                _ => Err(format!(
                    "`--version` printed {:?} ({}), not a version",
                    text.trim().chars().take(80).collect::<String>(),
                    out.status
                )),
            }
        }
    };
    probe_cache().lock().expect("probe cache").insert(program.to_path_buf(), result.clone());
    result
}

/// Every problem with `packs` on this host, in order: unreadable
/// constraints, then unmet requirements.
pub async fn problems(interpreters: &Interpreters, packs: &[PackRequirements]) -> Vec<Problem> {
    let mut found: HashMap<Kind, Found> = HashMap::new();
    let mut out = Vec::new();
    for p in packs {
        out.extend(p.unreadable.iter().cloned());
        for r in &p.requirements {
            if let std::collections::hash_map::Entry::Vacant(e) = found.entry(r.kind) {
                e.insert(interpreters.find(r.kind).await);
            }
            let host = match &found[&r.kind] {
                Found::At { version, .. } if r.constraint.matches(version) => continue,
                Found::At { program, version } => format!("{} {version} ({})", r.kind.name(), program.display()),
                Found::Missing(why) => why.clone(),
            };
            out.push(Problem::Unmet {
                pack: p.pack.clone(),
                runtime: r.kind.name().into(),
                needs: r.constraint.to_string(),
                field: r.field.clone(),
                host,
            });
        }
    }
    out
}

/// Checks `packs`: every problem in one error, or, with `ignore`, the
/// problems as lines to show (the install goes on).
pub async fn enforce(
    interpreters: &Interpreters,
    packs: &[PackRequirements],
    ignore: bool,
) -> Result<Vec<String>, RuntimesError> {
    let problems = problems(interpreters, packs).await;
    match (problems.is_empty(), ignore) {
        (true, _) => Ok(vec![]),
        (false, true) => Ok(problems.iter().map(Problem::to_string).collect()),
        (false, false) => Err(RuntimesError::NotMet { problems }),
    }
}

/// Checks a resolved set from what the indexes say, before anything is
/// fetched (`install ref@range`); returns what was ignored, as [`enforce`].
pub async fn check_set<'a>(
    interpreters: &Interpreters,
    set: impl IntoIterator<Item = &'a crate::registry::Resolved>,
    ignore: bool,
) -> Result<Vec<String>, RuntimesError> {
    let packs: Vec<PackRequirements> = set
        .into_iter()
        .map(|r| {
            let pack = format!("{}@{}", r.pack.pack_ref, r.pack.version);
            PackRequirements::from_index(pack, &format!("index {}", r.index), &r.pack.runtime)
        })
        .collect();
    enforce(interpreters, &packs, ignore).await
}

/// Adds the `more` lines `into` lacks, keeping the order.
pub fn merge(into: &mut Vec<String>, more: &[String]) {
    for line in more {
        if !into.contains(line) {
            into.push(line.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn ok(c: &str, yes: &[&str], no: &[&str]) {
        let parsed = Constraint::parse(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        for y in yes {
            assert!(parsed.matches(&v(y)), "{c:?} ({parsed}) should accept {y}");
        }
        for n in no {
            assert!(!parsed.matches(&v(n)), "{c:?} ({parsed}) should refuse {n}");
        }
    }

    #[test]
    fn loose_constraints_map_to_semver_ranges() {
        ok(">=3.9", &["3.9.0", "3.11.7", "4.0.0"], &["3.8.10", "2.7.18"]);
        ok(">= 3.9", &["3.9.0"], &["3.8.0"]);
        ok("3.x", &["3.0.0", "3.12.1"], &["2.7.0", "4.0.0"]);
        ok("3.*", &["3.6.0"], &["4.0.0"]);
        ok("3", &["3.0.0", "3.12.1"], &["2.7.0", "4.0.0"]);
        ok("3.9", &["3.9.0", "3.9.18"], &["3.10.0", "3.8.0"]);
        ok("^18", &["18.0.0", "18.19.1"], &["17.9.0", "20.1.0"]);
        ok(">=18", &["18.0.0", "20.1.0"], &["16.20.2"]);
        ok(">=3.8,<4", &["3.8.0", "3.12.0"], &["3.7.9", "4.0.0"]);
        ok(">=3.8, <4", &["3.8.0"], &["4.0.0"]);
        ok(">=18 <21", &["18.0.0", "20.9.9"], &["21.0.0"]);
        ok("16 || 18", &["16.1.0", "18.2.0"], &["17.0.0", "20.0.0"]);
        ok("~=3.9", &["3.9.0", "3.12.0"], &["3.8.0", "4.0.0"]);
        ok("~=3.9.1", &["3.9.1", "3.9.9"], &["3.9.0", "3.10.0"]);
        ok("==3.9.*", &["3.9.0", "3.9.7"], &["3.10.0"]);
        ok("3.8+", &["3.8.0", "4.1.0"], &["3.7.0"]);
        ok("v18", &["18.1.0"], &["19.0.0"]);
        ok("*", &["0.1.0", "99.0.0"], &[]);
        assert_eq!(Constraint::parse("*").unwrap(), Constraint::any());
    }

    #[test]
    fn unreadable_constraints_are_errors() {
        for bad in ["", "python", ">=", "three", ">=3.x.y", "!=3.9", "=>>3", "3.9 ||", "~=3"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn python_versions_lists_are_alternatives() {
        let c = Constraint::any_of(&["2", "3"]).unwrap();
        assert!(c.matches(&v("2.7.18")) && c.matches(&v("3.11.0")) && !c.matches(&v("4.0.0")));
        assert!(Constraint::any_of(&["3", "nope"]).unwrap_err().contains("\"nope\""));
    }

    #[test]
    fn reported_versions() {
        assert_eq!(parse_reported("Python 3.11.7\n"), Some(v("3.11.7")));
        assert_eq!(parse_reported("v20.1.0\n"), Some(v("20.1.0")));
        assert_eq!(parse_reported("Python 3.13.0rc1"), Some(v("3.13.0")));
        assert_eq!(parse_reported("Python 2.7"), Some(v("2.7.0")));
        assert_eq!(parse_reported("command not found"), None);
    }

    fn manifest(yaml: &str) -> PackManifest {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("pack.yaml"), yaml).unwrap();
        crate::manifest::read(t.path()).unwrap()
    }

    #[test]
    fn requirements_from_pack_yaml() {
        let st = PackRequirements::from_manifest(&manifest("name: a\nversion: 1.0.0\npython_versions: ['3']\n"));
        assert_eq!(st.pack, "a@1.0.0");
        assert_eq!(st.requirements.len(), 1);
        assert_eq!(st.requirements[0].kind, Kind::Python);
        assert_eq!(st.requirements[0].field, "pack.yaml python_versions");

        let at = PackRequirements::from_manifest(&manifest(
            "ref: b\nversion: 2.0.0\nruntime_deps: [python3, nodejs, shell, native]\n\
             dependencies:\n  python_version: \">=3.9\"\n  nodejs_version: \">=18\"\n  packs: []\n",
        ));
        let kinds: Vec<(Kind, String)> = at.requirements.iter().map(|r| (r.kind, r.constraint.to_string())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Python, ">=3.9".into()),
                (Kind::Node, ">=18".into()),
                (Kind::Python, "=3".into()),
                (Kind::Node, "any version".into()),
            ]
        );
        assert!(at.unreadable.is_empty());

        let bad = PackRequirements::from_manifest(&manifest(
            "ref: c\nversion: 1.0.0\ndependencies:\n  python_version: \"three-ish\"\n",
        ));
        assert_eq!(bad.unreadable.len(), 1);
        let msg = bad.unreadable[0].to_string();
        assert!(
            msg.starts_with("c@1.0.0: pack.yaml dependencies.python_version \"three-ish\" is not a version"),
            "{msg}"
        );
    }

    #[test]
    fn requirements_from_an_index_entry() {
        let rt = crate::registry::RuntimeNeeds {
            python: Some(">=3.9".into()),
            nodejs: Some("^18".into()),
            requires: vec!["python3".into(), "shell".into()],
            python_versions: vec!["3".into()],
        };
        let p = PackRequirements::from_index("x@1.0.0".into(), "index main", &rt);
        let fields: Vec<&str> = p.requirements.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "index main: dependencies.python_version",
                "index main: dependencies.nodejs_version",
                "index main: python_versions",
                "index main: runtime_deps",
            ]
        );
    }

    /// A fake interpreter: a script printing `output`.
    fn fake(dir: &Path, name: &str, output: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho '{output}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn checks_against_the_interpreters_found() {
        let t = tempfile::tempdir().unwrap();
        let node = fake(t.path(), "node20", "v20.1.0");
        let python = fake(t.path(), "py", "Python 3.11.7");
        let interp = Interpreters::with(Some(python.clone()), Some(node));
        let rt = |py: &str, nodejs: &str| crate::registry::RuntimeNeeds {
            python: Some(py.into()),
            nodejs: Some(nodejs.into()),
            ..Default::default()
        };
        let good = PackRequirements::from_index("ok@1.0.0".into(), "index main", &rt(">=3.9", ">=18"));
        assert_eq!(enforce(&interp, std::slice::from_ref(&good), false).await.unwrap(), Vec::<String>::new());

        let bad = PackRequirements::from_index("bad@1.0.0".into(), "index main", &rt(">=99", "^18"));
        let err = enforce(&interp, &[good.clone(), bad.clone()], false).await.unwrap_err().to_string();
        assert!(
            err.contains(
                "bad@1.0.0 needs python >=99 (index main: dependencies.python_version); this host: python 3.11.7"
            ),
            "{err}"
        );
        assert!(
            err.contains(
                "bad@1.0.0 needs nodejs ^18 (index main: dependencies.nodejs_version); this host: nodejs 20.1.0"
            ),
            "{err}"
        );
        assert!(!err.contains("ok@1.0.0"), "{err}");
        assert!(err.contains(IGNORE_FLAG), "{err}");
        let ignored = enforce(&interp, std::slice::from_ref(&bad), true).await.unwrap();
        assert_eq!(ignored.len(), 2);

        let missing = Interpreters::with(Some(python), Some(t.path().join("no-such-node")));
        let err = enforce(&missing, &[bad], false).await.unwrap_err().to_string();
        assert!(err.contains("this host: nodejs not found: ATTUNE_NODE="), "{err}");
        assert!(err.contains("no-such-node is not an executable file"), "{err}");

        let broken = Interpreters::with(Some(fake(t.path(), "weird", "no version here")), None);
        let found = broken.find(Kind::Python).await;
        assert!(matches!(&found, Found::Missing(why) if why.contains("not a version")), "{found:?}");
    }
}
