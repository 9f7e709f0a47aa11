//! The example OCI plugin end to end: a real registry (Debian's
//! `docker-registry`) on loopback, artifacts pushed over its HTTP API, the
//! plugin added and granted, packs installed by tag and by digest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{Env, listing, query};
use sha2::Digest;

/// Credentials the `curl` pushes use, when the registry wants them.
static AUTH: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

struct Registry {
    child: Child,
    addr: String,
    storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(env: &Env) -> Option<Registry> {
    registry_with(env, None)
}

/// A registry on a free loopback port, with basic auth for (user, password)
/// when given; `None` when docker-registry is not installed.
// The child is reaped by `Registry`'s `Drop`, which the lint cannot see.
#[allow(clippy::zombie_processes)]
fn registry_with(env: &Env, user: Option<(&str, &str)>) -> Option<Registry> {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"].into_iter().find(|p| Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let storage = env.tmp.path().join("registry");
    let config = env.tmp.path().join("registry.yml");
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    if let Some((u, p)) = user {
        let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().expect("htpasswd (apache2-utils)");
        let file = env.tmp.path().join("htpasswd");
        std::fs::write(&file, out.stdout).unwrap();
        yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", file.display()));
    }
    std::fs::write(&config, yaml).unwrap();
    let log = env.tmp.path().join("registry.log");
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Owned by the guard from here on, so it is reaped on every path.
    let reg = Registry { child, addr: format!("127.0.0.1:{port}"), storage };
    let url = format!("http://{}/v2/", reg.addr);
    let mut probe = vec!["-sf".to_string(), url];
    if let Some((u, p)) = user {
        probe.extend(["-u".to_string(), format!("{u}:{p}")]);
    }
    for _ in 0..100 {
        if curl(&probe.iter().map(String::as_str).collect::<Vec<_>>()).is_some() {
            return Some(reg);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the registry did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
}

fn curl(args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("curl");
    if let Some(auth) = &*AUTH.lock().unwrap() {
        cmd.args(["-u", auth]);
    }
    let out = cmd.args(args).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes `bytes` as a blob of `repo`; returns its digest.
fn push_blob(reg: &Registry, repo: &str, bytes: &[u8], dir: &Path) -> String {
    let digest = sha(bytes);
    let headers = curl(&[
        "-sf",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("http://{}/v2/{repo}/blobs/uploads/", reg.addr),
    ])
    .unwrap();
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .unwrap()
        .trim()
        .to_string();
    let location = if location.starts_with('/') { format!("http://{}{location}", reg.addr) } else { location };
    let sep = if location.contains('?') { '&' } else { '?' };
    let file = dir.join(digest.replace(':', "-"));
    std::fs::write(&file, bytes).unwrap();
    curl(&[
        "-sf",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{sep}digest={digest}"),
    ])
    .expect("blob upload");
    digest
}

/// Pushes a pack as an OCI artifact; returns the manifest digest.
fn push_pack(env: &Env, reg: &Registry, repo: &str, tag: &str, src: &Path) -> (String, String) {
    let tgz = env.tmp.path().join(format!("{tag}.tgz"));
    assert!(Command::new("tar").arg("czf").arg(&tgz).arg("-C").arg(src).arg(".").status().unwrap().success());
    let layer = std::fs::read(&tgz).unwrap();
    let config = b"{}".to_vec();
    let layer_digest = push_blob(reg, repo, &layer, env.tmp.path());
    let config_digest = push_blob(reg, repo, &config, env.tmp.path());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len() }],
    })
    .to_string();
    let file = env.tmp.path().join(format!("{tag}.manifest.json"));
    std::fs::write(&file, &manifest).unwrap();
    curl(&[
        "-sf",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{}/v2/{repo}/manifests/{tag}", reg.addr),
    ])
    .expect("manifest upload");
    (sha(manifest.as_bytes()), layer_digest)
}

fn oci_wasm() -> PathBuf {
    crate::common::test_plugins::wasm("oci")
}

#[test]
fn oci_plugin_end_to_end() {
    let env = Env::new();
    let Some(reg) = registry(&env) else {
        // CI installs it, so there a missing registry is a failure, not a skip.
        assert!(std::env::var_os("CI").is_none(), "docker-registry is not installed");
        eprintln!("note: docker-registry is not installed (apt-get install docker-registry); skipping");
        return;
    };
    let src = env.make_pack("ocipack", "1.0.0");
    let (manifest_digest, layer_digest) = push_pack(&env, &reg, "packs/ocipack", "1.0.0", &src);
    let source = format!("oci://{}/packs/ocipack:1.0.0", reg.addr);

    // Added but not granted: the registry is out of reach.
    env.run(&["plugin", "add", oci_wasm().to_str().unwrap()]).success();
    let out = env.run(&["install", &source]).failure();
    assert!(
        out.stderr.contains("it called wasi:http, which is not linked")
            && out.stderr.contains("allow the host it needs (127.0.0.1) with --allow-host"),
        "{}",
        out.stderr
    );

    env.run(&["plugin", "grant", "oci", "--allow-host", "127.0.0.1"]).success();
    let out = env.run(&["install", &source]).success();
    assert!(out.stdout.contains("installed ocipack 1.0.0"), "{}", out.stdout);
    let sum = |p: &Path| {
        env.run(&["pack", "checksum", p.to_str().unwrap(), "--format", "json"]).success().json()["digest"].clone()
    };
    assert_eq!(sum(&env.packs().join("ocipack-1.0.0")), sum(&src));
    let info = env.run(&["info", "ocipack", "--json"]).success().json();
    let meta = &info["installed"][0]["metadata_json"]["fetcher"];
    assert_eq!(meta["manifest-digest"], manifest_digest);
    assert_eq!(meta["layer-digest"], layer_digest);
    assert_eq!(info["installed"][0]["fetcher_name"], "oci");

    // By digest: the same artifact; a wrong digest is not found.
    env.run(&["install", "--force", &format!("oci://{}/packs/ocipack@{manifest_digest}", reg.addr)]).success();
    let wrong = format!("oci://{}/packs/ocipack@sha256:{}", reg.addr, "0".repeat(64));
    let out = env.run(&["install", "--force", &wrong]).failure();
    assert!(out.stderr.contains("404") || out.stderr.contains("no such manifest"), "{}", out.stderr);

    // A layer changed in the registry's storage is caught by its digest.
    let hex = layer_digest.trim_start_matches("sha256:");
    let data = reg.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let before = query(&env, "SELECT COUNT(*) FROM installations WHERE status = 'installed'");
    let out = env.run(&["install", "--force", &source]).failure();
    assert!(out.stderr.contains("nothing was extracted"), "{}", out.stderr);
    assert_eq!(query(&env, "SELECT COUNT(*) FROM installations WHERE status = 'installed'"), before);
    assert!(listing(&env.packs().join(".attune/staging")).is_empty());
}

#[test]
fn oci_basic_auth_uses_the_credentials_in_the_source() {
    if Command::new("htpasswd").arg("-h").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "htpasswd (apache2-utils) is not installed");
        return;
    }
    let env = Env::new();
    let Some(reg) = registry_with(&env, Some(("alice", "s3cret"))) else {
        assert!(std::env::var_os("CI").is_none(), "docker-registry is not installed");
        return;
    };
    *AUTH.lock().unwrap() = Some("alice:s3cret".into());
    let src = env.make_pack("private", "1.0.0");
    push_pack(&env, &reg, "team/private", "1.0.0", &src);
    *AUTH.lock().unwrap() = None;
    env.run(&["plugin", "add", oci_wasm().to_str().unwrap(), "--allow-host", "127.0.0.1"]).success();

    let out = env.run(&["install", &format!("oci://{}/team/private:1.0.0", reg.addr)]).failure();
    assert!(out.stderr.contains("wants credentials"), "{}", out.stderr);
    let out = env.run(&["install", &format!("oci://alice:wrong@{}/team/private:1.0.0", reg.addr)]).failure();
    assert!(out.stderr.contains("refused access"), "{}", out.stderr);
    let out = env.run(&["install", &format!("oci://alice:s3cret@{}/team/private:1.0.0", reg.addr)]).success();
    assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
    let rows = query(&env, "SELECT source FROM installations");
    assert!(rows.iter().flatten().all(|s| !s.contains("s3cret")), "{rows:?}");
}

#[test]
fn a_range_installs_the_highest_listed_tag_and_upgrade_finds_newer_ones() {
    let env = Env::new();
    let Some(reg) = registry(&env) else {
        assert!(std::env::var_os("CI").is_none(), "docker-registry is not installed");
        eprintln!("note: docker-registry is not installed (apt-get install docker-registry); skipping");
        return;
    };
    let push = |version: &str, tags: &[&str]| {
        let src = env.make_pack("ocipack", version);
        for tag in tags {
            push_pack(&env, &reg, "packs/ocipack", tag, &src);
        }
    };
    // Two versions, and tags that are not versions (ignored by the plugin).
    push("1.2.0", &["1.2.0", "latest"]);
    push("1.4.0", &["1.4.0", "v1.4.0"]);
    push("2.0.0", &["2.0.0"]);
    let repo = format!("oci://{}/packs/ocipack", reg.addr);
    env.run(&["plugin", "add", oci_wasm().to_str().unwrap()]).success();
    env.run(&["plugin", "grant", "oci", "--allow-host", "127.0.0.1"]).success();

    // The highest tag in the range, installed from its exact source.
    let out = env.run(&["install", &format!("{repo}@^1.2")]).success();
    assert!(out.stdout.contains("installed ocipack 1.4.0"), "{}", out.stdout);
    let info = env.run(&["info", "ocipack", "--json"]).success().json();
    let row = &info["installed"][0];
    assert_eq!(row["source"], format!("{repo}:1.4.0"), "{info}");
    assert_eq!(row["metadata_json"]["listed_from"], repo, "{info}");
    assert_eq!(row["fetcher_name"], "oci");

    // A range nothing matches names what there is.
    let out = env.run(&["install", &format!("{repo}@^3")]).failure();
    assert!(out.stderr.contains("lists no version matching ^3 (it lists: 1.2.0, 1.4.0, 2.0.0)"), "{}", out.stderr);

    // Newer versions are found through the plugin, with no index configured.
    let v = env.run(&["--json", "outdated"]).failure().json();
    let row = &v["outdated"][0];
    assert_eq!(
        (row["ref"].as_str(), row["current"].as_str(), row["newest"].as_str()),
        (Some("ocipack"), Some("1.4.0"), Some("2.0.0"))
    );
    let j = env.run(&["upgrade", "ocipack", "--json"]).success().json();
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str(), j["upgraded"].as_bool()),
        (Some("1.4.0"), Some("2.0.0"), Some(true)),
        "{j}"
    );
    assert_eq!(std::fs::read_link(env.packs().join("ocipack")).unwrap(), Path::new("ocipack-2.0.0"));
    env.run(&["verify"]).success();
    // The new installation keeps the list it came from: nothing newer now.
    let out = env.run(&["upgrade", "ocipack"]).success();
    assert!(out.stdout.contains("already at the newest version (2.0.0)"), "{}", out.stdout);
    env.run(&["outdated"]).success();
}
