//! How the client reaches a repository: a trait the caller implements, so
//! every byte comes through the caller's own fetcher (attune's sandboxed http
//! fetcher, with its allowlist and limits) and this crate opens no socket.

use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server has no such file (HTTP 404 or 403): how a client learns
    /// that there is no newer root.
    #[error("{url}: not found on the server; check the repository URL")]
    NotFound { url: String },
    /// The body grew past `max_len`; the transport stopped reading.
    #[error("{url}: larger than the limit of {limit} bytes; the server sends more than any such file may hold")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {reason}")]
    Other { url: String, reason: String },
}

/// Fetches one file. `max_len` is a hard limit: an implementation must stop
/// reading past it and return [`TransportError::TooLarge`] (the client checks
/// the length again, so a transport that reads more only wastes memory).
pub trait Transport: Sync {
    fn fetch(&self, url: &str, max_len: u64) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send;
}
