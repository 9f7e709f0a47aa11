//! The option and metadata keys the host reads and writes by name.
//!
//! `fetch-request.options` and `fetch-result.metadata` are string pairs, so
//! these names are part of the contract; the host spells them in
//! `attune_core::keys` and its tests hold the two to the same text.

/// Option: the sha256 (hex) the archive must have; check it before
/// extracting anything and fail with `checksum-mismatch`.
pub const EXPECTED_SHA256: &str = "expected-sha256";

/// Metadata: the sha256 (hex) of the archive you extracted. The host checks
/// it against what it asked for, pins it in lockfiles and caches the
/// download under it.
pub const ARCHIVE_SHA256: &str = "archive-sha256";
