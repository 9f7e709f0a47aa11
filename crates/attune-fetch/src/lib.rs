//! attune-fetch: getting a pack's files from a source, in a sandbox.
//!
//! A source string is parsed and given its fetcher and grants
//! ([`sources`]: the one factory that knows the kinds); the fetcher, a
//! WebAssembly component, runs under wasmtime with bounded resources
//! ([`runtime`]) and writes only through the validated staging writer
//! ([`staging`]). The built-in fetchers are embedded ([`builtins`]).
//!
//! May import: `attune-core`, `attune-net` (how the host's requests for a
//! fetcher reach the network: trust, proxy, credentials). Knows nothing of the database, the packs
//! folder or the install pipeline.

pub mod builtins;
pub mod runtime;
pub mod sources;
pub mod staging;

use attune_core::{manifest, untrusted};
