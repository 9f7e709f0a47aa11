//! Signed (TUF) registry indexes through the real `attune` binary: a
//! repository made with `attune index keygen|init|sign`, served from a folder
//! on loopback, added with `index add --root`, installed from by name; and
//! the attacks `index update` must refuse with the trusted metadata on disk
//! and the cached index unchanged and nothing installed.

use std::path::{Path, PathBuf};

use crate::common::http_server::Server;
use crate::common::index::sha256_hex;
use crate::common::{Env, cache_dir, git_server};
use git_server::{GitServer, git};
use serde_json::json;

/// A bare repository `root/<name>.git` with one tag `v<version>`.
fn tagged(env: &Env, root: &Path, name: &str, version: &str) {
    let work = env.tmp.path().join(format!("work-{name}"));
    std::fs::create_dir_all(work.join("actions")).unwrap();
    git(&work, &["init", "-q", "-b", "main", "."]);
    std::fs::write(work.join("pack.yaml"), format!("---\nname: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(work.join("actions/run.sh"), format!("#!/bin/sh\necho {name} {version}\n")).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", version]);
    git(&work, &["tag", &format!("v{version}")]);
    git(root, &["clone", "-q", "--bare", work.to_str().unwrap(), &format!("{name}.git")]);
}

/// A StackStorm Exchange `v1/index.json` listing `packs` (name, version, repository URL).
fn exchange(packs: &[(&str, &str, String)]) -> Vec<u8> {
    let mut all = serde_json::Map::new();
    for (name, version, url) in packs {
        all.insert(
            name.to_string(),
            json!({
                "name": name, "description": format!("{name} for tests"), "author": "Tests",
                "email": "t@example.com", "keywords": [], "python_versions": ["3"], "version": version,
                "versions": [version], "repo_url": url, "content": {}, "dependencies": []
            }),
        );
    }
    serde_json::to_vec(&json!({"packs": all, "metadata": {"generated_ts": 1767225600, "hash": "0"}})).unwrap()
}

/// A signed Exchange index of one git pack, served on loopback.
struct Signed {
    env: Env,
    /// The repository folder (`targets/`, `metadata/`).
    repo: PathBuf,
    key: PathBuf,
    http: Server,
    _git: GitServer,
    git_url: String,
}

impl Signed {
    fn new() -> Signed {
        let env = Env::new();
        let root = env.tmp.path().join("gitroot");
        std::fs::create_dir_all(&root).unwrap();
        tagged(&env, &root, "signed_pack", "1.0.0");
        let git = GitServer::start(&root);
        let git_url = git.url("signed_pack.git");
        let repo = env.tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("targets/v1")).unwrap();
        std::fs::write(repo.join("targets/v1/index.json"), exchange(&[("signed_pack", "1.0.0", git_url.clone())]))
            .unwrap();
        let key = env.tmp.path().join("key.pem");
        let out = env.run(&["index", "keygen", key.to_str().unwrap()]).success();
        assert!(out.stdout.contains("key id "), "{}", out.stdout);
        let out = env.run(&["index", "init", repo.to_str().unwrap(), "--key", key.to_str().unwrap()]).success();
        assert!(out.stdout.contains("root v1, targets v1, snapshot v1, timestamp v1"), "{}", out.stdout);
        let http = Server::start("127.0.0.1");
        http.serve_dir("/repo", &repo);
        let s = Signed { env, repo, key, http, _git: git, git_url };
        // The cache outlives test runs: a port used by an earlier run must not find its trust.
        let _ = std::fs::remove_dir_all(s.cached("tuf"));
        let _ = std::fs::remove_file(s.cached("json"));
        s
    }

    fn url(&self) -> String {
        self.http.url("/repo")
    }

    fn publish(&self) {
        self.http.serve_dir("/repo", &self.repo);
    }

    fn sign(&self, extra: &[&str]) {
        let mut args = vec!["index", "sign", self.repo.to_str().unwrap(), "--key", self.key.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.env.run(&args).success();
        self.publish();
    }

    fn add(&self) {
        let root = self.repo.join("metadata/1.root.json");
        let url = self.url();
        let out = self
            .env
            .run(&["index", "add", "signed", &url, "--root", root.to_str().unwrap(), "--target", "v1/index.json"])
            .success();
        assert!(out.stdout.contains("added index signed (exchange, signed (targets v"), "{}", out.stdout);
    }

    /// `{cache}/indexes-v1/signed-{key}.tuf/` and `.json`, as `attune` names them.
    fn cached(&self, ext: &str) -> PathBuf {
        let key = &sha256_hex(self.url().as_bytes())[..16];
        cache_dir().join("indexes-v1").join(format!("signed-{key}.{ext}"))
    }

    /// Every file of the trust folder and the cached index, with its bytes.
    fn state(&self) -> Vec<(String, Vec<u8>)> {
        let dir = self.cached("tuf");
        let mut out: Vec<(String, Vec<u8>)> = crate::common::listing(&dir)
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(dir.join(&f)).unwrap_or_default();
                (f, bytes)
            })
            .collect();
        out.push(("cached index".into(), std::fs::read(self.cached("json")).unwrap()));
        assert!(out.len() > 1, "a trust folder with files: {out:?}");
        out
    }

    /// `index update` is refused with `expect` in its error; nothing on disk changed, nothing is installable.
    fn refused(&self, expect: &[&str]) {
        let before = self.state();
        let out = self.env.run(&["index", "update", "signed"]).failure();
        for e in expect {
            assert!(out.stderr.contains(e), "expected {e:?} in: {}", out.stderr);
        }
        assert!(out.stderr.contains("the cached index and the trusted metadata are unchanged"), "{}", out.stderr);
        assert!(self.state() == before, "the trusted metadata and the cached index are unchanged");
        self.env.run(&["install", "evil_pack"]).failure();
        let list = self.env.run(&["list", "--json"]).success().json();
        assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing installed: {list}");
    }

    fn rewrite(&self, rel: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.repo.join(rel);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        self.publish();
    }
}

#[test]
fn a_signed_exchange_index_is_added_listed_updated_installed_from_and_removed() {
    let s = Signed::new();
    s.add();
    let list = s.env.run(&["index", "list"]).success();
    assert!(list.stdout.contains("signed (targets v1)"), "{}", list.stdout);
    let json = s.env.run(&["index", "list", "--json"]).success().json();
    assert_eq!(json[0]["signed"], json!({"target": "v1/index.json", "targets_version": 1}), "{json}");
    assert!(s.cached("tuf").join("trusted.json").is_file());

    let out = s.env.run(&["install", "signed_pack"]).success();
    assert!(out.stdout.contains("index     signed (signed_pack@1.0.0)"), "{}", out.stdout);

    // A new release: the update verifies it and takes it.
    std::fs::write(
        s.repo.join("targets/v1/index.json"),
        exchange(&[("signed_pack", "1.0.0", s.git_url.clone()), ("other_pack", "2.0.0", s.git_url.clone())]),
    )
    .unwrap();
    s.sign(&[]);
    let out = s.env.run(&["index", "update", "signed"]).success();
    assert!(out.stdout.contains("updated signed (signed (targets v2)): 2 packs"), "{}", out.stdout);

    s.env.run(&["index", "remove", "signed"]).success();
    assert!(!s.cached("tuf").exists(), "remove drops the trusted metadata");
}

#[test]
fn unsigned_indexes_are_refused_when_signed_ones_are_required() {
    let s = Signed::new();
    let plain = s.env.tmp.path().join("plain.json");
    std::fs::write(&plain, exchange(&[("signed_pack", "1.0.0", s.git_url.clone())])).unwrap();
    let out = s.env.run(&["index", "add", "plain", plain.to_str().unwrap(), "--require-signed"]).failure();
    assert!(out.stderr.contains("index plain: unsigned, and signed indexes are required"), "{}", out.stderr);
    let config = s.env.tmp.path().join("config.toml");
    std::fs::write(&config, "require_signed_indexes = true\n").unwrap();
    s.env.run(&["index", "add", "plain", plain.to_str().unwrap()]).success();
    let out = s.env.run(&["--config", config.to_str().unwrap(), "index", "update", "plain"]).failure();
    assert!(out.stderr.contains("index plain: unsigned, and signed indexes are required"), "{}", out.stderr);
    s.add();
    s.env.run(&["--config", config.to_str().unwrap(), "index", "update", "signed"]).success();
}

#[test]
fn a_root_pinned_by_hash_is_fetched_and_another_refused() {
    let s = Signed::new();
    let root = std::fs::read(s.repo.join("metadata/1.root.json")).unwrap();
    let url = s.url();
    let wrong = "0".repeat(64);
    let out = s.env.run(&["index", "add", "signed", &url, "--root-sha256", &wrong, "--target", "v1/index.json"]);
    let out = out.failure();
    assert!(out.stderr.contains("index signed: not added: root metadata: 1.root.json has SHA-256"), "{}", out.stderr);
    assert!(!s.cached("tuf").exists(), "nothing trusted");
    s.env
        .run(&["index", "add", "signed", &url, "--root-sha256", &sha256_hex(&root), "--target", "v1/index.json"])
        .success();
}

#[test]
fn a_tampered_index_document_is_refused() {
    let s = Signed::new();
    s.add();
    let index = s.repo.join("targets/v1/index.json");
    // The publisher signs a new release; the host then serves other bytes in its place.
    std::fs::write(
        &index,
        exchange(&[("signed_pack", "1.0.0", s.git_url.clone()), ("new_pack", "1.0.0", s.git_url.clone())]),
    )
    .unwrap();
    s.sign(&[]);
    std::fs::write(
        &index,
        exchange(&[("signed_pack", "1.0.0", s.git_url.clone()), ("bad_pack", "1.0.0", s.git_url.clone())]),
    )
    .unwrap();
    s.publish();
    // Same length, other bytes: the signed targets metadata fixes the hashes too.
    s.refused(&["target v1/index.json: ", "but targets metadata says", "(tampered or mixed files)"]);
}

#[test]
fn metadata_with_a_bad_signature_is_refused() {
    let s = Signed::new();
    s.add();
    // A newer timestamp nobody signed: the old signature no longer covers it.
    s.rewrite("metadata/timestamp.json", |v| v["signed"]["version"] = json!(7));
    s.refused(&["timestamp metadata: signature threshold not met: 0 of the required 1"]);
}

#[test]
fn another_repositorys_valid_metadata_is_refused() {
    let s = Signed::new();
    s.add();
    // A mirror serving another publisher's repository, validly signed by its own keys.
    let other = Signed::new();
    other.sign(&[]);
    s.http.serve_dir("/repo", &other.repo);
    s.refused(&["signature threshold not met"]);
}

#[test]
fn a_rollback_to_older_metadata_is_refused() {
    let s = Signed::new();
    let old = s.env.tmp.path().join("old-repo");
    crate::common::copy_tree(&s.repo, &old);
    s.sign(&[]);
    s.add();
    // The host now trusts version 2; the server goes back to version 1.
    s.http.serve_dir("/repo", &old);
    s.refused(&["timestamp metadata: version 1 is lower than the trusted version 2 (rollback attack)"]);
}

#[test]
fn an_expired_timestamp_is_refused() {
    let s = Signed::new();
    s.add();
    s.sign(&["--timestamp-only", "--timestamp-expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    s.refused(&["timestamp metadata: expired at", "by the system clock", "(freeze attack?)"]);
}

#[test]
fn a_root_rotation_is_followed_from_the_old_root() {
    let s = Signed::new();
    s.add();
    let new_key = s.env.tmp.path().join("new.pem");
    s.env.run(&["index", "keygen", new_key.to_str().unwrap()]).success();
    s.sign(&["--rotate-root", "--new-key", new_key.to_str().unwrap()]);
    let out = s.env.run(&["index", "update", "signed"]).success();
    assert!(out.stdout.contains("signed (targets v2)"), "{}", out.stdout);
    // Only the new keys sign from now on: the old one alone is refused by the publisher.
    let out = s.env.run(&["index", "sign", s.repo.to_str().unwrap(), "--key", s.key.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("threshold is 1"), "{}", out.stderr);
}

#[test]
fn a_pack_from_a_signed_index_records_its_trust_and_an_older_lock_is_refused() {
    let s = Signed::new();
    s.add();
    s.env.run(&["install", "signed_pack"]).success();
    let key_id = {
        let trusted: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.repo.join("metadata/targets.json")).unwrap()).unwrap();
        trusted["signatures"][0]["keyid"].as_str().unwrap().to_owned()
    };
    let info = s.env.run(&["info", "signed_pack"]).success();
    assert!(info.stdout.contains(&format!("signed by    index signed (targets v1), keys {key_id}")), "{}", info.stdout);
    let lock = s.env.tmp.path().join("attune.lock");
    s.env.run(&["lock", "-o", lock.to_str().unwrap()]).success();
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("[pack.index_trust]") && text.contains("targets_version = 1"), "{text}");
    assert!(text.contains(&key_id), "{text}");

    // The index moves on; the old lock now replays metadata older than what this host trusts.
    s.sign(&[]);
    s.env.run(&["index", "update", "signed"]).success();
    s.env.run(&["uninstall", "signed_pack"]).success();
    let out = s.env.run(&["sync", "--locked", "--file", lock.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains(
            "signed_pack@1.0.0 (from index signed): lock: index metadata targets version 1 is older than the \
             version 2 this host trusts (rollback via an old lock)"
        ),
        "{}",
        out.stderr
    );
    let list = s.env.run(&["list", "--json"]).success().json();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing installed: {list}");
    // A lock written now is accepted.
    s.env.run(&["install", "signed_pack"]).success();
    s.env.run(&["lock", "-o", lock.to_str().unwrap()]).success();
    assert!(std::fs::read_to_string(&lock).unwrap().contains("targets_version = 2"));
    s.env.run(&["sync", "--locked", "--file", lock.to_str().unwrap()]).success();
}

#[test]
fn endless_metadata_is_cut_at_the_role_limit() {
    let s = Signed::new();
    s.add();
    // A megabyte of zeros where a timestamp of a few hundred bytes belongs.
    s.http.route("/repo/metadata/timestamp.json", crate::common::http_server::Route::Zeros { mib: 1 });
    s.refused(&[
        "timestamp metadata:",
        "/repo/metadata/timestamp.json is larger than the limit of 16384 bytes for it (endless data attack?)",
    ]);
}

#[test]
fn offline_installs_use_the_trusted_metadata_and_refuse_it_once_expired() {
    let s = Signed::new();
    s.add();
    // Online once, so the artifact cache holds the pack's tree.
    s.env.run(&["install", "signed_pack"]).success();
    s.env.run(&["uninstall", "signed_pack"]).success();
    s.env.run(&["install", "signed_pack", "--offline"]).success();
    s.env.run(&["uninstall", "signed_pack"]).success();

    // A timestamp that expires soon, trusted while it is valid.
    let signed_at = std::time::Instant::now();
    s.sign(&["--timestamp-only", "--timestamp-expires", "8s"]);
    s.env.run(&["index", "update", "signed"]).success();
    std::thread::sleep(std::time::Duration::from_secs(9).saturating_sub(signed_at.elapsed()));

    let out = s.env.run(&["install", "signed_pack", "--offline"]).failure();
    assert!(
        out.stderr.contains("index signed: cannot be used offline: timestamp metadata: expired at"),
        "{}",
        out.stderr
    );
    let out = s.env.run(&["install", "signed_pack", "--offline", "--allow-expired"]).success();
    assert!(
        out.stderr.contains("index signed: used offline with expired timestamp metadata (--allow-expired"),
        "{}",
        out.stderr
    );
}
