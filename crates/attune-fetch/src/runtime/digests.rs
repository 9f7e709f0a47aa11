//! The host side of `digests` (WIT 0.3.0): SHA-1 and SHA-256 for fetchers.
//!
//! Hashing compiled to wasm runs at a third of native speed or less (no
//! SHA extensions, no wide registers), and a fetcher that checks what it
//! downloads hashes every byte: the git fetcher finds every object by its
//! SHA-1, which was a third of its time. Here the bytes are hashed in place
//! in the guest's memory, without a copy. SHA-1 is sha1dc, git's own choice:
//! input carrying a known collision attack is refused, not hashed.
//!
//! Each hasher is a resource handle in the fetch's table, so the table's cap
//! on live handles bounds what a guest can make the host hold.

use sha2::{Digest, Sha256};
use wasmtime::component::{ComponentType, Lift, Linker, Resource, ResourceType, WasmList};

use super::FetchState;
use super::imports::Cx;

/// The WIT `algorithm`.
#[derive(ComponentType, Lift, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum Algorithm {
    #[component(name = "sha1")]
    Sha1,
    #[component(name = "sha256")]
    Sha256,
}

/// A running hash (the WIT `hasher` resource).
pub struct Hasher {
    algorithm: Algorithm,
    /// `None` only while `update` holds it to read the guest's memory.
    state: Option<State>,
}

enum State {
    Sha1(Box<sha1dc::Hasher>),
    Sha256(Sha256),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        Hasher { algorithm, state: Some(State::new(algorithm)) }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.state.get_or_insert_with(|| State::new(self.algorithm)).update(data);
    }

    /// The digest of everything fed since the last `finish`, and a fresh start.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        let state = self.state.replace(State::new(self.algorithm)).unwrap_or_else(|| State::new(self.algorithm));
        match state {
            State::Sha1(h) => h
                .finalize()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| "SHA-1: the input carries a known collision attack (SHAttered-style); refused".into()),
            State::Sha256(h) => Ok(h.finalize().to_vec()),
        }
    }
}

impl State {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => State::Sha1(Box::default()),
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }
}

/// Defines `attune:fetcher/digests@{version}`.
pub(super) fn add(linker: &mut Linker<FetchState>, version: &str) -> wasmtime::Result<()> {
    let mut d = linker.instance(&format!("attune:fetcher/digests@{version}"))?;
    d.resource("hasher", ResourceType::host::<Hasher>(), |mut store, rep| {
        store.data_mut().table.delete(Resource::<Hasher>::new_own(rep))?;
        Ok(())
    })?;
    // Past the table's cap on handles this traps, and the fetch fails
    // saying it held too many.
    d.func_wrap("[constructor]hasher", |mut store: Cx<'_>, (algorithm,): (Algorithm,)| {
        Ok((store.data_mut().table.push(Hasher::new(algorithm))?,))
    })?;
    d.func_wrap("[method]hasher.update", |mut store: Cx<'_>, (hasher, data): (Resource<Hasher>, WasmList<u8>)| {
        // Taken out of the table while the guest's memory is borrowed.
        let entry = store.data_mut().table.get_mut(&hasher)?;
        let (algorithm, mut state) = (entry.algorithm, entry.state.take());
        state.get_or_insert_with(|| State::new(algorithm)).update(data.as_le_slice(&store));
        store.data_mut().table.get_mut(&hasher)?.state = state;
        Ok(())
    })?;
    d.func_wrap("[method]hasher.finish", |mut store: Cx<'_>, (hasher,): (Resource<Hasher>,)| {
        Ok((store.data_mut().table.get_mut(&hasher)?.finish(),))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers_and_a_hasher_starts_over_after_finish() {
        let mut h = Hasher::new(Algorithm::Sha1);
        h.update(b"blob 5\0");
        h.update(b"hello");
        // `git hash-object` of "hello" (no newline).
        assert_eq!(hex(&h.finish().unwrap()), "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
        assert_eq!(hex(&h.finish().unwrap()), "da39a3ee5e6b4b0d3255bfef95601890afd80709", "empty after finish");
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"abc");
        assert_eq!(hex(&h.finish().unwrap()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn sha1_input_carrying_a_collision_attack_is_refused() {
        // One half of the SHA-mbles chosen-prefix collision (2020), from sha1dc's tests.
        let shambles = include_bytes!("testdata/sha-mbles-1.bin");
        let mut h = Hasher::new(Algorithm::Sha1);
        h.update(shambles);
        let err = h.finish().unwrap_err();
        assert!(err.contains("collision"), "{err}");
        // Plain SHA-256 has no such check and hashes it.
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(shambles);
        assert_eq!(h.finish().unwrap().len(), 32);
    }
}
