//! Tests against real SQLite files in temporary directories.

use std::cmp::Ordering;
use std::path::Path;

use serde_json::json;

use super::*;

const HOST: &str = "host-a";

fn new_install(pack_ref: &str, version: &str, host: &str) -> NewInstallation {
    NewInstallation {
        pack_ref: pack_ref.into(),
        pack_name: format!("The {pack_ref} pack"),
        pack_description: Some("does things".into()),
        version: version.into(),
        source_type: "local".into(),
        source: "/src/packs/demo".into(),
        requested_ref: Some("main".into()),
        resolved_commit: None,
        checksum: "sha256-tree-v1:abcd".into(),
        checksum_algorithm: "sha256-tree-v1".into(),
        manifest: json!({"pack.yaml": "sha256:01", "actions/run.sh": "sha256:02"}),
        verified: true,
        installed_by: "alice".into(),
        method: Method::Cli,
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

async fn install(db: &Db, pack_ref: &str, version: &str) -> i64 {
    let id = db.begin_install(&new_install(pack_ref, version, HOST)).await.unwrap();
    db.complete_install(id).await.unwrap();
    id
}

#[tokio::test]
async fn begin_complete_round_trip() {
    let (dir, db) = file_db().await;
    assert!(dir.path().join("nested/attune.db").is_file());

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
    assert_eq!(row.manifest_json, new.manifest);
    assert_eq!(row.metadata_json, new.metadata);
    assert_eq!(row.source, new.source);
    assert_eq!(row.requested_ref.as_deref(), Some("main"));
    assert_eq!(row.resolved_commit, None);
    assert!(row.verified);
    assert_eq!(row.method, Method::Cli);
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

#[tokio::test]
async fn reinstall_replaces_and_keeps_history() {
    let (_dir, db) = file_db().await;
    let first = install(&db, "core", "1.0.0").await;

    let second = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
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

#[tokio::test]
async fn same_version_on_another_host_is_not_a_reinstall() {
    let (_dir, db) = file_db().await;
    install(&db, "core", "1.0.0").await;
    let other = db.begin_install(&new_install("core", "1.0.0", "host-b")).await.unwrap();
    db.complete_install(other).await.unwrap();
    assert_eq!(db.installation(other).await.unwrap().unwrap().action, Action::Install);
    assert_eq!(db.installed(HOST).await.unwrap().len(), 1);
    assert_eq!(db.installed("host-b").await.unwrap().len(), 1);
}

#[tokio::test]
async fn failed_install_leaves_nothing_installed() {
    let (_dir, db) = file_db().await;
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

#[tokio::test]
async fn failed_reinstall_keeps_the_old_install_live() {
    let (_dir, db) = file_db().await;
    let first = install(&db, "core", "1.0.0").await;
    let retry = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
    db.fail_install(retry, "disk full").await.unwrap();
    assert_eq!(db.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, first);
}

#[tokio::test]
async fn uninstall_keeps_history() {
    let (_dir, db) = file_db().await;
    let id = install(&db, "core", "1.0.0").await;
    let un = db.record_uninstall("core", "1.0.0", HOST, "bob", Method::Api, Some("ci")).await.unwrap();
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
    assert_eq!(removal.method, Method::Api);
    assert_eq!(removal.storage_path, original.storage_path);
    assert_eq!(removal.checksum, original.checksum);
    assert_eq!(removal.version, "1.0.0");
    assert!(removal.finished_at.is_some());

    let err = db.record_uninstall("core", "1.0.0", HOST, "bob", Method::Cli, None).await.unwrap_err();
    assert!(matches!(err, DbError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("core@1.0.0"), "{err}");
}

#[tokio::test]
async fn pending_lists_only_pending_on_that_host() {
    let (_dir, db) = file_db().await;
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

#[tokio::test]
async fn installed_orders_by_ref_then_version() {
    let (_dir, db) = file_db().await;
    for (r, v) in [("b", "1.10.0"), ("a", "2.0.0"), ("b", "1.9.0"), ("b", "1.2.0")] {
        install(&db, r, v).await;
    }
    let listed: Vec<_> =
        db.installed(HOST).await.unwrap().into_iter().map(|r| format!("{}@{}", r.pack_ref, r.version)).collect();
    assert_eq!(listed, ["a@2.0.0", "b@1.2.0", "b@1.9.0", "b@1.10.0"]);
    assert_eq!(db.installed_versions("b", HOST).await.unwrap(), ["1.2.0", "1.9.0", "1.10.0"]);
    assert!(db.installed_versions("b", "host-b").await.unwrap().is_empty());
}

#[tokio::test]
async fn verify_result_is_stored() {
    let (_dir, db) = file_db().await;
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
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&db.pool).await.unwrap();
            assert_eq!(journal, "wal");
        }
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let db = Db::connect(&url).await.unwrap();
    let id = install(&db, "core", "1.0.0").await;
    db.close().await;

    let again = Db::connect(&url).await.unwrap();
    assert_eq!(again.current("core", "1.0.0", HOST).await.unwrap().unwrap().id, id);
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&again.pool).await.unwrap();
    assert_eq!(applied, i64::try_from(MIGRATOR.iter().count()).unwrap());
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&again.pool).await.unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn schema_enforces_one_live_install() {
    let (_dir, db) = file_db().await;
    let id = install(&db, "core", "1.0.0").await;
    let other = db.begin_install(&new_install("core", "1.0.0", HOST)).await.unwrap();
    // Bypassing complete_install must not create a second live row.
    let err = sqlx::query("UPDATE installations SET status = 'installed' WHERE id = $1")
        .bind(other)
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
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
    let err = Db::connect("postgres://u:secret@h/db").await.unwrap_err();
    assert!(matches!(err, DbError::UnsupportedUrl { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains("secret"), "{msg}");
    assert!(format!("{err:?}").contains("postgres://u:***@h/db"), "{err:?}");
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
