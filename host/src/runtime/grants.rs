//! The capability granter: what a fetcher may touch, decided in one place.
//!
//! A fetcher asks (its `describe`), the source or the operator offers, and
//! only what both sides name is granted. Everything else is denied by
//! default, so a new capability kind is closed until code here opens it.

use std::path::PathBuf;

use super::Capability;

/// What the caller is willing to give this fetch.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    /// A local path the source names (the folder or file to read).
    pub input: Option<PathBuf>,
    /// Hosts the source names or the operator allowed.
    pub hosts: Vec<String>,
}

/// What one fetch is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub input: Option<PathBuf>,
    pub outbound_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("fetcher `{fetcher}` needs a local input, but the source names none")]
    InputRequired { fetcher: String },
}

/// Grants the intersection of what `requested` asks and `offer` gives.
pub fn grant(fetcher: &str, requested: &[Capability], offer: &Offer) -> Result<Grants, GrantError> {
    let mut g = Grants::default();
    for cap in requested {
        match cap {
            Capability::ReadInput => {
                let input = offer
                    .input
                    .clone()
                    .ok_or_else(|| GrantError::InputRequired { fetcher: fetcher.to_string() })?;
                g.input = Some(input);
            }
            Capability::OutboundHost(pattern) => {
                for host in &offer.hosts {
                    if host_matches(pattern, host) && !g.outbound_hosts.contains(host) {
                        g.outbound_hosts.push(host.clone());
                    }
                }
            }
        }
    }
    Ok(g)
}

/// `example.com`, `*.example.com` (subdomains only) or `{source-host}` (any
/// host the offer names, which is how built-in fetchers reach the source).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "{source-host}" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_that_was_not_both_asked_and_offered() {
        let offer = Offer { input: Some("/src".into()), hosts: vec!["example.com".into()] };
        assert_eq!(grant("x", &[], &offer).unwrap(), Grants::default());
        let g = grant("x", &[Capability::ReadInput], &offer).unwrap();
        assert_eq!(g.input, Some(PathBuf::from("/src")));
        assert!(g.outbound_hosts.is_empty());
        let g = grant("x", &[Capability::OutboundHost("other.org".into())], &offer).unwrap();
        assert!(g.outbound_hosts.is_empty() && g.input.is_none());
    }

    #[test]
    fn input_is_required_when_asked() {
        assert_eq!(
            grant("local", &[Capability::ReadInput], &Offer::default()),
            Err(GrantError::InputRequired { fetcher: "local".into() })
        );
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("example.com", "EXAMPLE.com"));
        assert!(!host_matches("example.com", "evil-example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(host_matches("{source-host}", "anything"));
    }
}
