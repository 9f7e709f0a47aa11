//! Bindings for `attune:fetcher@0.2.0`, frozen and still served.
//!
//! One module per WIT version: `bindgen!` runs here over that version's
//! frozen WIT (`wit/frozen/0.2.0`), and what the version's shape needs is
//! converted to host types here and nowhere else. Beside the imports every
//! version shares (`runtime/imports.rs`) it has `staging.copy-input-file`,
//! and it answers `list-versions`, which 0.1.0 does not have. It has no
//! `digests` (new in 0.3.0).

use super::{FetchState, imports};

wasmtime::component::bindgen!({
    path: "../../wit/frozen/0.2.0",
    world: "fetcher",
    exports: { default: async },
    with: {
        "attune:fetcher/staging.file": crate::staging::StagedFile,
        "attune:fetcher/blobs.blob": super::blobs::Blob,
    },
});

pub const VERSION: &str = "0.2.0";

use self::attune::fetcher::types;

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<FetchState>) -> wasmtime::Result<()> {
    imports::add(linker, VERSION)?;
    imports::add_copy_input_file(linker, VERSION)
}

fetch_in_own_request_type!();
