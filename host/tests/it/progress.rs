//! Multi-pack progress of installs by name: with `--json`, JSON event lines
//! on stderr while stdout keeps the one result document; without a terminal,
//! nothing animated. A loopback index with a diamond (app → left, right →
//! base), a set that fails halfway (fragile → base, zbad with a wrong
//! checksum) and a pack needing an installed one (user → base); and
//! `sync --locked` of the diamond's lockfile, which reports the same way.

use crate::common::http_server;

use std::collections::BTreeSet;

use crate::common::{Env, Out, index, tgz};
use http_server::{Route, Server};
use serde_json::{Value, json};

fn registry(env: &Env) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    let mut add = |name: &str, v: &str, ranges: Value, good: bool| {
        let bytes = tgz(&env.make_pack(name, v));
        let path = format!("/{name}-{v}.tgz");
        let mut e = index::archive_entry(name, v, &server.url(&path), &bytes, good);
        e["meta"] = json!({"x_attune": {"dependencies": ranges}});
        entries.push(e);
        server.route(&path, Route::File(bytes));
    };
    add("app", "1.0.0", json!({"left": "^1", "right": "^1"}), true);
    add("left", "1.0.0", json!({"base": ">=1.1, <2"}), true);
    add("right", "1.0.0", json!({"base": "~1.1"}), true);
    add("base", "1.1.5", json!({}), true);
    add("base", "1.2.0", json!({}), true);
    add("fragile", "1.0.0", json!({"base": "~1.1", "zbad": "^1"}), true);
    add("zbad", "1.0.0", json!({}), false);
    add("user", "1.0.0", json!({"base": "^1"}), true);
    server.route("/index.json", Route::File(index::document(entries)));
    server
}

/// Every stderr line, each of which must be one JSON object with an `event`.
fn events(out: &Out) -> Vec<Value> {
    out.stderr
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{}", out.stderr));
            assert!(v["event"].is_string(), "no event key: {l}");
            v
        })
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn refs(events: &[&Value]) -> BTreeSet<String> {
    events.iter().map(|e| format!("{}@{}", e["ref"].as_str().unwrap(), e["version"].as_str().unwrap_or("-"))).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_diamond_install_streams_json_events_beside_the_result() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "app", "--json"]).success();
    // stdout is still exactly the one result document.
    let result = out.json();
    assert_eq!(result["install"]["ref"], "app");
    assert_eq!(result["dependencies"].as_array().unwrap().len(), 3);

    let ev = events(&out);
    assert_eq!(ev.first().unwrap()["event"], "plan", "{}", out.stderr);
    assert_eq!(ev.last().unwrap(), &json!({"event": "finished", "success": true}));
    let plan = &ev[0];
    assert_eq!(plan["spec"], "app");
    assert_eq!(plan["total"], 4);
    let planned: BTreeSet<String> = plan["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["action"], "install");
            assert_eq!(p["index"], "main");
            format!("{}@{}", p["ref"].as_str().unwrap(), p["version"].as_str().unwrap())
        })
        .collect();
    let all = set(&["app@1.0.0", "base@1.1.5", "left@1.0.0", "right@1.0.0"]);
    assert_eq!(planned, all);
    // The plan lists dependencies first, the requested pack last.
    assert_eq!(plan["packs"][3]["ref"], "app");

    // Every pack went through every phase, once each, and finished.
    for phase in ["fetching", "checking", "committing"] {
        let these: Vec<&Value> = of(&ev, "phase").into_iter().filter(|e| e["phase"] == phase).collect();
        assert_eq!(these.len(), 4, "{phase}: {}", out.stderr);
        assert_eq!(refs(&these), all, "{phase}");
    }
    let done = of(&ev, "done");
    assert_eq!(refs(&done), all);
    assert_eq!(done.len(), 4);
    for d in &done {
        assert!(d["checksum"].as_str().unwrap().starts_with("sha256-tree-v1:"), "{d}");
        let path = d["path"].as_str().unwrap();
        assert!(path.ends_with(&format!("{}-{}", d["ref"].as_str().unwrap(), d["version"].as_str().unwrap())), "{d}");
        assert!(std::path::Path::new(path).is_dir(), "{d}");
    }
    // Each pack's done comes after its own phases; staged lines carry numbers.
    for d in &done {
        let at = ev.iter().position(|e| e == *d).unwrap();
        let last_phase = ev
            .iter()
            .rposition(|e| e["event"] == "phase" && e["ref"] == d["ref"] && e["phase"] == "committing")
            .unwrap();
        assert!(last_phase < at, "{}", out.stderr);
    }
    for s in of(&ev, "staged") {
        assert!(s["bytes"].is_u64() && s["entries"].is_u64(), "{s}");
    }
    assert!(of(&ev, "failed").is_empty() && of(&ev, "rolled-back").is_empty() && of(&ev, "skipped").is_empty());

    // A pack needing base again: base is kept, and says so.
    let out = env.run(&["install", "user", "--json"]).success();
    let ev = events(&out);
    assert_eq!(ev[0]["packs"][0], json!({"ref": "base", "version": "1.1.5", "index": "main", "action": "keep"}));
    assert_eq!(ev[0]["total"], 1);
    assert_eq!(
        of(&ev, "skipped"),
        [&json!({"event": "skipped", "ref": "base", "version": "1.1.5", "reason": "already-installed"})]
    );
    assert_eq!(refs(&of(&ev, "done")), set(&["user@1.0.0"]));

    // --skip-deps: the dependencies it leaves out, with their ranges.
    let out = env.run(&["install", "--skip-deps", "--force", "app", "--json"]).success();
    let ev = events(&out);
    let skipped: BTreeSet<String> = of(&ev, "skipped")
        .iter()
        .map(|e| {
            assert_eq!(e["reason"], "skip-deps");
            format!("{} {}", e["ref"].as_str().unwrap(), e["req"].as_str().unwrap())
        })
        .collect();
    assert_eq!(skipped, set(&["left ^1", "right ^1"]));
}

#[test]
fn a_failed_set_reports_the_failure_and_the_rollback() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "fragile", "--json"]).failure();
    // stdout: the error document; stderr: the events.
    let doc = out.json();
    assert!(doc["error"]["message"].as_str().unwrap().contains("rolled back: base@1.1.5"), "{doc}");
    let ev = events(&out);
    assert_eq!(ev[0]["event"], "plan");
    assert_eq!(ev.last().unwrap(), &json!({"event": "finished", "success": false}));
    assert_eq!(refs(&of(&ev, "done")), set(&["base@1.1.5"]));
    let failed = of(&ev, "failed");
    assert_eq!(refs(&failed), set(&["zbad@1.0.0"]));
    assert!(failed[0]["error"].as_str().unwrap().contains("checksum mismatch"), "{}", failed[0]);
    assert_eq!(
        of(&ev, "rolled-back"),
        [&json!({"event": "rolled-back", "ref": "base", "version": "1.1.5", "removed": true})]
    );
    // fragile itself was never started.
    assert!(!ev.iter().any(|e| e["ref"] == "fragile" && e["event"] != "plan"), "{}", out.stderr);
}

#[test]
fn without_a_terminal_the_text_output_is_unchanged_and_nothing_is_animated() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let out = env.run(&["install", "app"]).success();
    assert_eq!(out.stderr, "", "no progress without a terminal");
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(
        lines,
        [
            "installed base 1.1.5 (dependency, from index main)",
            "installed left 1.0.0 (dependency, from index main)",
            "installed right 1.0.0 (dependency, from index main)",
            "installed app 1.0.0"
        ]
    );
    assert!(!out.stdout.contains('\u{1b}'), "no escape codes: {:?}", out.stdout);
}

#[test]
fn sync_locked_streams_the_same_events() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    env.run(&["install", "app"]).success();
    let lockfile = env.tmp.path().join("attune.lock");
    env.run(&["lock", "--output", lockfile.to_str().unwrap()]).success();

    // A wiped host with one pack the lockfile does not list.
    let fresh = Env::new();
    fresh.run(&["install", fresh.make_pack("stray", "1.0.0").to_str().unwrap()]).success();
    let out = fresh.run(&["sync", "--locked", "--file", lockfile.to_str().unwrap(), "--json"]).success();
    assert_eq!(out.json()["installed"].as_array().unwrap().len(), 4);
    let ev = events(&out);
    let plan = &ev[0];
    assert_eq!(plan["event"], "plan");
    assert_eq!(plan["spec"], "the lockfile");
    assert_eq!(plan["total"], 4);
    let stray = plan["packs"].as_array().unwrap().iter().find(|p| p["ref"] == "stray").unwrap();
    assert_eq!(stray, &json!({"ref": "stray", "version": "1.0.0", "action": "remove"}));
    let all = set(&["app@1.0.0", "base@1.1.5", "left@1.0.0", "right@1.0.0"]);
    assert_eq!(refs(&of(&ev, "done")), all);
    assert_eq!(refs(&of(&ev, "phase").into_iter().filter(|e| e["phase"] == "fetching").collect::<Vec<_>>()), all);
    assert_eq!(of(&ev, "removed"), [&json!({"event": "removed", "ref": "stray", "version": "1.0.0"})]);
    assert_eq!(ev.last().unwrap(), &json!({"event": "finished", "success": true}));

    // In sync already: every pack kept, nothing installed.
    let out = fresh.run(&["sync", "--locked", "--file", lockfile.to_str().unwrap(), "--json"]).success();
    let ev = events(&out);
    assert_eq!(ev[0]["total"], 0);
    assert_eq!(refs(&of(&ev, "skipped")), all);
    assert!(of(&ev, "done").is_empty());
}
