//! Installing by name from registry indexes served over loopback: an Attune
//! index (archive and git sources, several packs and versions) on a real HTTP
//! server, and a StackStorm Exchange index pointing at a real git
//! http-backend. No traffic leaves 127.0.0.1.

use crate::common::git_server;
use crate::common::http_server;

use std::path::{Path, PathBuf};

use crate::common::index::{document as attune_index, entry as attune_entry, sha256_hex};
use crate::common::{Env, listing, query, tgz};
use git_server::{GitServer, git};
use http_server::{Route, Server};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A pack folder without symlinks (Attune's legacy checksum refuses them).
fn plain_pack(env: &Env, name: &str, version: &str) -> PathBuf {
    let dir = env.tmp.path().join("plain").join(format!("{name}-{version}"));
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), format!("---\nname: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(dir.join("actions/run.sh"), format!("#!/bin/sh\necho {name} {version}\n")).unwrap();
    std::fs::write(dir.join("lib.txt"), "beside lib/\n").unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("lib/util.py"), "X = 1\n").unwrap();
    dir
}

/// Attune's directory checksum, written here again from its definition (not
/// the library's code): regular files outside `.git`, sorted by path
/// components, each framed as "attune-pack-file-v1" ‖ len ‖ path ‖ len ‖ content.
fn legacy_checksum(root: &Path) -> String {
    let mut files: Vec<(Vec<String>, PathBuf)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap();
            (rel.iter().map(|c| c.to_str().unwrap().to_string()).collect(), e.path().to_owned())
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for (parts, full) in files {
        let path = parts.join("/");
        let content = std::fs::read(full).unwrap();
        h.update(b"attune-pack-file-v1");
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((content.len() as u64).to_be_bytes());
        h.update(&content);
    }
    hex::encode(h.finalize())
}

fn tree_checksum(env: &Env, path: &Path) -> String {
    env.run(&["pack", "checksum", path.to_str().unwrap(), "--format", "json"]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An HTTP server with `core_utils` 1.4.2, 1.5.0 and 2.0.0-rc.1 as archives,
/// `broken` 1.0.0 whose index checksum is wrong, and `wrongver` whose archive
/// holds another version than the index says; `/index.json` lists them.
struct Registry {
    server: Server,
}

fn registry(env: &Env) -> Registry {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    for v in ["1.4.2", "1.5.0", "2.0.0-rc.1"] {
        let bytes = tgz(&env.make_pack("core_utils", v));
        let path = format!("/core_utils-{v}.tgz");
        entries.push(attune_entry(
            "core_utils",
            v,
            json!([{"type": "archive", "url": server.url(&path), "checksum": format!("sha256:{}", sha256_hex(&bytes))}]),
        ));
        server.route(&path, Route::File(bytes));
    }
    let broken = tgz(&env.make_pack("broken", "1.0.0"));
    server.route("/broken-1.0.0.tgz", Route::File(broken));
    entries.push(attune_entry(
        "broken",
        "1.0.0",
        json!([{"type": "archive", "url": server.url("/broken-1.0.0.tgz"), "checksum": format!("sha256:{}", "0".repeat(64))}]),
    ));
    // Right archive checksum, wrong claim about what is inside.
    let wrong = tgz(&env.make_pack("wrongver", "9.9.9"));
    entries.push(attune_entry(
        "wrongver",
        "1.0.0",
        json!([{"type": "archive", "url": server.url("/wrongver.tgz"), "checksum": format!("sha256:{}", sha256_hex(&wrong))}]),
    ));
    server.route("/wrongver.tgz", Route::File(wrong));
    server.route("/index.json", Route::File(attune_index(entries)));
    Registry { server }
}

fn installed(env: &Env) -> Vec<(String, String)> {
    let list = env.run(&["list", "--json"]).success().json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["pack_ref"].as_str().unwrap().into(), r["version"].as_str().unwrap().into()))
        .collect()
}

fn count_installed(env: &Env) -> String {
    query(env, "SELECT count(*) FROM installations WHERE status = 'installed'")[0][0].clone()
}

#[test]
fn range_exact_and_latest_resolve_against_an_http_index() {
    let env = Env::new();
    let reg = registry(&env);
    let add = env.run(&["index", "add", "main", &reg.server.url("/index.json"), "--json"]).success().json();
    assert_eq!(add["name"], "main");
    assert_eq!(add["fetched"]["format"], "attune");
    assert_eq!(add["fetched"]["packs"], 3);
    assert_eq!(add["fetched"]["versions"], 5);

    // A range: the highest match (1.5.0, not the 2.0.0 pre-release).
    let out = env.run(&["install", "core_utils@^1.4"]).success();
    assert!(out.stdout.contains("installed core_utils 1.5.0"), "{}", out.stdout);
    assert!(out.stdout.contains("index     main (core_utils@1.5.0)"), "{}", out.stdout);
    assert!(out.stdout.contains("verified  sha256:"), "{}", out.stdout);

    // Exact version.
    let j = env.run(&["install", "core_utils@1.4.2", "--json"]).success().json();
    assert_eq!(j["resolved"]["index"], "main");
    assert_eq!(j["install"]["version"], "1.4.2");
    assert!(j["expected_checksum"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(installed(&env), [("core_utils".into(), "1.4.2".into()), ("core_utils".into(), "1.5.0".into())]);

    // The pack is what the archive held, recorded as verified.
    let verified = query(&env, "SELECT verified, source_type FROM installations WHERE version = '1.5.0'");
    assert_eq!(verified, [["1", "http"]]);

    // A pre-release only when the range asks for it.
    env.run(&["install", "core_utils@>=2.0.0-rc.1"]).success();
    assert!(installed(&env).contains(&("core_utils".into(), "2.0.0-rc.1".into())));
}

#[test]
fn no_match_names_the_indexes_searched() {
    let env = Env::new();
    let reg = registry(&env);
    env.run(&["index", "add", "main", &reg.server.url("/index.json")]).success();
    let out = env.run(&["install", "core_utils@^3"]).failure();
    assert!(
        out.stderr.contains("core_utils@^3: no matching version in index main (available: 2.0.0-rc.1 in main, 1.5.0 in main, 1.4.2 in main)"),
        "{}",
        out.stderr
    );
    let out = env.run(&["install", "nosuchpack"]).failure();
    assert!(
        out.stderr.contains("nosuchpack: no matching version in index main (no version of this pack is listed, and no file or folder of that name exists here)"),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&env), "0");
}

#[test]
fn without_indexes_a_spec_says_how_to_add_one() {
    let env = Env::new();
    let out = env.run(&["install", "core_utils"]).failure();
    assert!(out.stderr.contains("no index is configured"), "{}", out.stderr);
    assert!(out.stderr.contains("attune index add"), "{}", out.stderr);
}

#[test]
fn checksum_mismatch_installs_nothing() {
    let env = Env::new();
    let reg = registry(&env);
    env.run(&["index", "add", "main", &reg.server.url("/index.json")]).success();
    let out = env.run(&["install", "broken"]).failure();
    assert!(out.stderr.contains("checksum"), "{}", out.stderr);
    assert!(listing(&env.packs()).iter().all(|p| !p.starts_with("broken")), "{:?}", listing(&env.packs()));
    assert_eq!(count_installed(&env), "0");
    assert_eq!(query(&env, "SELECT count(*) FROM installations")[0][0], "0", "not even a journal row");

    // The index's claim about the pack's ref and version is held too.
    let out = env.run(&["install", "wrongver"]).failure();
    assert!(
        out.stderr.contains("wrongver@1.0.0 from index main: the fetched pack is wrongver@9.9.9"),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&env), "0");
    assert!(listing(&env.packs()).iter().all(|p| !p.starts_with("wrongver")));
}

#[test]
fn tree_checksum_extension_is_checked() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    let mut good = String::new();
    let bad = format!("sha256-tree-v1:{}", "1".repeat(64));
    for name in ["treepack", "treebad"] {
        let src = env.make_pack(name, "1.0.0");
        let bytes = tgz(&src);
        let path = format!("/{name}.tgz");
        server.route(&path, Route::File(bytes.clone()));
        let mut e = attune_entry(
            name,
            "1.0.0",
            json!([{"type": "archive", "url": server.url(&path), "checksum": format!("sha256:{}", sha256_hex(&bytes))}]),
        );
        let tree = if name == "treepack" { tree_checksum(&env, &src) } else { bad.clone() };
        if name == "treepack" {
            good = tree.clone();
        }
        e["meta"] = json!({"x_attune": {"tree_checksum": tree}});
        entries.push(e);
    }
    server.route("/index.json", Route::File(attune_index(entries)));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();

    let out = env.run(&["install", "treebad"]).failure();
    assert!(out.stderr.contains(&format!("expected {bad}, got sha256-tree-v1:")), "{}", out.stderr);
    assert_eq!(count_installed(&env), "0");
    assert!(listing(&env.packs()).iter().all(|p| !p.starts_with("treebad")));

    let j = env.run(&["install", "treepack", "--json"]).success().json();
    assert_eq!(j["expected_checksum"], good.as_str());
    assert_eq!(j["install"]["checksum"], good.as_str());
}

/// A bare repository served by `git http-backend` holding `name` with tags
/// `v1.0.0` and `v1.1.0` (pack.yaml versions to match), no symlinks.
struct Repo {
    server: GitServer,
    /// The work tree at each tag, for checksums.
    trees: Vec<(String, PathBuf)>,
}

fn tagged_repo(env: &Env, name: &str) -> Repo {
    let work = env.tmp.path().join(format!("work-{name}"));
    let root = env.tmp.path().join("gitroot");
    std::fs::create_dir_all(&root).unwrap();
    let mut trees = Vec::new();
    for (i, v) in ["1.0.0", "1.1.0"].iter().enumerate() {
        let src = plain_pack(env, name, v);
        if i == 0 {
            crate::common::copy_tree(&src, &work);
            git(&work, &["init", "-q", "-b", "main", "."]);
        } else {
            crate::common::copy_tree(&src, &work);
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", v]);
        git(&work, &["tag", &format!("v{v}")]);
        trees.push((v.to_string(), src));
    }
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), &format!("{name}.git")]);
    Repo { server: GitServer::start(&root), trees }
}

#[test]
fn exchange_index_installs_tags_from_a_loopback_git_repo() {
    let env = Env::new();
    let repo = tagged_repo(&env, "gitpack");
    let index = json!({
        "packs": {
            "gitpack": {
                "name": "gitpack", "description": "A pack in git", "author": "Tests",
                "version": "1.1.0", "versions": ["1.0.0", "1.1.0"],
                "repo_url": repo.server.url("gitpack.git"),
                "python_versions": ["3"], "keywords": [], "content": {"actions": {"count": 1, "resources": ["run"]}}
            }
        },
        "metadata": {"generated_ts": 1767225600, "hash": "0"}
    });
    let path = env.tmp.path().join("exchange-index.json");
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let add = env.run(&["index", "add", "exchange", path.to_str().unwrap(), "--json"]).success().json();
    assert_eq!(add["fetched"]["format"], "exchange");

    let out = env.run(&["install", "gitpack"]).success();
    assert!(out.stdout.contains("installed gitpack 1.1.0"), "{}", out.stdout);
    assert!(out.stdout.contains("verified  no: the index gives no checksum"), "{}", out.stdout);
    let j = env.run(&["install", "gitpack@~1.0", "--json"]).success().json();
    assert_eq!(j["install"]["version"], "1.0.0");
    assert_eq!(j["install"]["source_type"], "git");
    assert_eq!(j["resolved"]["sources"][0]["ref"], "v1.0.0");
    // What was installed is the tag's tree.
    for (v, src) in &repo.trees {
        let stored = env.packs().join(format!("gitpack-{v}"));
        assert_eq!(tree_checksum(&env, &stored), tree_checksum(&env, src));
    }
    let rows = query(&env, "SELECT version, requested_ref FROM installations ORDER BY version");
    assert_eq!(rows, [["1.0.0", "v1.0.0"], ["1.1.0", "v1.1.0"]]);

    // With the git server gone, another host installs by name from the
    // cached index and the cached tag trees.
    let commits = query(&env, "SELECT version, resolved_commit FROM installations ORDER BY version");
    drop(repo.server);
    let fresh = Env::new();
    fresh.run(&["index", "add", "exchange", path.to_str().unwrap()]).success();
    fresh.run(&["install", "gitpack@~1.0"]).failure(); // online: the server is gone
    let j = fresh.run(&["install", "--offline", "gitpack@~1.0", "--json"]).success().json();
    assert_eq!(j["install"]["source_type"], "git", "{j}");
    let stored = fresh.packs().join("gitpack-1.0.0");
    assert_eq!(tree_checksum(&fresh, &stored), tree_checksum(&env, &repo.trees[0].1));
    let again = query(&fresh, "SELECT version, resolved_commit FROM installations ORDER BY version");
    assert_eq!(again[..], commits[..1], "recorded at the tag's commit");
}

#[test]
fn attune_git_entry_is_verified_with_the_legacy_checksum() {
    let env = Env::new();
    let repo = tagged_repo(&env, "legacy");
    let url = repo.server.url("legacy.git");
    let sums: Vec<String> = repo.trees.iter().map(|(_, src)| legacy_checksum(src)).collect();
    let index = attune_index(vec![
        attune_entry(
            "legacy",
            "1.0.0",
            json!([{"type": "git", "url": url, "ref": "v1.0.0", "checksum": format!("sha256:{}", sums[0])}]),
        ),
        // 1.1.0 claims 1.0.0's checksum: the content does not match it.
        attune_entry(
            "legacy",
            "1.1.0",
            json!([{"type": "git", "url": url, "ref": "v1.1.0", "checksum": format!("sha256:{}", sums[0])}]),
        ),
    ]);
    let server = Server::start("127.0.0.1");
    server.route("/index.json", Route::File(index));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();

    let j = env.run(&["install", "legacy@1.0.0", "--json"]).success().json();
    assert_eq!(j["expected_checksum"], format!("attune-pack-file-v1:{}", sums[0]));
    assert_eq!(j["install"]["version"], "1.0.0");

    let out = env.run(&["install", "legacy"]).failure();
    assert!(
        out.stderr.contains(&format!("expected attune-pack-file-v1:{}, got attune-pack-file-v1:{}", sums[0], sums[1])),
        "{}",
        out.stderr
    );
    assert_eq!(installed(&env), [("legacy".into(), "1.0.0".into())]);
}

#[test]
fn an_existing_path_wins_over_an_index_spec() {
    let env = Env::new();
    let reg = registry(&env);
    env.run(&["index", "add", "main", &reg.server.url("/index.json")]).success();
    // A folder named like a pack ref in the working directory.
    let cwd = env.tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    crate::common::write_pack(&cwd.join("core_utils"), "core_utils", "7.0.0");
    let o = env.cmd().current_dir(&cwd).args(["install", "core_utils"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("installed core_utils 7.0.0") && stdout.contains("source    local"), "{stdout}");
    // It says so, and how to reach the index instead; `@latest` does.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("note: core_utils is a file or folder here"), "{stderr}");
    assert!(stderr.contains("`attune install core_utils@latest`"), "{stderr}");
    let o = env.cmd().current_dir(&cwd).args(["install", "core_utils@latest"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("installed core_utils 1.") && !stdout.contains("source    local"), "{stdout}");
}

#[test]
fn index_list_update_remove() {
    let env = Env::new();
    let reg = registry(&env);
    let path = env.tmp.path().join("local-index.json");
    std::fs::write(&path, attune_index(vec![])).unwrap();
    env.run(&["index", "add", "main", &reg.server.url("/index.json")]).success();
    env.run(&["index", "add", "local", path.to_str().unwrap()]).success();

    let out = env.run(&["index", "add", "main", path.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("index \"main\" is already configured"), "{}", out.stderr);
    let out = env.run(&["index", "add", "Bad/Name", path.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("not a valid index name"), "{}", out.stderr);
    let out = env.run(&["index", "add", "junk", "/nonexistent/index.json"]).failure();
    assert!(out.stderr.contains("/nonexistent/index.json"), "{}", out.stderr);
    let out = env.run(&["index", "add", "cred", "http://user:secret@127.0.0.1:1/index.json"]).failure();
    assert!(out.stderr.contains("may not carry credentials") && !out.stderr.contains("secret"), "{}", out.stderr);

    let list = env.run(&["index", "list", "--json"]).success().json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["main", "local"]);
    assert_eq!(list[1]["location"], std::fs::canonicalize(&path).unwrap().to_str().unwrap());
    assert_eq!(list[1]["cached"], true);
    let table = env.run(&["index", "list"]).success().stdout;
    assert!(table.starts_with("NAME "), "{table}");

    // The local index grows a pack; update sees it.
    let src = env.make_pack("extra", "1.0.0");
    std::fs::write(
        &path,
        attune_index(vec![attune_entry("extra", "1.0.0", json!([{"type": "archive", "url": src.to_str().unwrap()}]))]),
    )
    .unwrap();
    let up = env.run(&["index", "update", "--json"]).success().json();
    assert_eq!(up[0]["name"], "main");
    assert_eq!(up[0]["changed"], false);
    assert_eq!(up[1]["changed"], true);
    assert_eq!(up[1]["index"]["fetched"]["packs"], 1);

    // A failed update keeps the cached copy and exits 1.
    std::fs::write(&path, "not json").unwrap();
    let out = env.run(&["index", "update", "local"]).failure();
    assert!(out.stderr.contains("not a JSON index"), "{}", out.stderr);
    assert_eq!(env.run(&["index", "list", "--json"]).success().json()[1]["fetched"]["packs"], 1);

    let out = env.run(&["index", "update", "nope"]).failure();
    assert!(out.stderr.contains("index \"nope\" is not configured (configured: main, local)"), "{}", out.stderr);

    env.run(&["index", "remove", "local", "--json"]).success();
    let list = env.run(&["index", "list", "--json"]).success().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let out = env.run(&["index", "remove", "local"]).failure();
    assert!(out.stderr.contains("is not configured"), "{}", out.stderr);
}

#[test]
fn index_download_obeys_the_host_allowlist() {
    let env = Env::new();
    let reg = registry(&env);
    // The index redirects to another host: refused unless allowed, as for installs.
    let origin = Server::start("127.0.0.2");
    origin.route("/index.json", Route::Redirect(302, reg.server.url("/index.json")));
    let out = env.run(&["index", "add", "main", &origin.url("/index.json")]).failure();
    assert!(out.stderr.contains("a request to 127.0.0.1 was refused"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host 127.0.0.1"), "{}", out.stderr);
    assert!(
        env.run(&["index", "list", "--json"]).success().json().as_array().unwrap().is_empty(),
        "nothing registered"
    );

    env.run(&["index", "add", "main", "--allow-host", "127.0.0.1", &origin.url("/index.json")]).success();
    // `index update` needs the same permission again (it is not stored).
    env.run(&["index", "update", "main"]).failure();
    env.run(&["index", "update", "main", "--allow-host", "127.0.0.1"]).success();
    env.run(&["install", "core_utils@1.4.2"]).success();
}

/// An index with a diamond (app → left, right → base), a conflict (clash →
/// left ^1 and base ^2) and a set that fails halfway (fragile → base, zbad
/// whose checksum is wrong), every version an archive on one server.
fn deps_registry(env: &Env) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    let mut add = |name: &str, v: &str, attune_deps: serde_json::Value, ranges: serde_json::Value, good: bool| {
        let bytes = tgz(&env.make_pack(name, v));
        let path = format!("/{name}-{v}.tgz");
        let sum = if good { sha256_hex(&bytes) } else { "0".repeat(64) };
        let mut e = attune_entry(
            name,
            v,
            json!([{"type": "archive", "url": server.url(&path), "checksum": format!("sha256:{sum}")}]),
        );
        e["dependencies"] = json!({"packs": attune_deps});
        e["meta"] = json!({"x_attune": {"dependencies": ranges}});
        entries.push(e);
        server.route(&path, Route::File(bytes));
    };
    // Attune's own `ref@version` (exact) and `ref` (any), and attune's ranges.
    add("app", "1.0.0", json!(["left@1.0.0", "right"]), json!({}), true);
    add("left", "1.0.0", json!([]), json!({"base": ">=1.1, <2"}), true);
    add("right", "1.0.0", json!([]), json!({"base": "~1.1"}), true);
    for v in ["1.0.0", "1.1.0", "1.1.5", "1.2.0", "2.0.0"] {
        add("base", v, json!([]), json!({}), true);
    }
    add("clash", "1.0.0", json!([]), json!({"left": "^1", "base": "^2"}), true);
    add("fragile", "1.0.0", json!([]), json!({"base": "~1.1", "zbad": "^1"}), true);
    add("zbad", "1.0.0", json!([]), json!({}), false);
    server.route("/index.json", Route::File(attune_index(entries)));
    server
}

#[test]
fn a_diamond_installs_as_one_set_dependencies_first() {
    let env = Env::new();
    let server = deps_registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "app"]).success();
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(
        lines,
        [
            "installed base 1.1.5 (dependency, from index main)",
            "installed left 1.0.0 (dependency, from index main)",
            "installed right 1.0.0 (dependency, from index main)",
            "installed app 1.0.0"
        ],
        "{}",
        out.stdout
    );
    let all = installed(&env);
    assert_eq!(all.len(), 4, "{all:?}");
    // Installing another pack that needs base reuses the installed one.
    let j = env.run(&["install", "fragile", "--json"]).failure().json();
    let msg = j["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("zbad-1.0.0.tgz: checksum mismatch"), "{msg}");
    assert!(!msg.contains("rolled back"), "base was already there; nothing to roll back: {msg}");
    assert_eq!(installed(&env).len(), 4);
}

#[test]
fn a_set_that_fails_halfway_is_rolled_back() {
    let env = Env::new();
    let server = deps_registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "fragile"]).failure();
    assert!(out.stderr.contains("fragile: installing zbad@1.0.0 failed:"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing of the set stays installed (rolled back: base@1.1.5)"), "{}", out.stderr);
    assert_eq!(count_installed(&env), "0");
    assert!(listing(&env.packs()).iter().all(|p| !p.starts_with("base-") && !p.starts_with("fragile-")));
    // The history says what happened: base was installed, then uninstalled.
    let rows = query(&env, "SELECT pack_ref, action, status FROM installations ORDER BY id");
    assert_eq!(rows, [["base", "install", "removed"], ["base", "uninstall", "removed"]]);
}

#[test]
fn a_conflict_is_explained_and_installs_nothing() {
    let env = Env::new();
    let server = deps_registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "clash"]).failure();
    assert!(out.stderr.contains("clash: the dependencies cannot all be satisfied:"), "{}", out.stderr);
    assert!(out.stderr.contains("left >=1.0.0 depends on base >=1.1.0, <2.0.0"), "{}", out.stderr);
    assert!(out.stderr.contains("clash 1.0.0 depends on base >=2.0.0"), "{}", out.stderr);
    assert!(out.stderr.contains("clash 1.0.0 depends on"), "{}", out.stderr);
    assert!(out.stderr.contains("--skip-deps"), "{}", out.stderr);
    assert_eq!(query(&env, "SELECT count(*) FROM installations")[0][0], "0");
}

#[test]
fn skip_deps_installs_just_the_pack_and_says_what_it_skipped() {
    let env = Env::new();
    let server = deps_registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "--skip-deps", "app"]).success();
    assert!(out.stderr.contains("note: --skip-deps: not installed: left =1.0.0, right *"), "{}", out.stderr);
    assert_eq!(installed(&env), [("app".into(), "1.0.0".into())]);
    let j = env.run(&["install", "--skip-deps", "--force", "app", "--json"]).success().json();
    assert_eq!(j["skipped_dependencies"][0]["ref"], "left");
    assert_eq!(j["skipped_dependencies"][0]["req"], "=1.0.0");
    let out = env.run(&["install", "--skip-deps", env.make_pack("x", "1.0.0").to_str().unwrap()]).failure();
    assert!(out.stderr.contains("--skip-deps applies to a pack installed by name"), "{}", out.stderr);
}

#[test]
fn a_legacy_git_checksum_cannot_cover_a_symlink() {
    let env = Env::new();
    let work = env.tmp.path().join("work");
    let root = env.tmp.path().join("gitroot");
    std::fs::create_dir_all(&root).unwrap();
    crate::common::write_pack(&work, "linked", "1.0.0"); // has actions/alias.sh -> run.sh
    std::fs::remove_dir(work.join("empty")).unwrap();
    git(&work, &["init", "-q", "-b", "main", "."]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1.0.0"]);
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), "linked.git"]);
    let gits = GitServer::start(&root);
    let index = attune_index(vec![attune_entry(
        "linked",
        "1.0.0",
        json!([{"type": "git", "url": gits.url("linked.git"), "ref": "v1.0.0", "checksum": format!("sha256:{}", "a".repeat(64))}]),
    )]);
    let server = Server::start("127.0.0.1");
    server.route("/index.json", Route::File(index));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "linked"]).failure();
    assert!(
        out.stderr.contains("error: actions/alias.sh: is a symlink, and Attune's legacy checksum (attune-pack-file-v1) cannot cover symlinks"),
        "{}",
        out.stderr
    );
    assert_eq!(query(&env, "SELECT count(*) FROM installations")[0][0], "0");
}

#[test]
fn a_failing_source_falls_back_to_the_next_verified_one() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    let bytes = tgz(&env.make_pack("mirrored", "1.0.0"));
    let sum = format!("sha256:{}", sha256_hex(&bytes));
    server.route("/mirror-b.tgz", Route::File(bytes));
    let gone = server.url("/mirror-a.tgz"); // never routed: 404
    let index = attune_index(vec![
        attune_entry(
            "mirrored",
            "1.0.0",
            json!([{"type": "archive", "url": gone, "checksum": sum}, {"type": "archive", "url": server.url("/mirror-b.tgz"), "checksum": sum}]),
        ),
        // Its only verified source fails; the unverified one is never tried.
        attune_entry(
            "nodowngrade",
            "1.0.0",
            json!([{"type": "archive", "url": gone, "checksum": sum}, {"type": "archive", "url": server.url("/mirror-b.tgz")}]),
        ),
        attune_entry(
            "allfail",
            "1.0.0",
            json!([{"type": "archive", "url": gone, "checksum": sum}, {"type": "archive", "url": server.url("/also-gone.tgz"), "checksum": sum}]),
        ),
    ]);
    server.route("/index.json", Route::File(index));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();

    let out = env.run(&["install", "mirrored", "--json"]).success();
    assert_eq!(out.json()["install"]["source"], server.url("/mirror-b.tgz").as_str());
    assert!(
        out.stderr.contains("mirror-a.tgz") && out.stderr.contains("trying the index's next source"),
        "{}",
        out.stderr
    );

    let out = env.run(&["install", "nodowngrade"]).failure();
    assert!(out.stderr.contains("mirror-a.tgz"), "{}", out.stderr);
    assert!(!out.stderr.contains("next source"), "{}", out.stderr);

    let out = env.run(&["install", "allfail"]).failure();
    assert!(out.stderr.contains("allfail@1.0.0: every source the index lists failed"), "{}", out.stderr);
    assert!(out.stderr.contains("mirror-a.tgz") && out.stderr.contains("also-gone.tgz"), "{}", out.stderr);
    assert_eq!(installed(&env), [("mirrored".to_string(), "1.0.0".to_string())]);
}
