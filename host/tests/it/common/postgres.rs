//! A real PostgreSQL server on 127.0.0.1 for tests, one per test binary.
//!
//! `initdb` into a temporary folder, `postgres` on a free port, trust auth on
//! loopback only. `initdb` refuses to run as root (CI does), so as root the
//! server runs as the `postgres` user. A small shell keeps the server's
//! lifetime tied to this process: it waits on a pipe from us and stops the
//! server and removes its folder when the pipe closes, however we exit.
//!
//! Included by the integration tests and, with `#[path]`, by the database unit
//! tests, so both run against the same kind of server.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    log: PathBuf,
    /// Closing it (at exit) stops the server.
    _keepalive: Mutex<(Child, ChildStdin)>,
}

/// The shared server, started on first use; `None` where PostgreSQL is not
/// installed (a failure instead when `CI` is set: there it must be).
pub fn server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| match bin_dir() {
            Some(bin) => Some(PgServer::start(&bin)),
            None => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "PostgreSQL is not installed (apt-get install postgresql); CI must run these tests"
                );
                eprintln!("note: PostgreSQL is not installed (apt-get install postgresql); skipping its tests");
                None
            }
        })
        .as_ref()
}

/// The folder holding `initdb` and `postgres`: on PATH, else Debian's
/// `/usr/lib/postgresql/{version}/bin`, newest first.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    debian.sort_by_key(|p| {
        std::cmp::Reverse(p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0))
    });
    let found = on_path.chain(debian).find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())?;
    // A PATH entry may hold just symlinks to a few of the tools: use their real folder.
    found.join("initdb").canonicalize().ok()?.parent().map(Path::to_path_buf)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The command line that runs `program` as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> =
        if is_root() { ["runuser", "-u", "postgres", "--"].map(Into::into).to_vec() } else { Vec::new() };
    argv.push(program.into());
    argv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    fn start(bin: &Path) -> PgServer {
        let dir = tempfile::Builder::new().prefix("attune-pg-").tempdir().unwrap().keep();
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(&data).status().unwrap().success();
            assert!(ok, "chown postgres {}", data.display());
        }
        let initdb = as_server_user(&bin.join("initdb"));
        let out = Command::new(&initdb[0])
            .args(&initdb[1..])
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));

        let port = free_port();
        let log = dir.join("server.log");
        // Stops the server when our end of its stdin closes, then removes the folder.
        let script = r#"
            "$@" >"$LOG" 2>&1 &
            read -r _
            kill -INT "$(head -n1 "$DATA/postmaster.pid" 2>/dev/null)" 2>/dev/null
            wait
            rm -rf "$DIR"
        "#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(as_server_user(&bin.join("postgres")))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&data)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=400", "-c", "shared_buffers=16MB"])
            .env("LOG", &log)
            .env("DATA", &data)
            .env("DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let pg = PgServer { port, log, _keepalive: Mutex::new((child, stdin)) };
        pg.wait_ready(bin);
        pg
    }

    fn wait_ready(&self, bin: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let mut log = String::new();
                let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut log));
                panic!("PostgreSQL did not start on 127.0.0.1:{}:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; returns its URL. Safe to call from inside or
    /// outside a tokio runtime.
    pub fn new_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = self.url("postgres");
        let sql = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            })
        })
        .join()
        .unwrap();
        self.url(&name)
    }
}
