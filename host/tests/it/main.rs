//! attune's integration tests, one binary (as cargo's own `tests/testsuite`):
//! each module drives the real `attune` binary, or the library under it,
//! against real servers on loopback. One binary links wasmtime, sqlx and
//! axum once, where one per file linked them once each.

#[macro_use]
mod common;

mod api;
mod archive;
mod archive_formats;
mod cli;
mod corporate;
mod crash;
mod discover;
mod envs;
mod exchange_deps;
mod git;
mod hostile;
mod http;
mod lockfile;
mod oci;
mod plugin_template;
mod plugin_versions;
mod plugins;
mod postgres;
mod progress;
mod publish;
mod recovery;
mod registry;
mod runtimes;
mod st2_parity;
mod tuf;
mod upgrades;
