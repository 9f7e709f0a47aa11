//! A source fetched by a wasm component: today every source is one.

use std::sync::Arc;

use super::{BoxFuture, FetcherFacts, Source, SourceError, SourceKind};
use crate::runtime::grants::{self, Offer};
use crate::runtime::{EventSink, FetchRequest, Fetched, Limits, Plugin, Runtime};
use crate::staging::StagingWriter;

pub struct WasmSource {
    kind: SourceKind,
    display: String,
    runtime: Arc<Runtime>,
    plugin: Plugin,
    request: FetchRequest,
    grants: grants::Grants,
}

impl WasmSource {
    /// Grants the plugin what it asks that `offer` gives, and nothing else.
    pub fn new(
        kind: SourceKind,
        display: String,
        runtime: Arc<Runtime>,
        plugin: Plugin,
        mut request: FetchRequest,
        offer: &Offer,
    ) -> Self {
        let granted = grants::grant(&plugin.info.capabilities, offer);
        request.input = granted.input.clone();
        WasmSource { kind, display, runtime, plugin, request, grants: granted }
    }
}

impl Source for WasmSource {
    fn kind(&self) -> SourceKind {
        self.kind
    }
    fn display(&self) -> String {
        self.display.clone()
    }
    fn fetcher(&self) -> FetcherFacts {
        FetcherFacts {
            name: self.plugin.info.name.clone(),
            version: self.plugin.info.version.clone(),
            sha256: self.plugin.sha256.clone(),
        }
    }
    fn limits(&self, configured: &Limits) -> Limits {
        self.grants.limits.map(|r| r.raise(configured)).unwrap_or(*configured)
    }
    fn fetch<'a>(
        &'a self,
        staging: StagingWriter,
        limits: &'a Limits,
        events: Option<EventSink>,
    ) -> BoxFuture<'a, Result<Fetched, SourceError>> {
        Box::pin(async move {
            Ok(self.runtime.fetch(&self.plugin, &self.request, &self.grants, staging, limits, events).await?)
        })
    }
    fn list_versions<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Vec<crate::runtime::VersionInfo>>, SourceError>> {
        Box::pin(async move {
            Ok(self.runtime.list_versions(&self.plugin, &self.request.source, &self.grants, limits).await?)
        })
    }
}
