//! attune-core: the pure types every other attune crate shares.
//!
//! What a pack is ([`manifest`]), how its tree is fingerprinted
//! ([`checksum`]), how text from outside is made safe to print
//! ([`untrusted`]), how a source string is shown without its secrets
//! ([`source`]), and how a file is replaced atomically ([`fs`]).
//!
//! May import: nothing of attune. Does no networking, runs no plugin, opens no
//! database.

pub mod checksum;
pub mod fs;
pub mod manifest;
pub mod source;
pub mod untrusted;
