//! What an operator coming from `st2 pack` expects: `ref=version`, several
//! packs in one `install`, short `pack.yaml` versions (`0.2`) normalized as
//! st2 does, and the everyday details (a file's checksum as JSON, errors
//! naming the source given and saying a cause once, shell completions and a
//! man page).

use crate::common::http_server::{Route, Server};
use crate::common::index::{archive_entry, document};
use crate::common::{Env, tgz};

/// A loopback index with `core_utils` 1.4.2 and 1.5.0 and `other` 1.0.0.
fn index(env: &Env) -> Server {
    let server = Server::start("127.0.0.1");
    let mut entries = Vec::new();
    for (r, v) in [("core_utils", "1.4.2"), ("core_utils", "1.5.0"), ("other", "1.0.0")] {
        let bytes = tgz(&env.make_pack(r, v));
        let path = format!("/{r}-{v}.tgz");
        entries.push(archive_entry(r, v, &server.url(&path), &bytes, true));
        server.route(&path, Route::File(bytes));
    }
    server.route("/index.json", Route::File(document(entries)));
    env.run(&["index", "add", "main", &server.url("/index.json")]).success();
    server
}

fn installed(env: &Env) -> Vec<String> {
    let list = env.run(&["list", "--json"]).success().json();
    let mut out: Vec<String> = (list.as_array().unwrap().iter())
        .map(|r| format!("{}@{}", r["pack_ref"].as_str().unwrap(), r["version"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn ref_equals_version_installs_exactly_that_version_and_several_packs_install_in_one_go() {
    let env = Env::new();
    let _server = index(&env);
    let out = env.run(&["install", "core_utils=1.4.2", "other"]).success();
    assert!(out.stdout.contains("installed core_utils 1.4.2"), "{}", out.stdout);
    assert!(out.stdout.contains("installed other 1.0.0"), "{}", out.stdout);
    assert!(out.stderr.contains("installed all 2: core_utils=1.4.2, other"), "{}", out.stderr);
    assert_eq!(installed(&env), ["core_utils@1.4.2", "other@1.0.0"]);

    // The packs by name are one set: all or nothing.
    let out = env.run(&["--json", "install", "core_utils@^1.5", "nothere=1.0.0"]).failure();
    let v = out.json();
    assert_eq!(v["packs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["packs"][0]["source"], "core_utils@^1.5 nothere=1.0.0");
    assert_eq!(v["packs"][0]["ok"], false);
    assert!(v["packs"][0]["error"].as_str().unwrap().contains("nothere=1.0.0: no matching version"), "{v}");
    assert_eq!(installed(&env), ["core_utils@1.4.2", "other@1.0.0"], "nothing of the set was installed");

    // Another source failing does not stop the set; the exit code and JSON say which failed.
    let missing = env.tmp.path().join("missing-folder");
    let out = env.run(&["--json", "install", "core_utils@^1.5", missing.to_str().unwrap()]).failure();
    let v = out.json();
    let packs = v["packs"].as_array().unwrap();
    assert_eq!((packs[0]["source"].as_str(), packs[0]["ok"].as_bool()), (Some("core_utils@^1.5"), Some(true)));
    assert_eq!(packs[0]["result"]["install"]["version"], "1.5.0");
    assert_eq!((packs[1]["source"].as_str(), packs[1]["ok"].as_bool()), (Some(missing.to_str().unwrap()), Some(false)));
    assert!(packs[1]["error"].as_str().unwrap().contains("no such file or folder"), "{v}");
    assert_eq!(installed(&env), ["core_utils@1.4.2", "core_utils@1.5.0", "other@1.0.0"]);

    // What applies to one source is refused for several.
    let out = env.run(&["install", "core_utils", "other", "--checksum", "sha256:00"]).failure();
    assert!(out.stderr.contains("apply to one source"), "{}", out.stderr);
}

#[test]
fn a_short_pack_yaml_version_is_normalized_recorded_so_and_noted_on_stderr() {
    let env = Env::new();
    for (written, recorded) in [("0.2", "0.2.0"), ("1", "1.0.0")] {
        let src = env.make_pack("short", written);
        let yaml = std::fs::read_to_string(src.join("pack.yaml")).unwrap();
        assert!(yaml.contains(&format!("\nversion: {written}\n")), "{yaml}");
        let out = env.run(&["--json", "install", src.to_str().unwrap()]).success();
        assert_eq!(out.json()["version"], recorded, "stdout is the JSON report alone");
        assert!(!out.stdout.contains("not full semver"), "the note is on stderr only: {}", out.stdout);
        let note = format!("note: short: pack.yaml version {written} is not full semver; recorded as {recorded}");
        assert!(out.stderr.contains(&note), "{}", out.stderr);
        assert!(env.packs().join(format!("short-{recorded}")).is_dir());
    }
    assert_eq!(installed(&env), ["short@0.2.0", "short@1.0.0"]);
    env.run(&["verify", "short@0.2.0"]).success();
}

#[test]
fn pack_checksum_of_a_file_prints_its_sha256_as_json() {
    let env = Env::new();
    let file = env.tmp.path().join("pack.tgz");
    std::fs::write(&file, b"hello").unwrap();
    let v = env.run(&["--json", "pack", "checksum", file.to_str().unwrap()]).success().json();
    assert_eq!(v["digest"], "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(v["size"], 5);
}

#[test]
fn errors_name_the_source_given_not_the_staging_folder() {
    let env = Env::new();
    std::fs::create_dir_all(env.tmp.path().join("my_pack/actions")).unwrap();
    let out = env.cmd().current_dir(env.tmp.path()).args(["install", "./my_pack"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: pack.yaml not found in ./my_pack"), "{stderr}");
    assert!(!stderr.contains("staging"), "{stderr}");

    std::fs::write(env.tmp.path().join("my_pack/pack.yaml"), "name: x\nversion: banana\n").unwrap();
    let out = env.cmd().current_dir(env.tmp.path()).args(["install", "./my_pack"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: ./my_pack/pack.yaml: version \"banana\""), "{stderr}");

    std::fs::remove_file(env.tmp.path().join("my_pack/pack.yaml")).unwrap();
    tgz(&env.tmp.path().join("my_pack"));
    let out = env.cmd().current_dir(env.tmp.path()).args(["install", "./my_pack.tgz"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: ./my_pack.tgz: no pack.yaml at the archive's root"), "{stderr}");
}

#[test]
fn an_io_error_says_its_cause_once() {
    let env = Env::new();
    let file = env.tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let packs = file.join("packs");
    let out = env.run(&["--packs-dir", packs.to_str().unwrap(), "list"]).failure();
    assert_eq!(out.stderr.matches("Not a directory").count(), 1, "{}", out.stderr);
    let out = env.run(&["--json", "--packs-dir", packs.to_str().unwrap(), "list"]).failure();
    let message = out.json()["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(message.matches("Not a directory").count(), 1, "{message}");
}

#[test]
fn completions_for_each_shell_and_a_man_page() {
    let env = Env::new();
    for (shell, marker) in [("bash", "_attune()"), ("zsh", "#compdef attune"), ("fish", "complete -c attune")] {
        let out = env.run(&["completions", shell]).success();
        assert!(out.stdout.contains(marker), "{shell}: {}", &out.stdout[..200.min(out.stdout.len())]);
        assert!(out.stdout.contains("outdated"), "{shell}: every subcommand is completed");
    }
    let man = env.run(&["man"]).success().stdout;
    assert!(man.contains(".TH attune 1"), "{}", &man[..200.min(man.len())]);
    assert!(man.contains("search"), "the subcommands are listed");
}
