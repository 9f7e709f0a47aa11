//! The CLI end to end: the real binary, a real SQLite file, real folders.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Env, listing, query};

#[test]
fn install_list_info_verify_uninstall_round_trip() {
    let env = Env::new();
    let src = env.make_pack("round_trip", "1.2.3");

    let out = env.run(&["install", src.to_str().unwrap()]).success();
    insta::assert_snapshot!("install", env.redact(&out.stdout));
    let dest = env.packs().join("round_trip-1.2.3");
    assert_eq!(listing(&dest), listing(&src), "the installed tree is the source tree");
    assert_eq!(std::fs::metadata(dest.join("actions/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_link(dest.join("actions/alias.sh")).unwrap().to_str(), Some("run.sh"));
    assert!(dest.join("empty").is_dir());

    let out = env.run(&["list"]).success();
    insta::assert_snapshot!("list", env.redact(&out.stdout));

    let out = env.run(&["info", "round_trip"]).success();
    insta::assert_snapshot!("info", env.redact(&out.stdout));

    let out = env.run(&["verify"]).success();
    assert_eq!(out.stdout, "ok        round_trip 1.2.3\n");

    // The checksum the CLI prints for the source is the one recorded.
    let sum = env.run(&["pack", "checksum", src.to_str().unwrap(), "--format", "json"]).success().json();
    let rows = query(
        &env,
        "SELECT checksum, checksum_algorithm, source_type, installed_by, method, status, fetcher_name FROM installations",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], sum["digest"].as_str().unwrap());
    let me = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    assert_eq!(rows[0][1..], ["sha256-tree-v1", "local", me.trim(), "cli", "installed", "local"]);

    let out = env.run(&["uninstall", "round_trip"]).success();
    insta::assert_snapshot!("uninstall", env.redact(&out.stdout));
    assert!(!dest.exists());
    assert_eq!(
        env.run(&["list"]).success().stdout,
        "no packs installed (install one with `attune install <source>`)\n"
    );
    // History is kept: the install row is now 'removed', and the uninstall is a row of its own.
    let rows = query(&env, "SELECT action, status FROM installations ORDER BY id");
    assert_eq!(rows, vec![vec!["install", "removed"], vec!["uninstall", "removed"]]);
}

#[test]
fn json_output_for_every_command() {
    let env = Env::new();
    let src = env.make_pack("jsonpack", "0.1.0");
    let v = env.run(&["--json", "install", src.to_str().unwrap()]).success().json();
    assert_eq!(v["ref"], "jsonpack");
    assert_eq!(v["version"], "0.1.0");
    assert!(v["checksum"].as_str().unwrap().starts_with("sha256-tree-v1:"));
    let v = env.run(&["list", "--json"]).success().json();
    assert_eq!(v[0]["pack_ref"], "jsonpack");
    assert!(v[0].get("manifest_json").is_none());
    let v = env.run(&["info", "jsonpack", "--json"]).success().json();
    assert_eq!(v["installed"][0]["fetcher_name"], "local");
    let v = env.run(&["verify", "--json"]).success().json();
    assert_eq!(v["ok"], true);
    let v = env.run(&["plugin", "list", "--json"]).success().json();
    assert_eq!(v[0]["name"], "local");
    assert_eq!(v[0]["kind"], "built-in");
    let v = env.run(&["doctor", "--json"]).success().json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
    let v = env.run(&["uninstall", "jsonpack", "--json"]).success().json();
    assert_eq!(v["version"], "0.1.0");
    // History outlives the install.
    let v = env.run(&["info", "jsonpack", "--json"]).success().json();
    assert_eq!(v["installed"].as_array().unwrap().len(), 0);
    assert_eq!(v["history"].as_array().unwrap().len(), 2);
    // Errors are JSON too.
    let out = env.run(&["info", "never_installed", "--json"]).failure();
    assert!(out.json()["error"]["message"].as_str().unwrap().contains("not installed"));
}

#[test]
fn verify_names_every_kind_of_tampering() {
    let env = Env::new();
    let src = env.make_pack("tamper", "1.0.0");
    env.run(&["install", src.to_str().unwrap()]).success();
    let d = env.packs().join("tamper-1.0.0");

    // One changed byte, an added file, a removed file, a flipped exec bit, a retargeted symlink.
    let mut bytes = std::fs::read(d.join("rules/on.yaml")).unwrap();
    bytes[0] ^= 1;
    std::fs::write(d.join("rules/on.yaml"), bytes).unwrap();
    std::fs::write(d.join("actions/extra.py"), "print()").unwrap();
    std::fs::remove_file(d.join("actions/run.yaml")).unwrap();
    std::fs::set_permissions(d.join("actions/run.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(d.join("actions/alias.sh")).unwrap();
    std::os::unix::fs::symlink("../pack.yaml", d.join("actions/alias.sh")).unwrap();

    let out = env.run(&["verify", "tamper"]).failure();
    insta::assert_snapshot!("verify_tampered", env.redact(&out.stdout));
    assert!(out.stderr.contains("do not match"), "{}", out.stderr);
    let rows = query(&env, "SELECT verify_status FROM installations WHERE status = 'installed'");
    assert_eq!(rows, vec![vec!["tampered"]]);

    let v = env.run(&["verify", "--json"]).failure().json();
    let kinds: Vec<&str> =
        v["packs"][0]["changes"].as_array().unwrap().iter().map(|c| c["change"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 5, "{v}");

    // A reinstall with --force repairs it.
    env.run(&["install", "--force", src.to_str().unwrap()]).success();
    env.run(&["verify"]).success();
}

#[test]
fn verify_reports_a_missing_pack_folder() {
    let env = Env::new();
    let src = env.make_pack("gone", "1.0.0");
    env.run(&["install", src.to_str().unwrap()]).success();
    std::fs::remove_dir_all(env.packs().join("gone-1.0.0")).unwrap();
    let out = env.run(&["verify"]).failure();
    assert!(out.stdout.starts_with("MISSING   gone 1.0.0"), "{}", out.stdout);
    let out = env.run(&["doctor"]).failure();
    assert!(out.stdout.contains("gone@1.0.0: recorded as installed but"), "{}", out.stdout);
    let out = env.run(&["doctor", "--repair"]).success();
    assert!(out.stdout.contains("recorded as uninstalled"), "{}", out.stdout);
    env.run(&["doctor"]).success();
}

#[test]
fn reinstall_needs_force_and_replaces_atomically() {
    let env = Env::new();
    let src = env.make_pack("again", "1.0.0");
    env.run(&["install", src.to_str().unwrap()]).success();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("again@1.0.0 is already installed at"), "{}", out.stderr);
    assert!(out.stderr.contains("use --force"), "{}", out.stderr);

    std::fs::write(src.join("rules/new.yaml"), "name: new\n").unwrap();
    let out = env.run(&["install", "--force", src.to_str().unwrap()]).success();
    assert!(out.stdout.starts_with("reinstalled again 1.0.0"), "{}", out.stdout);
    assert!(env.packs().join("again-1.0.0/rules/new.yaml").exists());
    let rows = query(&env, "SELECT action, status FROM installations ORDER BY id");
    assert_eq!(rows, vec![vec!["install", "replaced"], vec!["reinstall", "installed"]]);
    // Nothing is left in staging or trash.
    assert_eq!(listing(&env.packs().join(".attune/staging")), Vec::<String>::new());
    assert_eq!(listing(&env.packs().join(".attune/trash")), Vec::<String>::new());
}

#[test]
fn two_versions_live_side_by_side() {
    let env = Env::new();
    env.run(&["install", env.make_pack("multi", "1.0.0").to_str().unwrap()]).success();
    env.run(&["install", env.make_pack("multi", "2.0.0").to_str().unwrap()]).success();
    assert!(env.packs().join("multi-1.0.0").is_dir() && env.packs().join("multi-2.0.0").is_dir());
    let out = env.run(&["uninstall", "multi"]).failure();
    assert!(out.stderr.contains("several versions installed (1.0.0, 2.0.0)"), "{}", out.stderr);
    // 1.0.0 (installed first) is active: removing it while 2.0.0 stays takes --force.
    let out = env.run(&["uninstall", "multi@1.0.0"]).failure();
    assert!(out.stderr.contains("multi@1.0.0 is the active version"), "{}", out.stderr);
    env.run(&["uninstall", "multi@1.0.0", "--force"]).success();
    assert!(!env.packs().join("multi-1.0.0").exists() && env.packs().join("multi-2.0.0").is_dir());
}

#[test]
fn checksum_option_is_enforced() {
    let env = Env::new();
    let src = env.make_pack("sums", "1.0.0");
    let good = env.run(&["pack", "checksum", src.to_str().unwrap(), "--format", "json"]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = format!("sha256-tree-v1:{}", "0".repeat(64));
    let out = env.run(&["install", "--checksum", &bad, src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("checksum mismatch: expected sha256-tree-v1:0000"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was installed"));
    assert!(!env.packs().join("sums-1.0.0").exists());
    assert!(query(&env, "SELECT id FROM installations").is_empty());

    env.run(&["install", "--checksum", &good, src.to_str().unwrap()]).success();
    assert_eq!(query(&env, "SELECT verified FROM installations"), vec![vec!["1"]]);

    let out = env.run(&["install", "--checksum", "md5:abc", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("--checksum \"md5:abc\""), "{}", out.stderr);
}

#[test]
fn bad_sources_and_manifests_fail_clearly_and_install_nothing() {
    let env = Env::new();
    let out = env.run(&["install", "./does-not-exist"]).failure();
    assert_eq!(out.stderr, "error: ./does-not-exist: no such file or folder\n");

    let out = env.run(&["install", "s3://bucket/pack"]).failure();
    assert!(out.stderr.contains("unsupported source"), "{}", out.stderr);

    let src = env.make_pack("bad", "1.0.0");
    std::fs::write(src.join("pack.yaml"), "---\nname: Bad Name\nversion: 1.0.0\n").unwrap();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("Bad Name"), "{}", out.stderr);

    std::fs::write(src.join("pack.yaml"), "---\nname: bad\nversion: v1.0\n").unwrap();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("version"), "{}", out.stderr);

    std::fs::remove_file(src.join("pack.yaml")).unwrap();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("pack.yaml"), "{}", out.stderr);

    // Nothing reached the packs dir or the database; staging was cleaned.
    assert_eq!(listing(&env.packs()).iter().filter(|p| !p.starts_with(".attune")).count(), 0);
    assert_eq!(listing(&env.packs().join(".attune/staging")), Vec::<String>::new());
    assert!(query(&env, "SELECT id FROM installations").is_empty());
}

#[test]
fn vcs_metadata_is_left_out() {
    let env = Env::new();
    let src = env.make_pack("vcs", "1.0.0");
    for d in [".git", ".hg", ".svn", "actions/.git"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
        std::fs::write(src.join(d).join("config"), "x").unwrap();
    }
    std::fs::write(src.join(".gitignore"), "*.pyc\n").unwrap();
    env.run(&["install", src.to_str().unwrap()]).success();
    let files = listing(&env.packs().join("vcs-1.0.0"));
    assert!(
        files.iter().all(|f| !f.contains(".git/") && !f.ends_with(".git") && !f.contains(".hg") && !f.contains(".svn")),
        "{files:?}"
    );
    assert!(files.contains(&".gitignore".to_string()));
}

#[test]
fn symlinks_out_of_a_local_pack_are_refused() {
    let env = Env::new();
    let src = env.make_pack("linky", "1.0.0");
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("passwd: symlink target leaves the pack"), "{}", out.stderr);
    assert!(!env.packs().join("linky-1.0.0").exists());
    // A relative link that climbs out is refused by the host's staging rules.
    std::fs::remove_file(src.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../../outside", src.join("actions/up")).unwrap();
    let out = env.run(&["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("leaves the pack"), "{}", out.stderr);
    assert!(!env.packs().join("linky-1.0.0").exists());
}

#[test]
fn pack_checksum_formats() {
    let env = Env::new();
    let src = env.make_pack("fmt", "1.0.0");
    let table = env.run(&["pack", "checksum", src.to_str().unwrap()]).success().stdout;
    insta::assert_snapshot!("pack_checksum_table", env.redact(&table));
    let yaml = env.run(&["pack", "checksum", src.to_str().unwrap(), "--format", "yaml"]).success().stdout;
    assert!(yaml.contains("algorithm: sha256-tree-v1"), "{yaml}");
    let entry = env.run(&["pack", "checksum", src.to_str().unwrap(), "--json"]).success().json();
    assert_eq!(entry["ref"], "fmt");
    assert_eq!(entry["version"], "1.0.0");
    assert!(entry["tree_checksum"].as_str().unwrap().starts_with("sha256-tree-v1:"));
    // A single file hashes like sha256sum.
    let f = env.run(&["pack", "checksum", src.join("rules/on.yaml").to_str().unwrap()]).success().stdout;
    let expected = std::process::Command::new("sha256sum").arg(src.join("rules/on.yaml")).output().unwrap();
    let hex = String::from_utf8_lossy(&expected.stdout).split_whitespace().next().unwrap().to_string();
    assert!(f.starts_with(&format!("sha256:{hex}")), "{f}");
}

#[test]
fn limits_from_flags_and_config_file() {
    let env = Env::new();
    let src = env.make_pack("limited", "1.0.0");
    let out = env.run(&["install", "--limit-files", "3", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("more than the file limit of 3 entries"), "{}", out.stderr);
    let out = env.run(&["install", "--limit-bytes", "10", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("byte limit of 10 bytes"), "{}", out.stderr);
    let cfg = env.tmp.path().join("config.toml");
    std::fs::write(&cfg, "[limits]\nfiles = 4\n").unwrap();
    let out = env.run(&["--config", cfg.to_str().unwrap(), "install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("file limit of 4"), "{}", out.stderr);
    let out = env.run(&["install", "--limit-time", "soon", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("--limit-time"), "{}", out.stderr);
    env.run(&["install", src.to_str().unwrap()]).success();
}

#[test]
fn compiled_fetchers_are_cached_and_a_corrupt_cache_is_a_miss() {
    let env = Env::new();
    let cache = env.tmp.path().join("cache");
    let run = |args: &[&str]| {
        let o = env.cmd().env("ATTUNE_CACHE_DIR", &cache).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["plugin", "list"]);
    let files = listing(&cache.join("components-v1"));
    assert!(files.iter().filter(|f| f.ends_with(".cwasm")).count() >= 3, "{files:?}");

    // Garbage in every cached file: each is recompiled, not trusted, not fatal.
    for f in &files {
        std::fs::write(cache.join("components-v1").join(f), b"not a compiled component").unwrap();
    }
    run(&["plugin", "list"]);
    let src = env.make_pack("cached", "1.0.0");
    run(&["install", src.to_str().unwrap()]);
    for f in listing(&cache.join("components-v1")) {
        let len = std::fs::metadata(cache.join("components-v1").join(&f)).unwrap().len();
        assert!(len > 1000, "{f} was not rewritten ({len} bytes)");
    }
}
