//! Finding packs and keeping them current: `search`, `show` and `outdated`
//! against a loopback index with several versions and a pack depending on
//! another, and against the StackStorm Exchange index fixture; `upgrade
//! --all` where one pack's new version fails verification and it alone
//! rolls back. Human output is pinned with insta snapshots.

use std::path::Path;

use crate::common::http_server::{Route, Server};
use crate::common::index::{archive_entry, document};
use crate::common::{Env, repo, tgz};
use serde_json::json;

/// `app` 1.0.0 and 1.1.0 (each needs `base ^1`), `base` 1.0.0, 1.1.0 and
/// 2.0.0, and `tool` 1.0.0 and 2.0.0, whose index checksum is wrong (a
/// tampered download), served on loopback and added as index `main`.
fn index(env: &Env) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    let packs = [
        ("app", "1.0.0", true),
        ("app", "1.1.0", true),
        ("base", "1.0.0", true),
        ("base", "1.1.0", true),
        ("base", "2.0.0", true),
        ("tool", "1.0.0", true),
        ("tool", "2.0.0", false),
    ];
    for (r, v, good) in packs {
        let bytes = tgz(&env.make_pack(r, v));
        let path = format!("/{r}-{v}.tgz");
        let mut e = archive_entry(r, v, &server.url(&path), &bytes, good);
        match r {
            "app" => {
                e["description"] = json!("The application, on top of base");
                e["keywords"] = json!(["application", "demo"]);
                e["dependencies"] = json!({"packs": ["base@^1"], "python_version": ">=3.8"});
            }
            "base" => e["keywords"] = json!(["library", "demo"]),
            _ => e["description"] = json!("A tool for tests (not an application)"),
        }
        entries.push(e);
        server.route(&path, Route::File(bytes));
    }
    server.route("/index.json", Route::File(document(entries)));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    server
}

/// The env's paths, the server's address and digests (archives hold mtimes) made stable.
fn redact(env: &Env, server: &Server, s: &str) -> String {
    let s = env.redact(s).replace(&server.url(""), "http://[SERVER]");
    regex_lite::Regex::new(r"[0-9a-f]{64}").unwrap().replace_all(&s, "[SHA256]").into_owned()
}

fn active(env: &Env) -> Vec<String> {
    let list = env.run(&["list", "--json"]).success().json();
    let mut out: Vec<String> = (list.as_array().unwrap().iter())
        .filter(|r| r["active"] == true)
        .map(|r| format!("{}@{}", r["pack_ref"].as_str().unwrap(), r["version"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn search_ranks_hits_naming_their_index_and_what_is_active() {
    let env = Env::new();
    let server = index(&env);
    env.run(&["install", "base@1.0.0"]).success();

    let out = env.run(&["search", "demo"]).success();
    insta::assert_snapshot!("search", redact(&env, &server, &out.stdout));

    // The ref outranks a mention in another pack's description.
    let hits = env.run(&["--json", "search", "application"]).success().json();
    let refs: Vec<&str> = hits.as_array().unwrap().iter().map(|h| h["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["app", "tool"], "{hits}");
    assert_eq!((hits[0]["index"].as_str(), hits[0]["version"].as_str()), (Some("main"), Some("1.1.0")));
    let hits = env.run(&["--json", "search", "base"]).success().json();
    assert_eq!(hits[0]["ref"], "base");
    assert_eq!(hits[0]["active"], "1.0.0");
    assert_eq!(env.run(&["search", "nothing-like-it"]).success().stdout.lines().count(), 1);
}

#[test]
fn show_lists_each_version_with_sources_checksums_dependencies_and_what_is_installed() {
    let env = Env::new();
    let server = index(&env);
    env.run(&["install", "app@1.0.0"]).success();
    assert_eq!(active(&env), ["app@1.0.0", "base@1.1.0"]);

    let out = env.run(&["show", "app"]).success();
    insta::assert_snapshot!("show", redact(&env, &server, &out.stdout));

    let v = env.run(&["--json", "show", "base@^1"]).success().json();
    let versions: Vec<&str> = v["offers"].as_array().unwrap().iter().map(|o| o["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"], "only the range asked for");
    assert_eq!((v["installed"].clone(), v["active"].clone()), (json!(["1.1.0"]), json!("1.1.0")));
    let source = &v["offers"][0]["sources"][0];
    assert_eq!(source["type"], "archive");
    assert!(source["checksum"].as_str().unwrap().starts_with("sha256:"), "{v}");

    // st2's `ref=version` names one version.
    let v = env.run(&["--json", "show", "base=2.0.0"]).success().json();
    assert_eq!(v["offers"].as_array().unwrap().len(), 1);
    let out = env.run(&["show", "ghost"]).failure();
    assert!(out.stderr.contains("ghost: no matching version in index main"), "{}", out.stderr);
}

#[test]
fn outdated_tells_current_compatible_and_newest_and_exits_1() {
    let env = Env::new();
    for args in [&["outdated"][..], &["search", "x"], &["upgrade", "--all"]] {
        let out = env.run(args).failure();
        assert!(out.stderr.starts_with("error: no index is configured to look packs up in"), "{}", out.stderr);
    }
    let server = index(&env);
    let out = env.run(&["outdated"]).success();
    assert!(out.stdout.starts_with("every installed pack is at the newest"), "{}", out.stdout);

    env.run(&["install", "app@1.0.0", "tool@1.0.0"]).success();
    let out = env.run(&["outdated"]).failure();
    insta::assert_snapshot!("outdated", redact(&env, &server, &out.stdout));

    let v = env.run(&["--json", "outdated"]).failure().json();
    let rows: Vec<(String, String, Option<String>, String)> = (v["outdated"].as_array().unwrap().iter())
        .map(|o| {
            let s = |k: &str| o[k].as_str().map(str::to_owned);
            (s("ref").unwrap(), s("current").unwrap(), s("compatible"), s("newest").unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("app".into(), "1.0.0".into(), Some("1.1.0".into()), "1.1.0".into()),
            // app needs base ^1: 2.0.0 is newer, none newer is compatible.
            ("base".into(), "1.1.0".into(), None, "2.0.0".into()),
            ("tool".into(), "1.0.0".into(), Some("2.0.0".into()), "2.0.0".into()),
        ]
    );
    assert_eq!(v["outdated"][1]["required_by"], json!([{"by": "app@1.0.0", "range": "^1"}]));
}

#[test]
fn upgrade_all_rolls_back_only_the_pack_whose_new_version_fails_verification() {
    let env = Env::new();
    let server = index(&env);
    env.run(&["install", "app@1.0.0", "tool@1.0.0"]).success();

    let out = env.run(&["upgrade", "--all"]).failure();
    insta::assert_snapshot!("upgrade_all", redact(&env, &server, &out.stdout));
    assert_eq!(active(&env), ["app@1.1.0", "base@1.1.0", "tool@1.0.0"]);
    let tool = env.run(&["info", "tool", "--json"]).success().json();
    let installed: Vec<&str> =
        tool["installed"].as_array().unwrap().iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(installed, ["1.0.0"], "the failed version was not left installed");
    env.run(&["verify"]).success();

    // Named refs: the same, one JSON outcome each.
    let v = env.run(&["--json", "upgrade", "tool", "app"]).failure().json();
    assert_eq!(v["failed"], json!(["tool"]));
    assert!(v["packs"][0]["error"].as_str().unwrap().contains("checksum mismatch"), "{v}");
    assert_eq!(v["packs"][1]["report"]["upgraded"], false, "app is current now");
    let out = env.run(&["upgrade", "app", "tool", "--to", "2.0.0"]).failure();
    assert!(out.stderr.contains("--to and --from apply to one pack"), "{}", out.stderr);
}

/// Past the download: app's new version is switched to and then fails its
/// check; it alone goes back, tool (2.0.0 refused) stays, base is current.
#[test]
fn upgrade_all_rolls_back_a_pack_that_fails_after_its_switch_and_only_it() {
    let env = Env::new();
    let _server = index(&env);
    env.run(&["install", "app@1.0.0", "tool@1.0.0"]).success();
    let o =
        env.cmd().env("ATTUNE_TEST_UPGRADE_FAIL", "verify:app").args(["--json", "upgrade", "--all"]).output().unwrap();
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed: Vec<&str> = v["failed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(failed, ["app", "tool"], "{v}");
    let app = v["packs"].as_array().unwrap().iter().find(|p| p["ref"] == "app").unwrap();
    assert!(app["error"].as_str().unwrap().contains("injected failure at verify"), "{v}");
    assert_eq!(active(&env), ["app@1.0.0", "base@1.1.0", "tool@1.0.0"]);
    let app = env.run(&["info", "app", "--json"]).success().json();
    let installed: Vec<&str> =
        app["installed"].as_array().unwrap().iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(installed, ["1.0.0"], "the rolled-back version was not left installed");
    env.run(&["verify"]).success();
    env.run(&["doctor"]).success();
}

#[test]
fn search_and_show_read_the_stackstorm_exchange_index() {
    let env = Env::new();
    let fixture: &Path = &repo().join("host/tests/fixtures/registry/exchange-index.json");
    env.run(&["index", "add", "exchange", fixture.to_str().unwrap()]).success();

    let hits = env.run(&["--json", "search", "amazon"]).success().json();
    assert_eq!(hits[0]["ref"], "aws");
    assert_eq!((hits[0]["index"].as_str(), hits[0]["version"].as_str()), (Some("exchange"), Some("1.2.1")));
    let out = env.run(&["search", "cloud"]).success();
    insta::assert_snapshot!("search_exchange", env.redact(&out.stdout));

    env.run(&["outdated"]).success();
    // An older aws installed here (from a folder): the Exchange has newer ones.
    env.run(&["install", env.make_pack("aws", "1.0.0").to_str().unwrap()]).success();
    let out = env.run(&["show", "aws@^1"]).success();
    insta::assert_snapshot!("show_exchange", env.redact(&out.stdout));
    let v = env.run(&["--json", "outdated"]).failure().json();
    assert_eq!(
        v["outdated"],
        json!([{"ref": "aws", "current": "1.0.0", "compatible": "1.2.1", "newest": "1.2.1", "index": "exchange"}])
    );
}
