//! The fetchers only tests use (`test-plugins/*` and the OCI example), built
//! for wasm32-wasip2 on first use rather than by a build script, so no build
//! of attune carries them. One cargo run builds all of them, once per test
//! process; cargo's lock on their own target folder serializes processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PACKAGES: &[&str] =
    &["attune-fetcher-hostile", "attune-fetcher-twin", "attune-fetcher-future-wit", "attune-fetcher-oci"];

/// The built component of `attune-fetcher-{name}` (`hostile`, `twin`, `future-wit`, `oci`).
pub fn wasm(name: &str) -> PathBuf {
    let package = format!("attune-fetcher-{name}");
    assert!(PACKAGES.contains(&package.as_str()), "{package} is not a test plugin");
    built().join(format!("{}.wasm", package.replace('-', "_")))
}

/// The built-in `local` fetcher, as a file (for tests that add it under another name).
pub fn builtin_local() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = target().join("attune_fetcher_local.wasm");
        std::fs::create_dir_all(target()).unwrap();
        std::fs::write(&path, attune_app::builtins::LOCAL.wasm).unwrap();
        path
    })
    .clone()
}

/// A cargo for a wasm build from inside a test: what would change how it
/// builds goes (the outer build's target and build dirs, flags, wrappers);
/// rustup's own variables stay, so the same toolchain builds it.
pub fn nested_cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    for (key, _) in std::env::vars() {
        let build_setting = key.starts_with("CLIPPY")
            || key.starts_with("CARGO_ENCODED_")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_BUILD_DIR"
                    | "CARGO_BUILD_TARGET"
            );
        if build_setting {
            cargo.env_remove(key);
        }
    }
    cargo
}

fn target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-plugins")
}

fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cargo = nested_cargo();
        cargo
            .current_dir(root)
            .args(["build", "--locked", "--profile", "test-plugin", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(target());
        for p in PACKAGES {
            cargo.args(["-p", p]);
        }
        let out = cargo.output().expect("running cargo to build the test plugins");
        assert!(
            out.status.success(),
            "building the test plugins for wasm32-wasip2 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target().join("wasm32-wasip2").join("test-plugin")
    })
}
