//! `attune serve` end to end: the real binary on 127.0.0.1 (port 0, the bound
//! address read from its first line of output), a real HTTP client, real
//! tokens made with `attune token create`.

use crate::common::git_server;
use crate::common::http_server;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, Env, listing};
use serde_json::{Value, json};

// Everything that touches the database runs on SQLite and on PostgreSQL.
on_both_backends!(
    auth_matrix,
    bad_bodies_are_400_413_415_with_the_error_body,
    a_burst_of_installs_stays_bounded,
    an_install_job_followed_over_sse_and_by_polling,
    cli_and_api_installs_record_the_same_metadata,
    local_sources_only_under_the_allowed_folder,
    uninstall_records_the_token_and_verify_reports_tampering,
    sigterm_fails_queued_installs_and_lets_running_ones_finish,
    registry_installs_upgrades_switches_and_gc,
);

/// A running `attune serve`, killed on drop.
struct Api {
    child: Child,
    base: String,
    client: reqwest::Client,
    _stdout: BufReader<ChildStdout>,
}

impl Api {
    fn start(env: &Env, args: &[&str]) -> Api {
        Api::start_with(env, args, reqwest::Client::new())
    }

    fn start_with(env: &Env, args: &[&str], client: reqwest::Client) -> Api {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line is the address: {line:?}"))
            .to_string();
        Api { child, base, client, _stdout: stdout }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn req(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.client.request(m, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// (status, JSON body) of a request.
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        json_of(r.send().await.unwrap()).await
    }

    /// Submits an install; returns the job id.
    async fn submit(&self, token: &str, source: &Path) -> String {
        let (status, v) =
            self.call("POST", "/api/v1/packs/install", Some(token), Some(json!({ "source": source }))).await;
        assert_eq!(status, 202, "{v}");
        v["job"]["id"].as_str().unwrap().to_string()
    }

    /// Polls a job until it is finished; returns it.
    async fn wait_job(&self, token: &str, id: &str) -> Value {
        let t = Instant::now();
        loop {
            let (status, v) = self.call("GET", &format!("/api/v1/jobs/{id}"), Some(token), None).await;
            assert_eq!(status, 200, "{v}");
            if matches!(v["job"]["state"].as_str(), Some("succeeded" | "failed")) {
                return v["job"].clone();
            }
            assert!(t.elapsed() < Duration::from_secs(60), "job {id} never finished: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text:?}"));
    (status, v)
}

/// Rows of a query on the env's database (off the async runtime's threads).
fn query(env: &Env, sql: &str) -> Vec<Vec<String>> {
    tokio::task::block_in_place(|| crate::common::query(env, sql))
}

/// `attune token create`; returns the token.
fn token(env: &Env, name: &str, scope: &str) -> String {
    let out = env.run(&["token", "create", "--name", name, "--scope", scope]).success();
    let t = out.stdout.trim().to_string();
    assert!(t.starts_with("attune_"), "{t}");
    t
}

#[track_caller]
fn assert_error(status: u16, v: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

async fn auth_matrix(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let src = env.make_pack("authpack", "1.0.0");
    let read = token(&env, "reader", "read");
    let install = token(&env, "installer", "install");
    let admin = token(&env, "root", "admin");
    // An expiry must be in the future; one that has passed since is refused.
    let out = env.run(&["token", "create", "--name", "old", "--scope", "admin", "--expires", "2020-01-01T00:00:00Z"]);
    assert!(out.failure().stderr.contains("in the past"));
    let expired = {
        let out = env.run(&["token", "create", "--name", "old", "--scope", "admin", "--expires", "1s"]).success();
        out.stdout.trim().to_string()
    };
    std::thread::sleep(Duration::from_millis(1100));
    let revoked = token(&env, "gone", "admin");
    env.run(&["token", "revoke", "gone"]).success();
    // A real public id with a wrong secret.
    let forged = format!("{}{}", &admin[..admin.len() - 64], "0".repeat(64));

    let made = env
        .run(&["--json", "token", "create", "--name", "scripted", "--scope", "read", "--expires", "30d"])
        .success()
        .json();
    assert!(made["token"].as_str().unwrap().starts_with("attune_"), "{made}");
    assert!(made["expires_at"].is_string() && made.get("secret_sha256").is_none(), "{made}");
    let out = env.run(&["token", "create", "--name", "scripted", "--scope", "read"]).failure();
    assert!(out.stderr.contains("revoke it first"), "{}", out.stderr);
    env.run(&["token", "revoke", "scripted"]).success();
    assert!(env.run(&["token", "revoke", "scripted"]).failure().stderr.contains("no live token"));
    assert!(env.run(&["token", "create", "--name", "x", "--scope", "root"]).failure().stderr.contains("--scope"));

    // The list never shows a secret.
    let list = env.run(&["token", "list", "--json"]).success();
    for t in [&read, &install, &admin] {
        assert!(!list.stdout.contains(&t[t.len() - 64..]), "{}", list.stdout);
    }
    assert_eq!(list.json().as_array().unwrap().len(), 4, "live tokens: reader, installer, root, old");

    let api = Api::start(&env, &["--allow-local-source", src.parent().unwrap().to_str().unwrap()]);
    let (status, v) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "health needs no token");

    let r = api.req("GET", "/api/v1/packs", None).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"].to_str().unwrap().split(' ').next(), Some("Bearer"));
    let (status, v) = json_of(r).await;
    assert_error(status, &v, 401, "unauthorized");
    for header in ["Token abc", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer not-a-token"] {
        let r = api.req("GET", "/api/v1/packs", None).header("authorization", header).send().await.unwrap();
        let (status, v) = json_of(r).await;
        assert_error(status, &v, 401, "unauthorized");
    }
    let unknown = format!("attune_{}_{}", "a".repeat(16), "b".repeat(64));
    for (what, t) in [("unknown", &unknown), ("forged", &forged), ("expired", &expired), ("revoked", &revoked)] {
        let (status, v) = api.call("GET", "/api/v1/packs", Some(t), None).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_error(status, &v, 401, "unauthorized");
    }

    // read: may read, not install, uninstall, verify or list tokens.
    let (status, v) = api.call("GET", "/api/v1/packs", Some(&read), None).await;
    assert_eq!((status, &v["packs"]), (200, &json!([])));
    let body = json!({ "source": src });
    let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&read), Some(body.clone())).await;
    assert_error(status, &v, 403, "insufficient_scope");
    for (m, p) in [("DELETE", "/api/v1/packs/authpack"), ("POST", "/api/v1/packs/authpack/verify")] {
        let (status, v) = api.call(m, p, Some(&read), None).await;
        assert_error(status, &v, 403, "insufficient_scope");
    }

    // install: may install; not list tokens.
    let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&install), Some(body.clone())).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["ref"].as_str(), v["version"].as_str()), (Some("authpack"), Some("1.0.0")));
    let (status, v) = api.call("GET", "/api/v1/tokens", Some(&install), None).await;
    assert_error(status, &v, 403, "insufficient_scope");

    // admin: everything.
    let (status, v) = api.call("GET", "/api/v1/tokens", Some(&admin), None).await;
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains(&admin[admin.len() - 64..]), "no secrets: {v}");
    let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&admin), Some(body.clone())).await;
    assert_error(status, &v, 409, "already_installed");
    let (status, v) = api
        .call("POST", "/api/v1/packs/install?wait=true", Some(&admin), Some(json!({"source": src, "force": true})))
        .await;
    assert_eq!((status, v["replaced"].as_bool()), (201, Some(true)), "{v}");

    // Who did what is recorded, and when a token was last used.
    let rows = query(&env, "SELECT action, method, api_token FROM installations ORDER BY id");
    assert_eq!(rows, vec![vec!["install", "api", "installer"], vec!["reinstall", "api", "root"]]);
    let used = env.run(&["token", "list", "--json"]).success().json();
    let reader = used.as_array().unwrap().iter().find(|t| t["name"] == "reader").unwrap();
    assert!(reader["last_used_at"].is_string(), "{reader}");
    assert!(reader.get("secret_sha256").is_none(), "{reader}");
}

async fn bad_bodies_are_400_413_415_with_the_error_body(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ci", "install");
    let api = Api::start(&env, &[]);
    let post = |body: Vec<u8>| {
        api.req("POST", "/api/v1/packs/install", Some(&t)).header("content-type", "application/json").body(body)
    };

    // The token is checked before the body or the query is read.
    let anonymous = api.req("POST", "/api/v1/packs/install?bogus=1", None).header("content-type", "application/json");
    let (status, v) = json_of(anonymous.body("not json").send().await.unwrap()).await;
    assert_error(status, &v, 401, "unauthorized");
    let (status, v) = json_of(api.req("GET", "/api/v1/packs?bogus=1", None).send().await.unwrap()).await;
    assert_error(status, &v, 401, "unauthorized");

    let (status, v) = json_of(post(b"{\"source\": ".to_vec()).send().await.unwrap()).await;
    assert_error(status, &v, 400, "malformed_json");
    let (status, v) = json_of(post(b"not json".to_vec()).send().await.unwrap()).await;
    assert_error(status, &v, 400, "malformed_json");
    for bad in [
        json!({"source": 5}),
        json!({"source": "x", "force": "yes"}),
        json!({}),
        json!({"source": "https://example.invalid/p.tgz", "plugin_file": "/tmp/evil.wasm"}),
        json!({"source": "https://example.invalid/p.tgz", "allow_host": ["evil"]}),
        json!("source"),
        json!(null),
    ] {
        let (status, v) = json_of(post(serde_json::to_vec(&bad).unwrap()).send().await.unwrap()).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (status, v) = api
        .call(
            "POST",
            "/api/v1/packs/install",
            Some(&t),
            Some(json!({"source": "https://h.invalid/p.tgz", "checksum": "md5:1"})),
        )
        .await;
    assert_error(status, &v, 400, "bad_request");
    // The CLI's argument rules, in the API's words (attune_app::request).
    let contradiction = json!({"source": "https://h.invalid/p.tgz", "no_env": true, "rebuild_env": true});
    let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(contradiction)).await;
    assert_error(status, &v, 400, "bad_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("no_env and rebuild_env contradict"), "{v}");

    let big = format!("{{\"source\": \"{}\"}}", "a".repeat(70 * 1024));
    let (status, v) = json_of(post(big.into_bytes()).send().await.unwrap()).await;
    assert_error(status, &v, 413, "payload_too_large");

    let r = api.req("POST", "/api/v1/packs/install", Some(&t)).body("{\"source\": \"x\"}").send().await.unwrap();
    let (status, v) = json_of(r).await;
    assert_error(status, &v, 415, "unsupported_media_type");

    // Routing errors have the same shape.
    let (status, v) = api.call("GET", "/api/v1/nope", Some(&t), None).await;
    assert_error(status, &v, 404, "no_route");
    let (status, v) = api.call("PUT", "/api/v1/packs", Some(&t), None).await;
    assert_error(status, &v, 405, "method_not_allowed");
    let (status, v) = api.call("GET", "/api/v1/packs/Not%20A%20Ref", Some(&t), None).await;
    assert_error(status, &v, 400, "bad_request");
    let (status, v) = api.call("GET", "/api/v1/packs/never_installed", Some(&t), None).await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = api.call("GET", "/api/v1/jobs/0000", Some(&t), None).await;
    assert_error(status, &v, 404, "not_found");
}

async fn a_burst_of_installs_stays_bounded(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ci", "install");
    // Each install stalls on the download until the 3 s time limit fails it.
    let server = http_server::Server::start("127.0.0.1");
    server.route("/stall.tgz", http_server::Route::Stall { len: 1 << 20 });
    // The operator allows the loopback test server (an API caller could not name it).
    let api = Api::start(
        &env,
        &["--max-concurrent-installs", "1", "--max-queued", "2", "--limit-time", "3s", "--allow-host", "127.0.0.1"],
    );

    let body = json!({ "source": server.url("/stall.tgz") });
    let sends = (0..12).map(|_| {
        let r = api.req("POST", "/api/v1/packs/install", Some(&t)).json(&body);
        async move { r.send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(sends).await;
    let mut jobs = vec![];
    let mut refused = 0;
    for r in responses {
        match r.status().as_u16() {
            202 => {
                let (_, v) = json_of(r).await;
                jobs.push(v["job"]["id"].as_str().unwrap().to_string());
            }
            429 => {
                assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
                let (status, v) = json_of(r).await;
                assert_error(status, &v, 429, "too_many_installs");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((jobs.len(), refused), (3, 9), "1 running + 2 queued admitted, the rest refused");

    // Watch until all are done: the server never counts more than one running.
    let t0 = Instant::now();
    let finished = loop {
        let (_, h) = api.call("GET", "/api/v1/health", None, None).await;
        assert!(h["installs"]["running"].as_u64().unwrap() <= 1, "{h}");
        let mut views = vec![];
        for id in &jobs {
            let (_, v) = api.call("GET", &format!("/api/v1/jobs/{id}"), Some(&t), None).await;
            views.push(v["job"].clone());
        }
        if views.iter().all(|v| v["state"] == "failed") {
            break views;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // And the jobs ran one after another: no two running intervals overlap.
    let at = |v: &Value, k: &str| {
        time::OffsetDateTime::parse(v[k].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
    };
    let mut spans: Vec<_> = finished.iter().map(|v| (at(v, "started_at"), at(v, "finished_at"))).collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping installs: {spans:?}");
    }
    let (_, h) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(h["installs"]["max_running_seen"], 1, "{h}");
    assert_eq!((h["installs"]["running"].as_u64(), h["installs"]["queued"].as_u64()), (Some(0), Some(0)));
    // Each failed on the time limit, cleanly.
    let (_, v) = api.call("GET", &format!("/api/v1/jobs/{}", jobs[0]), Some(&t), None).await;
    assert_eq!(v["job"]["error"]["code"], "fetch_failed", "{v}");
    assert!(query(&env, "SELECT id FROM installations").is_empty());
    // Room again.
    let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(body)).await;
    assert_eq!(status, 202, "{v}");
}

/// Parses a `text/event-stream` body into (event, data) pairs.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    let mut out = vec![];
    for block in text.split("\n\n") {
        let mut event = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        if let Some(e) = event {
            out.push((e, serde_json::from_str(&data).unwrap()));
        }
    }
    out
}

async fn an_install_job_followed_over_sse_and_by_polling(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ci", "install");
    // Admin sees every job; another token only its own.
    let reader = token(&env, "watcher", "admin");
    let other = token(&env, "other", "read");
    let src = env.make_pack("followed", "2.0.0");
    let api = Api::start(&env, &["--allow-local-source", src.parent().unwrap().to_str().unwrap()]);

    let r = api.req("POST", "/api/v1/packs/install", Some(&t)).json(&json!({ "source": src })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (_, v) = json_of(r).await;
    let id = v["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/jobs/{id}"));
    assert!(matches!(v["job"]["state"].as_str(), Some("queued" | "running")), "{v}");

    // Live: the stream ends by itself after the terminal event.
    let r = api.req("GET", &format!("/api/v1/jobs/{id}/events"), Some(&reader)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(60), r.text()).await.expect("the stream ends").unwrap();
    let events = sse_events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"state"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert!(kinds.contains(&"phase"), "{kinds:?}");
    let phases: Vec<&str> =
        events.iter().filter(|(k, _)| k == "phase").map(|(_, d)| d["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["fetching", "checking", "committing"]);
    let done = &events.last().unwrap().1;
    assert_eq!(done["result"]["ref"], "followed");

    // Polling agrees.
    let job = api.wait_job(&reader, &id).await;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], done["result"]);
    assert_eq!(job["token"], "ci");
    for path in [format!("/api/v1/jobs/{id}"), format!("/api/v1/jobs/{id}/events")] {
        let (status, v) = api.call("GET", &path, Some(&other), None).await;
        assert_error(status, &v, 404, "not_found");
    }

    // A late subscriber gets the whole history, compacted (superseded
    // progress events dropped), then the end.
    let r = api.req("GET", &format!("/api/v1/jobs/{id}/events"), Some(&reader)).send().await.unwrap();
    let late = sse_events(&r.text().await.unwrap());
    let progress = |k: &str| matches!(k, "staged" | "fetch_progress");
    let lasting: Vec<_> = events.iter().filter(|(k, _)| !progress(k)).cloned().collect();
    assert_eq!(late.iter().filter(|(k, _)| !progress(k)).cloned().collect::<Vec<_>>(), lasting);
    assert_eq!(job["events"].as_u64().unwrap() as usize, late.len());

    // A failed job ends with `failed`.
    let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": src }))).await;
    assert_eq!(status, 202);
    let id = v["job"]["id"].as_str().unwrap();
    let r = api.req("GET", &format!("/api/v1/jobs/{id}/events"), Some(&reader)).send().await.unwrap();
    let events = sse_events(&r.text().await.unwrap());
    let (kind, data) = events.last().unwrap();
    assert_eq!((kind.as_str(), data["error"]["code"].as_str()), ("failed", Some("already_installed")));
}

async fn cli_and_api_installs_record_the_same_metadata(db: Backend) {
    let (Some(cli_env), Some(api_env)) = (Env::on(db), Env::on(db)) else { return };
    let src = cli_env.make_pack("same", "1.4.0");
    cli_env.run(&["install", src.to_str().unwrap()]).success();

    let t = token(&api_env, "deployer", "install");
    let api = Api::start(&api_env, &["--allow-local-source", src.parent().unwrap().to_str().unwrap()]);
    let (status, v) =
        api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(json!({ "source": src }))).await;
    assert_eq!(status, 201, "{v}");

    let cols = "pack_ref, version, action, status, source_type, source, checksum, checksum_algorithm, manifest_json, \
                verified, installed_by, fetcher_name, fetcher_version, fetcher_hash, host, metadata_json";
    let sql = format!("SELECT {cols} FROM installations");
    let (a, b) = (query(&cli_env, &sql), query(&api_env, &sql));
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "same pipeline, same record");
    let who = "SELECT method, COALESCE(api_token, 'none') FROM installations";
    assert_eq!(query(&cli_env, who), vec![vec!["cli", "none"]]);
    assert_eq!(query(&api_env, who), vec![vec!["api", "deployer"]]);
    // The same storage layout, with the same tree.
    assert_eq!(listing(&cli_env.packs()), listing(&api_env.packs()));
    let path = "SELECT storage_path FROM installations";
    assert_eq!(query(&cli_env, path)[0][0], cli_env.packs().join("same-1.4.0").display().to_string());
    assert_eq!(query(&api_env, path)[0][0], api_env.packs().join("same-1.4.0").display().to_string());
    // And the API shows what the CLI shows.
    let (_, shown) = api.call("GET", "/api/v1/packs/same", Some(&t), None).await;
    let cli_shown = api_env.run(&["info", "same", "--json"]).success().json();
    assert_eq!(shown["installed"], cli_shown["installed"]);
    let (_, listed) = api.call("GET", "/api/v1/packs", Some(&t), None).await;
    assert_eq!(listed["packs"], api_env.run(&["list", "--json"]).success().json());
}

async fn local_sources_only_under_the_allowed_folder(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ci", "install");
    let allowed = env.tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let inside = allowed.join("inside");
    crate::common::write_pack(&inside, "inside", "1.0.0");
    let outside = env.make_pack("outside", "1.0.0");
    std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
    let tgz = env.tmp.path().join("outside.tgz");
    assert!(
        std::process::Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&outside)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );

    let refused = |api: &Api, source: String| {
        let body = json!({ "source": source });
        let r = api.req("POST", "/api/v1/packs/install", Some(&t)).json(&body);
        async move {
            let (status, v) = json_of(r.send().await.unwrap()).await;
            assert_error(status, &v, 403, "local_source_refused");
            v
        }
    };

    // Without --allow-local-source: no path on the server, existing or not, in any spelling.
    let api = Api::start(&env, &[]);
    for s in [
        inside.display().to_string(),
        format!("file://{}", inside.display()),
        tgz.display().to_string(),
        "/etc".to_string(),
        "/no/such/path".to_string(),
        "relative/path".to_string(),
    ] {
        let v = refused(&api, s).await;
        assert!(v["error"]["message"].as_str().unwrap().contains("--allow-local-source"), "{v}");
    }
    drop(api);

    let api = Api::start(&env, &["--allow-local-source", allowed.to_str().unwrap()]);
    for s in [
        outside.display().to_string(),
        tgz.display().to_string(),
        allowed.join("escape").display().to_string(),
        format!("file://{}", allowed.join("escape").display()),
        allowed.join("../src/outside-1.0.0").display().to_string(),
        allowed.join("missing").display().to_string(),
        "/etc".to_string(),
    ] {
        refused(&api, s).await;
    }
    for s in [inside.display().to_string(), format!("file://{}", allowed.join("../allowed/inside").display())] {
        let (status, v) = api
            .call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(json!({ "source": s, "force": true })))
            .await;
        assert_eq!(status, 201, "{s}: {v}");
        assert_eq!(v["source"], inside.canonicalize().unwrap().display().to_string());
    }
    let rows = query(&env, "SELECT pack_ref FROM installations WHERE status = 'installed'");
    assert_eq!(rows, vec![vec!["inside"]], "nothing from outside was installed");
}

async fn uninstall_records_the_token_and_verify_reports_tampering(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ops-bot", "install");
    let src = env.make_pack("checked", "1.0.0");
    crate::common::write_pack(&env.tmp.path().join("src/checked-2.0.0"), "checked", "2.0.0");
    let api = Api::start(&env, &["--allow-local-source", src.parent().unwrap().to_str().unwrap()]);
    for v in ["1.0.0", "2.0.0"] {
        let s = env.tmp.path().join(format!("src/checked-{v}"));
        let (status, b) =
            api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(json!({ "source": s }))).await;
        assert_eq!(status, 201, "{b}");
    }

    let (status, v) = api.call("POST", "/api/v1/packs/checked/verify", Some(&t), None).await;
    assert_eq!((status, &v["ok"]), (200, &json!(true)), "{v}");
    std::fs::write(env.packs().join("checked-1.0.0/actions/run.sh"), "#!/bin/sh\nrm -rf /\n").unwrap();
    let (status, v) = api.call("POST", "/api/v1/packs/checked/verify", Some(&t), None).await;
    assert_eq!((status, &v["ok"]), (200, &json!(false)), "{v}");
    let statuses: Vec<&str> = v["packs"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["tampered", "ok"]);
    assert_eq!(v["packs"][0]["changes"].as_array().unwrap().len(), 1, "{v}");
    let (status, v) = api.call("POST", "/api/v1/packs/unknown/verify", Some(&t), None).await;
    assert_error(status, &v, 404, "not_found");

    // Two versions: the bare ref is ambiguous; a version is not.
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked", Some(&t), None).await;
    assert_error(status, &v, 400, "bad_request");
    // 1.0.0 (installed first) is the active version: refused while 2.0.0 stays.
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked/1.0.0", Some(&t), None).await;
    assert_error(status, &v, 409, "active_version");
    env.run(&["activate", "checked@2.0.0"]).success();
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked/1.0.0", Some(&t), None).await;
    assert_eq!((status, v["version"].as_str()), (200, Some("1.0.0")), "{v}");
    assert!(!env.packs().join("checked-1.0.0").exists());
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked", Some(&t), None).await;
    assert_eq!((status, v["version"].as_str()), (200, Some("2.0.0")), "{v}");
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked/2.0.0", Some(&t), None).await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = api.call("DELETE", "/api/v1/packs/checked/latest", Some(&t), None).await;
    assert_error(status, &v, 400, "bad_request");

    let rows = query(
        &env,
        "SELECT action, version, method, api_token FROM installations WHERE action = 'uninstall' ORDER BY id",
    );
    assert_eq!(rows, vec![vec!["uninstall", "1.0.0", "api", "ops-bot"], vec!["uninstall", "2.0.0", "api", "ops-bot"]]);
    let (_, v) = api.call("GET", "/api/v1/packs/checked/installations", Some(&t), None).await;
    assert_eq!(v["installations"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["installations"][0]["api_token"], "ops-bot");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_self_signed_certificate() {
    let env = Env::new();
    let t = token(&env, "ci", "read");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (env.tmp.path().join("cert.pem"), env.tmp.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let api =
        Api::start_with(&env, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], client);
    assert!(api.base.starts_with("https://127.0.0.1:"), "{}", api.base);

    // 300 clients that connect and say nothing do not stall the others:
    // each handshake waits in its own task, never in the accept loop.
    let addr = api.base.strip_prefix("https://").unwrap().to_string();
    let _silent: Vec<_> = (0..300).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let t0 = Instant::now();
    let (status, v) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, 200, "{v}");
    eprintln!("a TLS request behind 300 silent connections took {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let (status, v) = api.call("GET", "/api/v1/packs", Some(&t), None).await;
    assert_eq!(status, 200, "{v}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://{addr}/api/v1/health")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the certificate is refused.
    assert!(reqwest::get(api.url("/api/v1/health")).await.is_err());
}

#[test]
fn plain_http_beyond_loopback_needs_insecure() {
    let env = Env::new();
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]).failure();
    assert!(out.stderr.contains("--insecure") && out.stderr.contains("--tls-cert"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing was served: {}", out.stdout);
    let out = env.run(&["serve", "--listen", "[::]:0", "--json"]).failure();
    assert!(out.json()["error"]["message"].as_str().unwrap().contains("--insecure"), "{}", out.stdout);
    let out = env
        .run(&["serve", "--listen", "127.0.0.1:0", "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem"])
        .failure();
    assert!(out.stderr.contains("--tls-cert"), "{}", out.stderr);
}

async fn sigterm_fails_queued_installs_and_lets_running_ones_finish(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let t = token(&env, "ci", "install");
    let server = http_server::Server::start("127.0.0.1");
    server.route("/stall.tgz", http_server::Route::Stall { len: 1 << 20 });
    let mut api =
        Api::start(&env, &["--max-concurrent-installs", "1", "--limit-time", "2s", "--allow-host", "127.0.0.1"]);
    let body = json!({ "source": server.url("/stall.tgz") });
    let (s1, v1) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(body.clone())).await;
    let (s2, v2) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(body)).await;
    assert_eq!((s1, s2), (202, 202));
    let (_, h) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!((h["installs"]["running"].as_u64(), h["installs"]["queued"].as_u64()), (Some(1), Some(1)), "{h}");
    // Follow both jobs' events while the server shuts down.
    let mut streams = vec![];
    for v in [&v1, &v2] {
        let id = v["job"]["id"].as_str().unwrap();
        let r = api.req("GET", &format!("/api/v1/jobs/{id}/events"), Some(&t)).send().await.unwrap();
        streams.push(tokio::spawn(async move { sse_events(&r.text().await.unwrap()) }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::block_in_place(|| api.terminate());
    assert!(status.success(), "a clean exit: {status:?}");
    let running = streams.remove(0).await.unwrap();
    let queued = streams.remove(0).await.unwrap();
    // The running install went on to its own end (the 2 s time limit here).
    let (kind, data) = running.last().unwrap();
    assert_eq!((kind.as_str(), data["error"]["code"].as_str()), ("failed", Some("fetch_failed")), "{running:?}");
    // The queued one never started and says why.
    let (kind, data) = queued.last().unwrap();
    assert_eq!((kind.as_str(), data["error"]["code"].as_str()), ("failed", Some("shutting_down")), "{queued:?}");
    assert!(!queued.iter().any(|(k, _)| k == "phase"), "{queued:?}");
    assert!(query(&env, "SELECT id FROM installations WHERE status = 'pending'").is_empty());
}

/// Every operation in docs/openapi.json, called on the real server: the
/// status is one the document lists; and every route the server has is in it.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_server() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::common::repo().join("docs/openapi.json")).unwrap())
            .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let env = Env::new();
    let admin = token(&env, "root", "admin");
    let src = env.make_pack("documented", "1.0.0");
    let api = Api::start(&env, &["--allow-local-source", src.parent().unwrap().to_str().unwrap()]);

    // The served document is the checked-in one.
    let (status, served) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!((status, &served), (200, &doc));

    // Every route is documented.
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in attune_api::routes() {
        let op =
            &paths.get(path).unwrap_or_else(|| panic!("{path} is not in docs/openapi.json"))[method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in docs/openapi.json");
    }

    // Every documented operation answers with a documented status, for a
    // caller with and without a token.
    let job = api.submit(&admin, &src).await;
    api.wait_job(&admin, &job).await;
    let mut called = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            assert!(
                attune_api::routes().contains(&(method.to_uppercase().as_str(), path.as_str())),
                "{method} {path} is documented but not served"
            );
            let listed: Vec<u16> = op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let concrete = path.replace("{ref}", "documented").replace("{version}", "1.0.0").replace("{id}", &job);
            let body = match (method.as_str(), path.rsplit('/').next().unwrap()) {
                ("post", "install") => Some(json!({ "source": src, "force": true })),
                ("post", "activate") => Some(json!({ "version": "1.0.0" })),
                ("post", "upgrade") => Some(json!({})),
                ("post", "gc") => Some(json!({ "dry_run": true })),
                _ => None,
            };
            let secured = op["security"].as_array().is_none_or(|s| !s.is_empty());
            for token in [None, Some(admin.as_str())] {
                let r = api.req(&method.to_uppercase(), &concrete, token);
                let r = match &body {
                    Some(b) => r.json(b),
                    None => r,
                };
                let status = r.send().await.unwrap().status().as_u16();
                assert!(listed.contains(&status), "{method} {concrete} answered {status}; documented: {listed:?}");
                if token.is_none() && secured {
                    assert_eq!(status, 401, "{method} {path} needs a token");
                }
                called += 1;
            }
        }
    }
    assert_eq!(called, 2 * attune_api::routes().len());
}

/// An index on a loopback HTTP server: `tool` 1.0.0 (needing `libx@^1`),
/// 1.1.0 and 2.0.0, and `libx` 1.0.0, all archives held to their SHA-256.
fn tool_index(env: &Env) -> http_server::Server {
    let server = http_server::Server::start("127.0.0.1");
    let mut entries = Vec::new();
    for (name, v, deps) in [
        ("tool", "1.0.0", vec!["libx@^1"]),
        ("tool", "1.1.0", vec![]),
        ("tool", "2.0.0", vec![]),
        ("libx", "1.0.0", vec![]),
    ] {
        let bytes = crate::common::tgz(&env.make_pack(name, v));
        let path = format!("/{name}-{v}.tgz");
        let mut e = crate::common::index::archive_entry(name, v, &server.url(&path), &bytes, true);
        e["dependencies"] = json!({"packs": deps});
        entries.push(e);
        server.route(&path, http_server::Route::File(bytes));
    }
    server.route("/index.json", http_server::Route::File(crate::common::index::document(entries)));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    server
}

async fn registry_installs_upgrades_switches_and_gc(db: Backend) {
    let Some(env) = Env::on(db) else { return };
    let index = tool_index(&env);
    let (installer, admin) = (token(&env, "deployer", "install"), token(&env, "root", "admin"));
    let api = Api::start(&env, &["--allow-host", &index.addr.to_string()]);
    let link = || std::fs::read_link(env.packs().join("tool")).ok().map(|p| p.display().to_string());

    // By name: resolved against the server's indexes, dependencies first.
    let body = json!({ "source": "tool@~1.0" });
    let (status, r) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&installer), Some(body)).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!((r["ref"].as_str(), r["version"].as_str()), (Some("tool"), Some("1.0.0")), "{r}");
    assert_eq!(r["registry"]["resolved"]["index"], "main", "{r}");
    assert_eq!(r["registry"]["dependencies"][0]["ref"], "libx", "{r}");
    assert_eq!(r["registry"]["dependencies"][0]["action"], "installed", "{r}");
    let rows = query(&env, "SELECT pack_ref, method, api_token FROM installations ORDER BY id");
    assert_eq!(rows, [["libx", "api", "deployer"], ["tool", "api", "deployer"]]);
    let body = json!({ "source": "tool@1.1.0", "checksum": format!("sha256:{}", "0".repeat(64)) });
    let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&installer), Some(body)).await;
    assert_error(status, &v, 400, "bad_request");
    let (status, v) =
        api.call("POST", "/api/v1/packs/install?wait=true", Some(&installer), Some(json!({"source": "nope@^9"}))).await;
    assert_error(status, &v, 404, "not_found");

    // An upgrade is a job like an install.
    let (status, v) =
        api.call("POST", "/api/v1/packs/tool/upgrade", Some(&installer), Some(json!({"to": "1.1.0"}))).await;
    assert_eq!(status, 202, "{v}");
    let job = api.wait_job(&installer, v["job"]["id"].as_str().unwrap()).await;
    assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("upgrade"), Some("succeeded")), "{job}");
    assert_eq!((job["result"]["from"].as_str(), job["result"]["to"].as_str()), (Some("1.0.0"), Some("1.1.0")));
    assert_eq!(link().as_deref(), Some("tool-1.1.0"));

    // A version in the path is refused, as the CLI refuses `tool@1.1.0`, not dropped.
    let (status, v) = api.call("POST", "/api/v1/packs/tool@1.1.0/rollback", Some(&installer), None).await;
    assert_error(status, &v, 400, "bad_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("rollback: name just the ref"), "{v}");
    let (status, v) = api.call("POST", "/api/v1/packs/tool@1.1.0/upgrade", Some(&installer), Some(json!({}))).await;
    assert_error(status, &v, 400, "bad_request");
    assert_eq!(link().as_deref(), Some("tool-1.1.0"));
    let (status, v) = api.call("POST", "/api/v1/packs/tool/rollback", Some(&installer), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["version"].as_str(), v["previous_version"].as_str()), (Some("1.0.0"), Some("1.1.0")));
    assert_eq!(link().as_deref(), Some("tool-1.0.0"));
    let activate = |v: &str| json!({ "version": v });
    let (status, v) = api.call("POST", "/api/v1/packs/tool/activate", Some(&installer), Some(activate("1.1.0"))).await;
    assert_eq!((status, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (_, v) = api.call("POST", "/api/v1/packs/tool/activate", Some(&installer), Some(activate("1.1.0"))).await;
    assert_eq!(v["changed"], false, "{v}");
    let (status, v) = api.call("POST", "/api/v1/packs/tool/activate", Some(&installer), Some(activate("9.0.0"))).await;
    assert_error(status, &v, 404, "not_found");

    let (status, v) = api.call("POST", "/api/v1/packs/tool/upgrade?wait=true", Some(&installer), Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["to"].as_str(), v["upgraded"].as_bool()), (Some("2.0.0"), Some(true)), "{v}");
    let (status, v) = api.call("POST", "/api/v1/packs/tool/upgrade?wait=true", Some(&installer), Some(json!({}))).await;
    assert_eq!((status, v["upgraded"].as_bool()), (200, Some(false)), "already at the newest: {v}");

    // gc is for admins; keep 1: the active 2.0.0 stays, 1.1.0 and 1.0.0 go.
    let (status, v) = api.call("POST", "/api/v1/gc", Some(&installer), Some(json!({"keep": 1}))).await;
    assert_error(status, &v, 403, "insufficient_scope");
    // No gc without an explicit body: `dry_run` is required.
    for body in [None, Some(json!({})), Some(json!({"keep": 1}))] {
        let (status, v) = api.call("POST", "/api/v1/gc", Some(&admin), body.clone()).await;
        assert!(matches!(status, 400 | 415), "{body:?}: {status} {v}");
    }
    let versions = || {
        let names = std::fs::read_dir(env.packs()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
        names.filter(|n| n.starts_with("tool-")).count()
    };
    assert_eq!(versions(), 3, "nothing was collected");
    let (status, v) = api.call("POST", "/api/v1/gc", Some(&admin), Some(json!({"keep": 1, "dry_run": true}))).await;
    assert_eq!(status, 200, "{v}");
    let planned: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(planned, ["1.1.0", "1.0.0"], "{v}");
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["removed"] == false));
    let (_, v) = api.call("POST", "/api/v1/gc", Some(&admin), Some(json!({"keep": 1, "dry_run": false}))).await;
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["removed"] == true), "{v}");
    let (_, v) = api.call("GET", "/api/v1/packs", Some(&installer), None).await;
    let mut left: Vec<String> =
        v["packs"].as_array().unwrap().iter().map(|p| format!("{}@{}", p["pack_ref"], p["version"])).collect();
    left.sort();
    assert_eq!(left, ["\"libx\"@\"1.0.0\"", "\"tool\"@\"2.0.0\""]);
}

// ---- `attune serve` for untrusted callers ----

/// A listener on 127.0.0.1 that counts the connections it accepts.
struct Counter {
    addr: std::net::SocketAddr,
    n: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counter {
    fn start() -> Counter {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = n.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(c);
            }
        });
        Counter { addr, n }
    }
    fn count(&self) -> usize {
        self.n.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Every spelling of the server's own loopback (and a redirect to another
/// port of an allowed host) installs nothing and reaches nothing; what an
/// operator-allowed service answered is not echoed to the caller.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_caller_reaches_no_loopback_spelling() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let internal = Counter::start();
    let p = internal.addr.port();
    // The operator allows this origin (host and port); it redirects to another port of the same host.
    let origin = http_server::Server::start("127.0.0.1");
    origin.route("/hop.tgz", http_server::Route::Redirect(302, format!("http://127.0.0.1:{p}/x.tgz")));
    origin.route("/teapot.tgz", http_server::Route::Status(418));
    let secret = b"internal service answer".to_vec();
    origin.route("/secret.tgz", http_server::Route::File(secret.clone()));
    let api = Api::start(&env, &["--allow-host", &origin.addr.to_string()]);

    let mut sources: Vec<String> = [
        "http://127.0.0.1:{p}/x.tgz",
        "http://localhost:{p}/x.tgz",
        "http://localhost.:{p}/x.tgz",
        "https://localhost.:{p}/x.tgz",
        "http://127.1:{p}/x.tgz",
        "http://2130706433:{p}/x.tgz",
        "http://0x7f.1:{p}/x.tgz",
        "http://0x7f000001:{p}/x.tgz",
        "http://[::ffff:7f00:1]:{p}/x.tgz",
        "https://[::ffff:127.0.0.1]:{p}/x.tgz",
        "https://0.0.0.0:{p}/x.tgz",
        "https://[::]:{p}/x.tgz",
        "https://[::1]:{p}/x.tgz",
        "git+http://127.0.0.1:{p}/r.git",
        "https://localhost:{p}/r.git",
        "http://user:p@ss@127.1:{p}/x.tgz",
        "ftp://user:p@ss@files.example/x.tgz",
    ]
    .iter()
    .map(|s| s.replace("{p}", &p.to_string()))
    .collect();
    sources.push(origin.url("/hop.tgz"));
    for source in &sources {
        let body = json!({ "source": source });
        let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
        assert!((400..500).contains(&status), "{source}: {status} {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(!message.contains("p@ss") && !message.contains("user:"), "{source}: credentials shown: {message}");
    }
    assert_eq!(internal.count(), 0, "a loopback connection was made");
    // A name's address is not told: "resolves to a private … address", not which.
    let body = json!({ "source": format!("https://localhost:{p}/x.tgz") });
    let (_, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("resolves to a private") && !message.contains("127.0.0.1"), "{v}");
    assert_eq!(origin.seen.lock().unwrap().len(), 1, "the allowed origin was reached, once");
    let (_, v) = api
        .call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(json!({ "source": origin.url("/hop.tgz") })))
        .await;
    assert!(v["error"]["message"].as_str().unwrap().contains(&format!("--allow-host 127.0.0.1:{p}")), "{v}");

    // What an allowed internal service answered stays in the server's log.
    let (_, v) = api
        .call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(json!({ "source": origin.url("/teapot.tgz") })))
        .await;
    assert_eq!(v["error"]["code"], "fetch_failed", "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().contains("418"), "{v}");
    let digest = crate::common::index::sha256_hex(&secret);
    let body = json!({ "source": origin.url("/secret.tgz"), "checksum": format!("sha256:{}", "0".repeat(64)) });
    let (_, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
    assert!(v["error"].is_object() && !v.to_string().contains(&digest), "the body's digest leaked: {v}");
    assert!(query(&env, "SELECT id FROM installations").is_empty());

    // A ref-shaped source is an index lookup, whether or not the server's
    // working directory (this crate's) has a folder of that name.
    assert!(std::path::Path::new("src").is_dir());
    let mut answers = vec![];
    for source in ["src", "surely_not_a_folder_here"] {
        let body = json!({ "source": source });
        let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
        answers.push((status, v["error"]["code"].clone()));
    }
    assert_eq!(answers[0], answers[1], "{answers:?}");
    assert_ne!(answers[0].1, "local_source_refused");
}

/// A local source is opened when it is checked: replacing it with a
/// symlink out of the allowed folder before the job runs changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_source_swapped_after_its_check_installs_nothing_else() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let allowed = env.tmp.path().join("allowed");
    crate::common::write_pack(&allowed.join("pack"), "swapped", "1.0.0");
    let outside = env.tmp.path().join("outside");
    crate::common::write_pack(&outside, "swapped", "6.6.6");
    let server = http_server::Server::start("127.0.0.1");
    server.route("/stall.tgz", http_server::Route::Stall { len: 1 << 20 });
    let api = Api::start(
        &env,
        &[
            "--allow-local-source",
            allowed.to_str().unwrap(),
            "--max-concurrent-installs",
            "1",
            "--limit-time",
            "2s",
            "--allow-host",
            &server.addr.to_string(),
        ],
    );
    // The one slot is taken, so the local job waits, its source checked and opened.
    let (status, _) =
        api.call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": server.url("/stall.tgz") }))).await;
    assert_eq!(status, 202);
    let id = api.submit(&t, &allowed.join("pack")).await;
    let (_, v) = api.call("GET", &format!("/api/v1/jobs/{id}"), Some(&t), None).await;
    assert_eq!(v["job"]["state"], "queued", "{v}");

    // The swap: the checked folder moves away, a symlink out takes its name.
    std::fs::rename(allowed.join("pack"), allowed.join("pack.old")).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("pack")).unwrap();

    let job = api.wait_job(&t, &id).await;
    assert_eq!((job["state"].as_str(), job["result"]["version"].as_str()), (Some("succeeded"), Some("1.0.0")), "{job}");
    let rows = query(&env, "SELECT version FROM installations WHERE pack_ref = 'swapped'");
    assert_eq!(rows, [["1.0.0"]], "only what was checked was installed");
    assert!(!env.packs().join("swapped-6.6.6").exists());
    // And the symlink itself is refused when checked.
    let (status, v) = api
        .call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": allowed.join("pack"), "force": true })))
        .await;
    assert_error(status, &v, 403, "local_source_refused");
}

/// Opens `n` connections that send a request's start and then one byte
/// every 200 ms; returns how long the server took to close each one.
fn dribblers(base: &str, n: usize, start: &'static [u8]) -> Vec<std::thread::JoinHandle<Duration>> {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap().to_string();
    (0..n)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                let t = Instant::now();
                let mut r = s.try_clone().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                    t.elapsed()
                });
                let _ = s.write_all(start);
                while !reader.is_finished() && t.elapsed() < Duration::from_secs(60) {
                    if s.write_all(b"a").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                reader.join().unwrap()
            })
        })
        .collect()
}

/// Slow-loris: connections that dribble headers or a body are closed
/// within the timeouts, and SIGTERM stops the server within its deadline
/// while such connections are open.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_sigterm_still_stops_the_server() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let mut api = Api::start(&env, &["--header-timeout", "2s", "--body-timeout", "2s", "--shutdown-deadline", "3s"]);
    let headers: &'static [u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let closed: Vec<Duration> = dribblers(&api.base, 20, headers).into_iter().map(|h| h.join().unwrap()).collect();
    let slowest = closed.iter().max().unwrap();
    eprintln!("20 header dribblers closed after {:?} .. {slowest:?}", closed.iter().min().unwrap());
    assert!(*slowest < Duration::from_millis(3500), "{closed:?}");
    assert!(closed.iter().all(|d| *d >= Duration::from_millis(1500)), "the timeout closed them: {closed:?}");

    // A body dribbled by an authenticated caller is cut off by the body timeout.
    let start = format!(
        "POST /api/v1/packs/install HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"source\": \""
    );
    let start: &'static [u8] = Box::leak(start.into_bytes().into_boxed_slice());
    let closed: Vec<Duration> = dribblers(&api.base, 5, start).into_iter().map(|h| h.join().unwrap()).collect();
    assert!(closed.iter().all(|d| *d < Duration::from_millis(3500)), "{closed:?}");

    // The server still answers, and stops on SIGTERM with 20 dribblers open.
    let (status, _) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, 200);
    let open = dribblers(&api.base, 20, headers);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let status = tokio::task::block_in_place(|| api.terminate());
    let took = t0.elapsed();
    eprintln!("SIGTERM with 20 dribblers open: exited after {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_millis(3000 + 1500), "the 3 s shutdown deadline held: {took:?}");
    for h in open {
        h.join().unwrap();
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The RSS bound of the job burst below, in MiB (measured: see the README).
const BURST_RSS_BOUND_MIB: u64 = 128;

/// 50 jobs, each a 20 MB download written in 512-byte writes: progress is
/// throttled and histories capped, so the server's peak RSS stays under
/// [`BURST_RSS_BOUND_MIB`] and each stored history is small.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_jobs_of_20_mb_in_512_byte_writes_keep_rss_bounded() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let server = http_server::Server::start("127.0.0.1");
    server.route("/big.tgz", http_server::Route::Dribble { len: 20 << 20, write: 512 });
    let api = Api::start(
        &env,
        &["--max-concurrent-installs", "2", "--max-queued", "64", "--allow-host", &server.addr.to_string()],
    );
    let pid = api.child.id();
    let before = vm_hwm_kib(pid);
    // A wrong archive checksum: each job downloads all 20 MB, then fails.
    let body = json!({ "source": server.url("/big.tgz"), "checksum": format!("sha256:{}", "0".repeat(64)) });
    let mut ids = vec![];
    for _ in 0..50 {
        let (status, v) = api.call("POST", "/api/v1/packs/install", Some(&t), Some(body.clone())).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["job"]["id"].as_str().unwrap().to_string());
    }
    let digest = crate::common::index::sha256_hex(&vec![0u8; 20 << 20]);
    let t0 = Instant::now();
    for id in &ids {
        loop {
            let (_, v) = api.call("GET", &format!("/api/v1/jobs/{id}"), Some(&t), None).await;
            if v["job"]["state"] == "failed" {
                assert_eq!(v["job"]["error"]["code"], "fetch_failed", "{v}");
                assert!(!v.to_string().contains(&digest), "the body's digest leaked: {v}");
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "{v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let hwm = vm_hwm_kib(pid);
    eprintln!(
        "50 jobs x 20 MB in 512-byte writes: {:?}; VmHWM {} MiB (at start {} MiB)",
        t0.elapsed(),
        hwm >> 10,
        before >> 10
    );
    assert!(hwm >> 10 < BURST_RSS_BOUND_MIB, "VmHWM {} MiB", hwm >> 10);
    assert_eq!(server.seen.lock().unwrap().len(), 50, "every job downloaded");
    let sizes = query(&env, "SELECT LENGTH(events) FROM jobs");
    let largest = sizes.iter().map(|r| r[0].parse::<usize>().unwrap()).max().unwrap();
    eprintln!("largest stored history: {largest} bytes");
    assert!(largest <= attune_api::jobs::MAX_HISTORY_BYTES, "{largest}");
}

/// Two `serve` processes on one PostgreSQL: a job submitted to one is seen
/// and completed through the other, survives a restart of the one that ran
/// it, and a job whose server was killed is marked interrupted by the other.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_postgres_share_jobs() {
    let Some(env) = Env::on(Backend::Postgres) else { return };
    let t = token(&env, "ci", "install");
    let server = http_server::Server::start("127.0.0.1");
    server.route("/stall.tgz", http_server::Route::Stall { len: 1 << 20 });
    server.route("/shared.tgz", http_server::Route::File(crate::common::tgz(&env.make_pack("shared", "1.0.0"))));
    let allow = server.addr.to_string();
    let args = ["--max-concurrent-installs", "1", "--limit-time", "60s", "--allow-host", allow.as_str()];
    let mut a = Api::start(&env, &args);
    // A is busy with a download that never ends...
    let (status, v) =
        a.call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": server.url("/stall.tgz") }))).await;
    assert_eq!(status, 202, "{v}");
    let stalled = v["job"]["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    while a.call("GET", &format!("/api/v1/jobs/{stalled}"), Some(&t), None).await.1["job"]["state"] != "running" {
        assert!(t0.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...so a job submitted to A is run by B.
    let mut b = Api::start(&env, &args);
    let (status, v) =
        a.call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": server.url("/shared.tgz") }))).await;
    assert_eq!(status, 202, "{v}");
    let shared = v["job"]["id"].as_str().unwrap().to_string();
    let job = b.wait_job(&t, &shared).await;
    assert_eq!((job["state"].as_str(), job["result"]["ref"].as_str()), (Some("succeeded"), Some("shared")), "{job}");
    let runners = query(&env, &format!("SELECT claimed_by FROM jobs WHERE id IN ('{stalled}', '{shared}')"));
    assert_ne!(runners[0], runners[1], "two replicas ran them: {runners:?}");
    let r = b.req("GET", &format!("/api/v1/jobs/{shared}/events"), Some(&t)).send().await.unwrap();
    assert_eq!(sse_events(&r.text().await.unwrap()).last().unwrap().0, "done");

    // B, which ran it, restarts: the job is still there, through both.
    assert!(tokio::task::block_in_place(|| b.terminate()).success());
    drop(b);
    let b = Api::start(&env, &args);
    for api in [&a, &b] {
        let (_, v) = api.call("GET", &format!("/api/v1/jobs/{shared}"), Some(&t), None).await;
        assert_eq!(
            (v["job"]["state"].as_str(), v["job"]["result"]["ref"].as_str()),
            (Some("succeeded"), Some("shared"))
        );
    }

    // A dies while running: B marks its job interrupted.
    let _ = a.child.kill();
    let _ = a.child.wait();
    let t0 = Instant::now();
    let job = loop {
        let (_, v) = b.call("GET", &format!("/api/v1/jobs/{stalled}"), Some(&t), None).await;
        if v["job"]["state"] != "running" {
            break v["job"].clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("interrupted after {:?}", t0.elapsed());
    assert_eq!(
        (job["state"].as_str(), job["error"]["code"].as_str()),
        (Some("interrupted"), Some("interrupted")),
        "{job}"
    );
    let r = b.req("GET", &format!("/api/v1/jobs/{stalled}/events"), Some(&t)).send().await.unwrap();
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().0, "failed", "{events:?}");
}

/// The SQLite database and its WAL are the owner's alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_sqlite_database_and_its_wal_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    let t = token(&env, "ci", "read");
    // While a server holds it open, with a write done.
    let api = Api::start(&env, &[]);
    assert_eq!(api.call("GET", "/api/v1/packs", Some(&t), None).await.0, 200);
    for f in [env.db_path(), env.db_path().with_extension("db-wal")] {
        let mode = std::fs::metadata(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
}

/// On the default SQLite database too: a finished job is still there after
/// a restart, and one that was running when its server was killed is
/// marked interrupted by the next server.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_survive_a_restart_and_a_killed_one_is_interrupted() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let server = http_server::Server::start("127.0.0.1");
    server.route("/stall.tgz", http_server::Route::Stall { len: 1 << 20 });
    server.route("/kept.tgz", http_server::Route::File(crate::common::tgz(&env.make_pack("kept", "1.0.0"))));
    let allow = server.addr.to_string();
    let args = ["--limit-time", "60s", "--allow-host", allow.as_str()];
    let mut api = Api::start(&env, &args);
    let body = json!({ "source": server.url("/kept.tgz") });
    let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) =
        api.call("POST", "/api/v1/packs/install", Some(&t), Some(json!({ "source": server.url("/stall.tgz") }))).await;
    assert_eq!((status, v["job"]["state"].as_str()), (202, Some("running")), "{v}");
    let stalled = v["job"]["id"].as_str().unwrap().to_string();
    let done = query(&env, "SELECT id FROM jobs WHERE state = 'succeeded'")[0][0].clone();

    let _ = api.child.kill();
    let _ = api.child.wait();
    drop(api);
    let api = Api::start(&env, &args);
    let job = api.wait_job(&t, &done).await;
    assert_eq!((job["state"].as_str(), job["result"]["ref"].as_str()), (Some("succeeded"), Some("kept")), "{job}");
    let t0 = Instant::now();
    let job = loop {
        let (_, v) = api.call("GET", &format!("/api/v1/jobs/{stalled}"), Some(&t), None).await;
        if v["job"]["state"] != "running" {
            break v["job"].clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        (job["state"].as_str(), job["error"]["code"].as_str()),
        (Some("interrupted"), Some("interrupted")),
        "{job}"
    );
    assert!(query(&env, "SELECT id FROM installations WHERE status = 'pending'").is_empty());
}

/// A git remote's ref names are not told to an API caller (the operator
/// allowed the remote; the caller asks for a ref that is not there).
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_git_ref_does_not_list_the_remote_refs() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let (work, root) = (env.tmp.path().join("work"), env.tmp.path().join("root"));
    std::fs::create_dir_all(&root).unwrap();
    crate::common::write_pack(&work, "gitpack", "1.0.0");
    std::fs::remove_dir(work.join("empty")).unwrap();
    git_server::git(&work, &["init", "-q", "-b", "internal-secret-branch", "."]);
    git_server::git(&work, &["add", "-A"]);
    git_server::git(&work, &["commit", "-q", "-m", "first"]);
    git_server::git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"]);
    let remote = git_server::GitServer::start(&root);
    let api = Api::start(&env, &["--allow-host", &remote.addr.to_string()]);
    let body = json!({ "source": format!("git+{}", remote.url("repo.git")), "ref_spec": "nope" });
    let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
    assert_error(status, &v, 422, "fetch_failed");
    assert!(!v.to_string().contains("internal-secret-branch"), "{v}");
    // The same remote works for a ref that exists: the policy is not what failed.
    let body = json!({ "source": format!("git+{}", remote.url("repo.git")), "ref_spec": "internal-secret-branch" });
    let (status, v) = api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)).await;
    assert_eq!(status, 201, "{v}");
}

/// The server fetches with its operator's network settings (a private CA
/// and a token from its config); a caller cannot add any: a request that
/// tries to name a CA is refused as a bad body, and the token stays out of
/// the job and the records.
#[test]
fn the_server_uses_the_operators_ca_and_credentials_and_a_caller_sets_none() {
    use crate::common::tls::{self, Ca};
    let rt = tls::runtime();
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let dir = env.tmp.path().join("archives/web");
    crate::common::write_pack(&dir, "web", "1.0.0");
    let server =
        tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), tls::files(&[("/web.tgz", crate::common::tgz(&dir))]));
    let secret = "operator-s3cret-token";
    let config = env.tmp.path().join("config.toml");
    let toml = format!("[tls]\nca_files = [{ca_file:?}]\n[credentials.\"127.0.0.1\"]\ntoken = {secret:?}\n");
    std::fs::write(&config, toml).unwrap();
    let authority = format!("127.0.0.1:{}", server.port);
    let api = Api::start(&env, &["--config", config.to_str().unwrap(), "--allow-host", &authority]);
    let source = server.url("https", "/web.tgz");

    let body = json!({ "source": source, "ca_cert": ["/etc/ssl/certs/evil.pem"] });
    let (status, v) = rt.block_on(api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)));
    assert_eq!(status, 400, "a caller's CA was accepted: {v}");

    let body = json!({ "source": source });
    let (status, v) = rt.block_on(api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body)));
    assert!((200..300).contains(&status), "{status} {v}");
    assert!(!v.to_string().contains(secret), "{v}");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {secret}").as_str()));
    let db = std::fs::read(env.db_path()).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the token is in the database");
}

/// The API's `no_env` is the CLI's `--no-env`: a pack that needs an
/// environment installs without one; without it the environment is built,
/// and a failure to build it fails the job saying why.
#[tokio::test]
async fn an_api_install_takes_no_env_and_a_failed_environment_fails_the_job() {
    let env = Env::new();
    let t = token(&env, "ci", "install");
    let allowed = env.tmp.path().join("allowed");
    let src = allowed.join("pyp");
    crate::common::write_pack(&src, "pyp", "1.0.0");
    std::fs::write(src.join("requirements.txt"), "alpha==1.0.0\n").unwrap();
    // No uv at all: building an environment cannot work here.
    let mut child = env.cmd();
    child.env("ATTUNE_UV", "/nonexistent/uv");
    let api = {
        let mut c = child
            .args(["serve", "--listen", "127.0.0.1:0", "--allow-local-source", allowed.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").unwrap().to_string();
        Api { child: c, base, client: reqwest::Client::new(), _stdout: stdout }
    };
    let install = |body: Value| api.call("POST", "/api/v1/packs/install?wait=true", Some(&t), Some(body));

    let (status, v) = install(json!({ "source": src })).await;
    assert_error(status, &v, 422, "failed");
    assert!(v["error"]["message"].as_str().unwrap().contains("pip install uv"), "{v}");
    assert!(!env.packs().join("pyp-1.0.0").exists());

    let (status, v) = install(json!({ "source": src, "no_env": true })).await;
    assert_eq!(status, 201, "{v}");
    assert!(env.packs().join("pyp-1.0.0").is_dir());
    assert!(!env.tmp.path().join("packs-envs/pyp-1.0.0").exists());
}
