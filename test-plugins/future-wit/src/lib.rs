//! Test only: a fetcher built against `attune:fetcher@9.0.0` (its own copy of
//! the WIT), so attune's tests can prove a component for an unsupported WIT
//! version is refused with a message naming its version and the supported ones.

#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "fetcher" });
}

use bindings::attune::fetcher::types::{FetchError, FetchRequest, FetchResult, FetcherInfo};

struct Future;

impl bindings::Guest for Future {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "future".into(),
            version: "9.0.0".into(),
            summary: "Test only".into(),
            schemes: vec!["future".into()],
            capabilities: vec![],
        }
    }

    fn fetch(_: FetchRequest) -> Result<FetchResult, FetchError> {
        Err(FetchError::Other("never runs".into()))
    }
}

bindings::export!(Future with_types_in bindings);
