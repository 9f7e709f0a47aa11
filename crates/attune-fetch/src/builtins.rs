//! The built-in fetchers, embedded in the binary.
//!
//! `build.rs` builds them for wasm32-wasip2; here they become bytes the
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
    /// Compiles it and checks it is the fetcher it is shipped as: what an
    /// install records is this name, never another answer.
    pub async fn load(&self, runtime: &Runtime) -> Result<Plugin, RuntimeError> {
        let plugin = runtime.load(self.name, self.wasm).await?;
        let foreign = plugin.info.schemes.iter().find(|s| !BUILTIN_SCHEMES.contains(&s.as_str()));
        if plugin.info.name != self.name || foreign.is_some() {
            return Err(RuntimeError::IdentityChanged {
                plugin: self.name.to_string(),
                what: "the built-in fetcher's describe() answer",
                recorded: format!("name {:?} with built-in schemes", self.name),
                now: format!("name {:?}, schemes {}", plugin.info.name, plugin.info.schemes.join(", ")),
            });
        }
        Ok(plugin)
    }
}

/// The schemes the built-in fetchers own; an added plugin cannot take them.
pub const BUILTIN_SCHEMES: &[&str] = &["file", "http", "https", "git+http", "git+https"];
