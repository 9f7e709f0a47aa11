//! Real parts for the tests: a test CA (rcgen), TLS and plain HTTP servers
//! on 127.0.0.1 that record what they were sent, a client that speaks
//! through a [`Connection`] as the host will, and Debian's tinyproxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_net::{Net, NetConfig, NetError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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

/// Answers one request (its head and whole body).
pub type Handler = Arc<dyn Fn(http::request::Parts, Bytes) -> http::Response<Full<Bytes>> + Send + Sync>;

fn hello() -> Handler {
    Arc::new(|_, _| http::Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// TLS with `leaf`; with `client_ca`, a client certificate from it is required.
pub async fn tls_server(leaf: &Leaf, client_ca: Option<&Ca>) -> Server {
    tls_server_with(leaf, client_ca, hello()).await
}

pub async fn tls_server_with(leaf: &Leaf, client_ca: Option<&Ca>, handler: Handler) -> Server {
    serve(Some(tokio_rustls::TlsAcceptor::from(server_config(leaf, client_ca))), handler).await
}

/// A TLS terminator on 127.0.0.1 in front of `127.0.0.1:to_port`: with
/// tinyproxy behind it, an https:// proxy.
pub async fn tls_front(leaf: &Leaf, to_port: u16) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf, None));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut outside) = acceptor.accept(tcp).await else { return };
                let Ok(mut inside) = tokio::net::TcpStream::connect(("127.0.0.1", to_port)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
            });
        }
    });
    port
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

/// Plain HTTP.
pub async fn http_server() -> Server {
    serve(None, hello()).await
}

async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Server {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, n) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (seen, tls, handler) = (s.clone(), tls.clone(), handler.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (seen, handler) = (seen.clone(), handler.clone());
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
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        // The handler may block (a CGI process): off the runtime's threads.
                        let res = tokio::task::spawn_blocking(move || handler(parts, body)).await.unwrap();
                        Ok::<_, std::convert::Infallible>(res)
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
    request(net, http::Method::GET, url, &[], Bytes::new())
        .await
        .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
}

/// Any request, as [`get`] sends it.
pub async fn request(
    net: &Net,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.host().unwrap().trim_start_matches('[').trim_end_matches(']').to_string();
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addrs = [SocketAddr::new([127, 0, 0, 1].into(), port)];
    let conn = net.connect(&host, port, tls, &addrs, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    let mut req = http::Request::builder().method(method).uri(uri).body(Full::new(body)).unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    net.authorize(&host, port, req.headers_mut());
    conn.prepare_request(&mut req).map_err(|e| e.to_string())?;
    let (mut sender, io) = hyper::client::conn::http1::handshake(TokioIo::new(conn.stream)).await.map_err(explain)?;
    tokio::spawn(io);
    let res = sender.send_request(req).await.map_err(explain)?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(explain)?.to_bytes();
    Ok((status, body))
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
    /// `None` when tinyproxy is not installed: the test is skipped with a
    /// note, except under `CI` (where `.ci/run` installs it), where it fails.
    pub async fn start(basic_auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"].into_iter().find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            assert!(std::env::var_os("CI").is_none(), "tinyproxy is not installed (apt-get install tinyproxy)");
            eprintln!("note: tinyproxy is not installed (apt-get install tinyproxy); skipping this test");
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
        self.log()
            .lines()
            .filter_map(|l| l.split_once("]: Request (file descriptor "))
            .filter_map(|(_, r)| r.split_once("): "))
            .map(|(_, r)| r.to_string())
            .collect()
    }

    /// Everything tinyproxy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// A bare repository `name` under `root` with one commit on `main`
/// holding a `pack.yaml`; returns that commit's id.
pub fn git_repo(root: &Path, name: &str) -> String {
    let git = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=attune",
                "-c",
                "user.email=attune@example.invalid",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("pack.yaml"), "ref: private\nname: private\nversion: 1.0.0\n").unwrap();
    git(&work, &["add", "pack.yaml"]);
    git(&work, &["commit", "-q", "-m", "private pack"]);
    git(root, &["clone", "-q", "--bare", work.to_str().unwrap(), name]);
    git(&work, &["rev-parse", "HEAD"])
}
