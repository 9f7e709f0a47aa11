//! Corporate networks end to end through the real `attune` binary: a
//! private CA (`--ca-cert`, `SSL_CERT_FILE`, the config's `tls.ca_files`),
//! certificates refused for what is wrong with them, a client certificate,
//! Debian's tinyproxy as the only way out, and a private git repository
//! over HTTPS read with a token from the config that is never written down.

use std::path::{Path, PathBuf};

use crate::common::tls::{self, Ca, Handler, Tinyproxy};
use crate::common::{Env, git_server::git, query, tgz, write_pack};

/// A .tgz of a small pack named `name`.
fn archive(env: &Env, name: &str) -> Vec<u8> {
    let dir = env.tmp.path().join("archives").join(name);
    write_pack(&dir, name, "1.0.0");
    tgz(&dir)
}

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.tmp.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_private_ca_is_trusted_from_the_flag_the_environment_or_the_config_and_refused_without() {
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let server =
        tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), tls::files(&[("/web.tgz", archive(&env, "web"))]));
    let url = server.url("https", "/web.tgz");

    // Without it: the error says the issuer is unknown and how to add a CA.
    let out = env.run(&["install", &url]).failure();
    assert!(out.stderr.contains("TLS to 127.0.0.1 failed") && out.stderr.contains("unknown issuer"), "{}", out.stderr);
    assert!(out.stderr.contains("--ca-cert"), "{}", out.stderr);
    assert!(!out.stderr.contains("TlsProtocolError"), "{}", out.stderr);

    // --ca-cert FILE.
    let out = env.run(&["install", "--ca-cert", s(&ca_file), &url]).success();
    assert!(out.stdout.contains("installed web 1.0.0"), "{}", out.stdout);

    // SSL_CERT_FILE, as curl and git read it (another env: nothing cached).
    let env2 = Env::new();
    env2.run_with(&[("SSL_CERT_FILE", s(&ca_file))], &["install", &url]).success();
    // A file with no CA in it is refused by name.
    let junk = write(&env2, "junk.pem", "not a certificate\n");
    let out = env2.run(&["install", "--force", "--ca-cert", s(&junk), &url]).failure();
    assert!(out.stderr.contains("junk.pem"), "{}", out.stderr);

    // The config's tls.ca_files.
    let env3 = Env::new();
    let config = write(&env3, "config.toml", &format!("[tls]\nca_files = [{:?}]\n", s(&ca_file)));
    env3.run(&["--config", s(&config), "install", &url]).success();
}

#[test]
fn a_certificate_for_another_name_or_out_of_date_is_refused_saying_so() {
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let files = tls::files(&[("/web.tgz", archive(&env, "web"))]);

    let other = tls::serve(&rt, Some((&ca.leaf(&["other.example"]), None)), files.clone());
    let out = env.run(&["install", "--ca-cert", s(&ca_file), &other.url("https", "/web.tgz")]).failure();
    assert!(out.stderr.contains("not valid for the name 127.0.0.1"), "{}", out.stderr);
    assert!(out.stderr.contains("other.example"), "{}", out.stderr);

    let expired = ca.leaf_dated(&["127.0.0.1"], rcgen::date_time_ymd(2000, 1, 1), rcgen::date_time_ymd(2001, 1, 1));
    let old = tls::serve(&rt, Some((&expired, None)), files);
    let out = env.run(&["install", "--ca-cert", s(&ca_file), &old.url("https", "/web.tgz")]).failure();
    assert!(out.stderr.contains("expired on 2001-01-01"), "{}", out.stderr);
    assert!(query(&env, "SELECT id FROM installations WHERE status != 'failed'").is_empty());
}

#[test]
fn a_server_that_wants_a_client_certificate_gets_the_configured_one() {
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let clients = Ca::new("Corp Clients CA");
    let server = tls::serve(
        &rt,
        Some((&ca.leaf(&["127.0.0.1"]), Some(&clients))),
        tls::files(&[("/web.tgz", archive(&env, "web"))]),
    );
    let url = server.url("https", "/web.tgz");

    let out = env.run(&["install", "--ca-cert", s(&ca_file), &url]).failure();
    assert!(out.stderr.contains("client_cert"), "{}", out.stderr);
    assert!(server.requests().is_empty(), "a request got through without a client certificate");

    let (cert, key) = clients.leaf(&["attune-client"]).write(env.tmp.path(), "client");
    let config = write(
        &env,
        "config.toml",
        &format!("[tls.hosts.\"127.0.0.1\"]\nclient_cert = {:?}\nclient_key = {:?}\n", s(&cert), s(&key)),
    );
    env.run(&["--config", s(&config), "install", "--ca-cert", s(&ca_file), &url]).success();
    assert_eq!(server.requests().len(), 1);
}

/// Redirects everything to `to`.
fn redirect(to: String) -> Handler {
    std::sync::Arc::new(move |_: http::request::Parts, _: bytes::Bytes| {
        let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        *r.status_mut() = http::StatusCode::FOUND;
        r.headers_mut().insert(http::header::LOCATION, to.parse().unwrap());
        r
    })
}

#[test]
fn through_tinyproxy_http_https_and_git_installs_work_and_the_policy_holds_before_the_proxy() {
    let Some(proxy) = Tinyproxy::start() else { return };
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let plain = tls::serve(&rt, None, tls::files(&[("/plain.tgz", archive(&env, "plain"))]));
    let secure = tls::serve(
        &rt,
        Some((&ca.leaf(&["127.0.0.1"]), None)),
        tls::files(&[("/secure.tgz", archive(&env, "secure"))]),
    );
    let vars = [("http_proxy", proxy.url()), ("HTTPS_PROXY", proxy.url())];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // http: absolute-form through the proxy.
    env.run_with(&vars, &["install", &plain.url("http", "/plain.tgz")]).success();
    let seen = proxy.requests();
    assert!(seen.iter().any(|r| r.starts_with(&format!("GET {}", plain.url("http", "/plain.tgz")))), "{seen:?}");

    // https: a CONNECT tunnel, the target's certificate checked inside it.
    env.run_with(&vars, &["install", "--ca-cert", s(&ca_file), &secure.url("https", "/secure.tgz")]).success();
    let seen = proxy.requests();
    assert!(seen.iter().any(|r| r.starts_with(&format!("CONNECT 127.0.0.1:{}", secure.port))), "{seen:?}");

    // git over http through the proxy.
    let root = env.tmp.path().join("git");
    bare_repo(&root, "repo.git", "gitpack");
    let git_server = crate::common::git_server::GitServer::start(&root);
    let out = env.run_with(&vars, &["install", &format!("git+{}", git_server.url("repo.git"))]).success();
    assert!(out.stdout.contains("installed gitpack 1.0.0"), "{}", out.stdout);
    let seen = proxy.requests();
    assert!(seen.iter().any(|r| r.contains(&format!("127.0.0.1:{}/repo.git/", git_server.addr.port()))), "{seen:?}");

    // A redirect to a host that is not granted is refused here: the proxy never sees it.
    let elsewhere = tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), tls::files(&[]));
    let hop = tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), redirect(elsewhere.url("https", "/secure.tgz")));
    let out = env.run_with(&vars, &["install", "--ca-cert", s(&ca_file), &hop.url("https", "/x.tgz")]).failure();
    assert!(out.stderr.contains(&format!("--allow-host 127.0.0.1:{}", elsewhere.port)), "{}", out.stderr);
    let seen = proxy.requests();
    assert!(seen.iter().any(|r| r.starts_with(&format!("CONNECT 127.0.0.1:{}", hop.port))), "{seen:?}");
    assert!(!seen.iter().any(|r| r.contains(&format!(":{}", elsewhere.port))), "{seen:?}");
    assert!(elsewhere.requests().is_empty());

    // NO_PROXY: straight to the server, the proxy sees nothing new.
    let before = proxy.requests().len();
    let direct = tls::serve(&rt, None, tls::files(&[("/direct.tgz", archive(&env, "direct"))]));
    let mut vars = vars.clone();
    vars.push(("NO_PROXY", "127.0.0.1"));
    env.run_with(&vars, &["install", &direct.url("http", "/direct.tgz")]).success();
    assert_eq!(proxy.requests().len(), before, "{:?}", proxy.requests());
    assert_eq!(direct.requests().len(), 1);
}

/// A bare repository `name` under `root` holding pack `pack` 1.0.0 on `main`.
fn bare_repo(root: &Path, name: &str, pack: &str) {
    let work = root.join(format!("{name}-work"));
    write_pack(&work, pack, "1.0.0");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "pack"]);
    git(root, &["clone", "-q", "--bare", s(&work), name]);
}

#[test]
fn a_private_git_repository_over_https_is_read_with_the_configured_token_which_is_never_written_down() {
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let root = env.tmp.path().join("git");
    bare_repo(&root, "private.git", "private");
    let token = "glpat-s3cret-t0ken-value";
    let server =
        tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), tls::git_backend(root, format!("Bearer {token}")));
    let url = format!("git+{}", server.url("https", "/private.git"));

    // Without the token: refused by the server.
    let out = env.run(&["install", "--ca-cert", s(&ca_file), &url]).failure();
    assert!(out.stderr.contains("401"), "{}", out.stderr);

    let config = write(
        &env,
        "config.toml",
        &format!("[tls]\nca_files = [{:?}]\n[credentials.\"127.0.0.1\"]\ntoken = {token:?}\n", s(&ca_file)),
    );
    let config = s(&config);
    let before = server.requests().len();
    let out = env.run(&["--config", config, "--verbose", "install", &url]).success();
    assert!(out.stdout.contains("installed private 1.0.0"), "{}", out.stdout);
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token), "the token was shown:\n{out:?}");
    let with_token = &server.requests()[before..];
    assert!(!with_token.is_empty());
    assert!(
        with_token.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {token}"))),
        "{with_token:?}"
    );

    let info = env.run(&["--config", config, "info", "private", "--json"]).success();
    assert!(!info.stdout.contains(token) && !info.stdout.contains("glpat"), "{}", info.stdout);
    let lock = env.tmp.path().join("attune.lock");
    env.run(&["--config", config, "lock", "--output", s(&lock)]).success();
    let locked = std::fs::read_to_string(&lock).unwrap();
    assert!(locked.contains("private.git") && !locked.contains(token), "{locked}");
    // Nor anywhere in the records.
    let db = std::fs::read(env.db_path()).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "the token is in the database");
}

/// A server whose files are added after it has a port (index entries name it).
fn shared_files(map: &std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>) -> Handler {
    let map = map.clone();
    std::sync::Arc::new(move |parts: http::request::Parts, _| {
        let body = map.lock().unwrap().get(parts.uri.path()).cloned();
        let mut r =
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body.clone().unwrap_or_default())));
        if body.is_none() {
            *r.status_mut() = http::StatusCode::NOT_FOUND;
        }
        r
    })
}

#[test]
fn an_index_and_a_plugin_behind_a_private_ca_are_read_with_the_flag() {
    let rt = tls::runtime();
    let env = Env::new();
    let ca = Ca::new("Corp Root CA");
    let ca_file = ca.write(env.tmp.path(), "corp-ca.pem");
    let map = Default::default();
    let server = tls::serve(&rt, Some((&ca.leaf(&["127.0.0.1"]), None)), shared_files(&map));
    let pack = archive(&env, "web");
    let entry = crate::common::index::archive_entry("web", "1.0.0", &server.url("https", "/web.tgz"), &pack, true);
    {
        let mut m = map.lock().unwrap();
        m.insert("/web.tgz".into(), pack);
        m.insert("/index.json".into(), crate::common::index::document(vec![entry]));
        m.insert("/hostile.wasm".into(), std::fs::read(crate::common::hostile_wasm()).unwrap());
    }
    let index = server.url("https", "/index.json");

    // Every command that fetches refuses the unknown issuer, naming the flag.
    for args in
        [vec!["index", "add", "corp", &index], vec!["plugin", "add", &server.url("https", "/hostile.wasm"), "--yes"]]
    {
        let out = env.run(&args).failure();
        assert!(out.stderr.contains("unknown issuer") && out.stderr.contains("--ca-cert"), "{args:?}: {}", out.stderr);
    }
    assert!(env.run(&["index", "list", "--json"]).success().json().as_array().unwrap().is_empty());

    // With --ca-cert each one works; the archive an index names needs it too.
    env.run(&["index", "add", "corp", &index, "--ca-cert", s(&ca_file)]).success();
    env.run(&["index", "update", "corp", "--ca-cert", s(&ca_file)]).success();
    let out = env.run(&["install", "web"]).failure();
    assert!(out.stderr.contains("unknown issuer"), "{}", out.stderr);
    let out = env.run(&["install", "web", "--ca-cert", s(&ca_file)]).success();
    assert!(out.stdout.contains("installed web 1.0.0"), "{}", out.stdout);
    let url = server.url("https", "/hostile.wasm");
    env.run(&["plugin", "add", &url, "--yes", "--ca-cert", s(&ca_file)]).success();
    assert_eq!(env.run(&["plugin", "info", "hostile", "--json"]).success().json()["plugin"]["added_from"], url);
}
