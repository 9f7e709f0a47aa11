//! Components the host must refuse before running them: one built against a
//! WIT version this attune does not support, and files that are not fetcher
//! components at all. Each is a clear error and exit 1, never a crash.

use crate::common::Env;

fn future_wit() -> String {
    crate::common::test_plugins::wasm("future-wit").display().to_string()
}

#[test]
fn an_unsupported_wit_version_is_refused_naming_both_versions() {
    let env = Env::new();
    for args in [
        vec!["install", "future://x", "--plugin-file", future_wit().as_str()],
        vec!["plugin", "add", future_wit().as_str()],
    ] {
        let out = env.run(&args).failure();
        assert!(out.stderr.contains("attune:fetcher@9.0.0"), "{}", out.stderr);
        assert!(out.stderr.contains("supported: 0.3.0, 0.2.0, 0.1.0"), "{}", out.stderr);
    }
    let list = env.run(&["plugin", "list", "--json"]).success().json();
    assert!(list.as_array().unwrap().iter().all(|p| p["name"] != "future"));
}

#[test]
fn files_that_are_not_fetcher_components_are_refused() {
    let env = Env::new();
    let dir = env.tmp.path();
    let cases: [(&str, &[u8]); 3] =
        [("core.wasm", b"\0asm\x01\0\0\0"), ("junk.wasm", b"certainly not webassembly"), ("empty.wasm", b"")];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = env.run(&["plugin", "add", path.to_str().unwrap()]).failure();
        assert!(out.stderr.starts_with("error: "), "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains("not a valid WebAssembly component") || out.stderr.contains("not an attune fetcher"),
            "{name}: {}",
            out.stderr
        );
    }
}
