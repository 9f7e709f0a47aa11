//! attune-core: the pure types every other attune crate shares.
//!
//! What a pack is ([`manifest`]), how its tree is fingerprinted
//! ([`checksum`]), how text from outside is made safe to print
//! ([`untrusted`]), how a source string is shown without its secrets
//! ([`source`]), how a file is replaced atomically ([`fs`]), and the option
//! and metadata keys the host and the fetchers share ([`keys`]).
//!
//! May import: nothing of attune. Does no networking, runs no plugin, opens no
//! database.

pub mod checksum;
pub mod fs;
pub mod keys;
pub mod manifest;
pub mod source;
pub mod untrusted;
