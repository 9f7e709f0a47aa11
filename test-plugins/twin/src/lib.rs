//! Test only: a fetcher that claims the `hostile` scheme, so attune's tests
//! can prove two plugins cannot claim one scheme.

use attune_plugin_sdk::{FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo};

struct Twin;

impl Fetcher for Twin {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "twin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Test only: claims the hostile scheme".into(),
            schemes: vec!["hostile".into()],
            capabilities: vec![],
        }
    }

    fn fetch(_: FetchRequest) -> Result<FetchResult, FetchError> {
        Err(FetchError::Other("the twin fetches nothing".into()))
    }
}

attune_plugin_sdk::export_fetcher!(Twin);
