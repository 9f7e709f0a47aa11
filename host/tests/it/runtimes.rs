//! Runtime requirements (python / node versions) checked against this host's
//! interpreters: for a set installed by name, from the index before anything
//! is fetched; for every install, from the fetched pack.yaml before it is
//! published. Node is faked with a tiny script (CI may have none); python3 is
//! the real one on PATH. No traffic leaves 127.0.0.1.

use crate::common::http_server;

use std::path::PathBuf;

use crate::common::{Env, index, listing, query, tgz};
use http_server::{Route, Server};
use serde_json::json;

/// A pack folder whose pack.yaml adds `extra` (YAML lines) to name and version.
fn pack(env: &Env, name: &str, version: &str, extra: &str) -> PathBuf {
    let dir = env.tmp.path().join("src").join(format!("{name}-{version}"));
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), format!("---\nref: {name}\nversion: {version}\n{extra}")).unwrap();
    std::fs::write(dir.join("actions/run.js"), "console.log('hi')\n").unwrap();
    dir
}

/// An executable script printing `output` for `--version`.
fn fake_interpreter(env: &Env, name: &str, output: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.tmp.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\necho '{output}'\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn count_installed(env: &Env) -> String {
    query(env, "SELECT count(*) FROM installations WHERE status = 'installed'")[0][0].clone()
}

/// An Attune index: `webhook` needs nodejs >=18 (index and pack.yaml),
/// `future` needs python >=99, `scripts` needs python >=3.6 (met here),
/// `app` depends on `webhook` and `scripts` and needs python >=99 itself.
fn registry(env: &Env) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    let mut add = |name: &str, python: Option<&str>, node: Option<&str>, runtime_deps: &[&str], deps: &[&str]| {
        let mut yaml = String::from("dependencies:\n");
        if let Some(p) = python {
            yaml.push_str(&format!("  python_version: \"{p}\"\n"));
        }
        if let Some(n) = node {
            yaml.push_str(&format!("  nodejs_version: \"{n}\"\n"));
        }
        yaml.push_str(&format!("runtime_deps: {}\n", json!(runtime_deps)));
        let bytes = tgz(&pack(env, name, "1.0.0", &yaml));
        let path = format!("/{name}-1.0.0.tgz");
        let mut e = index::archive_entry(name, "1.0.0", &server.url(&path), &bytes, true);
        e["runtime_deps"] = json!(runtime_deps);
        e["dependencies"] = json!({"python_version": python, "nodejs_version": node, "packs": deps});
        entries.push(e);
        server.route(&path, Route::File(bytes));
    };
    add("webhook", None, Some(">=18"), &["nodejs", "shell"], &[]);
    add("future", Some(">=99"), None, &["python3"], &[]);
    add("scripts", Some(">=3.6"), None, &["python3", "shell"], &[]);
    add("app", Some(">=99"), None, &["shell"], &["webhook", "scripts"]);
    server.route("/index.json", Route::File(index::document(entries)));
    server
}

fn downloads(server: &Server) -> Vec<String> {
    server.seen.lock().unwrap().iter().map(|(p, _)| p.clone()).filter(|p| p.ends_with(".tgz")).collect()
}

#[test]
fn a_missing_runtime_fails_the_set_before_anything_is_fetched() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let nowhere = env.tmp.path().join("no-such-node");
    let out = env.run_with(&[("ATTUNE_NODE", &nowhere)], &["install", "app"]).failure();
    let e = &out.stderr;
    assert!(e.contains("runtime requirements are not met, so nothing was installed:"), "{e}");
    // One error listing every unmet requirement of the set.
    assert!(
        e.contains(&format!(
            "webhook@1.0.0 needs nodejs >=18 (index main: dependencies.nodejs_version); this host: nodejs not found: \
             ATTUNE_NODE={} is not an executable file",
            nowhere.display()
        )),
        "{e}"
    );
    assert!(e.contains("webhook@1.0.0 needs nodejs any version (index main: runtime_deps)"), "{e}");
    assert!(
        e.contains("app@1.0.0 needs python >=99 (index main: dependencies.python_version); this host: python 3."),
        "{e}"
    );
    assert!(!e.contains("scripts@1.0.0"), "scripts' requirements are met: {e}");
    assert!(e.contains("--ignore-runtime-requirements"), "{e}");
    assert_eq!(downloads(&server), Vec::<String>::new(), "nothing may be fetched");
    assert_eq!(query(&env, "SELECT count(*) FROM installations")[0][0], "0");
    assert!(listing(&env.packs()).iter().all(|p| !p.contains("-1.0.0")), "{:?}", listing(&env.packs()));

    // Without node on PATH (and no override), the message says where it looked.
    let empty = env.tmp.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env.run_with(&[("PATH", &empty)], &["install", "webhook"]).failure();
    assert!(
        out.stderr.contains(
            "this host: nodejs not found on PATH (looked for node, nodejs; set ATTUNE_NODE or `node` in the config to its path)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&env), "0");
}

#[test]
fn an_unmet_python_version_fails_and_a_met_one_installs() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let j = env.run(&["install", "future", "--json"]).failure().json();
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(msg.contains("future@1.0.0 needs python >=99 (index main: dependencies.python_version)"), "{msg}");
    assert_eq!(count_installed(&env), "0");

    // The host's python3 meets >=3.6 and the python3 runtime.
    let out = env.run(&["install", "scripts"]).success();
    assert!(out.stdout.contains("installed scripts 1.0.0"), "{}", out.stdout);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // A faked node 20 meets webhook's >=18.
    let node = fake_interpreter(&env, "node", "v20.1.0");
    let out = env.run_with(&[("ATTUNE_NODE", &node)], &["install", "webhook"]).success();
    assert!(out.stdout.contains("installed webhook 1.0.0"), "{}", out.stdout);
    // A node 16 does not, whether the index or the pack.yaml says so.
    let old = fake_interpreter(&env, "node16", "v16.20.2");
    let out = env.run_with(&[("ATTUNE_NODE", &old)], &["install", "--force", "webhook"]).failure();
    assert!(out.stderr.contains(&format!("this host: nodejs 16.20.2 ({})", old.display())), "{}", out.stderr);
    assert_eq!(count_installed(&env), "2");
}

#[test]
fn the_override_flag_installs_and_says_what_it_ignored() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    let nowhere = env.tmp.path().join("no-such-node");
    let out =
        env.run_with(&[("ATTUNE_NODE", &nowhere)], &["install", "app", "--ignore-runtime-requirements"]).success();
    assert!(out.stdout.contains("installed app 1.0.0"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("warning: installed although runtime requirements are not met (--ignore-runtime-requirements):"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("  app@1.0.0 needs python >=99 (index main: dependencies.python_version)"),
        "{}",
        out.stderr
    );
    // The fetched pack.yaml said the same again; shown too.
    assert!(
        out.stderr.contains("  webhook@1.0.0 needs nodejs >=18 (pack.yaml dependencies.nodejs_version)"),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&env), "3");

    // --json carries the list; the short alias works.
    let j = env
        .run_with(&[("ATTUNE_NODE", &nowhere)], &["install", "--force", "future", "--ignore-runtime", "--json"])
        .success()
        .json();
    let ignored = j["ignored_runtime_requirements"].as_array().unwrap();
    assert!(ignored.iter().any(|l| l.as_str().unwrap().starts_with("future@1.0.0 needs python >=99")), "{j}");
}

#[test]
fn a_local_pack_is_checked_from_its_pack_yaml_before_it_is_published() {
    let env = Env::new();
    let nowhere = env.tmp.path().join("no-such-node");
    let dir = pack(&env, "local_node", "1.0.0", "dependencies:\n  nodejs_version: \">=18\"\n");
    let out = env.run_with(&[("ATTUNE_NODE", &nowhere)], &["install", dir.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains(
            "local_node@1.0.0 needs nodejs >=18 (pack.yaml dependencies.nodejs_version); this host: nodejs not found"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(query(&env, "SELECT count(*) FROM installations")[0][0], "0");
    assert!(!env.packs().join("local_node-1.0.0").exists());

    // An archive, with StackStorm's python_versions: 2 only.
    let st = pack(&env, "py2only", "1.0.0", "python_versions:\n  - \"2\"\n");
    let archive = env.tmp.path().join("py2only.tgz");
    std::fs::write(&archive, tgz(&st)).unwrap();
    let out = env.run(&["install", archive.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains("py2only@1.0.0 needs python =2 (pack.yaml python_versions); this host: python 3."),
        "{}",
        out.stderr
    );

    // A constraint that cannot be read is an error naming the pack and field.
    let odd = pack(&env, "odd", "1.0.0", "dependencies:\n  python_version: \"newest please\"\n");
    let out = env.run(&["install", odd.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains("odd@1.0.0: pack.yaml dependencies.python_version \"newest please\" is not a version constraint attune can read"),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&env), "0");

    // Runtimes attune does not know are fine; a met python and a faked node pass.
    let good = pack(
        &env,
        "good",
        "1.0.0",
        "runtime_deps: [python3, shell, native]\ndependencies:\n  python_version: \">=3.0,<99\"\n  nodejs_version: \"^20\"\n",
    );
    let node = fake_interpreter(&env, "node", "v20.1.0");
    env.run_with(&[("ATTUNE_NODE", &node)], &["install", good.to_str().unwrap()]).success();
    assert_eq!(count_installed(&env), "1");
}

/// `attune serve` checks too: a pack whose runtime is missing is a 422
/// `runtime_requirements`, and nothing is installed.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_an_unmet_runtime_with_422() {
    use std::io::BufRead as _;
    let env = Env::new();
    let t = env.run(&["token", "create", "--name", "ci", "--scope", "install"]).success().stdout.trim().to_string();
    let allowed = env.tmp.path().join("src");
    let dir = pack(&env, "api_node", "1.0.0", "dependencies:\n  nodejs_version: \">=18\"\n");
    let nowhere = env.tmp.path().join("no-such-node");
    let mut child = env
        .cmd()
        .env("ATTUNE_NODE", &nowhere)
        .args(["serve", "--listen", "127.0.0.1:0", "--allow-local-source", allowed.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base = first.trim().strip_prefix("listening on ").unwrap().to_string();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/packs/install?wait=true"))
        .bearer_auth(&t)
        .json(&json!({ "source": dir }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    // The override, over the API as on the CLI.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/packs/install?wait=true"))
        .bearer_auth(&t)
        .json(&json!({ "source": dir, "ignore_runtime_requirements": true }))
        .send()
        .await
        .unwrap();
    let overridden = (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "runtime_requirements", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("api_node@1.0.0 needs nodejs >=18 (pack.yaml dependencies.nodejs_version)"), "{msg}");
    let (status, v) = overridden;
    assert_eq!(status, 201, "{v}");
    assert!(v["ignored_runtime_requirements"][0].as_str().is_some_and(|s| s.contains("nodejs >=18")), "{v}");
}

#[test]
fn upgrade_checks_runtimes_and_takes_the_override() {
    let env = Env::new();
    env.run(&["install", pack(&env, "tool", "1.0.0", "").to_str().unwrap()]).success();
    let next = pack(&env, "tool", "2.0.0", "dependencies:\n  python_version: \">=99\"\n");
    let out = env.run(&["upgrade", "tool", "--from", next.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("tool@2.0.0 needs python >=99"), "{}", out.stderr);
    assert!(out.stderr.contains("(install, upgrade, sync --locked)"), "{}", out.stderr);
    assert!(out.stderr.contains("1.0.0 stays active"), "{}", out.stderr);
    let j = env
        .run(&["upgrade", "tool", "--from", next.to_str().unwrap(), "--ignore-runtime-requirements", "--json"])
        .success()
        .json();
    assert_eq!((j["from"].as_str(), j["to"].as_str()), (Some("1.0.0"), Some("2.0.0")), "{j}");
    assert!(j["ignored_runtime_requirements"][0].as_str().is_some_and(|s| s.contains("python >=99")), "{j}");
}

#[test]
fn sync_locked_checks_runtimes_and_takes_the_override() {
    let env = Env::new();
    let server = registry(&env);
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    env.run(&["install", "future", "--ignore-runtime-requirements"]).success();
    let lockfile = env.tmp.path().join("attune.lock");
    env.run(&["lock", "--output", lockfile.to_str().unwrap()]).success();

    let fresh = Env::new();
    let out = fresh.run(&["sync", "--locked", "--file", lockfile.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains("future@1.0.0 needs python >=99 (pack.yaml dependencies.python_version)"),
        "{}",
        out.stderr
    );
    assert_eq!(count_installed(&fresh), "0");
    let out = fresh
        .run(&["sync", "--locked", "--file", lockfile.to_str().unwrap(), "--ignore-runtime-requirements"])
        .success();
    assert!(out.stderr.contains("warning: installed although runtime requirements are not met"), "{}", out.stderr);
    assert!(out.stderr.contains("  future@1.0.0 needs python >=99"), "{}", out.stderr);
    assert_eq!(count_installed(&fresh), "1");
}
