//! attune: a sandboxed installer for automation packs.
//!
//! Every source fetcher runs as a WebAssembly component ([`runtime`]) that
//! writes only through the host's validated [`staging`] writer; the
//! [`install`] pipeline checks the result, checksums it ([`checksum`]), moves
//! it atomically into versioned storage ([`store`]) and records it ([`db`]).

pub mod runtime;
pub mod staging;
