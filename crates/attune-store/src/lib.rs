//! attune-store: where installed packs and their records live.
//!
//! The packs folder with its locks and active-version links ([`store`]), the
//! artifact cache of downloaded archives ([`artifacts`]), and the metadata
//! database with its migrations ([`db`]).
//!
//! May import: `attune-core`. Runs no fetcher and makes no decision about
//! what to install: it keeps what it is given.

pub mod artifacts;
pub mod db;
pub mod store;
