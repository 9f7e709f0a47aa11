//! Real parts for the tests: a test CA (rcgen), TLS and plain HTTP servers
//! on 127.0.0.1 that record what they were sent, a client that speaks
//! through a [`Connection`] as the host will, and Debian's tinyproxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_net::{Net, NetConfig, NetError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority made for one test.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(p, key) }
    }

    /// A leaf for `names`, valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_dated(names, rcgen::date_time_ymd(2000, 1, 1), rcgen::date_time_ymd(4000, 1, 1))
    }

    pub fn leaf_dated(
        &self,
        names: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        p.not_before = not_before;
        p.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `name.crt` and `name.key`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

/// What a server was sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub authorization: Option<String>,
    pub proxy_authorization: Option<String>,
}

/// A server on 127.0.0.1 answering every request with `hello`.
pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted (handshakes that failed included).
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// TLS with `leaf`; with `client_ca`, a client certificate from it is required.
pub async fn tls_server(leaf: &Leaf, client_ca: Option<&Ca>) -> Server {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
            let v =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(builder.with_single_cert(certs, key).unwrap());
    serve(Some(tokio_rustls::TlsAcceptor::from(config))).await
}

/// Plain HTTP.
pub async fn http_server() -> Server {
    serve(None).await
}

async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, n) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (seen, tls) = (s.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let h = |name| {
                            req.headers()
                                .get(name)
                                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                                .map(str::to_string)
                        };
                        seen.lock().unwrap().push(Seen {
                            target: req.uri().to_string(),
                            authorization: h(http::header::AUTHORIZATION),
                            proxy_authorization: h(http::header::PROXY_AUTHORIZATION),
                        });
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    Server { port, seen, connections }
}

/// A `Net` from a config and an environment given as pairs.
pub fn net(config: NetConfig, env: &[(&str, &str)]) -> Result<Net, NetError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Net::build(&config.with_env(&env)?)
}

/// A config with only what a test sets: no netrc from the real home.
pub fn config() -> NetConfig {
    NetConfig { netrc: Some(PathBuf::new()), ..NetConfig::default() }
}

/// GETs `url` through `net` as the host will: connect to loopback (the
/// "checked" addresses), authorize, prepare, send. The error is the text a
/// user would read.
pub async fn get(net: &Net, url: &str) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.host().unwrap().trim_start_matches('[').trim_end_matches(']').to_string();
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addrs = [SocketAddr::new([127, 0, 0, 1].into(), port)];
    let conn = net.connect(&host, port, tls, &addrs, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    let mut req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    net.authorize(&host, port, req.headers_mut());
    conn.prepare_request(&mut req).map_err(|e| e.to_string())?;
    let (mut sender, io) = hyper::client::conn::http1::handshake(TokioIo::new(conn.stream)).await.map_err(explain)?;
    tokio::spawn(io);
    let res = sender.send_request(req).await.map_err(explain)?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(explain)?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The `NetError` inside a hyper error when there is one, as the host will do.
fn explain(e: hyper::Error) -> String {
    match NetError::find_in(&e) {
        Some(n) => n.to_string(),
        None => e.to_string(),
    }
}

/// Debian's tinyproxy on a free loopback port, logging to a file.
pub struct Tinyproxy {
    pub port: u16,
    log: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// None (and a loud note) when tinyproxy is not installed.
    pub async fn start(basic_auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"].into_iter().find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            eprintln!(
                "SKIPPED: tinyproxy is not installed (apt-get install -y tinyproxy); this proxy test did not run"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nLogFile \"{}\"\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((u, p)) = basic_auth {
            conf.push_str(&format!("BasicAuth {u} {p}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = tokio::process::Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(Tinyproxy { port, log, _child: child, _dir: dir });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tinyproxy did not listen on 127.0.0.1:{port} within 5 s");
    }

    /// The request lines tinyproxy logged (`GET http://…`, `CONNECT host:port`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once("]: Request (file descriptor "))
            .filter_map(|(_, r)| r.split_once("): "))
            .map(|(_, r)| r.to_string())
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
