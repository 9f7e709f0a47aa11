//! The plugin template builds on its own with one cargo command, and what it
//! builds installs a pack: proof that the SDK is enough for a newcomer. The
//! template as it shipped for each older `attune:fetcher` (0.1.0, 0.2.0:
//! frozen fixtures) still builds and installs on this host: proof that an
//! old plugin keeps working.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::common::{Env, repo};

/// Builds the template whose manifest is `manifest` (relative to the repo)
/// and returns its component, copied to `name`.wasm. The templates build in
/// one target folder, so their common dependencies build once; one at a
/// time, as all name their component `my_attune_fetcher.wasm`.
fn build_template(manifest: &str, name: &str) -> PathBuf {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-target");
    let mut cargo = crate::common::test_plugins::nested_cargo();
    cargo
        .args(["build", "--locked", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(repo().join(manifest))
        .arg("--target-dir")
        .arg(&target);
    let out = cargo.output().unwrap();
    assert!(out.status.success(), "building {manifest} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let wasm = target.join(format!("{name}.wasm"));
    std::fs::copy(target.join("wasm32-wasip2/release/my_attune_fetcher.wasm"), &wasm).unwrap();
    wasm
}

/// Installs with the template's component, as a file and then added, and
/// returns what `plugin list --json` says about it.
fn installs_with(wasm: &Path) -> serde_json::Value {
    let env = Env::new();
    env.run(&["install", "example://hello_example", "--plugin-file", wasm.to_str().unwrap()]).success();
    let script = env.packs().join("hello_example-1.0.0/actions/hello.sh");
    assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
    env.run(&["verify"]).success();
    // Added, its scheme routes to it.
    env.run(&["plugin", "add", wasm.to_str().unwrap()]).success();
    env.run(&["install", "--force", "example://hello_example"]).success();
    env.run(&["verify"]).success();
    // It lists no versions (0.1.0 has no list-versions; the SDK's default
    // says so), so a range cannot be resolved through it.
    let out = env.run(&["install", "example://hello_example@^1"]).failure();
    assert!(out.stderr.contains("plugin example lists no versions"), "{}", out.stderr);
    let list = env.run(&["plugin", "list", "--json"]).success().json();
    let example = list.as_array().unwrap().iter().find(|p| p["name"] == "example").expect("example is listed");
    example.clone()
}

#[test]
fn the_template_builds_and_installs() {
    let wasm = build_template("examples/plugins/template/Cargo.toml", "template");
    let listed = installs_with(&wasm);
    assert_eq!(listed["wit_version"], "0.3.0", "{listed}");
}

/// The template as it shipped for `version` installs on this host, and
/// `plugin list` shows that version.
fn shipped_template_still_installs(version: &str) {
    let wasm =
        build_template(&format!("test-plugins/template-{version}/template/Cargo.toml"), &format!("template-{version}"));
    let listed = installs_with(&wasm);
    assert_eq!(listed["wit_version"], version, "{listed}");
    let env = Env::new();
    env.run(&["plugin", "add", wasm.to_str().unwrap()]).success();
    let table = env.run(&["plugin", "list"]).success();
    let row = table.stdout.lines().find(|l| l.starts_with("example ")).expect("a row for example");
    // NAME VERSION WIT …
    assert_eq!(row.split_whitespace().nth(2), Some(version), "{row}");
}

#[test]
fn the_template_as_shipped_for_0_1_0_still_installs() {
    shipped_template_still_installs("0.1.0");
}

#[test]
fn the_template_as_shipped_for_0_2_0_still_installs() {
    shipped_template_still_installs("0.2.0");
}
