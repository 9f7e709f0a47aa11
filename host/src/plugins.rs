//! The built-in fetchers, embedded in the binary.
//!
//! `host/build.rs` builds them for wasm32-wasip2; here they become bytes the
//! runtime compiles (or loads from its cache) on first use, so an installed
//! `attune` binary is self-contained.

use crate::runtime::{Plugin, Runtime, RuntimeError};

/// A fetcher shipped inside attune.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

pub const LOCAL: Builtin = Builtin { name: "local", wasm: include_bytes!(env!("ATTUNE_WASM_LOCAL")) };

pub const ARCHIVE: Builtin = Builtin { name: "archive", wasm: include_bytes!(env!("ATTUNE_WASM_ARCHIVE")) };

pub const HTTP: Builtin = Builtin { name: "http", wasm: include_bytes!(env!("ATTUNE_WASM_HTTP")) };

pub const GIT: Builtin = Builtin { name: "git", wasm: include_bytes!(env!("ATTUNE_WASM_GIT")) };

pub const BUILTINS: &[Builtin] = &[LOCAL, ARCHIVE, HTTP, GIT];

impl Builtin {
    pub async fn load(&self, runtime: &Runtime) -> Result<Plugin, RuntimeError> {
        runtime.load(self.name, self.wasm).await
    }
}
