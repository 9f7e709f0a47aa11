//! The `archive` fetcher against a corpus of good and hostile archives.
//!
//! `scripts/make-archive-corpus.py` writes tar, tar.gz and zip files (a valid
//! pack, plus one hostile entry for each reject case) and `cases.json`, which
//! says what each must do. Every case is installed through the real binary in
//! a fresh environment: a good archive must install the exact pack, a hostile
//! or broken one must fail with exit 1 and an error naming the problem, and
//! leave nothing behind: no pack, no staging, no database row claiming an
//! install, no file outside. Each test collects every broken case and fails
//! once with the whole list, so one run shows everything that is wrong.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{Env, Out, listing, query, repo};

/// One archive of the corpus, as `cases.json` describes it.
#[derive(Debug, serde::Deserialize)]
struct Case {
    file: String,
    /// `ok` or `reject`.
    expect: String,
    rule: String,
    /// A reject's stderr must contain this (raw, or as Rust's `{:?}` escapes it).
    mention: String,
    /// A reject's stderr must also contain at least one of these.
    #[serde(default)]
    any_of: Vec<String>,
    #[serde(default)]
    slow: bool,
    /// Absolute paths the archive aims at; they must not exist afterwards.
    #[serde(default)]
    outside: Vec<String>,
    /// Every path of the installed pack, sorted.
    #[serde(default)]
    tree: Vec<String>,
    /// Exact permission bits (octal, with setuid/setgid/sticky) by path.
    #[serde(default)]
    modes: BTreeMap<String, String>,
    #[serde(default)]
    exec: Vec<String>,
    #[serde(default)]
    noexec: Vec<String>,
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    /// Pairs of paths with the same content (a hard link and its target).
    #[serde(default)]
    same_content: Vec<(String, String)>,
}

struct Corpus {
    dir: PathBuf,
    cases: Vec<Case>,
}

impl Corpus {
    fn path(&self, case: &Case) -> PathBuf {
        self.dir.join(&case.file)
    }

    fn select(&self, expect: &str, slow: bool) -> Vec<&Case> {
        self.cases.iter().filter(|c| c.expect == expect && c.slow == slow).collect()
    }
}

/// The corpus, made once per test process in a folder of its own under
/// cargo's scratch dir (several `cargo test` runs may share that dir); the
/// folders of processes that have ended are removed first, so their ~150 MiB
/// never pile up.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        use sha2::Digest;
        // Generating takes python ~15 s (the bomb, the flood), so the corpus
        // is kept between runs, named by its script's hash: a changed script
        // makes a new one.
        let script = repo().join("scripts/make-archive-corpus.py");
        let key = hex::encode(sha2::Sha256::digest(std::fs::read(&script).unwrap()))[..16].to_string();
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = scratch.join(format!("{CORPUS_PREFIX}{key}"));
        if !dir.join("cases.json").is_file() {
            remove_stale_corpora(scratch, &key);
            // Written aside and renamed, so a corpus is only ever seen whole.
            let tmp = scratch.join(format!("{CORPUS_PREFIX}tmp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let out = Command::new("python3")
                .arg(&script)
                .arg(&tmp)
                .output()
                .unwrap_or_else(|e| panic!("python3 {}: {e} (python3 makes the archive corpus)", script.display()));
            assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another test process published the same corpus first.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        let json = std::fs::read(dir.join("cases.json")).unwrap();
        let cases: Vec<Case> = serde_json::from_slice(&json).unwrap();
        for c in &cases {
            assert!(dir.join(&c.file).is_file(), "cases.json names {} but the script did not write it", c.file);
            assert!(c.expect == "ok" || c.expect == "reject", "{}: expect is {:?}", c.file, c.expect);
        }
        Corpus { dir, cases }
    })
}

const CORPUS_PREFIX: &str = "archive-corpus-";

/// Corpora of other versions of the script, and half-written ones whose
/// process ended.
fn remove_stale_corpora(scratch: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(scratch) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CORPUS_PREFIX) else { continue };
        let stale = match rest.strip_prefix("tmp-") {
            // Only "no such process" means it ended (EPERM is a live process of another user).
            Some(pid) => pid
                .parse()
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|pid| rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)),
            None => rest != key,
        };
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where an archive that escapes would write, relative to the packs dir
/// (staging is below it) and to the working directory.
const EVIL: &str = "evil";
/// A case that has not ended by then hangs; it is killed and reported.
const HANG: Duration = Duration::from_secs(120);
const SLOW_LIMIT: Duration = Duration::from_secs(60);
const RSS_LIMIT_KIB: u64 = 600 * 1024;

struct Run {
    out: Out,
    elapsed: Duration,
    /// Peak resident set of the attune process, when `/usr/bin/time` could tell.
    max_rss_kib: Option<u64>,
}

fn gnu_time() -> Option<&'static Path> {
    let time = Path::new("/usr/bin/time");
    time.is_file().then_some(time)
}

/// `attune install <args…>` in `env`, from an empty working directory, killed
/// (with everything it started) if it hangs. With `measure`, under
/// `/usr/bin/time` for the peak RSS.
fn install(env: &Env, args: &[&str], measure: bool) -> Run {
    let cwd = env.tmp.path().join("cwd");
    let logs = env.tmp.path().join("logs");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let rss_file = logs.join("rss");
    let attune = env.cmd();
    let mut cmd = match gnu_time().filter(|_| measure) {
        Some(time) => {
            let mut c = Command::new(time);
            c.env_clear();
            for (k, v) in attune.get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            c.arg("-o").arg(&rss_file).args(["-f", "%M"]).arg(attune.get_program());
            c
        }
        None => attune,
    };
    cmd.arg("install").args(args).current_dir(&cwd).process_group(0);
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap());

    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > HANG {
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let read = |name: &str| String::from_utf8_lossy(&std::fs::read(logs.join(name)).unwrap()).into_owned();
    let mut stderr = read("stderr");
    if status.is_none() {
        stderr.push_str(&format!("\n[test: killed after {HANG:?}]"));
    }
    // GNU time writes "Command exited with non-zero status 1" before the number.
    let max_rss_kib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().filter_map(|l| l.trim().parse().ok()).next_back());
    let code = status.and_then(|s| s.code());
    let out = Out { ok: code == Some(0), code, stdout: read("stdout"), stderr };
    Run { out, elapsed, max_rss_kib }
}

/// The text as Rust's `{:?}` prints it inside the quotes (errors quote paths so).
fn escaped(s: &str) -> String {
    let d = format!("{s:?}");
    d[1..d.len() - 1].to_string()
}

fn mentions(stderr: &str, text: &str) -> Option<String> {
    [text.to_string(), escaped(text)].into_iter().find(|t| stderr.contains(t.as_str()))
}

/// Problems with the state an install that failed must leave behind.
fn leftovers(env: &Env, outside: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    let visible: Vec<String> = listing(&env.packs()).into_iter().filter(|p| !p.starts_with(".attune")).collect();
    if !visible.is_empty() {
        bad.push(format!("the packs dir holds {visible:?}"));
    }
    let staging = listing(&env.packs().join(".attune/staging"));
    if !staging.is_empty() {
        bad.push(format!("staging was left behind: {staging:?}"));
    }
    let rows = query(env, "SELECT id, status FROM installations WHERE status != 'failed'");
    if !rows.is_empty() {
        bad.push(format!("installation rows not marked failed: {rows:?}"));
    }
    let cwd = listing(&env.tmp.path().join("cwd"));
    if !cwd.is_empty() {
        bad.push(format!("files appeared in the working directory: {cwd:?}"));
    }
    let evil: Vec<String> = listing(env.tmp.path()).into_iter().filter(|p| p.contains(EVIL)).collect();
    if !evil.is_empty() {
        bad.push(format!("an escaping entry was written: {evil:?}"));
    }
    for p in outside {
        if std::fs::symlink_metadata(p).is_ok() {
            bad.push(format!("{p} exists after the install"));
        }
    }
    bad
}

/// Problems with a reject case's run.
fn check_reject(env: &Env, case: &Case, run: &Run) -> Vec<String> {
    let err = &run.out.stderr;
    let mut bad = Vec::new();
    if run.out.code != Some(1) {
        bad.push(format!("exit code {:?}, expected 1 (a clear error, not a crash or success)", run.out.code));
    }
    if err.contains("crashed") || err.contains("panicked") {
        bad.push("the fetcher or host crashed instead of refusing".into());
    }
    match mentions(err, &case.mention) {
        None => bad.push(format!("stderr does not mention {:?}", case.mention)),
        Some(found) => {
            // The name alone is not an explanation: some words must say why.
            let rest = err.replace(&found, " ");
            let words = rest.split_whitespace().filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3);
            if words.count() < 4 {
                bad.push(format!("stderr names {:?} but does not say why", case.mention));
            }
        }
    }
    if !case.any_of.is_empty() && !case.any_of.iter().any(|w| err.contains(w.as_str())) {
        bad.push(format!("stderr has none of {:?}", case.any_of));
    }
    bad.extend(leftovers(env, &case.outside));
    bad
}

/// Problems with an ok case's installed pack.
fn check_ok(env: &Env, case: &Case, run: &Run) -> Vec<String> {
    if run.out.code != Some(0) {
        return vec![format!("install failed with exit code {:?}", run.out.code)];
    }
    let mut bad = Vec::new();
    let dest = env.packs().join("corpus-1.0.0");
    let tree = listing(&dest);
    if tree != case.tree {
        bad.push(format!("installed tree\n      {tree:?}\n    expected\n      {:?}", case.tree));
    }
    let mode = |p: &str| std::fs::symlink_metadata(dest.join(p)).map(|m| m.permissions().mode() & 0o7777);
    for (p, want) in &case.modes {
        let want = u32::from_str_radix(want, 8).unwrap();
        match mode(p) {
            Ok(m) if m == want => {}
            Ok(m) => bad.push(format!("{p} has mode {m:04o}, expected {want:04o}")),
            Err(e) => bad.push(format!("{p}: {e}")),
        }
    }
    for p in &case.exec {
        if !mode(p).is_ok_and(|m| m & 0o111 != 0) {
            bad.push(format!("{p} is not executable: {:?}", mode(p).map(|m| format!("{m:04o}"))));
        }
    }
    for p in &case.noexec {
        if !mode(p).is_ok_and(|m| m & 0o111 == 0) {
            bad.push(format!("{p} should not be executable: {:?}", mode(p).map(|m| format!("{m:04o}"))));
        }
    }
    for (p, target) in &case.symlinks {
        match std::fs::read_link(dest.join(p)) {
            Ok(t) if t == Path::new(target) => {}
            other => bad.push(format!("{p} should be a symlink to {target:?}: {other:?}")),
        }
    }
    for (link, target) in &case.same_content {
        let (a, b) = (std::fs::read(dest.join(link)), std::fs::read(dest.join(target)));
        if !matches!((&a, &b), (Ok(a), Ok(b)) if a == b) {
            bad.push(format!("{link} should have the content of {target}: {a:?} vs {b:?}"));
        }
    }
    let staging = listing(&env.packs().join(".attune/staging"));
    if !staging.is_empty() {
        bad.push(format!("staging was left behind: {staging:?}"));
    }
    let rows = query(env, "SELECT source_type, status FROM installations");
    if rows != [["archive", "installed"]] {
        bad.push(format!("installation rows: {rows:?}"));
    }
    let verify = env.run(&["verify"]);
    if !verify.ok || !verify.stdout.contains("corpus 1.0.0") {
        bad.push(format!("attune verify: {verify:?}"));
    }
    bad
}

/// Runs every case, collecting what went wrong with each; panics once with all of it.
fn run_all(cases: &[&Case], measure: bool, check: impl Fn(&Env, &Case, &Run) -> Vec<String>) {
    assert!(!cases.is_empty(), "cases.json has no such cases");
    let corpus = corpus();
    let mut failures = Vec::new();
    for case in cases {
        let env = Env::new();
        let file = corpus.path(case);
        let run = install(&env, &[file.to_str().unwrap()], measure);
        let bad = check(&env, case, &run);
        if !bad.is_empty() {
            failures.push(format!(
                "{} ({}, expect {}):\n  - {}\n  stderr: {}",
                case.file,
                case.rule,
                case.expect,
                bad.join("\n  - "),
                run.out.stderr.trim_end().replace('\n', "\n          ")
            ));
        }
    }
    if !failures.is_empty() {
        panic!("{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    }
}

#[test]
fn good_archives_install_the_exact_pack_in_every_format() {
    let corpus = corpus();
    run_all(&corpus.select("ok", false), false, check_ok);
}

#[test]
fn hostile_and_broken_archives_are_refused_and_leave_nothing_behind() {
    let corpus = corpus();
    let before = listing(&corpus.dir);
    let targets: Vec<&String> = corpus.cases.iter().flat_map(|c| &c.outside).collect();
    for t in &targets {
        assert!(
            std::fs::symlink_metadata(t).is_err(),
            "{t} exists before the test; remove it so it can prove anything"
        );
    }
    run_all(&corpus.select("reject", false), false, check_reject);
    assert_eq!(listing(&corpus.dir), before, "files appeared next to the archives");
}

#[test]
fn a_gzip_bomb_and_a_flood_of_entries_stop_at_the_limits_in_bounded_time_and_memory() {
    let corpus = corpus();
    let slow = corpus.cases.iter().filter(|c| c.slow).collect::<Vec<_>>();
    assert!(slow.iter().any(|c| c.file == "bomb.tgz") && slow.iter().any(|c| c.file == "many.tar"));
    if gnu_time().is_none() {
        println!("note: /usr/bin/time is missing (apt-get install time); peak RSS is not checked");
    }
    run_all(&slow, true, |env, case, run| {
        let rss = run.max_rss_kib.map(|k| format!("{} MiB", k / 1024)).unwrap_or_else(|| "unknown".into());
        println!("{}: refused in {:.1?}, peak RSS {rss}", case.file, run.elapsed);
        let mut bad = check_reject(env, case, run);
        if run.elapsed > SLOW_LIMIT {
            bad.push(format!("took {:.1?}, limit {SLOW_LIMIT:?}", run.elapsed));
        }
        match run.max_rss_kib {
            Some(kib) if case.file == "bomb.tgz" && kib >= RSS_LIMIT_KIB => {
                bad.push(format!("peak RSS {} MiB, limit {} MiB", kib / 1024, RSS_LIMIT_KIB / 1024))
            }
            None if gnu_time().is_some() => println!("note: /usr/bin/time reported no peak RSS for {}", case.file),
            _ => {}
        }
        bad
    });
}

#[test]
fn an_archive_is_checked_against_its_own_sha256_before_install() {
    use sha2::Digest;
    let corpus = corpus();
    let archive = std::fs::read(corpus.dir.join("ok-root.tgz")).unwrap();
    let actual = hex::encode(sha2::Sha256::digest(&archive));

    // The archive's own SHA-256 is accepted, from a relative path as users type it.
    let env = Env::new();
    std::fs::create_dir_all(env.tmp.path().join("cwd")).unwrap();
    std::fs::write(env.tmp.path().join("cwd/pack.tgz"), &archive).unwrap();
    let run = install(&env, &["--checksum", &format!("sha256:{actual}"), "./pack.tgz"], false);
    assert!(run.out.ok, "the right sha256 was refused: {:?}", run.out);
    assert!(env.packs().join("corpus-1.0.0/pack.yaml").is_file());
    env.run(&["verify"]).success();

    // Another real archive's SHA-256, and one that is all zeros, are refused.
    let other = hex::encode(sha2::Sha256::digest(std::fs::read(corpus.dir.join("ok-root.tar")).unwrap()));
    for wrong in [other, "0".repeat(64)] {
        let env = Env::new();
        let file = corpus.dir.join("ok-root.tgz");
        let run = install(&env, &["--checksum", &format!("sha256:{wrong}"), file.to_str().unwrap()], false);
        let err = &run.out.stderr;
        assert_eq!(run.out.code, Some(1), "a wrong sha256 must fail with exit 1: {:?}", run.out);
        assert!(
            err.contains("checksum") && err.contains(&wrong),
            "stderr should say checksum and name the expected one: {err}"
        );
        assert!(err.contains(&actual), "stderr should show the archive's real sha256: {err}");
        let left = leftovers(&env, &[]);
        assert!(left.is_empty(), "a wrong sha256 left things behind: {left:?}");
    }
}
