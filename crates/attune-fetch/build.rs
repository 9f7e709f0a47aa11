//! Builds the built-in fetchers for wasm32-wasip2 and hands them to the host.
//!
//! The built-in plugins are embedded in the `attune` binary, so a plain
//! `cargo build` (or `cargo install`) must produce them without a manual
//! `--target` step. A nested cargo with its own target dir avoids waiting on
//! the outer build's lock; the toolchain file pins the wasm target.
//!
//! `ATTUNE_NO_EMBEDDED_PLUGINS=1` embeds empty placeholders instead and builds
//! no wasm at all: only for builds that never run a fetcher (the fuzz targets
//! in `fuzz/`, which exercise the host's parsers on a nightly toolchain that
//! need not have the wasm target). Such a binary cannot load any built-in
//! fetcher.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Embedded in the binary.
const BUILTIN: &[&str] =
    &["attune-fetcher-local", "attune-fetcher-archive", "attune-fetcher-http", "attune-fetcher-git"];
/// What they are built from: a change anywhere else (the test-only fetchers,
/// the examples) does not rebuild them.
const INPUTS: &[&str] = &["wit", "plugins/sdk", "plugins/local", "plugins/archive", "plugins/http", "plugins/git"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for dir in INPUTS {
        rerun_tree(&root.join(dir));
    }
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    // `[profile.plugin]` lives there: a changed profile must rebuild the fetchers.
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());
    println!("cargo:rerun-if-env-changed=ATTUNE_NO_EMBEDDED_PLUGINS");
    if env::var_os("ATTUNE_NO_EMBEDDED_PLUGINS").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("cargo:warning=ATTUNE_NO_EMBEDDED_PLUGINS is set: no fetchers are embedded (fuzz builds only)");
        for p in BUILTIN {
            let dst = out_dir.join(format!("{}.wasm", p.replace('-', "_")));
            std::fs::write(&dst, b"").unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
            println!("cargo:rustc-env={}={}", env_var(p), dst.display());
        }
        return;
    }

    let target_dir = root.join("target").join("plugins");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--locked", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for p in BUILTIN {
        cmd.args(["-p", p]);
    }
    // Host-only settings must not leak into the wasm build, nor clippy's
    // wrapper (lint the plugins with their own clippy run instead).
    for (key, _) in env::vars() {
        let leaks = key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_ENCODED_")
            || key.starts_with("CLIPPY")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_BUILD_TARGET"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_BUILD_DIR"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("failed to run cargo for the wasm plugins");
    if !status.success() {
        panic!(
            "building the built-in fetchers for wasm32-wasip2 failed; is the target installed? \
             (`rustup target add wasm32-wasip2`, or let rust-toolchain.toml do it)"
        );
    }
    let built = target_dir.join("wasm32-wasip2").join("plugin");
    for p in BUILTIN {
        let file = format!("{}.wasm", p.replace('-', "_"));
        let src = built.join(&file);
        let dst = out_dir.join(&file);
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        println!("cargo:rustc-env={}={}", env_var(p), dst.display());
    }
}

/// The variable that hands a plugin's path to the host: `ATTUNE_WASM_LOCAL` for `attune-fetcher-local`.
fn env_var(package: &str) -> String {
    format!("ATTUNE_WASM_{}", package.trim_start_matches("attune-fetcher-").to_uppercase().replace('-', "_"))
}

fn rerun_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if p.is_dir() {
            rerun_tree(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    println!("cargo:rerun-if-changed={}", dir.display());
}
