//! Publishing from CI: `attune pack index-entry` and `attune pack
//! index-update` build an Attune index that attune then installs from, over
//! loopback only (a git smart-HTTP server and a plain HTTP server).

use crate::common::git_server;
use crate::common::http_server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::{Env, listing, tgz};
use git_server::{GitServer, git};
use http_server::{Route, Server};
use serde_json::json;

/// A pack folder without symlinks (Attune's checksum refuses them), with an
/// executable script, actions defined in files and a workflow action.
fn pack(dir: &Path, name: &str, version: &str) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("pack.yaml"),
        format!("---\nname: {name}\nversion: {version}\ndescription: Published from CI\nauthor: Tests\n"),
    )
    .unwrap();
    std::fs::write(dir.join("actions/run.sh"), format!("#!/bin/sh\necho {name} {version}\n")).unwrap();
    std::fs::set_permissions(dir.join("actions/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("actions/run.yaml"),
        "name: run\ndescription: Runs it\nentry_point: run.sh\nrunner_type: local-shell-script\n",
    )
    .unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The pack's git checkout (with its `.git`, as in CI) tagged `v1.0.0`, and
/// the bare clone the server serves.
fn git_checkout(env: &Env, name: &str) -> (PathBuf, GitServer) {
    let work = env.tmp.path().join(format!("checkout-{name}"));
    pack(&work, name, "1.0.0");
    git(&work, &["init", "-q", "-b", "main", "."]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "1.0.0"]);
    git(&work, &["tag", "v1.0.0"]);
    let root = env.tmp.path().join("gitroot");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["clone", "-q", "--bare", s(&work), &format!("{name}.git")]);
    (work, GitServer::start(&root))
}

#[test]
fn published_git_and_archive_versions_install_by_range_and_verify() {
    let env = Env::new();
    let (checkout, gits) = git_checkout(&env, "pubpack");
    let http = Server::start("127.0.0.1");
    let index = env.tmp.path().join("registry/index.json");
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();

    // 1.0.0 from git: the checkout CI has (its .git is not part of the pack).
    let git_url = gits.url("pubpack.git");
    let a = env
        .run(&[
            "pack",
            "index-update",
            "--index",
            s(&index),
            s(&checkout),
            "--git-url",
            &git_url,
            "--git-ref",
            "v1.0.0",
            "--json",
        ])
        .success()
        .json();
    assert_eq!(a["created"], true);
    assert_eq!(a["action"], "added");
    let tree = a["tree_checksum"].as_str().unwrap().to_string();
    assert!(tree.starts_with("sha256-tree-v1:"), "{a}");
    assert!(a["checksum"].as_str().unwrap().starts_with("attune-pack-file-v1:"), "{a}");

    // 1.1.0 as an archive: its SHA-256 computed from the file CI uploads.
    let src = env.tmp.path().join("build/pubpack-1.1.0");
    pack(&src, "pubpack", "1.1.0");
    let bytes = tgz(&src);
    let archive = src.with_extension("tgz");
    http.route("/pubpack-1.1.0.tgz", Route::File(bytes));
    let b = env
        .run(&[
            "pack",
            "index-update",
            "--index",
            s(&index),
            s(&src),
            "--archive-url",
            &http.url("/pubpack-1.1.0.tgz"),
            "--archive",
            s(&archive),
            "--json",
        ])
        .success()
        .json();
    assert_eq!(
        (b["created"].as_bool(), b["action"].as_str(), b["entries"].as_u64()),
        (Some(false), Some("added"), Some(2))
    );
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    // Highest version first, so Attune (which reads a ref's first entry) sees the newest.
    assert_eq!(written["packs"][0]["version"], "1.1.0");
    assert_eq!(written["packs"][1]["version"], "1.0.0");
    assert_eq!(
        written["packs"][1]["install_sources"][0]["checksum"],
        format!("sha256:{}", a["checksum"].as_str().unwrap().rsplit(':').next().unwrap())
    );
    assert_eq!(written["packs"][1]["meta"]["x_attune"]["tree_checksum"], tree.as_str());

    http.route("/index.json", Route::File(std::fs::read(&index).unwrap()));
    env.run(&["index", "add", "main", &http.url("/index.json")]).success();

    let j = env.run(&["install", "pubpack@~1.0.0", "--json"]).success().json();
    assert_eq!(j["install"]["version"], "1.0.0");
    assert_eq!(j["install"]["source_type"], "git");
    assert_eq!(j["expected_checksum"], tree.as_str(), "git entries are held to attune's tree checksum");
    assert_eq!(j["install"]["checksum"], tree.as_str());

    let j = env.run(&["install", "pubpack@^1", "--json"]).success().json();
    assert_eq!(j["install"]["version"], "1.1.0");
    assert_eq!(j["expected_checksum"], b["checksum"]);
    assert!(j["expected_checksum"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn index_entry_matches_attunes_layout() {
    let env = Env::new();
    let dir = env.tmp.path().join("snap");
    pack(&dir, "snap_pack", "2.1.0");
    std::fs::write(
        dir.join("pack.yaml"),
        "---\nref: snap_pack\nname: Snapshot pack\nlabel: Snapshot Pack\nversion: 2.1.0\n\
         description: Every field index-entry reads\nauthor: Tests\nemail: t@example.com\n\
         license: Apache-2.0\ntags: [ci, publish, ci]\nruntime_deps: [shell, python3]\n\
         homepage: https://example.com/snap\n\
         dependencies:\n  - core\n  - http_tools=1.2.0\n  - https://github.com/org/stackstorm-extra.git=v0.3.0\n\
         meta:\n  category: testing\n  stars: 5\n\
         sensors:\n  watcher:\n    description: Watches\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/on_push.yaml"), "ref: snap_pack.on_push\ndescription: On push\n").unwrap();
    std::fs::write(dir.join("actions/flow.yaml"), "name: flow\nlabel: A flow\nworkflow_file: workflows/flow.yaml\n")
        .unwrap();

    let out = env
        .run(&[
            "pack",
            "index-entry",
            s(&dir),
            "--git-url",
            "https://git.example/org/snap_pack.git",
            "--git-ref",
            "v2.1.0",
        ])
        .success();
    insta::assert_snapshot!("index_entry_git", env.redact(&out.stdout));
    insta::assert_snapshot!("index_entry_git_warnings", env.redact(&out.stderr));

    let sum = format!("sha256:{}", "ab".repeat(32));
    let out = env
        .run(&[
            "pack",
            "index-entry",
            s(&dir),
            "--archive-url",
            "https://dl.example/snap_pack-2.1.0.tgz",
            "--archive-checksum",
            &sum,
        ])
        .success();
    let e: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        e["install_sources"],
        json!([{"type": "archive", "url": "https://dl.example/snap_pack-2.1.0.tgz", "checksum": sum}])
    );
    assert!(e["meta"]["x_attune"].get("tree_checksum").is_none(), "an archive's bytes already pin everything: {e}");
    assert_eq!(e["meta"]["x_attune"]["dependencies"], json!({"core": "*", "http_tools": "=1.2.0"}));
}

fn entry(r: &str, v: &str) -> serde_json::Value {
    json!({
        "ref": r, "label": r, "description": "", "version": v, "author": "Other", "license": "MIT",
        "keywords": [], "runtime_deps": [],
        "install_sources": [{"type": "archive", "url": format!("https://dl.example/{r}-{v}.tgz"), "checksum": format!("sha256:{}", "0".repeat(64))}],
        "contents": {"actions": [], "sensors": [], "triggers": [], "rules": [], "workflows": []},
        "meta": {"zeta": 1, "alpha": {"y": 2, "b": 3}}
    })
}

#[test]
fn merging_keeps_other_entries_and_unknown_keys_and_replaces_the_same_version() {
    let env = Env::new();
    let index = env.tmp.path().join("index.json");
    // Hand-written, keys in no particular order, with keys attune does not know.
    let original = r#"{
    "version": "1.0",
    "registry_name": "Hand made",
    "x_mirror": {"z": true, "a": [1, 2.5]},
    "registry_url": "https://packs.example",
    "last_updated": "2026-01-01T00:00:00Z",
    "packs": [ENTRIES]
}"#
    .replace(
        "ENTRIES",
        &[entry("alpha", "1.0.0"), entry("zulu", "3.0.0")].iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
    )
    // serde_json wrote the keys sorted: put them out of order, as a person might.
    .replace(r#""meta":{"alpha":{"b":3,"y":2},"zeta":1}"#, r#""meta":{"zeta":1,"alpha":{"y":2,"b":3}}"#);
    assert!(original.contains(r#"{"zeta":1,"#));
    std::fs::write(&index, &original).unwrap();
    let dir = env.tmp.path().join("mid");
    pack(&dir, "mid", "1.0.0");

    let run = |dir: &Path, extra: &[&str]| {
        let mut args =
            vec!["pack", "index-update", "--index", s(&index), s(dir), "--archive-url", "https://dl.example/mid.tgz"];
        args.extend_from_slice(extra);
        args.push("--json");
        env.run(&args).success().json()
    };
    let sum_a = format!("sha256:{}", "1".repeat(64));
    let u = run(&dir, &["--archive-checksum", &sum_a]);
    assert_eq!((u["action"].as_str(), u["entries"].as_u64()), (Some("added"), Some(3)));
    let text = std::fs::read_to_string(&index).unwrap();
    let after: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The new ref sits between the others (the list was sorted by ref).
    let refs: Vec<&str> = after["packs"].as_array().unwrap().iter().map(|p| p["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["alpha", "mid", "zulu"]);
    assert_eq!(after["packs"][0], entry("alpha", "1.0.0"));
    assert_eq!(after["packs"][2], entry("zulu", "3.0.0"));
    assert_eq!(after["x_mirror"], json!({"z": true, "a": [1, 2.5]}));
    assert_ne!(after["last_updated"], "2026-01-01T00:00:00Z");
    // Key order is kept, at the top and inside entries.
    let pos = |k: &str| text.find(k).unwrap_or_else(|| panic!("{k} missing"));
    assert!(pos("\"version\"") < pos("\"registry_name\"") && pos("\"x_mirror\"") < pos("\"registry_url\""));
    assert!(pos("\"z\": true") < pos("\"a\": ["));
    assert!(pos("\"zeta\"") < pos("\"alpha\": {") && pos("\"y\": 2") < pos("\"b\": 3"));

    // The same build again: nothing changes, not even last_updated.
    let u = run(&dir, &["--archive-checksum", &sum_a]);
    assert_eq!(u["action"], "unchanged");
    assert_eq!(std::fs::read_to_string(&index).unwrap(), text);

    // The same version rebuilt: replaced where it stands.
    let sum_b = format!("sha256:{}", "2".repeat(64));
    let u = run(&dir, &["--archive-checksum", &sum_b]);
    assert_eq!((u["action"].as_str(), u["entries"].as_u64()), (Some("replaced"), Some(3)));
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(after["packs"][1]["ref"], "mid");
    assert_eq!(after["packs"][1]["install_sources"][0]["checksum"], sum_b.as_str());

    // Another version of the same ref goes beside it, highest first.
    let dir2 = env.tmp.path().join("mid2");
    pack(&dir2, "mid", "1.2.0");
    let u = run(&dir2, &["--archive-checksum", &sum_a]);
    assert_eq!(u["action"], "added");
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let order: Vec<String> = after["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}@{}", p["ref"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    assert_eq!(order, ["alpha@1.0.0", "mid@1.2.0", "mid@1.0.0", "zulu@3.0.0"]);
    assert_eq!(listing(env.tmp.path()).iter().filter(|f| f.ends_with(".tmp")).count(), 0, "no temporary file left");
}

#[test]
fn errors_leave_the_index_byte_identical() {
    let env = Env::new();
    let index = env.tmp.path().join("index.json");
    let original = "{\"registry_name\": \"R\", \"version\": \"1.0\", \"packs\": []}\n";
    std::fs::write(&index, original).unwrap();
    let good = env.tmp.path().join("good");
    pack(&good, "good", "1.0.0");
    let empty = env.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let sum = format!("sha256:{}", "0".repeat(64));
    let git = ["--git-url", "https://git.example/r.git", "--git-ref", "v1"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![s(&empty), git[0], git[1], git[2], git[3]], "pack.yaml not found"),
        (vec![s(&good)], "none was given"),
        (
            vec![
                s(&good),
                git[0],
                git[1],
                git[2],
                git[3],
                "--archive-url",
                "https://dl.example/x.tgz",
                "--archive-checksum",
                &sum,
            ],
            "both a git and an archive source",
        ),
        (vec![s(&good), "--git-url", "https://git.example/r.git"], "--git-url needs --git-ref"),
        (vec![s(&good), "--archive-url", "https://dl.example/x.tgz"], "needs --archive-checksum or --archive"),
        (
            vec![s(&good), "--archive-url", "https://dl.example/x.tgz", "--archive-checksum", "sha256:xyz"],
            "--archive-checksum \"sha256:xyz\"",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["pack", "index-update", "--index", s(&index)];
        all.extend(args);
        let out = env.run(&all).failure();
        assert!(out.stderr.contains(message), "{all:?}: {}", out.stderr);
        assert_eq!(std::fs::read_to_string(&index).unwrap(), original);
    }
    // index-entry says the same about the pack folder and the sources.
    let out = env.run(&["pack", "index-entry", s(&empty), git[0], git[1], git[2], git[3]]).failure();
    assert!(out.stderr.contains("pack.yaml not found"), "{}", out.stderr);

    // Malformed indexes are not touched, whatever is wrong with them.
    for (bad, message) in [
        ("{\"packs\": [", "not JSON"),
        ("[]", "the top level is not an object"),
        ("{\"packs\": {\"aws\": {}}}", "StackStorm Exchange index"),
        ("{\"version\": \"2.0\", \"packs\": []}", "is not 1.x"),
        ("{\"packs\": [1]}", "packs[0] is not an object"),
    ] {
        std::fs::write(&index, bad).unwrap();
        let out = env
            .run(&["pack", "index-update", "--index", s(&index), s(&good), git[0], git[1], git[2], git[3]])
            .failure();
        assert!(
            out.stderr.contains("not an Attune registry index") && out.stderr.contains(message),
            "{bad}: {}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(&index).unwrap(), bad);
        let j = env
            .run(&["pack", "index-update", "--index", s(&index), s(&good), git[0], git[1], git[2], git[3], "--json"])
            .failure()
            .json();
        assert!(j["error"]["message"].as_str().unwrap().contains(message), "{j}");
    }
    assert_eq!(listing(env.tmp.path()).iter().filter(|f| f.ends_with(".tmp")).count(), 0);
}

#[test]
fn a_new_index_gets_the_registry_fields_and_source_date_epoch() {
    let env = Env::new();
    let index = env.tmp.path().join("new/index.json");
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();
    let dir = env.tmp.path().join("p");
    pack(&dir, "p", "0.1.0");
    let o = env
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args(["pack", "index-update", "--index", s(&index), s(&dir), "--registry-name", "Team packs"])
        .args([
            "--registry-url",
            "https://packs.example",
            "--git-url",
            "https://git.example/p.git",
            "--git-ref",
            "v0.1.0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("created "), "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(
        (&v["registry_name"], &v["registry_url"], &v["version"], &v["last_updated"]),
        (&json!("Team packs"), &json!("https://packs.example"), &json!("1.0"), &json!("2026-01-01T00:00:00Z"))
    );
    let text = std::fs::read_to_string(&index).unwrap();
    let keys: Vec<usize> = ["registry_name", "registry_url", "version", "last_updated", "packs"]
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "Attune's key order: {text}");
    assert_eq!(std::fs::metadata(&index).unwrap().permissions().mode() & 0o777, 0o644);
}
