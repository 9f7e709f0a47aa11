//! Fuzzes the staging path rules as plain text: every path and symlink
//! target a fetcher hands the host. An accepted path is relative and
//! normalized; an accepted link target resolves inside the pack, and
//! resolving its result again changes nothing.
#![no_main]

use attune::staging::paths;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    // Path and link target, split at the first tab (control characters are refused in both anyway).
    let (path, target) = s.split_once('\t').unwrap_or((s, "x"));
    let Ok(parts) = paths::check(path) else { return };
    assert!(path.len() <= paths::MAX_PATH_BYTES);
    assert!(!path.starts_with('/') && !path.contains('\\') && !path.chars().any(char::is_control));
    assert_eq!(parts.join("/"), path);
    for p in &parts {
        assert!(!matches!(*p, "" | "." | ".."), "{path:?}: component {p:?}");
        assert!(p.len() <= paths::MAX_COMPONENT_BYTES);
    }
    let _ = paths::case_key(path);
    let Some(at) = paths::resolve_link_target(&parts, target) else { return };
    for p in &at {
        assert!(!matches!(p.as_str(), "" | "." | ".."), "{path:?} -> {target:?} resolved to {at:?}");
        assert!(!p.contains('/'));
    }
    if !at.is_empty() {
        // Normalized once is normalized: from the root, the result resolves to itself.
        let joined = at.join("/");
        assert_eq!(paths::resolve_link_target(&["link"], &joined).as_ref(), Some(&at), "{path:?} -> {target:?}");
    }
});
