//! Fuzzes the `pack.yaml` reader: a fetched pack's manifest is untrusted text.
//! Whatever it accepts must obey the manifest rules (a valid ref, a strict
//! semver version), and reading its runtime requirements must not panic.
#![no_main]

use std::path::Path;

use attune::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = manifest::parse(text, Path::new("pack.yaml")) else { return };
    manifest::validate_ref(&m.r#ref).expect("an accepted manifest has a valid ref");
    let v = m.version.to_string();
    assert_eq!(semver::Version::parse(&v).ok().as_ref(), Some(&m.version), "the version prints and reads back");
    let _ = attune::interpreters::PackRequirements::from_manifest(&m);
});
