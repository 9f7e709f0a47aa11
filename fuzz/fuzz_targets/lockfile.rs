//! Fuzzes the lockfile reader: `attune sync --locked` takes a lockfile from a
//! repository or a colleague. What it accepts must hold valid refs, versions
//! and tree checksums, and must write back to the same lockfile.
#![no_main]

use std::path::Path;

use attune::lockfile::Lockfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(lock) = Lockfile::parse(Path::new("attune.lock"), text) else { return };
    for p in &lock.packs {
        assert!(attune::registry::is_ref(&p.pack_ref), "accepted a lockfile with ref {:?}", p.pack_ref);
        assert!(semver::Version::parse(&p.version).is_ok());
        assert!(p.checksum.parse::<attune::checksum::Checksum>().is_ok());
        if let Some(a) = &p.archive_sha256 {
            let c = a.parse::<attune::checksum::Checksum>();
            assert!(
                c.is_ok_and(|c| c.kind() == attune::checksum::ChecksumKind::Sha256),
                "accepted archive_sha256 {a:?}"
            );
        }
    }
    let written = lock.to_toml();
    let again = Lockfile::parse(Path::new("attune.lock"), &written).expect("a written lockfile reads back");
    assert_eq!(again, lock, "lockfile round trip");
});
