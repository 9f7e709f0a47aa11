//! Outbound HTTP for fetchers: who may be reached, and how.
//!
//! A fetcher speaks wasi:http; every request (and so every redirect hop, the
//! guest follows them itself) comes through [`OutboundPolicy::send_request`].
//! Only granted hosts are reached. Plain `http://` is for loopback hosts
//! unless the user allows it. A host the user did not name literally may not
//! resolve to a private, loopback or link-local address, and the address
//! that was checked is the one connected to, so a second DNS answer cannot
//! redirect the connection (no rebinding between check and connect). Every
//! refusal is recorded so the user's error names the host and the flag that
//! allows it; the guest itself only learns "denied".

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotAllowed { host: String },
    Insecure { host: String },
    PrivateAddress { host: String, addr: IpAddr },
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::NotAllowed { host } => {
                write!(
                    f,
                    "a request to {host} was refused: that host is not allowed; allow it with --allow-host {host}"
                )
            }
            Denial::Insecure { host } => write!(
                f,
                "a plain http:// request to {host} was refused: only loopback hosts may use http://; \
                 use https:// or pass --allow-insecure-http"
            ),
            Denial::PrivateAddress { host, addr } => write!(
                f,
                "a request to {host} was refused: it resolves to {addr}, a private, loopback or link-local address, \
                 and {host} was not named by you; allow it with --allow-host {host}"
            ),
        }
    }
}

/// Time allowed for each step of one request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Timeouts {
    pub fn within(total: Duration) -> Timeouts {
        let t = total.min(Duration::from_secs(30));
        Timeouts { connect: t, first_byte: total.min(Duration::from_secs(60)), between_bytes: t }
    }
}

/// What one fetch may reach.
#[derive(Clone)]
pub struct OutboundPolicy {
    /// Hosts that may be reached (lower case; names, IP literals, or
    /// `*.domain` patterns an operator granted).
    pub allowed: Vec<String>,
    /// Hosts the user named literally: these may be private addresses.
    pub named: Vec<String>,
    pub allow_insecure_http: bool,
    pub timeouts: Timeouts,
    pub denials: Arc<Mutex<Vec<Denial>>>,
}

impl OutboundPolicy {
    pub fn deny_all() -> OutboundPolicy {
        OutboundPolicy {
            allowed: vec![],
            named: vec![],
            allow_insecure_http: false,
            timeouts: Timeouts::within(Duration::from_secs(30)),
            denials: Arc::default(),
        }
    }

    fn deny(&self, d: Denial) {
        let mut v = self.denials.lock().unwrap();
        if v.len() < 16 && !v.contains(&d) {
            v.push(d);
        }
    }

    /// The first refusal of this fetch, if any.
    pub fn first_denial(&self) -> Option<Denial> {
        self.denials.lock().unwrap().first().cloned()
    }
}

/// `localhost` and loopback IP literals: plain http is fine there.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Addresses a host the user did not name may not resolve to.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // carrier-grade NAT 100.64/10
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_ascii_lowercase();
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let tls = match uri.scheme() {
                Some(s) if *s == Scheme::HTTPS => true,
                Some(s) if *s == Scheme::HTTP => false,
                _ => return Err(Error::HttpProtocolError),
            };
            if !policy
                .allowed
                .iter()
                .any(|p| p == &host || (p.starts_with("*.") && crate::runtime::grants::host_matches(p, &host)))
            {
                policy.deny(Denial::NotAllowed { host });
                return Err(Error::HttpRequestDenied);
            }
            if !tls && !policy.allow_insecure_http && !is_loopback_host(&host) {
                policy.deny(Denial::Insecure { host });
                return Err(Error::HttpRequestDenied);
            }
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::time::timeout(policy.timeouts.connect, tokio::net::lookup_host((host.as_str(), port)))
                    .await
                    .map_err(|_| Error::DnsTimeout)?
                    .map_err(|e| Error::DnsError { rcode: Some(e.to_string()), info_code: None })?
                    .collect(),
            };
            let named = policy.named.contains(&host);
            let mut checked = Vec::new();
            for addr in addrs {
                if !named && is_private(addr.ip()) {
                    policy.deny(Denial::PrivateAddress { host: host.clone(), addr: addr.ip() });
                } else {
                    checked.push(addr);
                }
            }
            if checked.is_empty() {
                return Err(Error::DestinationIpProhibited);
            }
            send(request, &checked, &host, tls, policy.timeouts).await
        })
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Connects to one of the checked addresses (never resolving again) and sends.
async fn send(
    mut req: http::Request<WasiBody>,
    addrs: &[SocketAddr],
    host: &str,
    tls: bool,
    t: Timeouts,
) -> SendResult {
    let mut last = Error::ConnectionRefused;
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(t.connect, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = Error::ConnectionRefused,
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    let tcp = tcp.ok_or(last)?;
    let stream: Box<dyn Io> = if tls {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => {
                rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?
            }
        };
        let s = tokio::time::timeout(t.connect, tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        tokio::time::timeout(t.connect, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    let conn = tokio::spawn(conn);
    // Origin-form on the wire: the authority travels in the Host header.
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    *req.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let res = tokio::time::timeout(t.first_byte, sender.send_request(req))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let res = res.map(|body| {
        StallGuard { body, sleep: Box::pin(tokio::time::sleep(t.between_bytes)), every: t.between_bytes }.boxed_unsync()
    });
    let io = async move {
        match conn.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    };
    Ok((res, Box::new(io)))
}

/// A response body that fails when the server stops sending for too long.
struct StallGuard {
    body: hyper::body::Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
}

impl http_body::Body for StallGuard {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.every;
                self.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.1") && is_loopback_host("[::1]"));
        assert!(is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("example.com") && !is_loopback_host("10.0.0.1"));
    }

    #[test]
    fn denials_name_the_flag() {
        let d = Denial::NotAllowed { host: "evil.example".into() };
        assert!(d.to_string().contains("--allow-host evil.example"));
        assert!(Denial::Insecure { host: "h".into() }.to_string().contains("--allow-insecure-http"));
    }
}
