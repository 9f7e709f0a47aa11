//! Fuzzes source strings and URLs as a user or an index gives them: the
//! source parser (only strings with a scheme, so the fuzzer does not probe the
//! filesystem), URL redaction, `ref@range` requests and dependency specs.
//! Redaction must never leave credentials in what is shown or stored.
#![no_main]

use attune::registry::{PackRequest, dep_spec};
use attune::sources::{self, SourceSpec};
use libfuzzer_sys::fuzz_target;

/// The authority of `s` (after `://` and any more slashes, up to the next
/// `/`, `?`, `#`, `\`, white space or quote, where `redact_url` ends a URL
/// inside a message), if it has a scheme.
fn authority(s: &str) -> Option<&str> {
    let rest = s[s.find("://")? + 3..].trim_start_matches(['/', '\\']);
    let end = rest
        .find(|c: char| matches!(c, '/' | '?' | '#' | '\\' | '"' | '\'' | '>' | ')') || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if s.contains("://") {
        match sources::parse(s) {
            Ok(SourceSpec::Http { url, host }) | Ok(SourceSpec::Git { url, host }) => {
                assert!(!host.is_empty(), "{s:?}: empty host");
                let plain = url.strip_prefix("git+").unwrap_or(&url);
                assert!(url::Url::parse(plain).is_ok(), "{s:?}: accepted URL does not parse");
            }
            Ok(other) => {
                let _ = other;
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let shown = sources::redact_url(s);
    if let Ok(u) = url::Url::parse(&shown) {
        assert!(u.password().is_none() && u.username().is_empty(), "{s:?} redacted to {shown:?}");
    } else if let Some(a) = authority(&shown) {
        // Not a URL: nothing that reads like user info may be left.
        assert!(!a.contains('@'), "{s:?} redacted to {shown:?}: credentials left in the authority");
    }
    if let Ok(r) = PackRequest::parse(s) {
        assert!(attune::registry::is_ref(&r.pack_ref));
    }
    match dep_spec::parse(s) {
        Ok(dep_spec::Declared::Pack { pack_ref, .. }) => assert!(attune::registry::is_ref(&pack_ref)),
        Ok(dep_spec::Declared::Url { url, version }) => {
            let _ = dep_spec::repo_key(&url);
            let _ = dep_spec::url_version_req(version.as_deref());
        }
        Err(_) => {}
    }
});
