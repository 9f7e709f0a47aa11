//! Trust and TLS errors against real TLS servers whose certificates come
//! from a CA made in the test.

use std::collections::BTreeMap;

use attune_net::config::TlsHostConfig;

use crate::support::{Ca, config, get, http_server, net, tls_server};

#[tokio::test]
async fn a_private_ca_is_refused_with_the_unknown_issuer_error_naming_the_flag() {
    let ca = Ca::new("Corp Test CA");
    let server = tls_server(&ca.leaf(&["localhost"]), None).await;
    let err = get(&net(config(), &[]).unwrap(), &format!("https://localhost:{}/p.tgz", server.port)).await.unwrap_err();
    assert!(err.contains("TLS to localhost failed") && err.contains("unknown issuer"), "{err}");
    assert!(err.contains("--ca-cert") && err.contains("tls.ca_files"), "{err}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_ca_file_from_the_config_or_the_flag_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let server = tls_server(&ca.leaf(&["localhost"]), None).await;
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let (status, body) = get(&net(c, &[]).unwrap(), &format!("https://localhost:{}/p.tgz", server.port)).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(server.requests()[0].target, "/p.tgz");
}

#[tokio::test]
async fn ssl_cert_file_and_ssl_cert_dir_are_trusted_as_curl_trusts_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let server = tls_server(&ca.leaf(&["localhost"]), None).await;
    let url = format!("https://localhost:{}/", server.port);
    let file = ca.write(dir.path(), "bundle.pem");
    let n = net(config(), &[("SSL_CERT_FILE", file.to_str().unwrap())]).unwrap();
    assert_eq!(get(&n, &url).await.unwrap().0, 200);
    assert!(n.trust_summary().source.contains("SSL_CERT_FILE"), "{:?}", n.trust_summary());

    let certs = tempfile::tempdir().unwrap();
    ca.write(certs.path(), "corp.pem");
    let missing = dir.path().join("absent");
    let dirs = format!("{}:{}", missing.display(), certs.path().display());
    let n = net(config(), &[("SSL_CERT_DIR", dirs.as_str())]).unwrap();
    assert_eq!(get(&n, &url).await.unwrap().0, 200);
}

#[tokio::test]
async fn a_host_s_own_ca_is_trusted_for_that_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Artifacts CA");
    // One server, reachable under two names its certificate carries.
    let server = tls_server(&ca.leaf(&["localhost", "127.0.0.1"]), None).await;
    let mut c = config();
    let host = TlsHostConfig { ca_file: Some(ca.write(dir.path(), "ca.pem")), ..Default::default() };
    c.tls.hosts = BTreeMap::from([(format!("localhost:{}", server.port), host)]);
    let n = net(c, &[]).unwrap();
    assert_eq!(get(&n, &format!("https://localhost:{}/", server.port)).await.unwrap().0, 200);
    let err = get(&n, &format!("https://127.0.0.1:{}/", server.port)).await.unwrap_err();
    assert!(err.contains("TLS to 127.0.0.1 failed") && err.contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_naming_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let server = tls_server(&ca.leaf(&["artifacts.corp.example", "mirror.corp.example"]), None).await;
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let err = get(&net(c, &[]).unwrap(), &format!("https://localhost:{}/", server.port)).await.unwrap_err();
    assert!(err.contains("not valid for the name localhost"), "{err}");
    assert!(err.contains("artifacts.corp.example") && err.contains("mirror.corp.example"), "{err}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let leaf = ca.leaf_dated(&["localhost"], rcgen::date_time_ymd(2001, 1, 1), rcgen::date_time_ymd(2002, 3, 4));
    let server = tls_server(&leaf, None).await;
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let err = get(&net(c, &[]).unwrap(), &format!("https://localhost:{}/", server.port)).await.unwrap_err();
    assert!(err.contains("TLS to localhost failed") && err.contains("expired on 2002-03-04"), "{err}");
}

#[tokio::test]
async fn a_certificate_not_yet_valid_is_refused_with_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let leaf = ca.leaf_dated(&["localhost"], rcgen::date_time_ymd(3000, 5, 6), rcgen::date_time_ymd(3001, 1, 1));
    let server = tls_server(&leaf, None).await;
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let err = get(&net(c, &[]).unwrap(), &format!("https://localhost:{}/", server.port)).await.unwrap_err();
    assert!(err.contains("not valid before 3000-05-06"), "{err}");
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_gets_the_configured_one_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let clients = Ca::new("Corp Clients CA");
    let server = tls_server(&ca.leaf(&["localhost"]), Some(&clients)).await;
    let url = format!("https://localhost:{}/", server.port);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let with_identity = |cert: Option<(std::path::PathBuf, std::path::PathBuf)>| {
        let mut c = config();
        c.tls.ca_files.push(ca_file.clone());
        if let Some((crt, key)) = cert {
            let h = TlsHostConfig { client_cert: Some(crt), client_key: Some(key), ..Default::default() };
            c.tls.hosts.insert("localhost".into(), h);
        }
        net(c, &[]).unwrap()
    };

    let err = get(&with_identity(None), &url).await.unwrap_err();
    assert!(
        err.contains("asks for a client certificate") && err.contains("tls.hosts.\"localhost\".client_cert"),
        "{err}"
    );

    let good = clients.leaf(&["attune-client"]).write(dir.path(), "good");
    assert_eq!(get(&with_identity(Some(good)), &url).await.unwrap(), (200, "hello".into()));

    let stranger = Ca::new("Someone Else").leaf(&["attune-client"]).write(dir.path(), "stranger");
    let err = get(&with_identity(Some(stranger)), &url).await.unwrap_err();
    assert!(err.contains("refused the client certificate configured for it"), "{err}");
    assert_eq!(server.requests().len(), 1, "only the request with the right certificate was served");
}

#[tokio::test]
async fn a_port_that_does_not_speak_tls_is_a_protocol_error_naming_the_host() {
    let server = http_server().await;
    let err = get(&net(config(), &[]).unwrap(), &format!("https://localhost:{}/", server.port)).await.unwrap_err();
    assert!(err.contains("TLS to localhost failed") && err.contains("may not speak TLS on this port"), "{err}");
}

#[test]
fn half_a_client_identity_is_a_config_error() {
    let mut c = config();
    c.tls.hosts.insert("h.example".into(), TlsHostConfig { client_cert: Some("/x.crt".into()), ..Default::default() });
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("client_cert and client_key go together"), "{err}");
}

#[test]
fn a_ca_file_without_a_certificate_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-ca.pem");
    std::fs::write(&path, "hello").unwrap();
    let mut c = config();
    c.tls.ca_files.push(path.clone());
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()) && err.contains("no PEM certificate"), "{err}");
    let mut c = config();
    c.tls.ca_files.push(dir.path().join("absent.pem"));
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("absent.pem"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_times_out_naming_the_host() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepts and holds the connection without a word.
    let held = tokio::spawn(async move { l.accept().await.map(|(s, _)| s) });
    let addrs = [std::net::SocketAddr::new([127, 0, 0, 1].into(), port)];
    let n = net(config(), &[]).unwrap();
    let started = std::time::Instant::now();
    let err = n.connect("localhost", port, true, &addrs, std::time::Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, attune_net::NetError::HandshakeTimeout { .. }), "{err}");
    assert!(err.to_string().starts_with("localhost: the TLS handshake took longer than"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    drop(held);
}
