//! The option and metadata keys the host and the built-in fetchers agree on.
//!
//! `fetch-request.options` and `fetch-result.metadata` are string pairs in the
//! WIT, so a key is a contract between two programs that share no types. The
//! host spells each one here and only here; the guest side spells them in
//! `attune_plugin_sdk::keys`, and the tests that install through the real
//! fetchers hold the two to the same text.

/// Option: the sha256 (hex) a downloaded or given archive must have. The
/// fetcher fails on a mismatch (what it extracted meanwhile is discarded).
pub const EXPECTED_SHA256: &str = "expected-sha256";

/// Metadata: the sha256 (hex) of the archive a fetcher extracted. The host
/// holds the fetcher to `EXPECTED_SHA256` with it, pins it in lockfiles and
/// keys the artifact cache by it.
pub const ARCHIVE_SHA256: &str = "archive-sha256";
