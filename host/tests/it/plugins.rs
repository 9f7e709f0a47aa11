//! Added plugins: adding, listing, granting, revoking, removing, scheme
//! dispatch, and a plugin held to exactly the hosts it was granted.

use crate::common::http_server;

use crate::common::{Env, hostile_wasm, query};
use http_server::{Route, Server};

fn twin_wasm() -> String {
    crate::common::test_plugins::wasm("twin").display().to_string()
}

#[test]
fn add_list_info_remove() {
    let env = Env::new();
    let w = hostile_wasm();
    let out = env.run(&["plugin", "add", w.to_str().unwrap()]).success();
    assert!(out.stdout.contains("added plugin hostile 0.1.0"), "{}", out.stdout);
    assert!(out.stdout.contains("granted    nothing"), "{}", out.stdout);
    assert!(
        out.stderr.contains("not granted: read-input, outbound-host:127.0.0.1, outbound-host:127.0.0.2"),
        "{}",
        out.stderr
    );

    let list = env.run(&["plugin", "list", "--json"]).success().json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "archive", "http", "git", "hostile"]);
    let added = &list[4];
    assert_eq!(added["kind"], "added");
    assert_eq!(added["granted"], serde_json::json!([]));

    let info = env.run(&["plugin", "info", "hostile", "--json"]).success().json();
    let sha = info["plugin"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    // Stored content-addressed: the bytes under that hash are the file's.
    let rows = query(&env, &format!("SELECT length(wasm) FROM plugin_blobs WHERE sha256 = '{sha}'"));
    assert_eq!(rows[0][0], std::fs::metadata(&w).unwrap().len().to_string());

    let out = env.run(&["plugin", "add", w.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("already added"), "{}", out.stderr);
    env.run(&["plugin", "remove", "hostile"]).success();
    let out = env.run(&["plugin", "info", "hostile"]).failure();
    assert!(out.stderr.contains("no added plugin is named \"hostile\""), "{}", out.stderr);
}

#[test]
fn grants_are_asked_recorded_and_revocable() {
    let env = Env::new();
    let w = hostile_wasm();
    let out = env.run(&["plugin", "add", w.to_str().unwrap(), "--allow-host", "example.com"]).failure();
    assert!(out.stderr.contains("does not ask to reach example.com"), "{}", out.stderr);
    env.run(&["plugin", "add", w.to_str().unwrap(), "--allow-host", "127.0.0.1"]).success();
    let out = env.run(&["plugin", "grant", "hostile", "--allow-host", "evil.example"]).failure();
    assert!(out.stderr.contains("does not ask for outbound-host:evil.example"), "{}", out.stderr);
    env.run(&["plugin", "grant", "hostile", "--read-input"]).success();
    env.run(&["plugin", "revoke", "hostile", "--allow-host", "127.0.0.1"]).success();
    let info = env.run(&["plugin", "info", "hostile", "--json"]).success().json();
    let grants = info["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 2);
    assert_eq!(grants[0]["capability"], "outbound-host:127.0.0.1");
    assert!(grants[0]["revoked_at"].is_string(), "revocations are kept as history");
    assert_eq!(grants[1]["capability"], "read-input");
    assert!(grants[1]["revoked_at"].is_null());
    assert!(grants.iter().all(|g| g["granted_by"].as_str().is_some_and(|b| !b.is_empty())));
    // --yes grants everything asked.
    let env = Env::new();
    let out = env.run(&["plugin", "add", w.to_str().unwrap(), "--yes"]).success();
    assert!(
        out.stdout.contains(
            "granted    larger-limits:memory=100663296, outbound-host:127.0.0.1, outbound-host:127.0.0.2, read-input"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn a_plugin_reaches_only_the_hosts_it_was_granted() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    server.route("/data", Route::File(b"payload".to_vec()));
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap()]).success();
    let source = format!("hostile:fetch-url:{}", server.url("/data"));

    // Granted no host at all, it does not even get wasi:http.
    let out = env.run(&["install", "--plugin", "hostile", &source]).failure();
    assert!(out.stderr.contains("it called wasi:http, which is not linked"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host"), "{}", out.stderr);
    assert!(server.seen.lock().unwrap().is_empty(), "the plugin reached a host it was not granted");
    // Granted another host, it has wasi:http, and this host is refused by name.
    env.run(&["plugin", "grant", "hostile", "--allow-host", "127.0.0.2"]).success();
    let out = env.run(&["install", "--plugin", "hostile", &source]).failure();
    assert!(out.stderr.contains("a request to 127.0.0.1 was refused"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host 127.0.0.1"), "{}", out.stderr);
    assert!(server.seen.lock().unwrap().is_empty(), "the plugin reached a host it was not granted");

    env.run(&["plugin", "grant", "hostile", "--allow-host", "127.0.0.1"]).success();
    env.run(&["install", "--plugin", "hostile", &source]).success();
    assert_eq!(std::fs::read(env.packs().join("hostile-1.0.0/fetched")).unwrap(), b"payload");
    // The installation names the plugin and the exact bytes that ran.
    let info = env.run(&["plugin", "info", "hostile", "--json"]).success().json();
    let rows = query(&env, "SELECT fetcher_name, fetcher_hash FROM installations WHERE status = 'installed'");
    assert_eq!(rows[0], vec!["hostile".to_string(), info["plugin"]["sha256"].as_str().unwrap().to_string()]);

    env.run(&["plugin", "revoke", "hostile", "--allow-host", "127.0.0.1"]).success();
    let out = env.run(&["install", "--force", "--plugin", "hostile", &source]).failure();
    assert!(out.stderr.contains("was refused"), "{}", out.stderr);
}

#[test]
fn two_plugins_cannot_claim_one_scheme_and_built_ins_cannot_be_shadowed() {
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap()]).success();
    let out = env.run(&["plugin", "add", &twin_wasm()]).failure();
    assert!(out.stderr.contains("scheme \"hostile\" is already handled by plugin \"hostile\""), "{}", out.stderr);
    let local = crate::common::test_plugins::builtin_local();
    let out = env.run(&["plugin", "add", local.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("name of a built-in fetcher"), "{}", out.stderr);
}

#[test]
fn a_scheme_routes_to_its_plugin_and_limits_still_hold() {
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap()]).success();
    // `hostile://…` has no `--plugin`: the scheme picks the plugin.
    let out = env.run(&["install", "hostile://benign"]).failure();
    assert!(out.stderr.contains("unknown attack \"//benign\""), "routed to the plugin: {}", out.stderr);
    let out = env.run(&["install", "--plugin", "hostile", "--limit-time", "2s", "hostile:loop"]).failure();
    assert!(out.stderr.contains("ran out of time"), "{}", out.stderr);
    let out = env.run(&["install", "--plugin", "hostile", "--limit-memory", "32MiB", "hostile:alloc"]).failure();
    assert!(out.stderr.contains("memory limit of 32 MiB"), "{}", out.stderr);
    let out = env.run(&["install", "--plugin", "hostile", "hostile:panic"]).failure();
    assert!(out.stderr.contains("crashed"), "{}", out.stderr);
}

#[test]
fn a_plugin_can_be_added_from_a_url() {
    let env = Env::new();
    let bytes = std::fs::read(hostile_wasm()).unwrap();
    let server = Server::start("127.0.0.1");
    server.route("/hostile.wasm", Route::File(bytes.clone()));
    let url = server.url("/hostile.wasm");

    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = env.run(&["plugin", "add", &url, "--checksum", &wrong]).failure();
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    let out = env.run(&["plugin", "add", &server.url("/missing.wasm")]).failure();
    assert!(out.stderr.contains("HTTP 404"), "{}", out.stderr);

    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let out = env.run(&["plugin", "add", &url, "--checksum", &format!("sha256:{sha}"), "--yes"]).success();
    assert!(out.stdout.contains(&format!("(sha256 {sha})")), "{}", out.stdout);
    let info = env.run(&["plugin", "info", "hostile", "--json"]).success().json();
    assert_eq!(info["plugin"]["added_from"], url);
    // Nothing of the download is left behind.
    assert!(
        crate::common::listing(&env.packs()).iter().all(|p| p.starts_with(".attune")),
        "{:?}",
        crate::common::listing(&env.packs())
    );
    assert_eq!(crate::common::listing(&env.packs().join(".attune/staging")), Vec::<String>::new());
}

#[test]
fn larger_limits_apply_only_once_granted() {
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap()]).success();
    let out = env.run(&["install", "--plugin", "hostile", "--limit-memory", "32MiB", "hostile:alloc"]).failure();
    assert!(out.stderr.contains("memory limit of 32 MiB"), "{}", out.stderr);
    env.run(&["plugin", "grant", "hostile", "--larger-limits"]).success();
    let out = env.run(&["install", "--plugin", "hostile", "--limit-memory", "32MiB", "hostile:alloc"]).failure();
    assert!(out.stderr.contains("memory limit of 96 MiB"), "the granted 96 MiB applies: {}", out.stderr);
    // A limit the operator sets higher still wins.
    let out = env.run(&["install", "--plugin", "hostile", "--limit-memory", "128MiB", "hostile:alloc"]).failure();
    assert!(out.stderr.contains("memory limit of 128 MiB"), "{}", out.stderr);
}
