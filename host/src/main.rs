//! The `attune` command. `anyhow` lives only here, at the edge.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
