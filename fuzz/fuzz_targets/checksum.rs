//! Fuzzes the checksum spec parser (`sha256-tree-v1:<hex>`, `sha256:<hex>`,
//! `attune-pack-file-v1:<hex>`: from flags, indexes and lockfiles) and the
//! stored tree manifest (JSON from the database): a parsed checksum prints
//! back to itself, and a manifest's digest does not depend on entry order.
#![no_main]

use attune::checksum::{Algorithm, Checksum, Entry, TreeManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = s.parse::<Checksum>()
    {
        let printed = c.to_string();
        assert_eq!(printed.parse::<Checksum>().ok(), Some(c));
        assert_eq!(printed.to_ascii_lowercase(), s.to_ascii_lowercase(), "prints as it was written, but for case");
    }
    if let Ok(m) = serde_json::from_slice::<TreeManifest>(data) {
        let _ = m.validate();
    }
    if let Ok(entries) = serde_json::from_slice::<Vec<Entry>>(data) {
        let Ok(m) = TreeManifest::from_entries(Algorithm::TreeV1, entries.clone()) else { return };
        let mut reversed = entries;
        reversed.reverse();
        let again = TreeManifest::from_entries(Algorithm::TreeV1, reversed).expect("the same entries in another order");
        assert_eq!(again.digest, m.digest);
        m.validate().expect("a built manifest validates");
    }
});
