//! An example attune fetcher: `example://<name>` makes a tiny pack named
//! `<name>`. Replace the body of `fetch` with your own source (an object
//! store, an artifact server, …); everything else can stay.

use attune_plugin_sdk::{
    Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, Staging, log,
};
use std::io::Write;

struct Example;

impl Fetcher for Example {
    /// Static facts, shown by `attune plugin add` and `attune plugin list`.
    fn describe() -> FetcherInfo {
        FetcherInfo {
            // Unique, lower case; `--plugin example` selects it.
            name: "example".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Makes a tiny pack from its name (a template)".into(),
            // Sources starting with `example://` are routed here.
            schemes: vec!["example".into()],
            // Ask only for what you need. A fetcher that downloads would ask for
            // `Capability::OutboundHost("{source-host}".into())` (or a fixed host);
            // the operator grants it with `attune plugin grant`.
            capabilities: Vec::<Capability>::new(),
        }
    }

    /// Writes the pack through staging: the only writable place there is.
    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let name = request
            .source
            .strip_prefix("example://")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| FetchError::InvalidSource(format!("{}: write example://<pack name>", request.source)))?;
        log::info(&format!("making pack {name}"));

        let manifest = format!("---\nname: {name}\nversion: 1.0.0\ndescription: Made by the example fetcher\n");
        Staging::write_file("pack.yaml", false, manifest.as_bytes())?;

        // Large files: stream them through a `FileWriter` (an `io::Write`).
        let mut script = Staging::create_file("actions/hello.sh", true)?;
        script
            .write_all(b"#!/bin/sh\necho \"hello from the example fetcher\"\n")
            .map_err(|e| FetchError::Staging(attune_plugin_sdk::staging_error(&e)))?;
        script.finish()?;

        // Facts worth recording with the installation.
        let mut result = FetchResult::new(request.source.clone());
        result.metadata.push(("made-by".into(), "example".into()));
        Ok(result)
    }
}

attune_plugin_sdk::export_fetcher!(Example);
