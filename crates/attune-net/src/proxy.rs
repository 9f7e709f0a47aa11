//! Outbound proxies: which one a request takes (curl's `NO_PROXY` rules),
//! and the `CONNECT` tunnel through it for https.
//!
//! The allowlist and private-address rules are the caller's, applied to the
//! target before anything here runs: a proxy only changes the road, never
//! what may be reached. The proxy's own address may be private (it usually
//! is). Proxy credentials are kept in a [`Secret`] and no error or `Debug`
//! output of this module shows them.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use thiserror::Error;

use crate::values::{Secret, normalize_host};

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("not a proxy URL; write http://[user:password@]host:port (the value is not shown: it may hold a password)")]
    BadUrl,
    #[error("proxy scheme {scheme}:// is not supported; use an http:// or https:// proxy (SOCKS is not supported)")]
    Unsupported { scheme: String },
    #[error("proxy {proxy}: cannot connect: {source}; check the proxy setting (config proxy, HTTPS_PROXY, http_proxy)")]
    Connect { proxy: String, source: std::io::Error },
    #[error("proxy {proxy}: no answer within {limit:?}; check the proxy setting, or add the target to NO_PROXY")]
    Timeout { proxy: String, limit: Duration },
    #[error(
        "proxy {proxy} asks for credentials to reach {target} ({status}){given}; put user:password in the proxy URL"
    )]
    AuthRequired { proxy: String, target: String, status: http::StatusCode, given: &'static str },
    #[error(
        "proxy {proxy} refused the tunnel to {target}: {status}; the proxy's operator decides which hosts and ports it allows"
    )]
    Refused { proxy: String, target: String, status: http::StatusCode },
    #[error("proxy {proxy}: the tunnel to {target} failed: {message}")]
    Tunnel { proxy: String, target: String, message: String },
}

/// A proxy setting as written: a proxy, or `""` for none.
///
/// Read from the config file it never fails: a value that is not a proxy
/// URL is kept as invalid and refused by [`crate::Net::build`], so the
/// config parser's error (which quotes the line, password and all) is
/// never shown for it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySpec {
    proxy: Option<Proxy>,
    /// Why the value is not a proxy (no part of the value in it).
    invalid: Option<String>,
}

impl<'de> Deserialize<'de> for ProxySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ProxySpec, D::Error> {
        let s = Secret::deserialize(d)?;
        Ok(ProxySpec::parse(s.expose()).unwrap_or_else(|e| ProxySpec { proxy: None, invalid: Some(e.to_string()) }))
    }
}

impl ProxySpec {
    /// `[http[s]://][user:password@]host[:port]` as curl reads it (no
    /// scheme means http; no port means 1080 for http, 443 for https, which
    /// is TLS to the proxy itself); `""` means no proxy.
    pub fn parse(s: &str) -> Result<ProxySpec, ProxyError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(ProxySpec { proxy: None, invalid: None });
        }
        let with_scheme = if s.contains("://") { s.to_string() } else { format!("http://{s}") };
        let url = url::Url::parse(&with_scheme).map_err(|_| ProxyError::BadUrl)?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(ProxyError::Unsupported { scheme: other.to_string() }),
        };
        let host = normalize_host(url.host_str().ok_or(ProxyError::BadUrl)?);
        // url hides an explicit :80 or :443 (the scheme's default): look at the authority.
        let authority = with_scheme.split("://").nth(1).unwrap_or("").split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let explicit_port = host_port.contains(':') && !host_port.ends_with(']');
        let port = match url.port() {
            Some(p) => p,
            None if explicit_port => url.port_or_known_default().unwrap_or(80),
            None if tls => 443,
            None => 1080,
        };
        let decode = |v: &str| percent_encoding::percent_decode_str(v).decode_utf8().map(|c| c.into_owned());
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = decode(url.username()).map_err(|_| ProxyError::BadUrl)?;
            let pass = decode(url.password().unwrap_or("")).map_err(|_| ProxyError::BadUrl)?;
            Some(Secret::new(format!("{user}:{pass}")))
        };
        Ok(ProxySpec { proxy: Some(Proxy { host, port, tls, auth }), invalid: None })
    }

    /// The proxy, or None for "no proxy".
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// Why a value read from the config file is not a proxy.
    pub fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }
}

impl std::fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.proxy, &self.invalid) {
            (Some(p), _) => write!(f, "{p:?}"),
            (None, Some(_)) => f.write_str("invalid proxy"),
            (None, None) => f.write_str("no proxy"),
        }
    }
}

/// An http proxy: where it is, whether it is reached over TLS, and how to
/// log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `https://` proxy: TLS to the proxy, checked with the same trust as any host.
    pub tls: bool,
    /// `user:password`, sent as basic auth.
    auth: Option<Secret>,
}

impl Proxy {
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }

    /// The `Proxy-Authorization` value, marked sensitive.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        let auth = self.auth.as_ref()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(auth.expose());
        let mut v = HeaderValue::try_from(format!("Basic {b64}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// `http[s]://host:port`, never the credentials.
impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", authority(&self.host, self.port))
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = if self.auth.is_some() { " (with credentials)" } else { "" };
        write!(f, "{self}{auth}")
    }
}

/// `host:port`, IPv6 in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The hosts reached without the proxy: curl's `NO_PROXY` forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// The name and every name under it.
    Domain { name: String, port: Option<u16> },
    /// An address or a network (`10.0.0.0/8`, `::1`).
    Net { net: ipnet::IpNet, port: Option<u16> },
}

impl NoProxy {
    /// Entries separated by commas or white space: `*` (every host),
    /// `example.com` and `.example.com` (that domain and names under it),
    /// `*.example.com` (the same), IP addresses and CIDR networks (`[::1]`,
    /// `10.0.0.0/8`), each optionally with `:port` for that port only (an
    /// extension to curl, which has no ports here; Go and Python do).
    /// Entries that are none of these are ignored, as curl does.
    pub fn parse(list: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for token in list.split([',', ' ', '\t']).map(str::trim).filter(|t| !t.is_empty()) {
            if token == "*" {
                n.all = true;
                continue;
            }
            let (body, port) = split_port(token);
            let body = body.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = body.parse::<ipnet::IpNet>() {
                n.entries.push(NoProxyEntry::Net { net, port });
            } else if let Ok(ip) = body.parse::<IpAddr>() {
                n.entries.push(NoProxyEntry::Net { net: ip.into(), port });
            } else {
                let name = body.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
                if !name.is_empty() && !name.contains(['/', '*']) {
                    n.entries.push(NoProxyEntry::Domain { name: name.to_ascii_lowercase(), port });
                }
            }
        }
        n
    }

    /// Whether `host` (canonical: lower case, IPv6 without brackets) on
    /// `port` is reached directly.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = normalize_host(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match e {
            NoProxyEntry::Domain { name, port: p } => {
                ip.is_none()
                    && p.is_none_or(|p| p == port)
                    && (host == *name || host.strip_suffix(name.as_str()).is_some_and(|rest| rest.ends_with('.')))
            }
            NoProxyEntry::Net { net, port: p } => ip.is_some_and(|ip| net.contains(&ip)) && p.is_none_or(|p| p == port),
        })
    }
}

/// `host:port` → (`host`, port); a bare IPv6 address has no port.
fn split_port(token: &str) -> (&str, Option<u16>) {
    if let Some(rest) = token.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (token, None),
        };
    }
    match token.rsplit_once(':') {
        // More than one colon without brackets: an IPv6 address (with or without /bits).
        Some((h, _)) if h.contains(':') => (token, None),
        Some((h, p)) => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (token, None),
        },
        None => (token, None),
    }
}

/// Opens a `CONNECT` tunnel to `target_host:target_port` over `io` (already
/// connected to `proxy`): the stream that comes back speaks to the target.
pub(crate) async fn connect_tunnel<S>(
    io: S,
    proxy: &Proxy,
    target_host: &str,
    target_port: u16,
    timeout: Duration,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, ProxyError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let target = authority(target_host, target_port);
    let tunnel_err = |e: &dyn std::fmt::Display| ProxyError::Tunnel {
        proxy: proxy.to_string(),
        target: target.clone(),
        message: e.to_string(),
    };
    let timed_out = || ProxyError::Timeout { proxy: proxy.to_string(), limit: timeout };
    let (mut sender, conn) = tokio::time::timeout(timeout, hyper::client::conn::http1::handshake(TokioIo::new(io)))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| tunnel_err(&e))?;
    let conn = tokio::spawn(conn.with_upgrades());
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(&target)
        .header(http::header::HOST, &target)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| tunnel_err(&e))?;
    if let Some(v) = proxy.authorization() {
        req.headers_mut().insert(http::header::PROXY_AUTHORIZATION, v);
    }
    let res = match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            conn.abort();
            return Err(tunnel_err(&e));
        }
        Err(_) => {
            conn.abort();
            return Err(timed_out());
        }
    };
    let status = res.status();
    // tinyproxy answers wrong credentials with 401, not 407.
    if status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED || status == http::StatusCode::UNAUTHORIZED {
        conn.abort();
        let given = if proxy.auth.is_some() { ", and refused the ones given" } else { "" };
        return Err(ProxyError::AuthRequired { proxy: proxy.to_string(), target, status, given });
    }
    if !status.is_success() {
        conn.abort();
        return Err(ProxyError::Refused { proxy: proxy.to_string(), target, status });
    }
    let upgraded = tokio::time::timeout(timeout, hyper::upgrade::on(res))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| tunnel_err(&e))?;
    Ok(TokioIo::new(upgraded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_read_as_curl_reads_them() {
        let p = ProxySpec::parse("proxy.corp:3128").unwrap().proxy.unwrap();
        assert_eq!((p.host.as_str(), p.port, p.has_credentials()), ("proxy.corp", 3128, false));
        assert_eq!(ProxySpec::parse("http://proxy.corp").unwrap().proxy.unwrap().port, 1080);
        assert_eq!(ProxySpec::parse("http://proxy.corp:80/").unwrap().proxy.unwrap().port, 80);
        assert_eq!(ProxySpec::parse("http://[::1]:8080").unwrap().proxy.unwrap().host, "::1");
        assert_eq!(ProxySpec::parse("http://[::1]").unwrap().proxy.unwrap().port, 1080);
        let p = ProxySpec::parse("https://proxy.corp").unwrap().proxy.unwrap();
        assert_eq!((p.port, p.tls, p.to_string().as_str()), (443, true, "https://proxy.corp:443"));
        assert_eq!(ProxySpec::parse("https://proxy.corp:443").unwrap().proxy.unwrap().port, 443);
        assert_eq!(ProxySpec::parse("https://proxy.corp:80").unwrap().proxy.unwrap().port, 80);
        assert_eq!(ProxySpec::parse("").unwrap().proxy(), None);
        assert!(matches!(ProxySpec::parse("socks5://p:1080"), Err(ProxyError::Unsupported { .. })));
        let p = ProxySpec::parse("http://us%40er:p%3Ass@p:1").unwrap().proxy.unwrap();
        assert_eq!(p.auth.as_ref().unwrap().expose(), "us@er:p:ss");
    }

    #[test]
    fn proxy_credentials_are_never_shown() {
        let spec = ProxySpec::parse("http://alice:hunter2@proxy:3128").unwrap();
        let p = spec.proxy().unwrap().clone();
        for shown in [format!("{spec:?}"), format!("{p}"), format!("{p:?}")] {
            assert!(!shown.contains("hunter2") && !shown.contains("alice"), "{shown}");
        }
        let e = ProxySpec::parse("http://alice:hunter2@proxy:notaport").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn no_proxy_forms() {
        let n = NoProxy::parse("localhost, .corp.example,example.org:8080 10.0.0.0/8,[::1],192.168.1.5:81,*.svc");
        assert!(n.matches("localhost", 80));
        assert!(n.matches("corp.example", 443) && n.matches("git.corp.example", 443));
        assert!(!n.matches("notcorp.example", 443));
        assert!(n.matches("example.org", 8080) && n.matches("www.example.org", 8080));
        assert!(!n.matches("example.org", 443));
        assert!(n.matches("10.1.2.3", 443) && !n.matches("11.1.2.3", 443));
        assert!(n.matches("::1", 443) && n.matches("[::1]", 443));
        assert!(n.matches("192.168.1.5", 81) && !n.matches("192.168.1.5", 80));
        assert!(n.matches("a.svc", 1) && n.matches("svc", 1));
        // A domain entry does not match an address, nor an address a name.
        assert!(!NoProxy::parse("127.0.0.1").matches("localhost", 80));
        assert!(!NoProxy::parse("localhost").matches("127.0.0.1", 80));
        assert!(NoProxy::parse("*").matches("anything.example", 1));
        assert!(NoProxy::parse("a.example,*").matches("anything.example", 1));
        assert!(!NoProxy::parse("").matches("anything.example", 1));
        // Trailing dots on either side are the same name.
        assert!(NoProxy::parse("corp.example.").matches("git.corp.example.", 1));
    }
}
