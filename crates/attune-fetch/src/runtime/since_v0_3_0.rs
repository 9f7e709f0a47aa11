//! Bindings for `attune:fetcher@0.3.0`, the current version (`wit/`).
//!
//! One module per WIT version: `bindgen!` runs here over the current WIT,
//! and what this version's shape needs is converted to host types here and
//! nowhere else. Beside what 0.2.0 has (`runtime/imports.rs`) it adds the
//! `digests` interface (`runtime/digests.rs`).

use super::{FetchState, digests, imports};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "fetcher",
    exports: { default: async },
    with: {
        "attune:fetcher/staging.file": crate::staging::StagedFile,
        "attune:fetcher/blobs.blob": super::blobs::Blob,
        "attune:fetcher/digests.hasher": super::digests::Hasher,
    },
});

pub const VERSION: &str = "0.3.0";

use self::attune::fetcher::types;

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<FetchState>) -> wasmtime::Result<()> {
    imports::add(linker, VERSION)?;
    imports::add_copy_input_file(linker, VERSION)?;
    digests::add(linker, VERSION)
}

fetch_in_own_request_type!();
