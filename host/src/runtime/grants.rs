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
    /// Hosts the source names or the operator allowed (`--allow-host`).
    pub hosts: Vec<String>,
    /// Plain http:// beyond loopback (`--allow-insecure-http`).
    pub allow_insecure_http: bool,
    /// Capabilities an operator granted by name (`larger-limits:…`).
    pub granted: Vec<String>,
}

/// What one fetch is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub input: Option<PathBuf>,
    /// Hosts this fetch may reach; each one was named by the source or the
    /// operator, so each may also be a private address.
    pub outbound_hosts: Vec<String>,
    pub allow_insecure_http: bool,
    /// Raised limits, when asked and granted exactly as asked.
    pub limits: Option<super::LimitRequest>,
}

/// Grants the intersection of what `requested` asks and `offer` gives.
pub fn grant(requested: &[Capability], offer: &Offer) -> Grants {
    let mut g = Grants::default();
    for cap in requested {
        match cap {
            // Not offered means not granted; the fetcher reports what it lacks.
            Capability::ReadInput => g.input = offer.input.clone(),
            Capability::LargerLimits(r) => {
                if offer.granted.contains(&cap.to_string()) {
                    g.limits = Some(*r);
                }
            }
            Capability::OutboundHost(pattern) => {
                for host in &offer.hosts {
                    let host = host.to_ascii_lowercase();
                    let asked = pattern.eq_ignore_ascii_case(&host) || host_matches(pattern, &host);
                    if asked && !g.outbound_hosts.contains(&host) {
                        g.outbound_hosts.push(host);
                    }
                }
            }
        }
    }
    // Only meaningful, and only granted, alongside a host.
    g.allow_insecure_http = offer.allow_insecure_http && !g.outbound_hosts.is_empty();
    g
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
        let offer = Offer {
            input: Some("/src".into()),
            hosts: vec!["example.com".into()],
            allow_insecure_http: true,
            ..Default::default()
        };
        assert_eq!(grant(&[], &offer), Grants::default());
        let g = grant(&[Capability::ReadInput], &offer);
        assert_eq!(g.input, Some(PathBuf::from("/src")));
        assert!(g.outbound_hosts.is_empty());
        let g = grant(&[Capability::OutboundHost("other.org".into())], &offer);
        assert!(g.outbound_hosts.is_empty() && g.input.is_none() && !g.allow_insecure_http);
        let g = grant(&[Capability::OutboundHost("{source-host}".into())], &offer);
        assert_eq!(g.outbound_hosts, vec!["example.com"]);
        assert!(g.allow_insecure_http);
    }

    #[test]
    fn larger_limits_only_exactly_as_asked() {
        let ask = super::super::LimitRequest { memory_bytes: Some(1 << 30), ..Default::default() };
        let cap = Capability::LargerLimits(ask);
        assert_eq!(grant(std::slice::from_ref(&cap), &Offer::default()).limits, None);
        let other =
            Capability::LargerLimits(super::super::LimitRequest { memory_bytes: Some(2 << 30), ..Default::default() });
        let offer = Offer { granted: vec![other.to_string()], ..Default::default() };
        assert_eq!(grant(std::slice::from_ref(&cap), &offer).limits, None);
        let offer = Offer { granted: vec![cap.to_string()], ..Default::default() };
        assert_eq!(grant(&[cap], &offer).limits, Some(ask));
    }

    #[test]
    fn input_not_offered_is_not_granted() {
        assert_eq!(grant(&[Capability::ReadInput], &Offer::default()), Grants::default());
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
