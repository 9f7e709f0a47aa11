//! The plugin template builds on its own with one cargo command, and what it
//! builds installs a pack: proof that the SDK is enough for a newcomer.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::{Env, repo};

#[test]
fn the_template_builds_and_installs() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-target");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--locked", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(repo().join("examples/plugins/template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    // Only what would change how it builds goes; rustup's own variables stay,
    // so the same toolchain builds it (and rustup never goes looking for one).
    for (key, _) in std::env::vars() {
        let build_setting = key.starts_with("CLIPPY")
            || key.starts_with("CARGO_ENCODED_")
            || matches!(
                key.as_str(),
                "RUSTFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "CARGO_TARGET_DIR" | "CARGO_BUILD_TARGET"
            );
        if build_setting {
            cargo.env_remove(key);
        }
    }
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
