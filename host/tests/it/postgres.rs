//! The CLI on PostgreSQL: the same behaviour as on SQLite, and several hosts
//! (each with its own packs folder) sharing one database.
//!
//! A real server on 127.0.0.1 (see `common/postgres.rs`); skipped with a note
//! where PostgreSQL is not installed, except under CI.

use std::collections::BTreeSet;

use crate::common::Env;
use crate::common::postgres;
use serde_json::Value;

/// The facts of an installation that do not depend on where or when it ran.
fn essence(row: &Value) -> Value {
    let keep = ["ref", "pack_ref", "version", "action", "status", "source_type", "checksum", "checksum_algorithm"];
    let keep = keep.iter().chain(["verified", "method", "fetcher_name", "fetcher_version", "fetcher_hash"].iter());
    keep.filter_map(|k| row.get(*k).map(|v| (k.to_string(), v.clone()))).collect::<serde_json::Map<_, _>>().into()
}

#[test]
fn the_cli_behaves_the_same_on_postgres_and_sqlite() {
    let Some(pg) = postgres::server() else { return };
    let lite = Env::new();
    let post = Env::with_database(&pg.new_database());
    let mut seen = Vec::new();
    for env in [&lite, &post] {
        let src = env.make_pack("core", "1.0.0");
        let src = src.to_str().unwrap();
        env.run(&["install", src]).success();
        // A second install without --force is refused, with --force it is a reinstall.
        let again = env.run(&["install", src]).failure();
        assert!(again.stderr.contains("already installed"), "{}", again.stderr);
        env.run(&["install", "--force", src]).success();
        env.run(&["install", env.make_pack("core", "1.1.0").to_str().unwrap()]).success();
        env.run(&["verify", "--json"]).success();
        env.run(&["uninstall", "core@1.1.0"]).success();

        let list = env.run(&["list", "--json"]).success().json();
        let info = env.run(&["info", "core", "--json"]).success().json();
        let history: Vec<Value> = info["history"].as_array().unwrap().iter().map(essence).collect();
        seen.push((list.as_array().unwrap().iter().map(essence).collect::<Vec<_>>(), history));
    }
    assert_eq!(seen[0], seen[1], "SQLite and PostgreSQL disagree");
    let (list, history) = &seen[1];
    assert_eq!(list.len(), 1, "{list:?}");
    let actions: Vec<&str> = history.iter().map(|h| h["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["uninstall", "install", "reinstall", "install"], "{history:?}");
}

#[test]
fn a_bad_postgres_url_is_a_clear_error() {
    let Some(pg) = postgres::server() else { return };
    let env = Env::with_database(&pg.url("no_such_database"));
    let out = env.run(&["list"]).failure();
    assert!(out.stderr.contains("cannot open the attune database"), "{}", out.stderr);
    assert!(out.stderr.contains("no_such_database"), "{}", out.stderr);
}

/// Two hosts, each with its own packs folder, one database. Each lists its
/// own packs by default and everyone's with --all-hosts; history shows both.
/// Two processes on one host installing the same pack take turns (the
/// database's lock, since their folders differ): one installs, the other
/// then sees it and reinstalls.
#[test]
fn two_hosts_share_one_postgres_database() {
    let Some(pg) = postgres::server() else { return };
    let url = pg.new_database();
    let a1 = Env::with_database(&url);
    let a2 = Env::with_database(&url);
    let b = Env::with_database(&url);
    let run_as = |env: &Env, host: &str, args: Vec<String>| {
        let mut c = env.cmd();
        c.env("ATTUNE_HOST_NAME", host).args(&args);
        c
    };
    let install = |env: &Env, host: &str, name: &str, version: &str| {
        let src = env.make_pack(name, version);
        run_as(env, host, vec!["install".into(), "--force".into(), src.display().to_string()])
    };
    // All at once: two processes on host-a (two folders) install the same
    // pack; host-b installs it and another.
    let mut children: Vec<std::process::Child> = [
        install(&a1, "host-a", "shared", "1.0.0"),
        install(&a2, "host-a", "shared", "1.0.0"),
        install(&b, "host-b", "shared", "1.0.0"),
        install(&b, "host-b", "only_b", "2.0.0"),
    ]
    .into_iter()
    .map(|mut c| c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap())
    .collect();
    // only_b waits for nothing; the rest ran concurrently with it.
    for c in children.drain(..) {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "install failed: {}", String::from_utf8_lossy(&o.stderr));
    }

    let listed = |env: &Env, host: &str, extra: &[&str]| -> BTreeSet<(String, String)> {
        let mut args = vec!["list".to_string(), "--json".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = run_as(env, host, args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["pack_ref"].as_str().unwrap().to_string(), r["host"].as_str().unwrap().to_string()))
            .collect()
    };
    let pair = |r: &str, h: &str| (r.to_string(), h.to_string());
    assert_eq!(listed(&a1, "host-a", &[]), BTreeSet::from([pair("shared", "host-a")]));
    assert_eq!(listed(&b, "host-b", &[]), BTreeSet::from([pair("only_b", "host-b"), pair("shared", "host-b")]));
    assert_eq!(
        listed(&a1, "host-a", &["--all-hosts"]),
        BTreeSet::from([pair("only_b", "host-b"), pair("shared", "host-a"), pair("shared", "host-b")])
    );
    let text = run_as(&a1, "host-a", vec!["list".into(), "--all-hosts".into()]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().next().unwrap().ends_with("HOST"), "{text}");
    assert!(text.contains("host-b"), "{text}");

    // On host-a the two processes took turns: one install, then one reinstall.
    let o = run_as(&a1, "host-a", vec!["info".into(), "shared".into(), "--json".into()]).output().unwrap();
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut on_a: Vec<(String, String)> = info["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["host"] == "host-a")
        .map(|h| (h["action"].as_str().unwrap().to_string(), h["status"].as_str().unwrap().to_string()))
        .collect();
    on_a.sort();
    assert_eq!(on_a, [pair("install", "replaced"), pair("reinstall", "installed")], "{info:#}");
    // The same version on another host is that host's first install, not a reinstall.
    assert!(
        info["history"].as_array().unwrap().iter().any(|h| h["host"] == "host-b" && h["action"] == "install"),
        "{info:#}"
    );

    // Each host's files are in its own folder; uninstalling on one leaves the other.
    run_as(&b, "host-b", vec!["uninstall".into(), "shared".into()]).output().unwrap();
    assert_eq!(listed(&a1, "host-a", &[]), BTreeSet::from([pair("shared", "host-a")]));
    assert!(a1.packs().join("shared-1.0.0").is_dir() || a2.packs().join("shared-1.0.0").is_dir());
}

/// The install pipeline takes the database's lock: while another session
/// holds it for (host, ref), an install of that pack on that host waits,
/// and goes ahead once it is released.
#[test]
fn an_install_waits_for_the_database_lock_of_its_pack() {
    use sqlx::Connection as _;
    let Some(pg) = postgres::server() else { return };
    let url = pg.new_database();
    let env = Env::with_database(&url);
    env.run(&["list"]).success(); // migrated before we lock
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = "attune:pack:host-a:held";
    let mut conn = rt.block_on(sqlx::PgConnection::connect(&url)).unwrap();
    rt.block_on(sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))").bind(key).execute(&mut conn)).unwrap();

    let src = env.make_pack("held", "1.0.0");
    let mut child = env
        .cmd()
        .env("ATTUNE_HOST_NAME", "host-a")
        .args(["install", src.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the install went ahead while its pack was locked");
    // The same pack on another host (its own folder) is not held up.
    let other = Env::with_database(&url);
    let b = other.cmd().env("ATTUNE_HOST_NAME", "host-b").args(["install", src.to_str().unwrap()]).output().unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(child.try_wait().unwrap().is_none(), "the install went ahead while its pack was locked");

    rt.block_on(sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))").bind(key).execute(&mut conn))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = env.run(&["list", "--all-hosts", "--json"]).success().json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all:#}");
}
