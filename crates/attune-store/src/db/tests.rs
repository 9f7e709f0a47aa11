//! Tests against real SQLite files in temporary directories.

use std::cmp::Ordering;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::*;

const HOST: &str = "host-a";

fn new_install(pack_ref: &str, version: &str, host: &str) -> NewInstallation {
    NewInstallation {
        pack_ref: pack_ref.into(),
        action: Action::Install,
        pack_name: format!("The {pack_ref} pack"),
        pack_description: Some("does things".into()),
        version: version.into(),
        source_type: attune_core::source::SourceKind::Local,
        source: "/src/packs/demo".into(),
        requested_ref: Some("main".into()),
        resolved_commit: None,
        checksum: "sha256-tree-v1:abcd".into(),
        checksum_algorithm: "sha256-tree-v1".into(),
        manifest: json!({"pack.yaml": "sha256:01", "actions/run.sh": "sha256:02"}),
        verified: true,
        installed_by: "alice".into(),
        method: Channel::Cli,
        storage_path: format!("/var/attune/packs/{pack_ref}/{version}"),
        fetcher_name: "local".into(),
        fetcher_version: "0.1.0".into(),
        fetcher_hash: Some("feed".into()),
        host: host.into(),
        metadata: json!({"size": 42}),
        api_token: None,
    }
}

/// A database file in a directory that does not exist yet, to cover its creation.
fn url_in(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nested").join("attune.db").display())
}

async fn file_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&url_in(dir.path())).await.unwrap();
    (dir, db)
}

#[path = "../../../../host/tests/it/common/postgres.rs"]
mod pg_server;

/// A fresh database on the test PostgreSQL server, `None` where it is not installed.
async fn pg_db() -> Option<Db> {
    let url = pg_server::server()?.new_database();
    Some(Db::connect(&url).await.unwrap())
}

/// Runs each named test (an `async fn(Db)`) twice: against a fresh SQLite
/// file and against a fresh PostgreSQL database. One behaviour, two backends.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, db) = super::file_db().await;
                super::$name(db).await
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(db) = super::pg_db().await else { return };
                super::$name(db).await
            })+
        }
    };
}

on_both_backends!(
    activations_keep_history_newest_wins,
    a_first_install_is_owed_an_activation_until_it_is_recorded,
    indexes_add_list_update_remove,
    api_tokens_create_lookup_revoke_reuse_name,
    begin_complete_round_trip,
    reinstall_replaces_and_keeps_history,
    failed_install_leaves_nothing_installed,
    failed_reinstall_keeps_the_old_install_live,
    uninstall_keeps_history,
    pending_lists_only_pending_on_that_host,
    installed_orders_by_ref_then_version,
    listing_streams_in_order_with_active_versions,
    verify_result_is_stored,
    schema_enforces_one_live_install,
);

fn sqlite(db: &Db) -> &sqlx::SqlitePool {
    match &db.pool {
        Pool::Sqlite(pool) => pool,
        Pool::Postgres(_) => panic!("an SQLite database was expected"),
    }
}

/// A raw statement on whichever backend `db` is, for tests that bypass the API.
async fn execute_raw(db: &Db, sql: String) -> Result<u64, String> {
    on_pool!(db, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.map(|r| r.rows_affected()).map_err(|e| e.to_string())
    })
}

#[tokio::test]
async fn creates_the_database_file_and_its_folder() {
    let (dir, _db) = file_db().await;
    assert!(dir.path().join("nested/attune.db").is_file());
}

async fn install(db: &Db, pack_ref: &str, version: &str) -> i64 {
    let id = db.begin_install(&new_install(pack_ref, version, HOST)).await.unwrap();
    db.complete_install(id).await.unwrap();
    id
}

async fn begin_complete_round_trip(db: Db) {
    let new = new_install("core", "1.0.0", HOST);
    let id = db.begin_install(&new).await.unwrap();
    let pending = db.installation(id).await.unwrap().unwrap();
    assert_eq!(pending.status, Status::Pending);
    assert_eq!(pending.action, Action::Install);
    assert_eq!(pending.finished_at, None);
    assert!(db.installed(HOST).await.unwrap().is_empty());
    assert_eq!(db.pack("core").await.unwrap().unwrap().first_installed_at, None);

    db.complete_install(id).await.unwrap();
    let installed = db.installed(HOST).await.unwrap();
    assert_eq!(installed.len(), 1);
    let row = &installed[0];
    assert_eq!(row.id, id);
    assert_eq!(row.status, Status::Installed);
    assert_eq!(row.action, Action::Install);
    assert_eq!(db.manifest(id).await.unwrap().as_ref(), Some(&new.manifest));
    assert_eq!(row.metadata_json, new.metadata);
    assert_eq!(row.source, new.source);
    assert_eq!(row.requested_ref.as_deref(), Some("main"));
    assert_eq!(row.resolved_commit, None);
    assert!(row.verified);
    assert_eq!(row.method, Channel::Cli);
    assert_eq!(row.fetcher_hash.as_deref(), Some("feed"));
    let finished = row.finished_at.expect("finished_at set on completion");
    assert!(finished >= row.installed_at);
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().as_ref(), Some(row));
    assert_eq!(db.current("core", "1.0.0", "host-b").await.unwrap(), None);

    let pack = db.pack("core").await.unwrap().unwrap();
    assert_eq!(pack.name, "The core pack");
    assert_eq!(pack.first_installed_at, Some(finished));

    // Serialises with RFC 3339 times and lower-case enum names.
    let v = serde_json::to_value(row).unwrap();
    assert_eq!(v["status"], "installed");
    assert_eq!(v["method"], "cli");
    assert_eq!(v["verified_at"], serde_json::Value::Null);
    let at = v["installed_at"].as_str().unwrap();
    assert!(at.ends_with('Z') && at.contains('T'), "{at}");
}

async fn reinstall_replaces_and_keeps_history(db: Db) {
    let first = install(&db, "core", "1.0.0").await;

    let again = NewInstallation { action: Action::Reinstall, ..new_install("core", "1.0.0", HOST) };
    let second = db.begin_install(&again).await.unwrap();
    assert_eq!(db.installation(second).await.unwrap().unwrap().action, Action::Reinstall);
    // Until the reinstall completes, the old files are still the live ones.
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, first);

    db.complete_install(second).await.unwrap();
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, second);
    let history = db.history("core").await.unwrap();
    let summary: Vec<_> = history.iter().map(|r| (r.id, r.action, r.status)).collect();
    assert_eq!(summary, [(second, Action::Reinstall, Status::Installed), (first, Action::Install, Status::Replaced),]);
    assert_eq!(db.installed(HOST).await.unwrap().len(), 1);
}

async fn failed_install_leaves_nothing_installed(db: Db) {
    let id = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
    db.fail_install(id, "checksum mismatch").await.unwrap();

    let row = db.installation(id).await.unwrap().unwrap();
    assert_eq!(row.status, Status::Failed);
    assert_eq!(row.error.as_deref(), Some("checksum mismatch"));
    assert!(row.finished_at.is_some());
    assert!(db.installed(HOST).await.unwrap().is_empty());
    assert!(db.pending(HOST).await.unwrap().is_empty());
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap(), None);
    assert_eq!(db.pack("core").await.unwrap().unwrap().first_installed_at, None);

    // A failed row can't be resurrected, nor completed twice.
    let err = db.complete_install(id).await.unwrap_err();
    assert!(matches!(err, DbError::NotPending { status: Status::Failed, .. }), "{err:?}");
    let done = install(&db, "core", "1.0.1").await;
    assert!(matches!(
        db.fail_install(done, "late").await.unwrap_err(),
        DbError::NotPending { status: Status::Installed, .. }
    ));
    assert!(matches!(db.complete_install(9999).await.unwrap_err(), DbError::NotFound { .. }));
}

async fn failed_reinstall_keeps_the_old_install_live(db: Db) {
    let first = install(&db, "core", "1.0.0").await;
    let retry = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
    db.fail_install(retry, "disk full").await.unwrap();
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, first);
}

async fn uninstall_keeps_history(db: Db) {
    let id = install(&db, "core", "1.0.0").await;
    let un = db.record_uninstall("core", "1.0.0", HOST, "bob", Channel::Api, Some("ci")).await.unwrap();
    assert!(un > id);

    assert!(db.installed(HOST).await.unwrap().is_empty());
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap(), None);
    let history = db.history("core").await.unwrap();
    assert_eq!(history.len(), 2);
    let (removal, original) = (&history[0], &history[1]);
    assert_eq!((removal.id, removal.action, removal.status), (un, Action::Uninstall, Status::Removed));
    assert_eq!((original.id, original.action, original.status), (id, Action::Install, Status::Removed));
    assert_eq!(removal.installed_by, "bob");
    assert_eq!((removal.api_token.as_deref(), original.api_token.as_deref()), (Some("ci"), None));
    assert_eq!(removal.method, Channel::Api);
    assert_eq!(removal.storage_path, original.storage_path);
    assert_eq!(removal.checksum, original.checksum);
    assert_eq!(removal.version, "1.0.0");
    assert!(removal.finished_at.is_some());

    let err = db.record_uninstall("core", "1.0.0", HOST, "bob", Channel::Cli, None).await.unwrap_err();
    assert!(matches!(err, DbError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("core@1.0.0"), "{err}");
}

async fn pending_lists_only_pending_on_that_host(db: Db) {
    install(&db, "done", "1.0.0").await;
    let failed = db.begin_install(&new_install("broken", "1.0.0", HOST)).await.unwrap();
    db.fail_install(failed, "boom").await.unwrap();
    let a = db.begin_install(&new_install("half", "1.0.0", HOST)).await.unwrap();
    db.begin_install(&new_install("elsewhere", "1.0.0", "host-b")).await.unwrap();
    let b = db.begin_install(&new_install("half", "2.0.0", HOST)).await.unwrap();

    let ids: Vec<i64> = db.pending(HOST).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(db.pending("host-b").await.unwrap().len(), 1);
}

async fn installed_orders_by_ref_then_version(db: Db) {
    for (r, v) in [("b", "1.10.0"), ("a", "2.0.0"), ("b", "1.9.0"), ("b", "1.2.0")] {
        install(&db, r, v).await;
    }
    let listed: Vec<_> =
        db.installed(HOST).await.unwrap().into_iter().map(|r| format!("{}@{}", r.pack_ref, r.version)).collect();
    assert_eq!(listed, ["a@2.0.0", "b@1.2.0", "b@1.9.0", "b@1.10.0"]);
    assert_eq!(db.installed_versions("b", HOST).await.unwrap(), ["1.2.0", "1.9.0", "1.10.0"]);
    assert!(db.installed_versions("b", "host-b").await.unwrap().is_empty());
}

async fn listing_streams_in_order_with_active_versions(db: Db) {
    // By byte order of refs (`B` < `a-b` < `a_b` < `ab`, which a locale's
    // collation may order otherwise), then by version as numbers, then host.
    for (r, v, h) in [
        ("a_b", "1.0.0", HOST),
        ("a-b", "1.10.0", HOST),
        ("ab", "0.1.0", HOST),
        ("a-b", "1.9.0", HOST),
        ("a-b", "1.2.0", "host-b"),
        ("B", "2.0.0", HOST),
        ("a-b", "1.9.0", "host-b"),
        ("gone", "1.0.0", HOST),
    ] {
        let id = db.begin_install(&new_install(r, v, h)).await.unwrap();
        db.complete_install(id).await.unwrap();
    }
    db.record_uninstall("gone", "1.0.0", HOST, "alice", Channel::Cli, None).await.unwrap();
    let failed = db.begin_install(&new_install("a-b", "3.0.0", HOST)).await.unwrap();
    db.fail_install(failed, "no").await.unwrap();
    // The newest activation of a pack on a host wins; none active is none.
    for (h, r, v) in [
        (HOST, "a-b", Some("1.9.0")),
        (HOST, "a-b", Some("1.10.0")),
        ("host-b", "a-b", Some("1.2.0")),
        (HOST, "a_b", Some("1.0.0")),
        (HOST, "a_b", None),
    ] {
        db.record_activation(h, r, v, "alice", "install").await.unwrap();
    }

    let all = [
        ("B", "2.0.0", HOST, false),
        ("a-b", "1.2.0", "host-b", true),
        ("a-b", "1.9.0", HOST, false),
        ("a-b", "1.9.0", "host-b", false),
        ("a-b", "1.10.0", HOST, true),
        ("a_b", "1.0.0", HOST, false),
        ("ab", "0.1.0", HOST, false),
    ]
    .map(|(r, v, h, active)| (r.to_string(), v.to_string(), h.to_string(), active));
    for host in [None, Some(HOST)] {
        let want: Vec<_> = all.iter().filter(|(_, _, h, _)| host.is_none_or(|host| host == h)).cloned().collect();
        let mut full = Vec::new();
        db.listing(host, |i, active| {
            full.push((i, active));
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        let got: Vec<_> =
            full.iter().map(|(i, active)| (i.pack_ref.clone(), i.version.clone(), i.host.clone(), *active)).collect();
        assert_eq!(got, want, "listing on {host:?}");

        let mut rows = Vec::new();
        db.listing_rows(host, |r| {
            rows.push(r);
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        let expected: Vec<ListedRow> = full
            .iter()
            .map(|&(ref i, active)| ListedRow {
                pack_ref: i.pack_ref.clone(),
                version: i.version.clone(),
                host: i.host.clone(),
                source_type: i.source_type,
                installed_at: i.installed_at,
                checksum: i.checksum.clone(),
                active,
            })
            .collect();
        assert_eq!(rows, expected, "listing_rows on {host:?}");
    }

    // An error from `each` ends the listing, and is what it returns.
    let mut seen = 0;
    let stopped = db
        .listing_rows(None, |_| {
            seen += 1;
            match seen {
                2 => Err(DbError::NotFound { what: "patience", key: "2".into() }),
                _ => Ok(()),
            }
        })
        .await;
    assert!(matches!(stopped, Err(DbError::NotFound { what: "patience", .. })), "{stopped:?}");
    assert_eq!(seen, 2);
}

async fn verify_result_is_stored(db: Db) {
    let id = install(&db, "core", "1.0.0").await;
    let at = time::macros::datetime!(2030-01-02 03:04:05.678 UTC);
    db.set_verify_result(id, VerifyStatus::Tampered, at).await.unwrap();
    let row = db.installation(id).await.unwrap().unwrap();
    assert_eq!(row.verify_status, Some(VerifyStatus::Tampered));
    assert_eq!(row.verified_at, Some(at));
    assert_eq!(serde_json::to_value(&row).unwrap()["verified_at"], "2030-01-02T03:04:05.678Z");
    assert!(matches!(db.set_verify_result(9999, VerifyStatus::Ok, at).await.unwrap_err(), DbError::NotFound { .. }));
}

/// Two processes' worth of connections hammering one file: every write must
/// wait for the lock rather than fail with "database is locked", and the
/// one-live-install invariant must hold at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connections_to_one_file() {
    const ROUNDS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    // Both open the fresh file at once: also races the migrations.
    let (a, b) = tokio::join!(Db::connect(&url), Db::connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());

    let worker = |db: Db, who: &'static str| {
        tokio::spawn(async move {
            for i in 0..ROUNDS {
                // Same ref+version on both: each complete replaces the other's.
                let shared = db.begin_install(&new_install("shared", "1.0.0", HOST)).await?;
                let own = db.begin_install(&new_install(who, &format!("1.0.{i}"), HOST)).await?;
                db.complete_install(shared).await?;
                db.complete_install(own).await?;
                db.installed(HOST).await?;
            }
            Ok::<_, DbError>(())
        })
    };
    let (ra, rb) = tokio::join!(worker(a.clone(), "left"), worker(b.clone(), "right"));
    ra.unwrap().unwrap();
    rb.unwrap().unwrap();

    let history = a.history("shared").await.unwrap();
    assert_eq!(history.len(), 2 * ROUNDS);
    let live = history.iter().filter(|r| r.status == Status::Installed).count();
    let replaced = history.iter().filter(|r| r.status == Status::Replaced).count();
    assert_eq!((live, replaced), (1, 2 * ROUNDS - 1));
    assert_eq!(b.installed_versions("left", HOST).await.unwrap().len(), ROUNDS);
    assert_eq!(a.installed_versions("right", HOST).await.unwrap().len(), ROUNDS);
    assert!(a.pending(HOST).await.unwrap().is_empty());
}

/// Several processes starting at once on a fresh file race to create it, switch
/// it to WAL and migrate it; none may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let url = url_in(dir.path());
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Db::connect(&url).await })
            })
            .collect();
        for open in opens {
            let db = open.await.unwrap().unwrap();
            assert!(db.installed(HOST).await.unwrap().is_empty());
            // The race must not leave the file in rollback-journal mode.
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(sqlite(&db)).await.unwrap();
            assert_eq!(journal, "wal");
        }
    }
}

/// Opening a migrated database again applies nothing and keeps its rows.
async fn migrations_are_idempotent(url: &str) {
    let db = Db::connect(url).await.unwrap();
    let id = install(&db, "core", "1.0.0").await;
    db.close().await;

    let again = Db::connect(url).await.unwrap();
    assert_eq!(again.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, id);
    let migrations = match again.backend() {
        Backend::Sqlite => &*migrations::SQLITE,
        Backend::Postgres => &*migrations::POSTGRES,
    };
    let count = "SELECT COUNT(*) FROM _sqlx_migrations";
    let applied: i64 = on_pool!(again, pool => { sqlx::query_scalar(count).fetch_one(pool).await.unwrap() });
    assert_eq!(applied, i64::try_from(migrations.iter().count()).unwrap());
}

#[tokio::test]
async fn migrations_are_idempotent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    migrations_are_idempotent(&url).await;
    let db = Db::connect(&url).await.unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(sqlite(&db)).await.unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn migrations_are_idempotent_on_postgres() {
    let Some(pg) = pg_server::server() else { return };
    migrations_are_idempotent(&pg.new_database()).await;
}

#[tokio::test]
async fn both_dialects_have_the_same_migrations() {
    let names =
        |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
    assert_eq!(names(&migrations::SQLITE), names(&migrations::POSTGRES));
}

async fn schema_enforces_one_live_install(db: Db) {
    let id = install(&db, "core", "1.0.0").await;
    let other = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
    // Bypassing complete_install must not create a second live row.
    let err = execute_raw(&db, format!("UPDATE installations SET status = 'installed' WHERE id = {other}"))
        .await
        .unwrap_err();
    // SQLite says "UNIQUE constraint failed", PostgreSQL "duplicate key value violates unique constraint".
    assert!(err.to_lowercase().contains("unique"), "{err}");
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, id);
}

#[tokio::test]
async fn in_memory_database_persists_across_calls() {
    let db = Db::connect("sqlite::memory:").await.unwrap();
    install(&db, "core", "1.0.0").await;
    // More calls than the pool could serve if it dropped connections in between.
    for _ in 0..3 {
        assert_eq!(db.installed(HOST).await.unwrap().len(), 1);
    }
    // Each in-memory Db is its own database.
    let other = Db::connect("sqlite::memory:").await.unwrap();
    assert!(other.installed(HOST).await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_url_is_redacted() {
    let err = Db::connect("mysql://u:secret@h/db").await.unwrap_err();
    assert!(matches!(err, DbError::UnsupportedUrl { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains("secret"), "{msg}");
    assert!(format!("{err:?}").contains("mysql://u:***@h/db"), "{err:?}");
    assert!(msg.contains("sqlite:///"), "{msg}");
}

#[tokio::test]
async fn connect_error_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_db = dir.path().join("junk.db");
    fs_err::write(&not_a_db, vec![0x42; 8192]).unwrap();
    let url = format!("sqlite://{}", not_a_db.display());
    let err = Db::connect(&url).await.unwrap_err();
    match &err {
        DbError::Connect { url: u, .. } => assert_eq!(u, &url),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn redaction() {
    assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("postgres://u:p@ss@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        redact_url("postgres://h/db?user=u&password=secret&sslmode=require"),
        "postgres://h/db?user=u&password=***&sslmode=require"
    );
    assert_eq!(redact_url("sqlite:///tmp/a@b/x.db"), "sqlite:///tmp/a@b/x.db");
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
}

#[test]
fn default_url_is_sqlite_in_the_data_dir() {
    let url = Db::default_url();
    assert!(url.starts_with("sqlite://"), "{url}");
    assert!(Path::new(url.trim_start_matches("sqlite://")).ends_with("attune/attune.db"), "{url}");
}

#[test]
fn memory_urls() {
    assert!(is_memory(":memory:"));
    assert!(is_memory("//:memory:"));
    assert!(is_memory("//x.db?mode=memory"));
    assert!(!is_memory("///tmp/attune.db"));
    assert!(!is_memory("//rel.db"));
}

#[test]
fn versions_order_numerically() {
    assert_eq!(version_cmp("1.9.0", "1.10.0"), Ordering::Less);
    assert_eq!(version_cmp("1.10.0", "1.10.0"), Ordering::Equal);
    assert_eq!(version_cmp("2.0", "10.0"), Ordering::Less);
    assert_eq!(version_cmp("1.0", "1.0.1"), Ordering::Less);
    assert_eq!(version_cmp("1.0.0-beta", "1.0.0-alpha"), Ordering::Greater);
    assert_eq!(version_cmp("01", "1"), Ordering::Less);
}

#[tokio::test]
async fn pack_lock_serializes_one_pack_on_one_host_on_postgres() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(db) = pg_db().await else { return };
    let first = db.lock_pack("h1", "core", || panic!("nobody holds it yet")).await.unwrap();
    // Another pack, or the same pack on another host, goes ahead.
    let other_pack = db.lock_pack("h1", "other", || panic!("another pack must not wait")).await.unwrap();
    let other_host = db.lock_pack("h2", "core", || panic!("another host must not wait")).await.unwrap();
    // Start-up repair's probe: held means a live process owns the pending row.
    assert!(db.try_lock_pack("h1", "core").await.unwrap().is_none());

    let waited = Arc::new(AtomicBool::new(false));
    let (db2, w) = (db.clone(), waited.clone());
    let second =
        tokio::spawn(async move { db2.lock_pack("h1", "core", move || w.store(true, Ordering::SeqCst)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the same pack on the same host must wait");
    assert!(waited.load(Ordering::SeqCst), "the waiter is told it waits");
    first.release().await;
    let second = tokio::time::timeout(Duration::from_secs(10), second).await.unwrap().unwrap().unwrap();

    // A holder that goes away without releasing (a killed process) frees it too.
    drop(second);
    let third =
        tokio::time::timeout(Duration::from_secs(10), db.lock_pack("h1", "core", || {})).await.unwrap().unwrap();
    third.release().await;
    other_pack.release().await;
    other_host.release().await;
}

#[tokio::test]
async fn pack_lock_is_the_file_lock_on_sqlite() {
    let (_dir, db) = file_db().await;
    let a = db.lock_pack("h1", "core", || panic!("SQLite relies on the store's file lock")).await.unwrap();
    let b = db.lock_pack("h1", "core", || panic!("SQLite relies on the store's file lock")).await.unwrap();
    a.release().await;
    b.release().await;
}

fn new_token(name: &str, public_id: &str) -> NewApiToken {
    NewApiToken {
        name: name.into(),
        public_id: public_id.into(),
        secret_sha256: "ab".repeat(32),
        scope: "install".into(),
        created_by: "alice".into(),
        expires_at: None,
    }
}

async fn api_tokens_create_lookup_revoke_reuse_name(db: Db) {
    let t = db.create_token(&new_token("ci", "p1")).await.unwrap().unwrap();
    assert_eq!((t.name.as_str(), t.scope.as_str(), t.revoked_at), ("ci", "install", None));
    assert!(db.create_token(&new_token("ci", "p2")).await.unwrap().is_none(), "one live token per name");
    assert_eq!(db.token_by_public_id("p1").await.unwrap().unwrap().id, t.id);
    db.touch_token(t.id).await.unwrap();
    assert!(db.token_by_public_id("p1").await.unwrap().unwrap().last_used_at.is_some());
    assert!(db.revoke_token("ci", "bob").await.unwrap());
    assert!(!db.revoke_token("ci", "bob").await.unwrap());
    assert!(db.tokens(false).await.unwrap().is_empty());
    let again = db.create_token(&new_token("ci", "p3")).await.unwrap().unwrap();
    assert_ne!(again.id, t.id);
    let all = db.tokens(true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].revoked_by.as_deref(), Some("bob"));
}

fn index_fetch(sha: &str, packs: i64) -> IndexFetch {
    IndexFetch {
        format: "attune".into(),
        at: now(),
        by: "tester".into(),
        sha256: sha.into(),
        packs,
        versions: packs * 2,
    }
}

async fn indexes_add_list_update_remove(db: Db) {
    assert!(db.indexes().await.unwrap().is_empty());
    let a =
        db.add_index("main", "https://example.com/index.json", "tester", &index_fetch("aa", 3), None).await.unwrap();
    assert_eq!((a.name.as_str(), a.added_by.as_str()), ("main", "tester"));
    assert_eq!(a.fetched, Some(index_fetch("aa", 3)).map(|f| IndexFetch { at: a.fetched.as_ref().unwrap().at, ..f }));
    db.add_index("local", "/srv/index.json", "tester", &index_fetch("bb", 1), None).await.unwrap();
    // Names are unique.
    assert!(db.add_index("main", "/other.json", "tester", &index_fetch("cc", 1), None).await.is_err());

    let names: Vec<String> = db.indexes().await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["main", "local"], "in the order added");

    assert_eq!(a.signed, None, "unsigned unless told");
    let signed = IndexSigned { target: "v1/index.json".into(), targets_version: 2 };
    let s =
        db.add_index("tuf", "https://example.com/repo", "tester", &index_fetch("ff", 1), Some(&signed)).await.unwrap();
    assert_eq!(s.signed.as_ref(), Some(&signed));
    db.index_fetched("tuf", &index_fetch("fg", 1), Some(5)).await.unwrap();
    db.index_fetched("tuf", &index_fetch("fh", 1), None).await.unwrap();
    let s = db.index("tuf").await.unwrap().unwrap();
    assert_eq!(s.signed.map(|s| (s.target, s.targets_version)), Some(("v1/index.json".into(), 5)), "None keeps it");
    assert!(db.remove_index("tuf").await.unwrap());

    db.index_fetched("local", &index_fetch("dd", 7), None).await.unwrap();
    let local = db.index("local").await.unwrap().unwrap();
    assert_eq!(local.fetched.as_ref().map(|f| (f.sha256.as_str(), f.packs, f.versions)), Some(("dd", 7, 14)));
    assert!(matches!(db.index_fetched("nope", &index_fetch("ee", 1), None).await, Err(DbError::NotFound { .. })));

    assert!(db.remove_index("main").await.unwrap());
    assert!(!db.remove_index("main").await.unwrap());
    assert!(db.index("main").await.unwrap().is_none());
    assert_eq!(db.indexes().await.unwrap().len(), 1);
}

async fn activations_keep_history_newest_wins(db: Db) {
    assert_eq!(db.active_version("h1", "p").await.unwrap(), None);
    assert!(db.activation_history("h1", "p").await.unwrap().is_empty());

    let a = db.record_activation("h1", "p", Some("1.0.0"), "alice", "install").await.unwrap();
    assert_eq!((a.version.as_deref(), a.previous_version.as_deref()), (Some("1.0.0"), None));
    assert_eq!((a.activated_by.as_str(), a.reason.as_str(), a.host.as_str()), ("alice", "install", "h1"));
    let b = db.record_activation("h1", "p", Some("2.0.0"), "bob", "upgrade").await.unwrap();
    assert_eq!(b.previous_version.as_deref(), Some("1.0.0"));
    assert!(b.id > a.id);
    // Another host and another pack are separate.
    db.record_activation("h2", "p", Some("9.0.0"), "carol", "install").await.unwrap();
    db.record_activation("h1", "q", Some("0.1.0"), "carol", "install").await.unwrap();
    assert_eq!(db.active_version("h1", "p").await.unwrap().as_deref(), Some("2.0.0"));
    assert_eq!(db.active_version("h2", "p").await.unwrap().as_deref(), Some("9.0.0"));

    // Back, then none: every switch is a new row, older ones are untouched.
    let c = db.record_activation("h1", "p", Some("1.0.0"), "bob", "rollback").await.unwrap();
    assert_eq!(c.previous_version.as_deref(), Some("2.0.0"));
    let d = db.record_activation("h1", "p", None, "bob", "uninstall").await.unwrap();
    assert_eq!((d.version, d.previous_version.as_deref()), (None, Some("1.0.0")));
    assert_eq!(db.active_version("h1", "p").await.unwrap(), None);

    let history = db.activation_history("h1", "p").await.unwrap();
    let versions: Vec<(Option<&str>, &str)> =
        history.iter().map(|a| (a.version.as_deref(), a.reason.as_str())).collect();
    assert_eq!(
        versions,
        [(None, "uninstall"), (Some("1.0.0"), "rollback"), (Some("2.0.0"), "upgrade"), (Some("1.0.0"), "install")]
    );
    assert_eq!(history[3], a, "the first row was never rewritten");

    let current: Vec<(String, Option<String>)> =
        db.activations("h1").await.unwrap().into_iter().map(|a| (a.pack_ref, a.version)).collect();
    assert_eq!(current, [("p".to_string(), None), ("q".to_string(), Some("0.1.0".to_string()))]);
}

async fn a_first_install_is_owed_an_activation_until_it_is_recorded(db: Db) {
    // Completing the first install of a pack journals the activation it is owed…
    install(&db, "p", "1.0.0").await;
    install(&db, "q", "1.0.0").await;
    assert_eq!(db.pending_activations(HOST).await.unwrap(), ["p", "q"]);
    assert!(db.pending_activations("elsewhere").await.unwrap().is_empty());
    // …which recording any activation of it clears, on that host only.
    db.record_activation("elsewhere", "p", Some("1.0.0"), "alice", "install").await.unwrap();
    db.record_activation(HOST, "p", Some("1.0.0"), "alice", "install").await.unwrap();
    assert_eq!(db.pending_activations(HOST).await.unwrap(), ["q"]);
    // A pack with an activation record, even "none active", owes nothing more.
    db.record_activation(HOST, "p", None, "alice", "uninstall").await.unwrap();
    install(&db, "p", "2.0.0").await;
    assert_eq!(db.pending_activations(HOST).await.unwrap(), ["q"]);
    db.forget_pending_activation(HOST, "q").await.unwrap();
    assert!(db.pending_activations(HOST).await.unwrap().is_empty());
}

/// `attune list` on one host walks `installations_host_status` in order
/// and never reads the table: no lookups, no sort.
#[tokio::test]
async fn listing_rows_read_an_index_alone() {
    let (_dir, db) = file_db().await;
    install(&db, "core", "1.0.0").await;
    db.record_activation(HOST, "core", Some("1.0.0"), "alice", "install").await.unwrap();
    for (sql, host) in [(LISTING_ROWS.sqlite_host, true), (LISTED_CHUNKS_HOST, true), (LISTED_CHUNKS_ALL, false)] {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let query = sqlx::query_as(sqlx::AssertSqlSafe(explain));
        let query = if host { query.bind(HOST) } else { query };
        let plan: Vec<(i64, i64, i64, String)> = query.fetch_all(sqlite(&db)).await.unwrap();
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        // Every column from an index, never from a table: `installations`
        // holds the manifests, `activations` one row per event.
        // (On all hosts, `installations` is read through another index.)
        let installations = "SEARCH installations USING COVERING INDEX installations_host_status (host=? AND status=?)";
        assert!(!host || plan.contains(&installations), "{sql}: {plan:#?}");
        assert!(
            plan.contains(&"SEARCH a USING COVERING INDEX activations_host_ref (host=? AND pack_ref=?)"),
            "{sql}: {plan:#?}"
        );
        if sql == LISTING_ROWS.sqlite_host {
            assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:#?}");
        }
    }
}

/// SQLite's listing rows come [`LISTED_CHUNK`] to a database row, as JSON:
/// a pack's versions split between two chunks still come in version order,
/// and text JSON must escape comes back as it was stored.
#[tokio::test]
async fn listing_rows_across_chunks_are_the_listing() {
    let (_dir, db) = file_db().await;
    let odd = "quote\"back\\slash\ttab\u{1}é🦀";
    let mut packs: Vec<(String, String)> =
        (0..LISTED_CHUNK + 40).map(|i| (format!("p{i:05}"), "1.0.0".to_string())).collect();
    // The pack at the first chunk's end, in five versions around it.
    let edge = format!("p{:05}", LISTED_CHUNK - 3);
    packs.extend(["1.10.0", "1.9.0", "0.1.0", "2.0.0-rc.1"].map(|v| (edge.clone(), v.to_string())));
    packs.push((odd.to_string(), "1.0.0".to_string()));
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for (r, v) in &packs {
            let mut new = new_install(r, v, HOST);
            new.checksum = format!("sha256-tree-v1:{odd}");
            ids.push(db.begin_install(&new).await.unwrap());
        }
        ids
    };
    for id in ids {
        db.complete_install(id).await.unwrap();
    }
    db.record_activation(HOST, &edge, Some("1.9.0"), "alice", "install").await.unwrap();
    db.record_activation(HOST, odd, Some("1.0.0"), "alice", "install").await.unwrap();

    for host in [Some(HOST), None] {
        let mut want = Vec::new();
        db.listing(host, |i, active| {
            want.push(ListedRow {
                pack_ref: i.pack_ref,
                version: i.version,
                host: i.host,
                source_type: i.source_type,
                installed_at: i.installed_at,
                checksum: i.checksum,
                active,
            });
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        db.listing_rows(host, |r| {
            got.push(r);
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        assert_eq!(got.len(), packs.len());
        assert_eq!(got, want, "listing_rows on {host:?}");
    }
    let mut rows = Vec::new();
    db.listing_rows(Some(HOST), |r| {
        rows.push(r);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
    let versions: Vec<(&str, bool)> =
        rows.iter().filter(|r| r.pack_ref == edge).map(|r| (r.version.as_str(), r.active)).collect();
    assert_eq!(
        versions,
        [("0.1.0", false), ("1.0.0", false), ("1.9.0", true), ("1.10.0", false), ("2.0.0-rc.1", false)]
    );
    let last = rows.last().unwrap();
    assert_eq!(
        (last.pack_ref.as_str(), last.checksum.as_str(), last.active),
        (odd, &*format!("sha256-tree-v1:{odd}"), true)
    );
}

#[tokio::test]
async fn a_column_is_either_a_record_or_an_event() {
    let (_dir, db) = file_db().await;
    let mut schema: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('installations')").fetch_all(sqlite(&db)).await.unwrap();
    schema.sort();
    let mut split: Vec<String> =
        record_columns!().split(',').map(str::trim).chain(EVENT_COLUMNS.iter().copied()).map(String::from).collect();
    split.sort();
    assert_eq!(schema, split, "each column of `installations` belongs in record_columns! or EVENT_COLUMNS");
}

#[tokio::test]
async fn an_uninstall_row_copies_every_record_column() {
    let (_dir, db) = file_db().await;
    let mut new = new_install("core", "1.0.0", HOST);
    new.resolved_commit = Some("c".repeat(40));
    let id = db.begin_install(&new).await.unwrap();
    db.complete_install(id).await.unwrap();
    let un = db.record_uninstall("core", "1.0.0", HOST, "bob", Channel::Cli, None).await.unwrap();

    let record = |id: i64| {
        let pool = sqlite(&db).clone();
        async move {
            sqlx::query_scalar::<_, String>(concat!(
                "SELECT json_array(",
                record_columns!(),
                ") FROM installations WHERE id = $1"
            ))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (installed, removed) = (record(id).await, record(un).await);
    assert!(!installed.contains("null"), "begin_install left a record column empty: {installed}");
    assert_eq!(removed, installed);
}
