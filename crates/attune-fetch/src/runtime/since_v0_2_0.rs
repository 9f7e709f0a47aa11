//! Bindings for `attune:fetcher@0.2.0`, the current version (`wit/`).
//!
//! One module per WIT version: `bindgen!` runs here over the current WIT,
//! and what this version's shape needs is converted to host types here and
//! nowhere else. Beside the imports every version shares
//! (`runtime/imports.rs`) it defines `staging.copy-input-file`, and it calls
//! the `list-versions` export that 0.1.0 does not have.

use wasmtime::component::WasmStr;

use super::imports::{Cx, WireStagingError, path};
use super::{FetchState, lifted};

wasmtime::component::bindgen!({
    path: "../../wit",
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
    super::imports::add(linker, VERSION)?;
    let mut st = linker.instance(&format!("attune:fetcher/staging@{VERSION}"))?;
    // Both paths capped before they are copied, as every staging path is;
    // the bytes go file to file on the host and never through the guest.
    st.func_wrap("copy-input-file", |mut store: Cx<'_>, (p, from): (WasmStr, WasmStr)| {
        let r = match (path(&mut store, &p)?, path(&mut store, &from)?) {
            (Ok(p), Ok(from)) => store.data_mut().copy_input_file(&p, &from),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        Ok((r.map_err(WireStagingError::from),))
    })?;
    Ok(())
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

/// `list-versions()`: `None` when the plugin lists no versions.
pub async fn list_versions(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    source: &str,
) -> wasmtime::Result<Result<Result<Option<Vec<super::VersionInfo>>, super::FetchError>, super::answers::AnswerError>> {
    type Answer = Result<lifted::Versions, lifted::FetchError>;
    let func = instance.get_typed_func::<(String,), (Answer,)>(&mut *store, "list-versions")?;
    let (r,) = func.call_async(&mut *store, (source.to_string(),)).await?;
    Ok(match r {
        Ok(v) => lifted::versions_into_host(v).map(Ok),
        Err(e) => Ok(Err(e.into_host())),
    })
}
