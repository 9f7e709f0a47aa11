//! Proxies: Debian's tinyproxy on loopback, started by each test, and the
//! choice of route from the environment as curl makes it.

use attune_net::{ProxySpec, Route};

use crate::support::{Ca, Tinyproxy, config, get, http_server, net, tls_front, tls_server};

#[tokio::test]
async fn plain_http_goes_through_the_proxy_in_absolute_form() {
    let Some(proxy) = Tinyproxy::start(None).await else { return };
    let server = http_server().await;
    let n = net(config(), &[("http_proxy", proxy.url().as_str())]).unwrap();
    let url = format!("http://127.0.0.1:{}/p.tgz", server.port);
    assert_eq!(get(&n, &url).await.unwrap(), (200, "hello".into()));
    assert_eq!(proxy.requests(), [format!("GET {url} HTTP/1.1")]);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel_and_tls_is_end_to_end() {
    let Some(proxy) = Tinyproxy::start(None).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let server = tls_server(&ca.leaf(&["localhost"]), None).await;
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let n = net(c, &[("HTTPS_PROXY", proxy.url().as_str())]).unwrap();
    assert_eq!(get(&n, &format!("https://localhost:{}/p.tgz", server.port)).await.unwrap(), (200, "hello".into()));
    assert_eq!(proxy.requests(), [format!("CONNECT localhost:{} HTTP/1.1", server.port)]);
    // The path travelled inside the tunnel, which the proxy cannot read.
    assert_eq!(server.requests()[0].target, "/p.tgz");

    // Trust is checked through the tunnel as directly.
    let err = get(
        &net(config(), &[("HTTPS_PROXY", proxy.url().as_str())]).unwrap(),
        &format!("https://localhost:{}/", server.port),
    )
    .await
    .unwrap_err();
    assert!(err.contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn no_proxy_hosts_bypass_the_proxy() {
    let Some(proxy) = Tinyproxy::start(None).await else { return };
    let server = http_server().await;
    let env = [("http_proxy", proxy.url()), ("NO_PROXY", "example.org, localhost".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let n = net(config(), &env).unwrap();
    assert_eq!(get(&n, &format!("http://localhost:{}/", server.port)).await.unwrap().0, 200);
    assert_eq!(server.requests().len(), 1);
    assert!(proxy.requests().is_empty(), "the proxy saw {:?}", proxy.requests());
    // Another name of the same server is not in NO_PROXY: that one goes through.
    assert_eq!(get(&n, &format!("http://127.0.0.1:{}/", server.port)).await.unwrap().0, 200);
    assert_eq!(proxy.requests().len(), 1);
}

#[tokio::test]
async fn proxy_basic_auth_is_sent_and_its_refusal_is_explained_without_the_password() {
    let Some(proxy) = Tinyproxy::start(Some(("alice", "s3cret-pw"))).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let tls = tls_server(&ca.leaf(&["localhost"]), None).await;
    let plain = http_server().await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let with_proxy = |url: String| {
        let mut c = config();
        c.tls.ca_files.push(ca_file.clone());
        c.proxy = Some(ProxySpec::parse(&url).unwrap());
        net(c, &[]).unwrap()
    };
    let good = with_proxy(format!("http://alice:s3cret-pw@127.0.0.1:{}", proxy.port));
    assert_eq!(get(&good, &format!("https://localhost:{}/", tls.port)).await.unwrap().0, 200);
    assert_eq!(get(&good, &format!("http://127.0.0.1:{}/", plain.port)).await.unwrap().0, 200);

    // tinyproxy answers no credentials with 407, wrong ones with 401.
    for (name, n, status) in [
        ("none", with_proxy(proxy.url()), 407),
        ("wrong", with_proxy(format!("http://alice:wrong-pw@127.0.0.1:{}", proxy.port)), 401),
    ] {
        let err = get(&n, &format!("https://localhost:{}/", tls.port)).await.unwrap_err();
        assert!(err.contains("asks for credentials"), "{name}: {err}");
        // The secrets themselves, not "pw": a random temp path may hold that.
        assert!(!err.contains("wrong-pw") && !err.contains("s3cret-pw") && !err.contains("alice"), "{name}: {err}");
        let shown = format!("{n:?}");
        assert!(!shown.contains("wrong-pw") && !shown.contains("s3cret-pw"), "{name}: {n:?}");
        // Plain http: the proxy's 407 is the response.
        assert_eq!(get(&n, &format!("http://127.0.0.1:{}/", plain.port)).await.unwrap().0, status, "{name}");
    }
    // A refused tunnel never reached the target; the proxy's credentials
    // did not travel to it through the tunnel.
    assert_eq!(tls.connection_count(), 1);
    assert_eq!(tls.requests()[0].proxy_authorization, None);
    assert_eq!(plain.requests().len(), 1);
}

#[tokio::test]
async fn a_proxy_that_is_not_there_is_an_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = format!("http://bob:pw123@127.0.0.1:{port}");
    let n = net(config(), &[("https_proxy", proxy.as_str())]).unwrap();
    let err = get(&n, "https://example.invalid/").await.unwrap_err();
    assert!(err.contains(&format!("proxy http://127.0.0.1:{port}: cannot connect")), "{err}");
    assert!(!err.contains("pw123"), "{err}");
}

#[test]
fn the_route_follows_curl_s_environment_rules() {
    let route = |env: &[(&str, &str)], host: &str, tls: bool| net(config(), env).unwrap().route(host, 443, tls);
    let p = |s: &str| Route::Proxy(ProxySpec::parse(s).unwrap().proxy().unwrap().clone());
    // HTTP_PROXY in upper case is not read (a CGI request's Proxy: header sets it).
    assert_eq!(route(&[("HTTP_PROXY", "http://evil:1")], "h.example", false), Route::Direct);
    assert_eq!(route(&[("http_proxy", "http://p:1")], "h.example", false), p("http://p:1"));
    assert_eq!(route(&[("http_proxy", "http://p:1")], "h.example", true), Route::Direct);
    // Lower case first, as curl reads them.
    assert_eq!(route(&[("HTTPS_PROXY", "http://up:1"), ("https_proxy", "http://low:1")], "h", true), p("http://low:1"));
    assert_eq!(route(&[("HTTPS_PROXY", "http://up:1")], "h", true), p("http://up:1"));
    // ALL_PROXY when the scheme's own is unset.
    assert_eq!(route(&[("ALL_PROXY", "http://all:1")], "h", false), p("http://all:1"));
    assert_eq!(route(&[("ALL_PROXY", "http://all:1"), ("https_proxy", "http://s:1")], "h", true), p("http://s:1"));
    assert_eq!(route(&[("https_proxy", "http://s:1"), ("no_proxy", "*")], "h", true), Route::Direct);
    assert_eq!(
        route(&[("https_proxy", "http://s:1"), ("NO_PROXY", ".corp.example")], "git.corp.example", true),
        Route::Direct
    );

    // The config wins over the environment; proxy = "" turns the environment's off.
    let mut c = config();
    c.proxy = Some(ProxySpec::parse("").unwrap());
    assert_eq!(net(c, &[("https_proxy", "http://s:1")]).unwrap().route("h", 443, true), Route::Direct);
    let mut c = config();
    c.proxy = Some(ProxySpec::parse("cfg:3128").unwrap());
    c.no_proxy = Some("only.example".into());
    let n = net(c, &[("https_proxy", "http://s:1"), ("no_proxy", "h")]).unwrap();
    assert_eq!(n.route("h", 443, true), p("http://cfg:3128"));
    assert_eq!(n.route("only.example", 443, false), Route::Direct);
}

#[test]
fn an_unsupported_proxy_is_refused_naming_the_variable() {
    let err = net(config(), &[("ALL_PROXY", "socks5h://u:pw@p:1080")]).unwrap_err().to_string();
    assert!(err.contains("ALL_PROXY") && err.contains("socks5h"), "{err}");
    assert!(!err.contains("pw"), "{err}");
}

#[test]
fn a_bad_proxy_in_the_config_file_is_refused_without_quoting_it() {
    let c: attune_net::NetConfig = toml::from_str("netrc = \"\"\nproxy = \"ftp://u:pw-secret@p:21\"\n").unwrap();
    let err = attune_net::Net::build(&c).unwrap_err().to_string();
    assert!(err.contains("proxy (config)") && err.contains("ftp"), "{err}");
    assert!(!err.contains("pw-secret") && !format!("{c:?}").contains("pw-secret"), "{err}");
}

#[tokio::test]
async fn an_https_proxy_is_reached_over_tls_checked_with_the_common_trust() {
    let Some(proxy) = Tinyproxy::start(None).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Corp Test CA");
    let target = tls_server(&ca.leaf(&["localhost"]), None).await;
    let plain = http_server().await;
    let front = tls_front(&ca.leaf(&["127.0.0.1"]), proxy.port).await;
    let proxy_url = format!("https://127.0.0.1:{front}");
    let env = [("HTTPS_PROXY", proxy_url.as_str()), ("http_proxy", proxy_url.as_str())];
    let mut c = config();
    c.tls.ca_files.push(ca.write(dir.path(), "ca.pem"));
    let n = net(c, &env).unwrap();
    assert_eq!(get(&n, &format!("https://localhost:{}/a", target.port)).await.unwrap().0, 200);
    assert_eq!(get(&n, &format!("http://127.0.0.1:{}/b", plain.port)).await.unwrap().0, 200);
    assert_eq!(
        proxy.requests(),
        [
            format!("CONNECT localhost:{} HTTP/1.1", target.port),
            format!("GET http://127.0.0.1:{}/b HTTP/1.1", plain.port)
        ]
    );

    // The proxy's certificate is checked like any host's.
    let err = get(&net(config(), &env).unwrap(), &format!("http://127.0.0.1:{}/", plain.port)).await.unwrap_err();
    assert!(err.contains("TLS to 127.0.0.1 failed") && err.contains("unknown issuer"), "{err}");
    assert_eq!(plain.requests().len(), 1);
}
