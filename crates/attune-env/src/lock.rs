//! What an environment was built from, as recorded with the installation and
//! in lockfiles: the Python distributions (name, version, hashes) and the
//! interpreter they were resolved for; the node lockfile's digest and
//! packages.
//!
//! A lock comes back from a lockfile or a database, so it is checked before
//! it is turned into a requirements file for uv: only names, versions and
//! `sha256:` hashes of the expected shapes pass, never an option line or a
//! URL that would reach another index.

use serde::{Deserialize, Serialize};

/// Most requirements one pack may resolve to.
pub const MAX_REQUIREMENTS: usize = 2000;
/// Most hashes one requirement may carry (every wheel of one release).
const MAX_HASHES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{file}: line {line}: {reason}; requirements.txt may list packages with versions and markers only (indexes are the operator's `python_index_url` / `python_find_links`)"
    )]
    Refused { file: String, line: usize, reason: String },
    #[error("{file}: {reason}; keep the file under {limit} bytes and {MAX_REQUIREMENTS} requirements")]
    TooLarge { file: String, reason: String, limit: usize },
    #[error(
        "recorded lock: {reason}; write the lock again (`attune lock`) or rebuild the environment with --rebuild-env"
    )]
    Invalid { reason: String },
    #[error("uv's resolution could not be read: {reason}; this uv ({uv}) may print a format attune does not know")]
    Unreadable { uv: String, reason: String },
}

/// The interpreter a lock was resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonTarget {
    /// `cpython`, `pypy`.
    pub implementation: String,
    /// `3.11.7`.
    pub version: String,
    /// `linux-x86_64`.
    pub platform: String,
}

impl PythonTarget {
    /// Whether a lock made for `self` installs on `other`: same
    /// implementation, platform and minor version (wheel tags name those).
    pub fn compatible_with(&self, other: &PythonTarget) -> bool {
        let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        self.implementation == other.implementation
            && self.platform == other.platform
            && minor(&self.version) == minor(&other.version)
    }
}

impl std::fmt::Display for PythonTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.implementation, self.version, self.platform)
    }
}

/// One pinned distribution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRequirement {
    /// As uv printed it (normalised: lower case, `-`).
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of each distribution file of that release the index offered.
    pub hashes: Vec<String>,
}

/// A pack's resolved Python requirements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonLock {
    pub python: PythonTarget,
    /// Sorted by name.
    pub requirements: Vec<LockedRequirement>,
    /// Some requirement has no wheel for this target: installing it runs a
    /// build backend, so it needs `--allow-source-builds`.
    #[serde(default)]
    pub needs_source_builds: bool,
}

impl PythonLock {
    /// Checks every field's shape (a lock read back from outside).
    pub fn validate(&self) -> Result<(), LockError> {
        validate_requirements(&self.requirements)
    }

    /// The hash-pinned requirements file uv installs from.
    pub(crate) fn requirements_txt(&self) -> String {
        let mut out = String::new();
        for r in &self.requirements {
            out.push_str(&format!("{}=={}", r.name, r.version));
            for h in &r.hashes {
                out.push_str(&format!(" \\\n    --hash={h}"));
            }
            out.push('\n');
        }
        out
    }
}

/// Checks each requirement's shape: what reaches uv's requirements file.
pub fn validate_requirements(requirements: &[LockedRequirement]) -> Result<(), LockError> {
    let bad = |reason: String| Err(LockError::Invalid { reason });
    if requirements.len() > MAX_REQUIREMENTS {
        return bad(format!("{} requirements (at most {MAX_REQUIREMENTS})", requirements.len()));
    }
    for r in requirements {
        if !is_name(&r.name) {
            return bad(format!("{:?} is not a package name", r.name));
        }
        if !is_version(&r.version) {
            return bad(format!("{}: {:?} is not a version", r.name, r.version));
        }
        if r.hashes.is_empty() || r.hashes.len() > MAX_HASHES {
            return bad(format!("{}: {} hashes (1 to {MAX_HASHES})", r.name, r.hashes.len()));
        }
        if let Some(h) = r.hashes.iter().find(|h| !is_sha256(h)) {
            return bad(format!("{}: {h:?} is not sha256:<64 hex digits>", r.name));
        }
    }
    let mut names: Vec<&str> = requirements.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return bad(format!("{} is listed twice", w[0]));
    }
    Ok(())
}

/// A pack's node dependencies as `npm ci` installed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLock {
    /// `package-lock.json` or `npm-shrinkwrap.json`.
    pub lockfile: String,
    /// `sha256:<hex>` of the lockfile's bytes.
    pub sha256: String,
    /// Sorted by path.
    pub packages: Vec<NodePackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePackage {
    /// `node_modules/dep`.
    pub path: String,
    pub version: Option<String>,
    /// The lockfile's `integrity` (`sha512-…`).
    pub integrity: Option<String>,
}

/// PEP 503 normalised form, for comparing names.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn is_name(s: &str) -> bool {
    (1..=200).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_version(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '!'))
        && s.starts_with(|c: char| c.is_ascii_digit())
}

fn is_sha256(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Joins backslash-continued lines and drops comments: `(first line number, text)`.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        // A comment starts a line or follows white space (`pkg  # why`).
        let mut line = raw;
        if let Some(p) = raw.find('#').filter(|&p| p == 0 || raw[..p].ends_with(char::is_whitespace)) {
            line = &raw[..p];
        }
        let (body, continued) = match line.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body.trim());
        if !continued {
            let (n, t) = current.take().expect("just set");
            if !t.trim().is_empty() {
                out.push((n, t.trim().to_owned()));
            }
        }
    }
    if let Some((n, t)) = current.filter(|(_, t)| !t.trim().is_empty()) {
        out.push((n, t.trim().to_owned()));
    }
    out
}

/// A pack's requirements file, checked: every line a plain requirement
/// (name, extras, version specifiers, markers). Options (`-r`, `-e`,
/// `--index-url`, …), URLs, paths and `${VARS}` are refused, so the file can
/// neither reach another host nor read another file. Returns the lines.
pub fn check_requirements(file: &str, text: &str) -> Result<Vec<String>, LockError> {
    let mut out = Vec::new();
    for (line, req) in logical_lines(text) {
        let refuse = |reason: &str| LockError::Refused { file: file.to_owned(), line, reason: reason.to_owned() };
        if req.starts_with('-') {
            return Err(refuse(&format!("the option {:?} is not allowed", first_word(&req))));
        }
        if req.contains("://") || req.contains('@') {
            return Err(refuse(&format!("{:?} is a URL or direct reference", first_word(&req))));
        }
        if let Some(opt) = req.split_whitespace().skip(1).find(|w| w.starts_with('-') && !w.starts_with("--hash")) {
            return Err(refuse(&format!("the option {:?} is not allowed", first_word(opt))));
        }
        if req.contains('$') {
            return Err(refuse("environment variables (`${…}`) are not expanded"));
        }
        if !req.starts_with(|c: char| c.is_ascii_alphanumeric()) || req.contains(['/', '\\']) {
            return Err(refuse(&format!("{:?} is not a package name (paths are not allowed)", first_word(&req))));
        }
        out.push(req);
        if out.len() > MAX_REQUIREMENTS {
            return Err(LockError::TooLarge {
                file: file.to_owned(),
                reason: "too many requirements".into(),
                limit: REQUIREMENTS_FILE_LIMIT,
            });
        }
    }
    Ok(out)
}

/// Largest requirements file read.
pub const REQUIREMENTS_FILE_LIMIT: usize = 1 << 20;

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").chars().take(80).collect()
}

/// Reads a hash-pinned requirements file as [`PythonLock::requirements_txt`]
/// writes it (and `uv pip compile --generate-hashes` prints it).
#[cfg(test)]
fn parse_compiled(text: &str, uv: &str) -> Result<Vec<LockedRequirement>, LockError> {
    let unreadable = |reason: String| LockError::Unreadable { uv: uv.to_owned(), reason };
    let mut reqs = Vec::new();
    for (line, entry) in logical_lines(text) {
        let mut words = entry.split_whitespace();
        let pin = words.next().unwrap_or("");
        let Some((name, version)) = pin.split_once("==") else {
            return Err(unreadable(format!("line {line}: {:?} is not name==version", first_word(pin))));
        };
        let mut hashes = Vec::new();
        for w in words {
            match w.strip_prefix("--hash=") {
                Some(h) => hashes.push(h.to_owned()),
                None => return Err(unreadable(format!("line {line}: unexpected {:?}", first_word(w)))),
            }
        }
        hashes.sort();
        hashes.dedup();
        reqs.push(LockedRequirement { name: name.to_owned(), version: version.to_owned(), hashes });
    }
    reqs.sort();
    Ok(reqs)
}

/// Reads what `uv pip compile --format pylock.toml` wrote (PEP 751): each
/// package's name, version and the sha256 of its wheels and sdist.
pub(crate) fn parse_pylock(text: &str, uv: &str) -> Result<Vec<LockedRequirement>, LockError> {
    #[derive(Deserialize)]
    struct Pylock {
        #[serde(default)]
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: Option<String>,
        #[serde(default)]
        wheels: Vec<Artifact>,
        sdist: Option<Artifact>,
    }
    #[derive(Deserialize)]
    struct Artifact {
        #[serde(default)]
        hashes: std::collections::BTreeMap<String, String>,
    }
    let unreadable = |reason: String| LockError::Unreadable { uv: uv.to_owned(), reason };
    let lock: Pylock = toml::from_str(text).map_err(|e| unreadable(format!("pylock.toml: {e}")))?;
    let mut reqs = Vec::new();
    for p in lock.packages {
        let version = p.version.ok_or_else(|| unreadable(format!("{}: no version (not from an index)", p.name)))?;
        let mut hashes: Vec<String> = p
            .wheels
            .iter()
            .chain(p.sdist.as_ref())
            .filter_map(|a| a.hashes.get("sha256"))
            .map(|h| format!("sha256:{h}"))
            .collect();
        hashes.sort();
        hashes.dedup();
        reqs.push(LockedRequirement { name: p.name, version, hashes });
    }
    reqs.sort();
    Ok(reqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pylock_packages_become_locked_requirements() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text = format!(
            "lock-version = \"1.0\"\ncreated-by = \"uv\"\n\n[[packages]]\nname = \"zeta\"\nversion = \"2.0\"\n\
             sdist = {{ url = \"http://127.0.0.1:1/zeta-2.0.tar.gz\", hashes = {{ sha256 = \"{b}\" }} }}\n\n\
             [[packages]]\nname = \"alpha\"\nversion = \"1.0.0\"\n\
             wheels = [{{ url = \"http://127.0.0.1:1/alpha-1.0.0-py3-none-any.whl\", hashes = {{ sha256 = \"{a}\" }} }}]\n"
        );
        let reqs = parse_pylock(&text, "uv").unwrap();
        assert_eq!(
            reqs,
            [
                LockedRequirement {
                    name: "alpha".into(),
                    version: "1.0.0".into(),
                    hashes: vec![format!("sha256:{a}")]
                },
                LockedRequirement { name: "zeta".into(), version: "2.0".into(), hashes: vec![format!("sha256:{b}")] },
            ]
        );
        validate_requirements(&reqs).unwrap();
        let no_version = "[[packages]]\nname = \"x\"\ndirectory = { path = \"/etc\" }\n";
        assert!(matches!(parse_pylock(no_version, "uv"), Err(LockError::Unreadable { .. })));
    }

    #[test]
    fn compiled_output_round_trips_through_the_lock() {
        let h1 = format!("sha256:{}", "a".repeat(64));
        let h2 = format!("sha256:{}", "b".repeat(64));
        let text = format!("zeta==2.0 \\\n    --hash={h2}\nalpha==1.0.0 \\\n    --hash={h2} \\\n    --hash={h1}\n");
        let reqs = parse_compiled(&text, "uv").unwrap();
        assert_eq!(reqs[0].name, "alpha");
        assert_eq!(reqs[0].hashes, [h1.clone(), h2.clone()]);
        let lock = PythonLock {
            python: PythonTarget { implementation: "cpython".into(), version: "3.11.7".into(), platform: "x".into() },
            requirements: reqs.clone(),
            needs_source_builds: false,
        };
        lock.validate().unwrap();
        assert_eq!(parse_compiled(&lock.requirements_txt(), "uv").unwrap(), reqs);
    }

    #[test]
    fn a_recorded_lock_cannot_smuggle_options_into_the_requirements_file() {
        let mut lock = PythonLock {
            python: PythonTarget { implementation: "cpython".into(), version: "3.11.7".into(), platform: "x".into() },
            requirements: vec![LockedRequirement {
                name: "alpha".into(),
                version: "1.0".into(),
                hashes: vec![format!("sha256:{}", "a".repeat(64))],
            }],
            needs_source_builds: false,
        };
        lock.validate().unwrap();
        for (name, version, hash) in [
            ("--index-url=http://evil", "1.0", format!("sha256:{}", "a".repeat(64))),
            ("alpha", "1.0\n--index-url http://evil", format!("sha256:{}", "a".repeat(64))),
            ("alpha", "1.0", "sha256:abc --index-url=http://evil".to_owned()),
            ("alpha", "1.0", format!("md5:{}", "a".repeat(32))),
        ] {
            lock.requirements[0] = LockedRequirement { name: name.into(), version: version.into(), hashes: vec![hash] };
            assert!(matches!(lock.validate(), Err(LockError::Invalid { .. })), "{:?}", lock.requirements[0]);
        }
    }

    #[test]
    fn requirements_files_may_not_name_indexes_urls_or_files() {
        let ok = "# tools\nrequests>=2.31,<3  # http\njira[cli]==3.5 ; python_version >= \"3.8\"\nsix \\\n  >=1.16\n";
        assert_eq!(
            check_requirements("requirements.txt", ok).unwrap(),
            ["requests>=2.31,<3", "jira[cli]==3.5 ; python_version >= \"3.8\"", "six >=1.16"]
        );
        for bad in [
            "--index-url http://evil/simple",
            "-r ../../etc/other.txt",
            "-e git+https://evil/x.git",
            "pkg @ https://evil/pkg.whl",
            "https://evil/pkg.whl",
            "./local/path",
            "/abs/path.whl",
            "pkg==${VERSION}",
            "--extra-index-url=http://evil",
            "pkg==1.0 --config-settings=x=y",
        ] {
            let e = check_requirements("requirements.txt", &format!("ok\n{bad}\n")).unwrap_err().to_string();
            assert!(e.starts_with("requirements.txt: line 2: "), "{bad}: {e}");
        }
    }

    #[test]
    fn names_normalise_as_pep_503_says() {
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize_name("stackstorm_jira"), "stackstorm-jira");
    }

    #[test]
    fn targets_are_compatible_within_a_minor_version() {
        let t = |v: &str| PythonTarget { implementation: "cpython".into(), version: v.into(), platform: "p".into() };
        assert!(t("3.11.7").compatible_with(&t("3.11.9")));
        assert!(!t("3.11.7").compatible_with(&t("3.12.0")));
    }
}
