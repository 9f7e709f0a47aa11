//! Outbound HTTP for fetchers: who may be reached, and how.
//!
//! A fetcher speaks wasi:http; every request (and so every redirect hop, the
//! guest follows them itself) comes through [`OutboundPolicy::send_request`].
//! Only granted hosts are reached, compared by host and port (a redirect to
//! another port of the same host is another authority). Plain `http://` is
//! for loopback hosts unless the user allows it. A host no trusted party
//! named literally (the operator; the CLI's user for its own source, never
//! an API caller) may not resolve to a private, loopback, link-local,
//! unique-local, IPv4-mapped or unspecified address, whatever its spelling
//! (`127.1`, `2130706433`, `0x7f.1`, `localhost.` are read as the address
//! they mean before anything is compared), and the address
//! that was checked is the one connected to, so a second DNS answer cannot
//! redirect the connection (no rebinding between check and connect). Every
//! refusal is recorded so the user's error names the host and the flag that
//! allows it; the guest itself only learns "denied".
//!
//! How an admitted request travels is the operator's network setup
//! ([`attune_net::Net`]: trust, proxy, per-host credentials, client
//! certificates), applied after the checks above, so a proxy never sees a
//! request to a host the policy refused. A network failure (unknown issuer,
//! name mismatch, proxy refusal…) is recorded like a refusal, so the user
//! reads what failed instead of the guest's bare error code; the guest sees
//! no token, key or proxy, only responses.

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
    NotAllowed {
        host: String,
        port: u16,
        other_port: bool,
    },
    Insecure {
        host: String,
    },
    PrivateAddress {
        host: String,
        addr: IpAddr,
    },
    /// The network said no (TLS, proxy, connection): attune-net's message.
    Network {
        message: String,
    },
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::NotAllowed { host, port, other_port: true } => write!(
                f,
                "a request to {host} was refused: port {port} of that host is not allowed; \
                 allow it with --allow-host {host}:{port}"
            ),
            Denial::NotAllowed { host, .. } => {
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
            Denial::Network { message } => f.write_str(message),
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

/// Name resolution, injectable so tests can make a name mean loopback.
pub type Resolver =
    Arc<dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync>;

/// The system resolver (getaddrinfo).
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) }))
}

/// What one fetch may reach.
#[derive(Clone)]
pub struct OutboundPolicy {
    /// Authorities that may be reached (lower case; `host`, `host:port`,
    /// `*.domain[:port]`, see [`super::grants::authority_matches`]).
    pub allowed: Vec<String>,
    /// Authorities a trusted party named literally: only these may be
    /// private addresses.
    pub named: Vec<String>,
    pub allow_insecure_http: bool,
    pub timeouts: Timeouts,
    pub denials: Arc<Mutex<Vec<Denial>>>,
    pub resolver: Resolver,
    /// How admitted requests reach their host (the operator's, never a fetcher's).
    pub net: attune_net::Net,
}

impl OutboundPolicy {
    pub fn deny_all(net: attune_net::Net) -> OutboundPolicy {
        OutboundPolicy {
            allowed: vec![],
            named: vec![],
            allow_insecure_http: false,
            timeouts: Timeouts::within(Duration::from_secs(30)),
            denials: Arc::default(),
            resolver: system_resolver(),
            net,
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

/// `localhost` (and `*.localhost`, RFC 6761) and loopback IP literals in
/// any spelling: plain http is fine there.
pub fn is_loopback_host(host: &str) -> bool {
    let h = canonical_host(host);
    is_localhost_name(&h) || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_localhost_name(h: &str) -> bool {
    h == "localhost" || h.ends_with(".localhost")
}

/// A host as the URL standard reads it: lower case, no brackets, no
/// trailing dot, IPv4 in its dotted form whatever the spelling (`127.1`,
/// `2130706433`, `0x7f.1` are all 127.0.0.1).
pub fn canonical_host(host: &str) -> String {
    let h = super::grants::normalize_host(host);
    let bracketed = if h.contains(':') { format!("[{h}]") } else { h.clone() };
    match url::Url::parse(&format!("http://{bracketed}/")).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(c) => super::grants::normalize_host(&c),
        None => h,
    }
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
                || v4.octets()[0] >= 224 // multicast and reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // IPv4-mapped (::ffff:a.b.c.d) is refused whatever it maps to:
            // a caller has no need for it, and it is a common disguise.
            if v6.to_ipv4_mapped().is_some() {
                return true;
            }
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
            // (2002::/16) carry an IPv4 address: judge that one.
            let embedded = if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                Some(std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
            } else if s[0] == 0x2002 {
                Some(std::net::Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
            } else {
                None
            };
            if embedded.is_some_and(|v4| is_private(IpAddr::V4(v4))) {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
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
            let host = canonical_host(uri.host().ok_or(Error::HttpRequestUriInvalid)?);
            let tls = match uri.scheme() {
                Some(s) if *s == Scheme::HTTPS => true,
                Some(s) if *s == Scheme::HTTP => false,
                _ => return Err(Error::HttpProtocolError),
            };
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let admits = |list: &[String]| list.iter().any(|p| super::grants::authority_matches(p, &host, port));
            if !admits(&policy.allowed) {
                let other_port = policy.allowed.iter().any(|p| {
                    let (h, _) = super::grants::split_authority(p);
                    super::grants::authority_matches(h, &host, port)
                });
                policy.deny(Denial::NotAllowed { host: host.clone(), port, other_port });
                return Err(Error::HttpRequestDenied);
            }
            if !tls && !policy.allow_insecure_http && !is_loopback_host(&host) {
                policy.deny(Denial::Insecure { host: host.clone() });
                return Err(Error::HttpRequestDenied);
            }
            let named = admits(&policy.named);
            // Through a proxy, a name this host cannot resolve is the proxy's
            // to resolve; only a name a trusted party gave may go unchecked
            // (it may be private anyway).
            let proxied = matches!(policy.net.route(&host, port, tls), attune_net::Route::Proxy(_));
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                // Never asked of DNS, which might say otherwise (RFC 6761).
                Err(_) if is_localhost_name(&host) => {
                    vec![
                        SocketAddr::new([127, 0, 0, 1].into(), port),
                        SocketAddr::new([0u16, 0, 0, 0, 0, 0, 0, 1].into(), port),
                    ]
                }
                Err(_) => {
                    match tokio::time::timeout(policy.timeouts.connect, (policy.resolver)(host.clone(), port)).await {
                        Ok(Ok(a)) => a,
                        Err(_) if !(proxied && named) => return Err(Error::DnsTimeout),
                        Ok(Err(e)) if !(proxied && named) => {
                            return Err(Error::DnsError { rcode: Some(e.to_string()), info_code: None });
                        }
                        _ => vec![],
                    }
                }
            };
            let mut checked = Vec::new();
            for addr in &addrs {
                if !named && is_private(addr.ip()) {
                    policy.deny(Denial::PrivateAddress { host: host.clone(), addr: addr.ip() });
                } else {
                    checked.push(*addr);
                }
            }
            if checked.is_empty() && !(proxied && named && addrs.is_empty()) {
                return Err(Error::DestinationIpProhibited);
            }
            match send(request, &checked, &host, port, tls, &policy).await {
                Ok(r) => Ok(r),
                Err(Failure::Net { message, code }) => {
                    if let Some(message) = message {
                        policy.deny(Denial::Network { message });
                    }
                    Err(code)
                }
                Err(Failure::Http(e)) => Err(e),
            }
        })
    }
}

/// Why [`send`] failed: the network setup's error or the wire's.
enum Failure {
    /// `message` is for the user when the guest's error code cannot say it
    /// (TLS, proxy, configuration); a refused or timed-out connection is
    /// the fetcher's to report, as before.
    Net {
        message: Option<String>,
        code: Error,
    },
    Http(Error),
}

impl Failure {
    fn net(e: &attune_net::NetError) -> Failure {
        use attune_net::NetError as N;
        let plain = matches!(e, N::Connect { .. } | N::ConnectTimeout { .. } | N::NoAddress { .. });
        Failure::Net { message: (!plain).then(|| e.to_string()), code: error_code(e) }
    }
}

impl From<attune_net::NetError> for Failure {
    fn from(e: attune_net::NetError) -> Failure {
        Failure::net(&e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Http(e)
    }
}

impl From<hyper::Error> for Failure {
    fn from(e: hyper::Error) -> Failure {
        // A TLS alert after the handshake (a refused client certificate
        // under TLS 1.3) arrives inside hyper's error.
        match attune_net::NetError::find_in(&e) {
            Some(n) => Failure::net(n),
            None => Failure::Http(e.into()),
        }
    }
}

/// The wasi error code closest to a network failure (the guest's view; the
/// user reads the recorded message).
fn error_code(e: &attune_net::NetError) -> Error {
    use attune_net::{NetError as N, TlsError as T};
    match e {
        N::Tls(T::UnknownIssuer { .. } | T::NameMismatch { .. } | T::Expired { .. } | T::NotYetValid { .. }) => {
            Error::TlsCertificateError
        }
        N::Tls(_) => Error::TlsProtocolError,
        N::Proxy(_) => Error::DestinationUnavailable,
        N::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        N::Connect { .. } => Error::DestinationUnavailable,
        N::ConnectTimeout { .. } | N::HandshakeTimeout { .. } => Error::ConnectionTimeout,
        N::Request { .. } => Error::HttpRequestUriInvalid,
        _ => Error::ConfigurationError,
    }
}

/// Connects (directly to one of the checked addresses, never resolving
/// again, or through the proxy) and sends, with the host's credentials.
async fn send(
    mut req: http::Request<WasiBody>,
    addrs: &[SocketAddr],
    host: &str,
    port: u16,
    tls: bool,
    policy: &OutboundPolicy,
) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Failure> {
    let t = policy.timeouts;
    let conn = policy.net.connect(host, port, tls, addrs, t.connect).await?;
    // The credentials of this request's own target: a redirect elsewhere gets none.
    policy.net.authorize(host, port, req.headers_mut());
    conn.prepare_request(&mut req)?;
    let (mut sender, io) =
        tokio::time::timeout(t.connect, hyper::client::conn::http1::handshake(TokioIo::new(conn.stream)))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    let io = tokio::spawn(io);
    let res = tokio::time::timeout(t.first_byte, sender.send_request(req))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let res = res.map(|body| {
        StallGuard { body, sleep: Box::pin(tokio::time::sleep(t.between_bytes)), every: t.between_bytes }.boxed_unsync()
    });
    let io = async move {
        match io.await {
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
        let d = Denial::NotAllowed { host: "evil.example".into(), port: 443, other_port: false };
        assert!(d.to_string().contains("--allow-host evil.example"));
        let d = Denial::NotAllowed { host: "h".into(), port: 8080, other_port: true };
        assert!(d.to_string().contains("port 8080") && d.to_string().contains("--allow-host h:8080"));
        assert!(Denial::Insecure { host: "h".into() }.to_string().contains("--allow-insecure-http"));
    }

    #[test]
    fn spellings_of_loopback_are_read_as_loopback() {
        for h in ["127.1", "2130706433", "0x7f.1", "0177.0.0.1", "LOCALHOST.", "[::1]", "a.localhost"] {
            assert!(is_loopback_host(h), "{h}");
        }
        assert_eq!(canonical_host("0x7f.1"), "127.0.0.1");
        assert_eq!(canonical_host("[::FFFF:127.0.0.1]"), "::ffff:7f00:1");
        for a in
            ["::ffff:7f00:1", "::ffff:8.8.8.8", "::127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::", "fec0::1", "ff02::1"]
        {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
    }

    /// A listener on 127.0.0.1 that counts the connections it accepts.
    async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = n.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                use tokio::io::AsyncWriteExt as _;
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        (port, n)
    }

    /// Sends a GET through `policy` as a fetcher would.
    async fn get(policy: &mut OutboundPolicy, url: &str) -> Result<u16, Error> {
        let body: WasiBody = http_body_util::Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync();
        let req = http::Request::builder().uri(url).body(body).unwrap();
        let fut = policy.send_request(req, None, Box::new(async { Ok::<(), Error>(()) }));
        Box::into_pin(fut).await.map(|(r, _)| r.status().as_u16())
    }

    fn policy(allowed: &[String], named: &[String]) -> OutboundPolicy {
        let mut p = OutboundPolicy::deny_all(attune_net::Net::build(&Default::default()).unwrap());
        p.allowed = allowed.to_vec();
        p.named = named.to_vec();
        // Plain http too: the address check is what is tested.
        p.allow_insecure_http = true;
        // Names a test adds: `internal.test` is loopback.
        p.resolver = Arc::new(|host, port| {
            Box::pin(async move {
                match host.as_str() {
                    "internal.test" => Ok(vec![SocketAddr::new([127, 0, 0, 1].into(), port)]),
                    _ => Err(std::io::Error::other("no such name")),
                }
            })
        });
        p
    }

    #[tokio::test]
    async fn an_untrusted_caller_reaches_no_loopback_spelling() {
        let (port, count) = counting_listener().await;
        let spellings = [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "localhost",
            "localhost.",
            "[::ffff:7f00:1]",
            "[::ffff:127.0.0.1]",
            "internal.test",
            "internal.test.",
        ];
        for h in spellings {
            for scheme in ["http", "https"] {
                let url = format!("{scheme}://{h}:{port}/x.tgz");
                // The caller's own host is allowed (its source), but not named by a trusted party.
                let host = url::Url::parse(&url).unwrap().host_str().unwrap().to_string();
                let mut p = policy(&[format!("{host}:{port}"), format!("{h}:{port}")], &[]);
                assert!(get(&mut p, &url).await.is_err(), "{url} was sent");
                assert!(
                    matches!(p.first_denial(), Some(Denial::PrivateAddress { .. })),
                    "{url}: {:?}",
                    p.first_denial()
                );
            }
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0, "a loopback connection was made");

        // The operator may allow a host: then it is reached (the listener counts).
        let allowed = [format!("127.0.0.1:{port}")];
        let mut p = policy(&allowed, &allowed);
        assert_eq!(get(&mut p, &format!("http://127.1:{port}/x.tgz")).await.unwrap(), 404);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn another_port_of_an_allowed_host_is_another_authority() {
        let (port, count) = counting_listener().await;
        let (other, other_count) = counting_listener().await;
        // Trusted (a CLI user's own source) on `port`: a redirect to `other` is refused.
        let allowed = [format!("127.0.0.1:{port}")];
        let mut p = policy(&allowed, &allowed);
        assert!(get(&mut p, &format!("http://127.0.0.1:{other}/x")).await.is_err());
        assert!(
            matches!(p.first_denial(), Some(Denial::NotAllowed { other_port: true, .. })),
            "{:?}",
            p.first_denial()
        );
        assert_eq!(other_count.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(get(&mut p, &format!("http://127.0.0.1:{port}/x")).await.unwrap(), 404);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A bare host admits every port.
        let mut p = policy(&["127.0.0.1".into()], &["127.0.0.1".into()]);
        assert_eq!(get(&mut p, &format!("http://127.0.0.1:{other}/x")).await.unwrap(), 404);
    }
}
