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
    /// Hosts the source names or the operator allowed (`--allow-host`):
    /// `host`, `host:port`, `*.domain` or `*.domain:port` ([`authority_matches`]).
    pub hosts: Vec<String>,
    /// Of `hosts`, the ones a trusted party named (the operator, or the CLI's
    /// user for its own source): only these may resolve to private,
    /// loopback or link-local addresses. An API caller's source host is never
    /// among them.
    pub trusted_hosts: Vec<String>,
    /// Plain http:// beyond loopback (`--allow-insecure-http`).
    pub allow_insecure_http: bool,
    /// Capabilities an operator granted by name (`larger-limits:…`).
    pub granted: Vec<String>,
}

/// What one fetch is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub input: Option<PathBuf>,
    /// Hosts this fetch may reach (patterns, see [`authority_matches`]).
    pub outbound_hosts: Vec<String>,
    /// Of those, the ones that may resolve to private addresses: literal
    /// names (never a wildcard's matches) that a trusted party named.
    pub private_hosts: Vec<String>,
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
                    let host = normalize_authority(host);
                    if !asks_for(pattern, &host) || g.outbound_hosts.contains(&host) {
                        continue;
                    }
                    let trusted = offer.trusted_hosts.iter().any(|t| normalize_authority(t) == host);
                    if trusted && !host.contains('*') {
                        g.private_hosts.push(host.clone());
                    }
                    g.outbound_hosts.push(host);
                }
            }
        }
    }
    // Only meaningful, and only granted, alongside a host.
    g.allow_insecure_http = offer.allow_insecure_http && !g.outbound_hosts.is_empty();
    g
}

/// The `outbound-host` pattern that means "the host the source names".
///
/// One reading everywhere: an operator who grants it offers, per fetch, the
/// `host:port` of that fetch's source ([`source_authority`]); a fetcher that
/// asks for it receives every host offered for the fetch, which is that one
/// plus the hosts the operator allowed (`--allow-host`, a literal grant) —
/// how a download follows a redirect to an allowed mirror. It never reaches
/// a host nobody offered.
pub const SOURCE_HOST: &str = "{source-host}";

/// What [`SOURCE_HOST`] stands for in a fetch of `source`: its host and port
/// (the scheme's default, else 443), normalized. `None` for a source without a host.
pub fn source_authority(source: &str) -> Option<String> {
    let url = url::Url::parse(source).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let port = url.port_or_known_default().unwrap_or(443);
    Some(normalize_authority(&format!("{host}:{port}")))
}

/// `example.com`, `*.example.com` (subdomains only) or [`SOURCE_HOST`] (any
/// host the offer names; see there).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if pattern == SOURCE_HOST {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Whether a fetcher's `outbound-host` pattern covers an offered host
/// pattern: the host parts match, and a port the fetcher names is the
/// offered one's.
fn asks_for(pattern: &str, offered: &str) -> bool {
    if pattern == SOURCE_HOST {
        return true;
    }
    let (ph, pp) = split_authority(pattern);
    let (oh, op) = split_authority(offered);
    let host_ok = ph.eq_ignore_ascii_case(oh) || host_matches(ph, oh);
    host_ok && (pp.is_none() || pp == op)
}

/// Lower case, IPv6 brackets kept only around a host with a port, one
/// trailing dot dropped (`localhost.` is `localhost`).
pub fn normalize_authority(s: &str) -> String {
    let (host, port) = split_authority(s);
    let host = normalize_host(host);
    match port {
        Some(p) if host.contains(':') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// A host as compared everywhere: lower case, no brackets, no trailing dot.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

/// `host:port` into its parts: `example.com:8443`, `[::1]:80`, `::1` (a
/// bare IPv6 address has no port), `example.com`.
pub fn split_authority(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// Whether a grant or `--allow-host` pattern admits a request to
/// `host` on `port`. A pattern is `host` (any port of that host),
/// `host:port` (that port only), `*.domain` or `*.domain:port`.
pub fn authority_matches(pattern: &str, host: &str, port: u16) -> bool {
    let (ph, pp) = split_authority(pattern);
    let (ph, host) = (normalize_host(ph), normalize_host(host));
    let host_ok = if ph.starts_with("*.") { host_matches(&ph, &host) } else { ph == host };
    host_ok && pp.is_none_or(|p| p == port)
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
    fn the_source_host_is_the_sources_host_and_port() {
        assert_eq!(source_authority("https://Example.COM/a.tgz").as_deref(), Some("example.com:443"));
        assert_eq!(source_authority("http://example.com/a.tgz").as_deref(), Some("example.com:80"));
        assert_eq!(source_authority("oci://127.0.0.1:5000/team/pack").as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(source_authority("oci://registry.example/team/pack").as_deref(), Some("registry.example:443"));
        assert_eq!(source_authority("https://[::1]:8443/x").as_deref(), Some("[::1]:8443"));
        assert_eq!(source_authority("https://user:pw@host.example./x").as_deref(), Some("host.example:443"));
        assert_eq!(source_authority("s3:bucket/key"), None);
        assert_eq!(source_authority("/a/local/path"), None);
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

    #[test]
    fn authorities_compare_host_and_port() {
        assert!(authority_matches("example.com", "example.com", 8443), "a bare host admits any port");
        assert!(authority_matches("example.com:443", "EXAMPLE.com.", 443));
        assert!(!authority_matches("example.com:443", "example.com", 8443));
        assert!(authority_matches("*.example.com:443", "a.example.com", 443));
        assert!(!authority_matches("*.example.com:443", "a.example.com", 80));
        assert!(authority_matches("[::1]:8080", "::1", 8080) && !authority_matches("[::1]:8080", "::1", 8081));
        assert!(authority_matches("::1", "[::1]", 1));
        assert_eq!(split_authority("127.0.0.1:99"), ("127.0.0.1", Some(99)));
        assert_eq!(split_authority("fe80::1"), ("fe80::1", None));
        assert_eq!(normalize_authority("LocalHost.:80"), "localhost:80");
    }

    #[test]
    fn only_trusted_literal_hosts_may_be_private() {
        let offer = Offer {
            hosts: vec!["127.0.0.1:8080".into(), "mirror.example".into(), "*.cdn.example".into()],
            trusted_hosts: vec!["mirror.example".into(), "*.cdn.example".into()],
            ..Default::default()
        };
        let g = grant(&[Capability::OutboundHost("{source-host}".into())], &offer);
        assert_eq!(g.outbound_hosts, vec!["127.0.0.1:8080", "mirror.example", "*.cdn.example"]);
        assert_eq!(g.private_hosts, vec!["mirror.example"], "the caller's host and wildcards are not");
        // A fetcher asking for one port is not given another.
        let g = grant(&[Capability::OutboundHost("127.0.0.1:9000".into())], &offer);
        assert!(g.outbound_hosts.is_empty());
        let g = grant(&[Capability::OutboundHost("127.0.0.1".into())], &offer);
        assert_eq!(g.outbound_hosts, vec!["127.0.0.1:8080"]);
    }
}
