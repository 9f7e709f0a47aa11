//! attune-tuf: The Update Framework (TUF 1.0) for attune's signed registry
//! indexes, so a compromised index host cannot make attune install what the
//! index's publisher did not sign.
//!
//! - [`Client`] runs the client workflow over a caller-supplied [`Transport`]
//!   and keeps trusted metadata in a folder the caller gives;
//! - [`publish`] makes and re-signs repositories (`attune index init|sign`).
//!
//! The crate opens no socket and does not depend on the host.
//!
//! May import: no attune crate (a lowest layer, like `attune-core`);
//! `attune-app` wires it to the sandboxed http fetcher.

mod client;
pub mod keys;
pub mod publish;
pub mod schema;
mod store;
mod transport;
mod verify;

pub use client::{Anchor, Client, Clock, Facts, Limits, Repository, TufError, Verified, check_locked};
pub use keys::{KeyError, PublicKey, SigningKey};
pub use store::{STATE_FILE, StoreError};
pub use transport::{Transport, TransportError};
pub use verify::VerifyError;
