//! attune-net's integration tests: real TLS servers with a CA made here,
//! real tinyproxy, real files; everything on 127.0.0.1.

mod config;
mod credentials;
mod git;
mod proxy;
mod support;
mod tls;
