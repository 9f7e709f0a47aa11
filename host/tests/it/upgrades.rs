//! Active versions, upgrades, rollbacks and gc against a loopback index (an
//! Attune index.json with archives on a real HTTP server, as in
//! tests/registry.rs) and local folders. No traffic leaves 127.0.0.1.

use crate::common::http_server;

use crate::common::{Backend, Env, index, query, tgz};
use http_server::{Route, Server};

on_both_backends!(
    sync:
    upgrade_installs_beside_switches_verifies_and_rolls_back_on_request,
    a_failed_upgrade_rolls_back_and_leaves_nothing_of_the_new_version,
    activate_and_uninstalling_the_active_version,
    rollback_needs_the_previous_version_installed,
    gc_keeps_the_n_most_recent_and_never_the_active_one,
    packs_installed_before_active_versions_get_their_highest_version_active,
);

/// An index serving `tool` at each of `good` versions, and at each of `bad`
/// versions with an archive whose bytes do not match the index's checksum.
fn registry(env: &Env, good: &[&str], bad: &[&str]) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    for (v, ok) in good.iter().map(|v| (v, true)).chain(bad.iter().map(|v| (v, false))) {
        let bytes = tgz(&env.make_pack("tool", v));
        let path = format!("/tool-{v}.tgz");
        entries.push(index::archive_entry("tool", v, &server.url(&path), &bytes, ok));
        server.route(&path, Route::File(bytes));
    }
    server.route("/index.json", Route::File(index::document(entries)));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    server
}

fn link(env: &Env, pack_ref: &str) -> Option<String> {
    std::fs::read_link(env.packs().join(pack_ref)).ok().map(|p| p.display().to_string())
}

/// (version, active) of each installed version of `tool`, from `list --json`.
fn listed(env: &Env) -> Vec<(String, bool)> {
    let list = env.run(&["list", "--json"]).success().json();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pack_ref"] == "tool")
        .map(|r| (r["version"].as_str().unwrap().to_string(), r["active"].as_bool().unwrap()))
        .collect()
}

fn activations(env: &Env) -> Vec<Vec<String>> {
    query(
        env,
        "SELECT version, COALESCE(previous_version, '-'), reason FROM activations WHERE pack_ref = 'tool' ORDER BY id",
    )
}

fn row(v: &str, prev: &str, reason: &str) -> Vec<String> {
    vec![v.into(), prev.into(), reason.into()]
}

fn upgrade_installs_beside_switches_verifies_and_rolls_back_on_request(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let _server = registry(&env, &["1.0.0", "1.1.0", "2.0.0"], &[]);
    let out = env.run(&["install", "tool@1.0.0"]).success();
    assert!(out.stdout.contains("active    yes"), "{}", out.stdout);
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));

    // Another version beside it does not switch, and says so.
    let out = env.run(&["install", "tool@1.1.0"]).success();
    assert!(out.stdout.contains("active    no: another version of tool is active"), "{}", out.stdout);
    assert_eq!(listed(&env), [("1.0.0".into(), true), ("1.1.0".into(), false)]);
    let text = env.run(&["list"]).success().stdout;
    assert!(text.lines().next().unwrap().contains("ACTIVE"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("tool") && l.contains("1.0.0") && l.contains(" * ")), "{text}");

    // Default: the highest version newer than the active one.
    let j = env.run(&["upgrade", "tool", "--json"]).success().json();
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str(), j["upgraded"].as_bool()),
        (Some("1.0.0"), Some("2.0.0"), Some(true))
    );
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-2.0.0"));
    assert!(env.packs().join("tool-1.0.0/pack.yaml").is_file(), "the old version stays on disk");
    assert!(env.packs().join("tool/pack.yaml").is_file(), "the link resolves");
    assert_eq!(listed(&env), [("1.0.0".into(), false), ("1.1.0".into(), false), ("2.0.0".into(), true)]);
    env.run(&["verify"]).success();

    // Already at the newest: said, exit 0, nothing recorded.
    let before = activations(&env).len();
    let out = env.run(&["upgrade", "tool"]).success();
    assert!(out.stdout.contains("tool is already at the newest version (2.0.0)"), "{}", out.stdout);
    assert_eq!(activations(&env).len(), before);

    // Rollback returns to the previous active version.
    let out = env.run(&["rollback", "tool"]).success();
    assert!(out.stdout.contains("rolled back tool: 1.0.0 is active (was 2.0.0)"), "{}", out.stdout);
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));

    // --to a range: an already installed version is switched to, not reinstalled.
    let j = env.run(&["upgrade", "tool", "--to", "~1.1", "--json"]).success().json();
    assert_eq!((j["to"].as_str(), j["installed"].as_bool()), (Some("1.1.0"), Some(false)));
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.1.0"));

    assert_eq!(
        activations(&env),
        [
            row("1.0.0", "-", "install"),
            row("2.0.0", "1.0.0", "upgrade"),
            row("1.0.0", "2.0.0", "rollback"),
            row("1.1.0", "1.0.0", "upgrade"),
        ]
    );
}

fn a_failed_upgrade_rolls_back_and_leaves_nothing_of_the_new_version(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let _server = registry(&env, &["1.0.0"], &["2.0.0"]);
    env.run(&["install", "tool@1.0.0"]).success();

    // The new archive's checksum is wrong.
    let out = env.run(&["upgrade", "tool"]).failure();
    assert!(out.stderr.contains("upgrade of tool from 1.0.0 to 2.0.0 failed at install"), "{}", out.stderr);
    assert!(out.stderr.contains("checksum"), "{}", out.stderr);
    assert!(out.stderr.contains("rolled back: nothing was switched; 1.0.0 stays active"), "{}", out.stderr);
    assert_eq!(listed(&env), [("1.0.0".into(), true)]);
    assert!(!env.packs().join("tool-2.0.0").exists());
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));
    env.run(&["verify", "tool"]).success();

    // A broken pack.yaml.
    let broken = env.make_pack("tool", "3.0.0");
    std::fs::write(broken.join("pack.yaml"), "name: tool\nversion: [not, semver\n").unwrap();
    let out = env.run(&["upgrade", "tool", "--from", broken.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("failed at install"), "{}", out.stderr);
    assert!(out.stderr.contains("1.0.0 stays active"), "{}", out.stderr);
    assert_eq!(listed(&env), [("1.0.0".into(), true)]);

    // A failure after the switch (injected at verify, debug builds only):
    // the old version is switched back to and verified, the new one uninstalled.
    let good = env.make_pack("tool", "4.0.0");
    let out = env
        .cmd()
        .env("ATTUNE_TEST_UPGRADE_FAIL", "verify")
        .args(["upgrade", "tool", "--from", good.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("upgrade of tool from 1.0.0 to 4.0.0 failed at verify"), "{stderr}");
    assert!(stderr.contains("tool@1.0.0 is active again and verifies; tool@4.0.0 uninstalled"), "{stderr}");
    assert_eq!(listed(&env), [("1.0.0".into(), true)]);
    assert!(!env.packs().join("tool-4.0.0").exists());
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));
    env.run(&["verify"]).success();
    assert_eq!(
        activations(&env),
        [row("1.0.0", "-", "install"), row("4.0.0", "1.0.0", "upgrade"), row("1.0.0", "4.0.0", "upgrade-rollback")]
    );
    // The new version's install and uninstall are both in the audit trail.
    let rows =
        query(&env, "SELECT action FROM installations WHERE pack_ref = 'tool' AND version = '4.0.0' ORDER BY id");
    assert_eq!(rows.concat(), ["install", "uninstall"]);
}

fn activate_and_uninstalling_the_active_version(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    for v in ["1.0.0", "2.0.0"] {
        env.run(&["install", env.make_pack("tool", v).to_str().unwrap()]).success();
    }
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));
    let out = env.run(&["activate", "tool@2.0.0"]).success();
    assert!(out.stdout.contains("activated tool: 2.0.0 is active (was 1.0.0)"), "{}", out.stdout);
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-2.0.0"));
    assert!(env.run(&["activate", "tool@2.0.0"]).success().stdout.contains("already active"));
    let out = env.run(&["activate", "tool@3.0.0"]).failure();
    assert!(out.stderr.contains("tool@3.0.0: not installed on this host (installed: 1.0.0, 2.0.0)"), "{}", out.stderr);

    // The active version goes only with --force while another is installed.
    let out = env.run(&["uninstall", "tool@2.0.0"]).failure();
    assert!(out.stderr.contains("tool@2.0.0 is the active version and 1.0.0 is also installed"), "{}", out.stderr);
    assert_eq!(listed(&env), [("1.0.0".into(), false), ("2.0.0".into(), true)]);
    let out = env.run(&["uninstall", "tool@2.0.0", "--force"]).success();
    assert!(out.stdout.contains("tool has no active version now"), "{}", out.stdout);
    assert_eq!(link(&env, "tool"), None);
    assert_eq!(listed(&env), [("1.0.0".into(), false)]);
    let out = env.run(&["upgrade", "tool"]).failure();
    assert!(out.stderr.contains("tool: no version is active on this host"), "{}", out.stderr);
    env.run(&["activate", "tool@1.0.0"]).success();
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));
    // The only version may always go.
    env.run(&["uninstall", "tool"]).success();
    assert_eq!(link(&env, "tool"), None);
    let out = env.run(&["rollback", "tool"]).failure();
    assert!(out.stderr.contains("tool: nothing to roll back to"), "{}", out.stderr);
    // A new first version is active again, and doctor does not take the link for an orphan.
    env.run(&["install", env.make_pack("tool", "1.0.1").to_str().unwrap()]).success();
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.1"));
    env.run(&["doctor"]).success();
}

fn rollback_needs_the_previous_version_installed(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    for v in ["1.0.0", "2.0.0"] {
        env.run(&["install", env.make_pack("tool", v).to_str().unwrap()]).success();
    }
    env.run(&["activate", "tool@2.0.0"]).success();
    env.run(&["uninstall", "tool@1.0.0"]).success();
    let out = env.run(&["rollback", "tool"]).failure();
    assert!(out.stderr.contains("the previous active version 1.0.0 is no longer installed"), "{}", out.stderr);
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-2.0.0"));
}

fn gc_keeps_the_n_most_recent_and_never_the_active_one(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    for v in ["1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0"] {
        env.run(&["install", env.make_pack("tool", v).to_str().unwrap()]).success();
    }
    // 1.0.0 (the first) is active.
    let j = env.run(&["gc", "--keep", "2", "--dry-run", "--json"]).success().json();
    let would: Vec<&str> = j["items"].as_array().unwrap().iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(would, ["3.0.0", "2.0.0"]);
    assert_eq!(listed(&env).len(), 5, "a dry run removes nothing");

    let out = env.run(&["gc", "--keep", "2"]).success();
    assert!(out.stdout.contains("removed  tool 3.0.0"), "{}", out.stdout);
    let versions: Vec<String> = listed(&env).into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["1.0.0", "4.0.0", "5.0.0"]);
    assert!(!env.packs().join("tool-2.0.0").exists());
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.0.0"));
    // Recorded as uninstalls.
    let n = query(&env, "SELECT count(*) FROM installations WHERE pack_ref = 'tool' AND action = 'uninstall'");
    assert_eq!(n[0][0], "2");

    // The default comes from the config's gc_keep.
    let config = env.tmp.path().join("config.toml");
    std::fs::write(&config, "gc_keep = 1\n").unwrap();
    let j = env.run(&["--config", config.to_str().unwrap(), "gc", "--json"]).success().json();
    assert_eq!(j["keep"], 1);
    let versions: Vec<String> = listed(&env).into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["1.0.0", "5.0.0"]);
    assert!(env.run(&["gc"]).success().stdout.contains("nothing to remove"));
}

#[test]
fn activate_waits_while_another_process_switches_versions() {
    use std::io::BufRead;
    let env = Env::new();
    for v in ["1.0.0", "2.0.0"] {
        env.run(&["install", env.make_pack("tool", v).to_str().unwrap()]).success();
    }
    // Another process (as an upgrade would) holds tool's switch lock for a while.
    let lock = env.packs().join(".attune/locks/tool.switch.lock");
    let released = env.tmp.path().join("released");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo locked; sleep 2; touch \"$0\""])
        .arg(&released)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock (util-linux) runs");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    env.run(&["activate", "tool@2.0.0"]).success();
    assert!(released.exists(), "activate switched while another process held the switch lock");
    assert!(holder.wait().unwrap().success());
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-2.0.0"));
}

fn packs_installed_before_active_versions_get_their_highest_version_active(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    for v in ["1.0.0", "1.10.0", "1.2.0"] {
        env.run(&["install", env.make_pack("tool", v).to_str().unwrap()]).success();
    }
    // As a database from before migration 0005 looks: no activations, no link,
    // and (what the next run's migrations then add) no 0008 either.
    query(&env, "DELETE FROM activations");
    query(&env, "DROP TABLE pending_activations");
    query(&env, "DELETE FROM _sqlx_migrations WHERE version = 8");
    std::fs::remove_file(env.packs().join("tool")).unwrap();

    let out = env.run(&["list"]).success();
    assert!(out.stderr.contains("note: tool@1.10.0 is now active"), "{}", out.stderr);
    assert_eq!(link(&env, "tool").as_deref(), Some("tool-1.10.0"), "semver order, not text order");
    assert_eq!(activations(&env), [row("1.10.0", "-", "backfill")]);
    // Once: a pack left with no active version on purpose stays so.
    env.run(&["uninstall", "tool@1.10.0", "--force"]).success();
    let out = env.run(&["list"]).success();
    assert!(!out.stderr.contains("is now active"), "{}", out.stderr);
    assert_eq!(link(&env, "tool"), None);
}
