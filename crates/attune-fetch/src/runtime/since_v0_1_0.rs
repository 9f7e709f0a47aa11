//! Bindings for `attune:fetcher@0.1.0`, the first version, still served.
//!
//! One module per WIT version (the Zed extension-host pattern): `bindgen!`
//! runs here over that version's frozen WIT (`wit/frozen/0.1.0`), and what
//! the version's shape needs is converted to the host's own types here and
//! nowhere else. The imports and answers that every version shares are
//! defined once (`runtime/imports.rs`, `runtime/lifted.rs`); this module adds
//! what is particular to 0.1.0, which is nothing: a 0.1.0 plugin has no
//! `copy-input-file` to call and no `list-versions` to answer, so the host
//! treats it as listing no versions.

use super::FetchState;

wasmtime::component::bindgen!({
    path: "../../wit/frozen/0.1.0",
    world: "fetcher",
    exports: { default: async },
    with: {
        "attune:fetcher/staging.file": crate::staging::StagedFile,
        "attune:fetcher/blobs.blob": super::blobs::Blob,
    },
});

pub const VERSION: &str = "0.1.0";

use self::attune::fetcher::types;

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<FetchState>) -> wasmtime::Result<()> {
    super::imports::add(linker, VERSION)
}

fetch_in_own_request_type!();
