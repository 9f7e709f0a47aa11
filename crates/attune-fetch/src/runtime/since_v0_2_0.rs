//! Bindings for `attune:fetcher@0.2.0`, frozen and still served.
//!
//! One module per WIT version: `bindgen!` runs here over that version's
//! frozen WIT (`wit/frozen/0.2.0`), and what the version's shape needs is
//! converted to host types here and nowhere else. Beside the imports every
//! version shares (`runtime/imports.rs`) it has `staging.copy-input-file`,
//! and it answers `list-versions`, which 0.1.0 does not have. It has no
//! `digests` (new in 0.3.0).

use super::{FetchState, imports, lifted};

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

/// `fetch()`, its answer lifted with caps: an over-cap result is refused,
/// an error message cut.
pub async fn fetch(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    request: &super::FetchRequest,
) -> wasmtime::Result<Result<Result<super::FetchResult, super::FetchError>, super::answers::AnswerError>> {
    let req = types::FetchRequest {
        source: request.source.clone(),
        input: request.input.as_ref().filter(|p| p.is_dir()).map(|_| super::INPUT_GUEST_PATH.to_string()),
        input_file: request.input_file.clone(),
        reference: request.reference.clone(),
        options: request.options.clone(),
    };
    lifted::fetch(store, instance, req).await
}
