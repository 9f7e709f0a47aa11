//! Shared test harness: a private packs dir and SQLite file per test, the
//! real `attune` binary, and a compiled-plugin cache shared across tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod components;
pub mod git_server;
pub mod http_server;
pub mod index;
pub mod postgres;
pub mod test_plugins;
pub mod tls;

/// The metadata database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test (an `async fn(Backend)`, on a multi-threaded
/// runtime; with `sync:`, a plain `fn(Backend)`) once per backend, in
/// modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_backends {
    // Plain `fn(Backend)` tests (the CLI runs in its own process anyway).
    (sync: $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Backend::Sqlite)
            })+
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Backend::Postgres)
            })+
        }
    };
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name($crate::common::Backend::Sqlite).await
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name($crate::common::Backend::Postgres).await
            })+
        }
    };
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    /// Another database than this env's own SQLite file.
    database_url: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        Env { tmp: tempfile::tempdir().unwrap(), database_url: None }
    }

    /// An env on a fresh database of `backend`; `None` when that backend is
    /// not available here (PostgreSQL not installed, outside CI).
    pub fn on(backend: Backend) -> Option<Env> {
        match backend {
            Backend::Sqlite => Some(Env::new()),
            Backend::Postgres => Some(Env::with_database(&postgres::server()?.new_database())),
        }
    }

    /// An env whose metadata lives at `url` (e.g. a shared PostgreSQL database).
    pub fn with_database(url: &str) -> Env {
        Env { database_url: Some(url.to_string()), ..Env::new() }
    }

    pub fn packs(&self) -> PathBuf {
        self.tmp.path().join("packs")
    }

    pub fn db_path(&self) -> PathBuf {
        self.tmp.path().join("attune.db")
    }

    pub fn db_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.db_path().display()))
    }

    /// `attune` with this env's packs dir, database and the shared cache.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_attune"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("USER", "tester")
            .env("ATTUNE_PACKS_DIR", self.packs())
            .env("ATTUNE_DATABASE_URL", self.db_url())
            .env("ATTUNE_CACHE_DIR", cache_dir());
        c
    }

    /// Runs `attune args…`; returns (exit ok, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with::<&str>(&[], args)
    }

    /// [`Env::run`] with extra environment variables.
    pub fn run_with<V: AsRef<std::ffi::OsStr>>(&self, vars: &[(&str, V)], args: &[&str]) -> Out {
        let mut c = self.cmd();
        for (k, v) in vars {
            c.env(k, v);
        }
        let o = c.args(args).output().unwrap();
        Out {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// [`Env::run`], and the child's peak resident memory in bytes: its
    /// own `VmHWM` (the high-water mark of its address space after exec),
    /// read every 2 ms while it runs. `ru_maxrss` from `wait4` would not do:
    /// Linux carries the parent's high-water mark across `vfork` + `exec`.
    pub fn run_peak(&self, args: &[&str]) -> (Out, u64) {
        use std::io::Read;
        let mut child = self
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let err = std::thread::spawn(move || {
            let mut v = Vec::new();
            se.read_to_end(&mut v).unwrap();
            v
        });
        let out = std::thread::spawn(move || {
            let mut v = Vec::new();
            so.read_to_end(&mut v).unwrap();
            v
        });
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak_kib = 0u64;
        let status = loop {
            if let Ok(text) = std::fs::read_to_string(&status_file)
                && let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let o = Out {
            ok: status.success(),
            code: status.code(),
            stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        };
        assert!(peak_kib > 0, "no VmHWM was read for {args:?}");
        (o, peak_kib * 1024)
    }

    /// A small pack with every kind of entry: exec file, symlink, empty dir.
    pub fn make_pack(&self, name: &str, version: &str) -> PathBuf {
        let dir = self.tmp.path().join("src").join(format!("{name}-{version}"));
        write_pack(&dir, name, version);
        dir
    }

    /// A copy of `examples/packs/<name>` to change freely.
    pub fn example(&self, name: &str) -> PathBuf {
        let to = self.tmp.path().join("src").join(name);
        copy_tree(&repo().join("examples/packs").join(name), &to);
        to
    }

    /// Replaces the env's paths with stable names for snapshots.
    pub fn redact(&self, s: &str) -> String {
        let mut s = s.replace(&self.tmp.path().canonicalize().unwrap().display().to_string(), "[TMP]");
        s = s.replace(&self.tmp.path().display().to_string(), "[TMP]");
        s = s.replace(&repo().display().to_string(), "[REPO]");
        redact_volatile(&s)
    }
}

#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn success(self) -> Out {
        assert!(self.ok, "command failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn failure(self) -> Out {
        assert!(!self.ok, "command succeeded but should fail\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert_eq!(self.code, Some(1), "a failure exits 1, not a crash: {self:?}");
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Timestamps, hostnames, hashes of build products: things a snapshot must not pin.
pub fn redact_volatile(s: &str) -> String {
    let host = attune_app::context::hostname();
    let time = regex_lite::Regex::new(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z|[+-]\d\d:\d\d)?").unwrap();
    let s = time.replace_all(s, "[TIME]").into_owned();
    let s = s.replace(&format!(" {host}\n"), " [HOST]\n").replace(&format!("on {host}"), "on [HOST]");
    let s = s.replace(&format!("by {} via", attune_app::context::username()), "by [USER] via");
    let pid = regex_lite::Regex::new(r"\b\d+-[0-9a-f]{8,}\b").unwrap();
    pid.replace_all(&s, "[ID]").into_owned()
}

pub fn write_pack(dir: &Path, name: &str, version: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(
        dir.join("pack.yaml"),
        format!("---\nname: {name}\ndescription: A test pack\nversion: {version}\nauthor: Tests\nemail: t@example.com\npython_versions:\n  - \"3\"\nextra_key: kept\n"),
    )
    .unwrap();
    std::fs::write(dir.join("actions/run.sh"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(dir.join("actions/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("actions/run.yaml"), "name: run\nentry_point: run.sh\nrunner_type: local-shell-script\n")
        .unwrap();
    std::fs::write(dir.join("rules/on.yaml"), "name: on\n").unwrap();
    std::os::unix::fs::symlink("run.sh", dir.join("actions/alias.sh")).unwrap();
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Compiled components are cached here for every test of this build.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("attune-cache")
}

pub fn hostile_wasm() -> PathBuf {
    test_plugins::wasm("hostile")
}

pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dst = to.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Every file under `dir`, relative, sorted (to prove nothing else appeared).
/// Tolerates a tree that changes while it is read.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

/// Rows of a query against the env's SQLite file, through the sqlite3 CLI-free path: sqlx.
pub fn query(env: &Env, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = env.db_url();
    macro_rules! rows_as_text {
        ($pool:ty) => {{
            use sqlx::Row;
            let pool = <$pool>::connect(&url).await.unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| {
                            r.try_get::<String, _>(i)
                                .or_else(|_| r.try_get::<i64, _>(i).map(|n| n.to_string()))
                                .unwrap_or_else(|_| "NULL".into())
                        })
                        .collect()
                })
                .collect()
        }};
    }
    rt.block_on(async {
        match url.starts_with("postgres") {
            true => rows_as_text!(sqlx::PgPool),
            false => rows_as_text!(sqlx::SqlitePool),
        }
    })
}

/// `tar czf` of `dir` with its folder as the one top-level entry.
pub fn tgz(dir: &Path) -> Vec<u8> {
    let out = dir.with_extension("tgz");
    let ok = std::process::Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.parent().unwrap())
        .arg(dir.file_name().unwrap())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read(out).unwrap()
}

/// Whether a system tool some tests need is here. Missing, the test is
/// skipped with a note saying how to get it, so `cargo test` on a fresh
/// machine stays green; under `CI` (where `.ci/run` installs every tool) a
/// missing tool fails the test instead.
pub fn have(what: &str, found: bool, install: &str) -> bool {
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{what} is not installed ({install}); CI must run these tests");
        eprintln!("note: {what} is not installed ({install}); skipping this test");
    }
    found
}

/// Whether `program --version` runs.
pub fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
