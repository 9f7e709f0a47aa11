//! attune-tuf's integration tests: repositories made by the crate's publisher
//! and by python-tuf, served by a real HTTP server on 127.0.0.1, read by the
//! client over a real HTTP transport; one test per attack of the TUF spec.

mod attacks;
mod client;
mod fixture;
mod interop;
mod offline;
mod publishing;
mod rotation;
mod server;
