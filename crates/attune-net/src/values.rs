//! Small values every module shares: a secret that never shows itself, and
//! a host name as compared everywhere. Its own module so that `config` and
//! `proxy`, which both use them, do not import each other.

use serde::Deserialize;

/// A value that must not be shown: `Debug` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Lower case, no IPv6 brackets, no trailing dot.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}
