//! The `attune` command: arguments (clap), the config file, terminal and JSON
//! output, progress. Every operation is `attune-app`'s (and `attune-api`'s for
//! `serve`); `anyhow` lives only here, at the edge.

// The CLI's doc comments are clap's help text (`sha256:<hex>`), not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cli;
mod config;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
