//! StackStorm Exchange `dependencies` over loopback: an Exchange index whose
//! pack depends on another by ref (`ref=version`), on a third by repository
//! URL, on a repository no index lists, and on StackStorm's own `core`.
//! `attune install` pulls what the indexes can resolve, in order, and warns
//! about the rest.

use crate::common::git_server;

use std::path::Path;

use crate::common::Env;
use git_server::{GitServer, git};
use serde_json::json;

/// A bare repository `root/<name>.git` with one tag `v<version>` per version.
fn tagged(env: &Env, root: &Path, name: &str, versions: &[&str]) {
    let work = env.tmp.path().join(format!("work-{name}"));
    std::fs::create_dir_all(work.join("actions")).unwrap();
    git(&work, &["init", "-q", "-b", "main", "."]);
    for v in versions {
        std::fs::write(work.join("pack.yaml"), format!("---\nname: {name}\nversion: {v}\n")).unwrap();
        std::fs::write(work.join("actions/run.sh"), format!("#!/bin/sh\necho {name} {v}\n")).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", v]);
        git(&work, &["tag", &format!("v{v}")]);
    }
    git(root, &["clone", "-q", "--bare", work.to_str().unwrap(), &format!("{name}.git")]);
}

fn exchange_pack(name: &str, versions: &[&str], repo_url: &str, dependencies: serde_json::Value) -> serde_json::Value {
    json!({
        "name": name, "description": format!("{name} for tests"), "author": "Tests", "email": "t@example.com",
        "keywords": [], "python_versions": ["3"], "version": versions.last().unwrap(), "versions": versions,
        "repo_url": repo_url, "content": {}, "dependencies": dependencies
    })
}

#[test]
fn an_exchange_pack_pulls_its_dependencies_and_warns_about_the_rest() {
    let env = Env::new();
    let root = env.tmp.path().join("gitroot");
    std::fs::create_dir_all(&root).unwrap();
    tagged(&env, &root, "base_pack", &["1.0.0", "1.1.0"]);
    tagged(&env, &root, "by_url", &["2.0.0"]);
    tagged(&env, &root, "app_pack", &["1.0.0"]);
    let server = GitServer::start(&root);
    let url = |n: &str| server.url(&format!("{n}.git"));
    // Nothing listens there: a dependency on it must not be fetched.
    let nowhere = "http://127.0.0.1:9/private/stackstorm-nowhere.git";
    let index = json!({
        "packs": {
            "base_pack": exchange_pack("base_pack", &["1.0.0", "1.1.0"], &url("base_pack"), json!([])),
            "by_url": exchange_pack("by_url", &["2.0.0"], &url("by_url"), json!(null)),
            "app_pack": exchange_pack("app_pack", &["1.0.0"], &url("app_pack"), json!([
                "core", "base_pack=1.0.0", format!("{}=v2.0.0", url("by_url")), nowhere
            ])),
        },
        "metadata": {"generated_ts": 1767225600, "hash": "0"}
    });
    let path = env.tmp.path().join("exchange.json");
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let add = env.run(&["index", "add", "exchange", path.to_str().unwrap()]).success();
    assert!(add.stderr.contains("app_pack's dependency \"core\": core ships with StackStorm"), "{}", add.stderr);

    let out = env.run(&["install", "app_pack"]).success();
    assert!(out.stdout.contains("installed base_pack 1.0.0 (dependency, from index exchange)"), "{}", out.stdout);
    assert!(out.stdout.contains("installed by_url 2.0.0 (dependency, from index exchange)"), "{}", out.stdout);
    assert!(out.stdout.contains("installed app_pack 1.0.0"), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "warning: app_pack@1.0.0: dependency {nowhere} is a repository no registered index lists; it was not installed"
        )),
        "{}",
        out.stderr
    );
    let list = env.run(&["list", "--json"]).success().json();
    let mut got: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}@{}", r["pack_ref"].as_str().unwrap(), r["version"].as_str().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, ["app_pack@1.0.0", "base_pack@1.0.0", "by_url@2.0.0"]);

    // --json carries the same: the dependencies in order, and the warning.
    let j = env.run(&["install", "app_pack", "--force", "--json"]).success().json();
    let deps: Vec<(&str, &str)> = j["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["ref"].as_str().unwrap(), d["action"].as_str().unwrap()))
        .collect();
    assert_eq!(deps, [("base_pack", "already-installed"), ("by_url", "already-installed")]);
    assert_eq!(j["warnings"].as_array().unwrap().len(), 1, "{j}");

    // --skip-deps names what it skipped, URL dependencies included.
    let out = env.run(&["install", "app_pack", "--force", "--skip-deps"]).success();
    assert!(out.stderr.contains("note: --skip-deps: not installed: base_pack =1.0.0"), "{}", out.stderr);
    for u in [format!("{}.git", url("by_url").trim_end_matches(".git")), nowhere.to_string()] {
        assert!(
            out.stderr.contains(&format!("warning: --skip-deps: not installed either: dependency {u}\n")),
            "{}",
            out.stderr
        );
    }
}
