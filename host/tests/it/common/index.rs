//! Attune registry indexes (format 1.0) for tests: entries and documents in
//! the shape the registry reads, so each suite writes only what differs.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An entry for `pack_ref@version` with `sources` as its `install_sources`.
pub fn entry(pack_ref: &str, version: &str, sources: Value) -> Value {
    json!({
        "ref": pack_ref, "label": pack_ref, "description": format!("{pack_ref} for tests"), "version": version,
        "author": "Tests", "license": "Apache-2.0", "keywords": [], "runtime_deps": ["shell"],
        "install_sources": sources,
        "contents": {"actions": [], "sensors": [], "triggers": [], "rules": [], "workflows": []},
        "dependencies": {"packs": []}
    })
}

/// An entry whose one source is the archive `bytes` served at `url`, held
/// to their SHA-256 (`good`) or to a wrong one (a tampered download).
pub fn archive_entry(pack_ref: &str, version: &str, url: &str, bytes: &[u8], good: bool) -> Value {
    let sum = if good { sha256_hex(bytes) } else { "0".repeat(64) };
    entry(pack_ref, version, json!([{"type": "archive", "url": url, "checksum": format!("sha256:{sum}")}]))
}

/// The index document listing `entries`.
pub fn document(entries: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "registry_name": "Test Registry", "registry_url": "http://127.0.0.1/", "version": "1.0",
        "last_updated": "2026-01-01T00:00:00Z", "packs": entries
    }))
    .unwrap()
}
