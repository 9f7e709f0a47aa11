//! The http fetcher against a real server on loopback: downloads, redirects,
//! the outbound allowlist, timeouts, limits and checksums.

use crate::common::http_server;

use std::time::{Duration, Instant};

use crate::common::{Env, listing, query};
use http_server::{Route, Server};
use sha2::Digest;

/// A .tgz (and .zip) of a small pack, made by the system's own tools.
fn archives(env: &Env) -> (Vec<u8>, Vec<u8>) {
    let src = env.make_pack("web", "1.0.0");
    let tgz = env.tmp.path().join("web.tgz");
    let zip = env.tmp.path().join("web.zip");
    assert!(
        std::process::Command::new("tar").arg("czf").arg(&tgz).arg("-C").arg(&src).arg(".").status().unwrap().success()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", "import shutil,sys; shutil.make_archive(sys.argv[1][:-4], 'zip', sys.argv[2])"])
        .arg(&zip)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    (std::fs::read(tgz).unwrap(), std::fs::read(zip).unwrap())
}

#[track_caller]
fn nothing_installed(env: &Env) {
    let visible: Vec<String> = listing(&env.packs()).into_iter().filter(|p| !p.starts_with(".attune")).collect();
    assert!(visible.is_empty(), "{visible:?}");
    assert_eq!(listing(&env.packs().join(".attune/staging")), Vec::<String>::new());
    assert!(query(env, "SELECT id FROM installations WHERE status != 'failed'").is_empty());
}

#[test]
fn downloads_and_records_where_it_came_from() {
    let env = Env::new();
    let (tgz, zip) = archives(&env);
    let server = Server::start("127.0.0.1");
    server.route("/web.tgz", Route::File(tgz.clone())).route("/web.zip", Route::File(zip));

    let out = env.run(&["install", &server.url("/web.tgz")]).success();
    assert!(out.stdout.contains("installed web 1.0.0"), "{}", out.stdout);
    assert_eq!(
        std::fs::metadata(env.packs().join("web-1.0.0/actions/run.sh")).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let info = env.run(&["info", "web", "--json"]).success().json();
    let row = &info["installed"][0];
    assert_eq!(row["source_type"], "http");
    assert_eq!(row["source"], server.url("/web.tgz"));
    let meta = &row["metadata_json"]["fetcher"];
    assert_eq!(meta["http-status"], "200");
    assert_eq!(meta["final-url"], server.url("/web.tgz"));
    assert_eq!(meta["etag"], "\"v1-etag\"");
    assert_eq!(meta["last-modified"], "Tue, 24 Nov 2026 10:00:00 GMT");
    assert_eq!(meta["size"], tgz.len().to_string());
    assert_eq!(meta[attune_app::keys::ARCHIVE_SHA256], hex::encode(sha2::Sha256::digest(&tgz)));

    // A zip needs random access: it is read back from scratch space.
    env.run(&["install", "--force", &server.url("/web.zip")]).success();
    env.run(&["verify"]).success();
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn not_found_and_server_errors_name_the_status_and_url() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    server.route("/boom", Route::Status(500));
    let out = env.run(&["install", &server.url("/missing.tgz")]).failure();
    assert!(
        out.stderr.contains(&format!("GET {}: the server answered HTTP 404", server.url("/missing.tgz"))),
        "{}",
        out.stderr
    );
    let out = env.run(&["install", &server.url("/boom")]).failure();
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn follows_a_redirect_chain_and_records_the_final_url() {
    let env = Env::new();
    let (tgz, _) = archives(&env);
    let server = Server::start("127.0.0.1");
    server
        .route("/a", Route::Redirect(301, "/b".into()))
        .route("/b", Route::Redirect(302, server.url("/c")))
        .route("/c", Route::Redirect(307, "/files/web.tgz".into()))
        .route("/files/web.tgz", Route::File(tgz));
    env.run(&["install", &server.url("/a")]).success();
    let info = env.run(&["info", "web", "--json"]).success().json();
    assert_eq!(info["installed"][0]["metadata_json"]["fetcher"]["final-url"], server.url("/files/web.tgz"));
    assert_eq!(info["installed"][0]["source"], server.url("/a"));

    server.route("/loop", Route::Redirect(302, "/loop".into()));
    let out = env.run(&["install", "--force", &server.url("/loop")]).failure();
    assert!(out.stderr.contains("more than 10 redirects"), "{}", out.stderr);
}

#[test]
fn a_redirect_to_another_host_needs_allowing() {
    let env = Env::new();
    let (tgz, _) = archives(&env);
    let origin = Server::start("127.0.0.1");
    let other = Server::start("127.0.0.2");
    other.route("/web.tgz", Route::File(tgz));
    origin.route("/web.tgz", Route::Redirect(302, other.url("/web.tgz")));

    let out = env.run(&["install", &origin.url("/web.tgz")]).failure();
    assert!(out.stderr.contains("a request to 127.0.0.2 was refused"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host 127.0.0.2"), "{}", out.stderr);
    assert!(other.seen.lock().unwrap().is_empty(), "the other host was contacted");
    nothing_installed(&env);

    env.run(&["install", "--allow-host", "127.0.0.2", &origin.url("/web.tgz")]).success();
    assert_eq!(other.seen.lock().unwrap().len(), 1);
}

#[test]
fn connection_refused_is_clear() {
    let env = Env::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = env.run(&["install", &format!("http://127.0.0.1:{port}/web.tgz")]).failure();
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_stalled_server_times_out() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    server.route("/stall.tgz", Route::Stall { len: 1 << 20 });
    let t = Instant::now();
    let out = env.run(&["install", "--limit-time", "3s", &server.url("/stall.tgz")]).failure();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(out.stderr.contains("time") || out.stderr.contains("timed out"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_body_over_the_byte_limit_stops_the_download() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    server.route("/big.tgz", Route::Zeros { mib: 64 });
    let out = env.run(&["install", "--limit-bytes", "4MiB", &server.url("/big.tgz")]).failure();
    assert!(out.stderr.contains("byte limit of 4194304 bytes"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_short_body_is_an_error() {
    let env = Env::new();
    let server = Server::start("127.0.0.1");
    server.route("/short.tgz", Route::Short { promised: 10_000, sent: vec![0x1f, 0x8b, 8, 0] });
    let out = env.run(&["install", &server.url("/short.tgz")]).failure();
    assert!(out.stderr.contains("/short.tgz"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_checksum_mismatch_installs_nothing_though_extraction_streams() {
    let env = Env::new();
    let (tgz, _) = archives(&env);
    let server = Server::start("127.0.0.1");
    server.route("/web.tgz", Route::File(tgz.clone()));
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = env.run(&["install", "--checksum", &wrong, &server.url("/web.tgz")]).failure();
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was installed"), "{}", out.stderr);
    nothing_installed(&env);
    let right = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tgz)));
    env.run(&["install", "--checksum", &right, &server.url("/web.tgz")]).success();
    assert_eq!(query(&env, "SELECT verified FROM installations WHERE status = 'installed'"), vec![vec!["1"]]);
}

#[test]
fn credentials_are_sent_but_never_shown_or_stored() {
    let env = Env::new();
    let (tgz, _) = archives(&env);
    let server = Server::start("127.0.0.1");
    server.route("/web.tgz", Route::File(tgz));
    let url = format!("http://alice:s3cret@{}/web.tgz", server.addr);
    let out = env.run(&["install", &url]).success();
    assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("Basic YWxpY2U6czNjcmV0"), "{seen:?}");
    let rows = query(&env, "SELECT source, metadata_json FROM installations");
    assert!(rows.iter().flatten().all(|c| !c.contains("s3cret")), "{rows:?}");
    let out = env.run(&["install", "--force", &format!("http://alice:s3cret@{}/nope.tgz", server.addr)]).failure();
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
}

#[test]
fn plain_http_is_only_for_loopback() {
    let env = Env::new();
    let out = env.run(&["install", "http://packs.example.com/web.tgz"]).failure();
    assert!(out.stderr.contains("plain http:// is only allowed for loopback hosts"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-insecure-http"), "{}", out.stderr);
}
