//! Lockfiles and offline installs over loopback: `attune lock`, then a wiped
//! host (new packs folder and database) made to match it with `attune sync
//! --locked`; sources that changed, tampered trees and unlisted packs; and
//! `--offline` installs from the artifact cache with the HTTP server gone.
//! No traffic leaves 127.0.0.1.

use crate::common::git_server;
use crate::common::http_server;

use std::path::PathBuf;

use crate::common::{Backend, Env, query, tgz};
use git_server::{GitServer, git};
use http_server::{Route, Server};

on_both_backends!(
    sync:
    lock_then_sync_on_a_wiped_host_reproduces_the_same_trees,
    a_source_that_now_serves_other_content_fails_and_installs_nothing,
    sync_removes_unlisted_packs_and_refuses_a_tampered_tree,
    offline_installs_come_from_the_artifact_cache,
);

/// A git repository with one commit of a pack, on a loopback http-backend.
fn git_repo(env: &Env, name: &str) -> GitServer {
    let root = env.tmp.path().join("git");
    let work = root.join(format!("{name}-work"));
    crate::common::write_pack(&work, name, "1.0.0");
    git(&work, &["init", "-q", "-b", "main", "."]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), &format!("{name}.git")]);
    GitServer::start(&root)
}

fn lock(env: &Env) -> (PathBuf, toml::Value) {
    let path = env.tmp.path().join("attune.lock");
    env.run(&["lock", "--output", path.to_str().unwrap()]).success();
    let text = std::fs::read_to_string(&path).unwrap();
    (path, toml::from_str(&text).unwrap())
}

/// (ref, version, checksum) of every locked pack.
fn locked(v: &toml::Value) -> Vec<(String, String, String)> {
    v["pack"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap().to_string();
                    (s("ref"), s("version"), s("checksum"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count_installed(env: &Env) -> String {
    query(env, "SELECT COUNT(*) FROM installations WHERE status = 'installed'")[0][0].clone()
}

fn lock_then_sync_on_a_wiped_host_reproduces_the_same_trees(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let web = Server::start("127.0.0.1");
    let archive = env.make_pack("from_web", "1.2.0");
    web.route("/from_web-1.2.0.tgz", Route::File(tgz(&archive)));
    let repo = git_repo(&env, "from_git");
    let local = env.make_pack("from_dir", "0.1.0");

    env.run(&["install", &web.url("/from_web-1.2.0.tgz")]).success();
    env.run(&["install", &format!("git+{}", repo.url("from_git.git")), "--ref", "main"]).success();
    env.run(&["install", local.to_str().unwrap()]).success();
    let (path, lockfile) = lock(&env);
    assert_eq!(lockfile["version"].as_integer(), Some(1));
    let packs = locked(&lockfile);
    assert_eq!(packs.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["from_dir", "from_git", "from_web"]);
    let entries = lockfile["pack"].as_array().unwrap();
    assert!(entries[1]["resolved_commit"].as_str().is_some_and(|c| c.len() == 40), "{entries:?}");
    assert!(entries[2]["archive_sha256"].as_str().is_some_and(|c| c.starts_with("sha256:")), "{entries:?}");
    assert_eq!(entries[2]["source_type"].as_str(), Some("http"));

    // A wiped host: new packs folder and database.
    let fresh = Env::on(db).unwrap();
    let plan =
        fresh.run(&["--json", "sync", "--locked", "--dry-run", "--file", path.to_str().unwrap()]).success().json();
    assert!(plan["plan"].as_array().unwrap().iter().all(|s| s["action"] == "install"), "{plan}");
    assert_eq!(count_installed(&fresh), "0", "a dry run changes nothing");

    let r = fresh.run(&["--json", "sync", "--locked", "--file", path.to_str().unwrap()]).success().json();
    assert_eq!(r["installed"].as_array().unwrap().len(), 3, "{r}");
    let (_, again) = lock(&fresh);
    assert_eq!(locked(&again), packs, "the same refs, versions and tree checksums");
    assert_eq!(again["pack"][1]["resolved_commit"], lockfile["pack"][1]["resolved_commit"]);
    // Fetched at the locked commit, recorded as asked for: the lockfiles match.
    assert_eq!(lockfile["pack"][1]["requested_ref"].as_str(), Some("main"));
    assert_eq!(again["pack"], lockfile["pack"]);

    // A second sync leaves everything alone.
    let r = fresh.run(&["--json", "sync", "--locked", "--file", path.to_str().unwrap()]).success().json();
    assert!(r["plan"].as_array().unwrap().iter().all(|s| s["action"] == "keep"), "{r}");
    assert!(r["installed"].as_array().unwrap().is_empty());
}

fn a_source_that_now_serves_other_content_fails_and_installs_nothing(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let web = Server::start("127.0.0.1");
    let pack = env.make_pack("moving", "1.0.0");
    web.route("/moving.tgz", Route::File(tgz(&pack)));
    env.run(&["install", &web.url("/moving.tgz")]).success();
    let (path, lockfile) = lock(&env);
    let expected = locked(&lockfile)[0].2.clone();

    // Same ref and version, other bytes.
    std::fs::write(pack.join("rules/on.yaml"), "name: changed\n").unwrap();
    web.route("/moving.tgz", Route::File(tgz(&pack)));
    let fresh = Env::on(db).unwrap();
    let out = fresh.run(&["sync", "--locked", "--file", path.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("moving@1.0.0"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("expected {expected}")), "{}", out.stderr);
    assert!(out.stderr.contains("got sha256-tree-v1:"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was installed"), "{}", out.stderr);
    assert_eq!(count_installed(&fresh), "0");
    assert!(
        std::fs::read_dir(fresh.packs()).unwrap().flatten().all(|e| e.file_name().to_string_lossy().starts_with('.'))
    );
}

fn sync_removes_unlisted_packs_and_refuses_a_tampered_tree(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let a = env.make_pack("keep_me", "1.0.0");
    let b = env.make_pack("extra", "2.0.0");
    env.run(&["install", a.to_str().unwrap()]).success();
    let (path, _) = lock(&env);
    env.run(&["install", b.to_str().unwrap()]).success();

    let r = env.run(&["--json", "sync", "--locked", "--dry-run", "--file", path.to_str().unwrap()]).success().json();
    assert_eq!(r["plan"][1]["action"], "remove", "{r}");
    assert_eq!(count_installed(&env), "2", "a dry run changes nothing");
    let r = env.run(&["--json", "sync", "--locked", "--file", path.to_str().unwrap()]).success().json();
    assert_eq!(r["removed"][0]["ref"], "extra", "{r}");
    assert!(!env.packs().join("extra-2.0.0").exists());
    let rows = query(&env, "SELECT action FROM installations WHERE pack_ref = 'extra' ORDER BY id");
    assert_eq!(rows.last().unwrap()[0], "uninstall", "the removal is recorded");

    // Someone edits the installed pack: sync names it, expected and found checksum.
    std::fs::write(env.packs().join("keep_me-1.0.0/rules/on.yaml"), "name: edited\n").unwrap();
    let out = env.run(&["sync", "--locked", "--file", path.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("keep_me@1.0.0"), "{}", out.stderr);
    assert!(out.stderr.contains("no longer matches: expected sha256-tree-v1:"), "{}", out.stderr);
    assert!(out.stderr.contains("found sha256-tree-v1:"), "{}", out.stderr);
}

fn offline_installs_come_from_the_artifact_cache(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let web = Server::start("127.0.0.1");
    let pack = env.make_pack("cached", "3.0.0");
    web.route("/cached.tgz", Route::File(tgz(&pack)));
    let url = web.url("/cached.tgz");
    let uncached = web.url("/never-downloaded.tgz");
    env.run(&["install", &url]).success();
    let repo = git_repo(&env, "cached_git");
    let git_url = format!("git+{}", repo.url("cached_git.git"));
    env.run(&["install", &git_url]).success();
    let (path, lockfile) = lock(&env);
    drop(web); // the network sources are gone
    drop(repo);

    let fresh = Env::on(db).unwrap();
    let r = fresh.run(&["--json", "install", "--offline", &url]).success().json();
    assert_eq!(r["source_type"], "http", "{r}");
    assert_eq!(r["source"], url.as_str());
    let out = fresh.run(&["install", "--offline", &uncached]).failure();
    assert!(out.stderr.contains("never-downloaded.tgz is not in the artifact cache"), "{}", out.stderr);
    assert!(out.stderr.contains("without --offline"), "{}", out.stderr);

    // A git tree comes from the cache too: by the ref last fetched (HEAD)…
    // the git fetcher reads the pack the first install downloaded.
    let r = fresh.run(&["--json", "install", "--offline", &git_url]).success().json();
    assert_eq!(r["source_type"], "git", "{r}");
    assert_eq!(r["fetcher"]["name"], "git", "{r}");
    let out = fresh.run(&["install", "--offline", "--ref", "no-such-tag", &git_url]).failure();
    assert!(out.stderr.contains("cached_git.git at no-such-tag is not in the artifact cache"), "{}", out.stderr);

    // …and by the commit a lockfile records, with the same tree and commit.
    let other = Env::on(db).unwrap();
    other.run(&["sync", "--locked", "--offline", "--file", path.to_str().unwrap()]).success();
    assert_eq!(count_installed(&other), "2");
    let (_, again) = lock(&other);
    assert_eq!(locked(&again), locked(&lockfile));
    assert_eq!(again["pack"][1]["resolved_commit"], lockfile["pack"][1]["resolved_commit"]);
    assert_eq!(again["pack"][1]["source_type"].as_str(), Some("git"));
    // Without --offline the same sync would need the server: it is gone.
    let third = Env::on(db).unwrap();
    third.run(&["sync", "--locked", "--file", path.to_str().unwrap()]).failure();
}

#[test]
fn a_git_tree_an_older_attune_cached_as_a_tar_installs_offline() {
    // Before packs were kept, a git install cached a tar of its tree, found
    // by an entry of three lines (the tar's SHA-256, the commit, the URL).
    let env = Env::new();
    let repo = git_repo(&env, "old_cache");
    let url = repo.url("old_cache.git");
    let work = env.tmp.path().join("git/old_cache-work");
    let commit = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    let tar = env.tmp.path().join("tree.tar");
    git(&work, &["archive", "--format=tar", "-o", tar.to_str().unwrap(), "HEAD"]);
    let bytes = std::fs::read(&tar).unwrap();
    let sha256 = |b: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
    let cache = env.tmp.path().join("cache");
    let artifacts = cache.join("artifacts-v1");
    std::fs::create_dir_all(artifacts.join("sha256")).unwrap();
    std::fs::create_dir_all(artifacts.join("git")).unwrap();
    std::fs::write(artifacts.join("sha256").join(sha256(&bytes)), &bytes).unwrap();
    std::fs::write(
        artifacts.join("git").join(sha256(format!("{url}\nref:HEAD").as_bytes())),
        format!("{}\n{commit}\n{url}\n", sha256(&bytes)),
    )
    .unwrap();
    drop(repo);

    let cache = cache.to_str().unwrap();
    let r = env.run(&["--json", "--cache-dir", cache, "install", "--offline", &format!("git+{url}")]).success().json();
    assert_eq!((r["source_type"].as_str(), r["fetcher"]["name"].as_str()), (Some("git"), Some("archive")), "{r}");
    let info = env.run(&["info", "old_cache", "--json"]).success().json();
    assert_eq!(info["installed"][0]["resolved_commit"], commit.as_str(), "{info}");
}
