//! The plugin template builds on its own with one cargo command, and what it
//! builds installs a pack: proof that the SDK is enough for a newcomer.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Env, repo};

#[test]
fn the_template_builds_and_installs() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-target");
    let mut cargo = crate::common::test_plugins::nested_cargo();
    cargo
        .args(["build", "--locked", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(repo().join("examples/plugins/template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    let out = cargo.output().unwrap();
    assert!(out.status.success(), "building the template failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let wasm = target.join("wasm32-wasip2/release/my_attune_fetcher.wasm");

    let env = Env::new();
    env.run(&["install", "example://hello_example", "--plugin-file", wasm.to_str().unwrap()]).success();
    let script = env.packs().join("hello_example-1.0.0/actions/hello.sh");
    assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
    env.run(&["verify"]).success();
    // Added, its scheme routes to it.
    env.run(&["plugin", "add", wasm.to_str().unwrap()]).success();
    env.run(&["install", "--force", "example://hello_example"]).success();
}
