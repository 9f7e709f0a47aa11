//! attune-env: the runtime environment of one installed pack version.
//!
//! A StackStorm pack's Python actions import what its `requirements.txt`
//! lists, and its node actions what its `package.json` locks. This crate
//! builds that environment into a folder the caller names (a staging folder,
//! published by rename together with the pack):
//!
//! - [`python::build_python`]: resolve once with `uv pip compile
//!   --generate-hashes` (or take a recorded [`lock::PythonLock`]), create a
//!   relocatable venv with the host's interpreter, install exactly the locked
//!   set with hashes required, wheels only unless source builds are allowed,
//!   from the operator's indexes only; or reuse an identical environment of
//!   another version by hard links.
//! - [`node::build_node`]: `npm ci --ignore-scripts` from the pack's lockfile.
//! - [`verify::verify_python`]: the installed distributions and every file
//!   their `RECORD` lists, against what was recorded.
//!
//! Nothing here knows the packs folder, the database or the CLI: the host
//! decides where environments live and what is recorded.
//!
//! May import: no other attune crate (`attune-app` drives it).

pub mod events;
pub mod link;
pub mod lock;
pub mod node;
pub mod python;
pub mod tool;
pub mod verify;

pub use events::{EnvEvent, Runtime};
pub use lock::{LockedRequirement, NodeLock, NodePackage, PythonLock, PythonTarget};
pub use node::{NodeEnv, NodeError, NodeRequest, build_node, node_lockfile};
pub use python::{LinkMode, PythonEnv, PythonError, PythonRequest, PythonSources, build_python, requirement_files};
pub use tool::{Npm, ToolError, Uv};
pub use verify::{Difference, VerifyError, verify_python};
