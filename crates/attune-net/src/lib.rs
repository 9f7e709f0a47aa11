//! attune-net: how the host reaches the network on a fetcher's behalf.
//!
//! Corporate networks need more than the bundled roots and a direct socket:
//! a private CA, an outbound proxy, per-host tokens, client certificates.
//! This crate is that layer and nothing else. The host's outbound policy
//! decides *whether* a target may be reached (allowlist, private addresses)
//! and resolves it; then [`Net::connect`] decides *how* (direct or through
//! the proxy, which trust, which client certificate), and
//! [`Connection::prepare_request`] plus [`Net::authorize`] add what the
//! request needs on the wire. A fetcher (wasm) sees none of it: no token,
//! key or proxy reaches the guest; it only sees responses.
//!
//! Wiring (host): build one [`Net`] per process from the config's keys
//! (`NetConfig { proxy, no_proxy, netrc, tls, credentials, .. }`, with
//! `--ca-cert` pushed onto `tls.ca_files`) and
//! `.with_env(&process_env())`, and keep it in the outbound policy. In
//! `send_request`, after the allowlist and address checks, call
//! [`Net::connect`] with the checked addresses instead of the TCP/TLS code,
//! then [`Net::authorize`] and [`Connection::prepare_request`] on the request
//! instead of the origin-form rewrite, then hyper's handshake on
//! `TokioIo::new(conn.stream)` as before. Turn a [`NetError`] (returned, or
//! found with [`NetError::find_in`] in a hyper error) into the message the
//! user sees.
//!
//! May import: no attune crate (a lowest layer, like `attune-core`).

pub mod config;
pub mod credentials;
pub mod proxy;
pub mod tls;
mod values;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use config::{Env, NetConfig, Secret, process_env};
pub use credentials::CredentialError;
pub use proxy::{NoProxy, Proxy, ProxyError, ProxySpec};
pub use tls::{TlsError, TrustSummary};

#[derive(Debug, Error)]
pub enum NetError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{authority}: cannot connect: {source}")]
    Connect { authority: String, source: std::io::Error },
    #[error("{authority}: no connection within {limit:?}; is the host reachable from here (a proxy needed)?")]
    ConnectTimeout { authority: String, limit: Duration },
    #[error("{host}: the TLS handshake took longer than {limit:?}; is this port speaking TLS?")]
    HandshakeTimeout { host: String, limit: Duration },
    #[error("{host}:{port}: no address to connect to; the caller passes the addresses it checked")]
    NoAddress { host: String, port: u16 },
    #[error("the request to {host} has no usable path: {reason}")]
    Request { host: String, reason: String },
}

impl NetError {
    /// The [`NetError`] behind an error from a connection's stream (hyper
    /// wraps it): TLS failures that arrive after the handshake, like a
    /// server refusing a missing client certificate under TLS 1.3.
    pub fn find_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NetError> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(n) = err.downcast_ref::<NetError>() {
                return Some(n);
            }
            // io::Error's source() skips the error it wraps: look inside.
            if let Some(n) =
                err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref::<NetError>())
            {
                return Some(n);
            }
            cur = err.source();
        }
        None
    }
}

/// A byte stream to the target (through TLS and a tunnel as needed).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// How a request to a target travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through this proxy: a `CONNECT` tunnel for https, absolute-form requests for http.
    Proxy(Proxy),
}

/// The operator's network setup, built once and shared (cheap to clone).
#[derive(Clone)]
pub struct Net(Arc<Inner>);

struct Inner {
    trust: tls::Trust,
    http_proxy: Option<Proxy>,
    https_proxy: Option<Proxy>,
    no_proxy: NoProxy,
    credentials: credentials::Credentials,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("trust", &self.0.trust.summary)
            .field("http_proxy", &self.0.http_proxy)
            .field("https_proxy", &self.0.https_proxy)
            .field("no_proxy", &self.0.no_proxy)
            .field("credentials", &self.0.credentials)
            .finish()
    }
}

impl Net {
    /// Reads every file the config names (CA files, client certificates and
    /// keys, token files, netrc) and the system store, once. `config`
    /// should already hold the environment ([`NetConfig::with_env`]).
    pub fn build(config: &NetConfig) -> Result<Net, NetError> {
        let trust = tls::Trust::build(&config.tls, config.env.ssl_cert_file.as_deref(), &config.env.ssl_cert_dirs)?;
        let credentials = credentials::Credentials::build(config)?;
        // The config's proxy wins over every environment proxy; "" means none.
        let (http_proxy, https_proxy) = match &config.proxy {
            Some(spec) => {
                if let Some(reason) = spec.invalid() {
                    return Err(config::ConfigError::BadProxy { var: "proxy", reason: reason.to_string() }.into());
                }
                (spec.proxy().cloned(), spec.proxy().cloned())
            }
            None => {
                let all = config.env.all_proxy.as_ref().and_then(|s| s.proxy().cloned());
                let pick = |s: &Option<ProxySpec>| match s {
                    Some(spec) => spec.proxy().cloned(),
                    None => all.clone(),
                };
                (pick(&config.env.http_proxy), pick(&config.env.https_proxy))
            }
        };
        let no_proxy = NoProxy::parse(config.no_proxy.as_deref().or(config.env.no_proxy.as_deref()).unwrap_or(""));
        Ok(Net(Arc::new(Inner { trust, http_proxy, https_proxy, no_proxy, credentials })))
    }

    /// Where the common trust came from.
    pub fn trust_summary(&self) -> &TrustSummary {
        &self.0.trust.summary
    }

    /// Direct or through a proxy, for `host` on `port`. Decided before connecting, so the caller
    /// can say so (and may skip its own DNS when a proxy resolves).
    pub fn route(&self, host: &str, port: u16, tls: bool) -> Route {
        let proxy = if tls { &self.0.https_proxy } else { &self.0.http_proxy };
        match proxy {
            Some(p) if !self.0.no_proxy.matches(&config::normalize_host(host), port) => Route::Proxy(p.clone()),
            _ => Route::Direct,
        }
    }

    /// Opens a stream to `host:port`. The caller has applied its policy to
    /// the target (allowlist, private addresses) and passes the addresses it
    /// checked: a direct connection goes to one of those, never resolving
    /// again; through a proxy, the proxy resolves the name (the caller's
    /// check then holds only as far as the proxy's DNS agrees). `timeout`
    /// bounds each step (TCP, CONNECT, TLS handshake).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        tls: bool,
        checked_addrs: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Connection, NetError> {
        let host = config::normalize_host(host);
        let route = self.route(&host, port, tls);
        let (stream, absolute_form, proxy_authorization): (Box<dyn Io>, bool, Option<HeaderValue>) = match &route {
            Route::Direct => (Box::new(tcp(&host, port, checked_addrs, timeout).await?), false, None),
            Route::Proxy(p) => {
                let addrs = resolve_proxy(p, timeout).await?;
                let to_proxy = tcp(&p.host, p.port, &addrs, timeout).await.map_err(|e| match e {
                    NetError::Connect { source, .. } => ProxyError::Connect { proxy: p.to_string(), source }.into(),
                    NetError::ConnectTimeout { .. } => {
                        ProxyError::Timeout { proxy: p.to_string(), limit: timeout }.into()
                    }
                    other => other,
                })?;
                // An https:// proxy: TLS to the proxy first (its name, the common trust).
                let to_proxy: Box<dyn Io> = if p.tls {
                    self.handshake(&p.host, p.port, Box::new(to_proxy), timeout).await?
                } else {
                    Box::new(to_proxy)
                };
                if tls {
                    let tunnel = proxy::connect_tunnel(to_proxy, p, &host, port, timeout).await?;
                    (Box::new(tunnel), false, None)
                } else {
                    (Box::new(to_proxy), true, p.authorization())
                }
            }
        };
        let stream = if tls { self.handshake(&host, port, stream, timeout).await? } else { stream };
        Ok(Connection { stream, absolute_form, proxy_authorization, route })
    }

    async fn handshake(
        &self,
        host: &str,
        port: u16,
        stream: Box<dyn Io>,
        timeout: Duration,
    ) -> Result<Box<dyn Io>, NetError> {
        let settings = self.0.trust.for_host(host, port).clone();
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| TlsError::BadName { host: host.to_string() })?,
        };
        let connector = tokio_rustls::TlsConnector::from(settings.config.clone());
        let s = tokio::time::timeout(timeout, connector.connect(name, stream))
            .await
            .map_err(|_| NetError::HandshakeTimeout { host: host.to_string(), limit: timeout })?
            .map_err(|e| match rustls_error(&e) {
                Some(r) => NetError::Tls(tls::explain(host, r, settings.client_cert)),
                None => NetError::Tls(TlsError::Other { host: host.to_string(), detail: e.to_string() }),
            })?;
        Ok(Box::new(Explained { inner: s, host: host.to_string(), client_cert: settings.client_cert }))
    }

    /// Adds the configured credentials of `host:port` to a request's
    /// headers (bearer or basic, marked sensitive), unless it carries an
    /// `Authorization` of its own. Call it for every request, with that
    /// request's own target: a redirect elsewhere then gets nothing.
    pub fn authorize(&self, host: &str, port: u16, headers: &mut http::HeaderMap) -> bool {
        self.0.credentials.authorize(&config::normalize_host(host), port, headers)
    }
}

async fn resolve_proxy(p: &Proxy, timeout: Duration) -> Result<Vec<SocketAddr>, NetError> {
    if let Ok(ip) = p.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, p.port)]);
    }
    let timed_out = || ProxyError::Timeout { proxy: p.to_string(), limit: timeout };
    let addrs = tokio::time::timeout(timeout, tokio::net::lookup_host((p.host.as_str(), p.port)))
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| ProxyError::Connect { proxy: p.to_string(), source })?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
        return Err(ProxyError::Connect { proxy: p.to_string(), source }.into());
    }
    Ok(addrs)
}

/// TCP to the first of `addrs` that answers.
async fn tcp(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<tokio::net::TcpStream, NetError> {
    let mut last = NetError::NoAddress { host: host.to_string(), port };
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(source)) => last = NetError::Connect { authority: proxy::authority(host, port), source },
            Err(_) => last = NetError::ConnectTimeout { authority: proxy::authority(host, port), limit: timeout },
        }
    }
    Err(last)
}

/// The rustls error inside an io error from tokio-rustls.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// An open stream to the target, and how requests on it must look.
pub struct Connection {
    pub stream: Box<dyn Io>,
    /// Plain http through a proxy: requests carry the whole URL.
    absolute_form: bool,
    proxy_authorization: Option<HeaderValue>,
    pub route: Route,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("route", &self.route).field("absolute_form", &self.absolute_form).finish()
    }
}

impl Connection {
    /// Puts `req` in the form this connection needs: origin-form
    /// (`/path?q`) directly or in a tunnel, absolute-form with
    /// `Proxy-Authorization` to an http proxy. A `Host` header is added
    /// from the URI when missing; a `Proxy-Authorization` the request
    /// brought (a fetcher's) is always dropped.
    pub fn prepare_request<B>(&self, req: &mut http::Request<B>) -> Result<(), NetError> {
        let uri = req.uri().clone();
        let host = uri.host().unwrap_or("").to_string();
        let bad = |reason: &str| NetError::Request { host: host.clone(), reason: reason.to_string() };
        if !req.headers().contains_key(http::header::HOST) {
            let authority = uri.authority().ok_or_else(|| bad("no host in the URI"))?;
            let v = HeaderValue::try_from(authority.as_str()).map_err(|_| bad("the host is not a header value"))?;
            req.headers_mut().insert(http::header::HOST, v);
        }
        req.headers_mut().remove(http::header::PROXY_AUTHORIZATION);
        if self.absolute_form {
            // Absolute-form without user info: the proxy must not see URL credentials.
            let authority = uri.authority().ok_or_else(|| bad("no host in the URI"))?;
            let host_port = authority.as_str().rsplit('@').next().unwrap_or("");
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            *req.uri_mut() = http::Uri::builder()
                .scheme(http::uri::Scheme::HTTP)
                .authority(host_port)
                .path_and_query(path)
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            if let Some(v) = &self.proxy_authorization {
                req.headers_mut().insert(http::header::PROXY_AUTHORIZATION, v.clone());
            }
        } else {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
            *req.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|e| bad(&e.to_string()))?;
        }
        Ok(())
    }
}

/// A TLS stream whose later failures (alerts after the handshake) come out
/// as [`NetError`]s that say what failed.
struct Explained<S> {
    inner: S,
    host: String,
    client_cert: bool,
}

impl<S> Explained<S> {
    fn explain(&self, e: std::io::Error) -> std::io::Error {
        match rustls_error(&e) {
            Some(r) => std::io::Error::other(NetError::Tls(tls::explain(&self.host, r, self.client_cert))),
            None => e,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Explained<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.explain(e))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Explained<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.explain(e))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
