//! attune-env's integration tests: real uv, npm, wheels, tarballs and a
//! loopback index; nothing leaves 127.0.0.1. A missing uv or npm skips its
//! tests with a loud note, except under `CI=true`.

mod node;
mod node_offline;
mod python;
mod support;
mod tools;
mod verify;
