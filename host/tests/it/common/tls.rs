//! Real TLS parts for the corporate-network tests (adapted from
//! attune-net's own test support): a test CA (rcgen), an HTTPS server on
//! 127.0.0.1 that answers from a handler and records what it was sent,
//! `git http-backend` behind it for a private repository, and Debian's
//! tinyproxy started with its own config.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A runtime for the servers; the test's own thread runs `attune`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

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

    /// A leaf for `names` (DNS names or IP addresses), valid now.
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

/// What a server was sent: the request target and its `Authorization`.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub authorization: Option<String>,
}

/// An HTTPS (or plain) server on 127.0.0.1.
pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

/// Answers one request (its head and whole body).
pub type Handler = Arc<dyn Fn(http::request::Parts, Bytes) -> http::Response<Full<Bytes>> + Send + Sync>;

/// These files by path; 404 for anything else.
pub fn files(files: &[(&str, Vec<u8>)]) -> Handler {
    let map: HashMap<String, Bytes> = files.iter().map(|(p, b)| (p.to_string(), Bytes::from(b.clone()))).collect();
    Arc::new(move |parts: http::request::Parts, _: Bytes| match map.get(parts.uri.path()) {
        Some(b) => http::Response::new(Full::new(b.clone())),
        None => {
            let mut r = http::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        }
    })
}

/// TLS with `leaf` (with `client_ca`, a client certificate from it is
/// required), or plain http with `None`, spawned on `rt`.
pub fn serve(rt: &tokio::runtime::Runtime, tls: Option<(&Leaf, Option<&Ca>)>, handler: Handler) -> Server {
    let acceptor = tls.map(|(leaf, ca)| tokio_rustls::TlsAcceptor::from(server_config(leaf, ca)));
    let l = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (seen, acceptor, handler) = (s.clone(), acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (seen, handler) = (seen.clone(), handler.clone());
                    async move {
                        let authorization = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        seen.lock().unwrap().push(Seen { target: req.uri().to_string(), authorization });
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        // The handler may block (a CGI process): off the runtime's threads.
                        let res = tokio::task::spawn_blocking(move || handler(parts, body)).await.unwrap();
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
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
    Server { port, seen }
}

fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
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
    Arc::new(builder.with_single_cert(certs, key).unwrap())
}

/// Debian's tinyproxy on a free loopback port, logging to a file.
pub struct Tinyproxy {
    pub port: u16,
    log: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tinyproxy {
    /// `None` when tinyproxy is not installed (see [`crate::common::have`]).
    pub fn start() -> Option<Tinyproxy> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"].into_iter().find(|p| Path::new(p).exists());
        if !crate::common::have("tinyproxy", bin.is_some(), "apt-get install tinyproxy") {
            return None;
        }
        let bin = bin.expect("checked");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join("tinyproxy.log");
        // No User/Group lines: it stays the user that started it (root on
        // CI drops to nobody only when told to).
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nLogFile \"{}\"\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        );
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let proxy = Tinyproxy { port, log, child, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(proxy);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tinyproxy did not listen on 127.0.0.1:{port} within 5 s");
    }

    /// The request lines tinyproxy logged (`GET http://…`, `CONNECT host:port`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("]: Request (file descriptor "))
            .filter_map(|(_, r)| r.split_once("): "))
            .map(|(_, r)| r.to_string())
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// `git http-backend` (CGI) serving the bare repositories under `root`,
/// behind a check that the request carries `authorization`: a private git
/// host as GitLab is one.
pub fn git_backend(root: PathBuf, authorization: String) -> Handler {
    Arc::new(move |parts: http::request::Parts, body: Bytes| {
        let given = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(authorization.as_str()) {
            let mut res = http::Response::new(Full::new(Bytes::from_static(b"authentication required")));
            *res.status_mut() = http::StatusCode::UNAUTHORIZED;
            res.headers_mut().insert(http::header::WWW_AUTHENTICATE, "Basic realm=\"git\"".parse().unwrap());
            return res;
        }
        let header =
            |name: http::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut child = std::process::Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("PATH_INFO", parts.uri.path())
            .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
            .env("CONTENT_TYPE", header(http::header::CONTENT_TYPE))
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_USER", "attune")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&body).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        // CGI: header lines, a blank line, the body.
        let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
        let split = split.or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
        let (head_end, body_start) = split.expect("git http-backend wrote CGI headers");
        let mut res = http::Response::new(Full::new(Bytes::copy_from_slice(&out.stdout[body_start..])));
        for line in String::from_utf8_lossy(&out.stdout[..head_end]).lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            if k.eq_ignore_ascii_case("status") {
                *res.status_mut() = v[..3].parse::<u16>().unwrap().try_into().unwrap();
            } else {
                res.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
        }
        res
    })
}
