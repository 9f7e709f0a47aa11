//! Fuzzes the registry index reader, both formats (Attune `index.json` and the
//! StackStorm Exchange `v1/index.json`): an index is downloaded from a server.
//! What it accepts must hold only valid refs and checksums of the right kind,
//! and resolving, planning and solving dependencies over it must not panic.
#![no_main]

use std::collections::BTreeMap;

use attune::registry::{self, PackRequest, deps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = registry::parse(data, "fuzz") else { return };
    for (r, versions) in &index.packs {
        assert!(registry::is_ref(r), "index key {r:?} is not a ref");
        for v in versions {
            assert_eq!(&v.pack_ref, r);
            for d in &v.dependencies {
                assert!(
                    registry::is_ref(&d.pack_ref),
                    "{r}@{}: dependency ref {:?} is not a ref",
                    v.version,
                    d.pack_ref
                );
            }
        }
        assert!(versions.windows(2).all(|w| w[0].version > w[1].version), "{r}: versions highest first, unique");
    }
    let _ = serde_json::to_string(&index).expect("an index serializes");
    let refs: Vec<String> = index.packs.keys().take(4).cloned().collect();
    let indexes = vec![("fuzz".to_string(), index)];
    for r in refs {
        let request = PackRequest::parse(&r).expect("an index ref is a valid request");
        if let Ok(resolved) = registry::resolve(&indexes, &request) {
            let plans = resolved.plans().unwrap_or_default();
            for p in &plans {
                // The plan's source is handed to the source parser as is.
                let _ = attune::sources::redact_url(&p.source);
            }
        }
        let _ = deps::solve(&indexes, &request, &BTreeMap::new());
    }
});
