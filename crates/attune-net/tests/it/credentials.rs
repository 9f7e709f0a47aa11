//! Per-host credentials against real servers: who receives them, who
//! does not, and that no output shows them.

use attune_net::config::CredentialConfig;
use attune_net::{Net, Secret};

use crate::support::{config, get, http_server, net};

fn token(t: &str) -> CredentialConfig {
    CredentialConfig { token: Some(Secret::new(t)), ..Default::default() }
}

#[tokio::test]
async fn a_token_is_sent_only_to_its_own_host_and_port() {
    let mine = http_server().await;
    let other = http_server().await;
    let mut c = config();
    c.credentials.insert(format!("127.0.0.1:{}", mine.port), token("tok-123"));
    let n = net(c, &[]).unwrap();
    get(&n, &format!("http://127.0.0.1:{}/", mine.port)).await.unwrap();
    // Another port of the same host, and the same server under another name
    // (where a redirect could lead): nothing.
    get(&n, &format!("http://127.0.0.1:{}/", other.port)).await.unwrap();
    get(&n, &format!("http://localhost:{}/", mine.port)).await.unwrap();
    let seen = mine.requests();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-123"));
    assert_eq!(seen[1].authorization, None);
    assert_eq!(other.requests()[0].authorization, None);
}

#[tokio::test]
async fn a_host_key_without_a_port_covers_every_port_and_a_port_key_wins() {
    let a = http_server().await;
    let b = http_server().await;
    let mut c = config();
    c.credentials.insert("localhost".into(), token("any-port"));
    c.credentials.insert(format!("localhost:{}", b.port), token("port-b"));
    let n = net(c, &[]).unwrap();
    get(&n, &format!("http://localhost:{}/", a.port)).await.unwrap();
    get(&n, &format!("http://LOCALHOST.:{}/", b.port)).await.unwrap();
    assert_eq!(a.requests()[0].authorization.as_deref(), Some("Bearer any-port"));
    assert_eq!(b.requests()[0].authorization.as_deref(), Some("Bearer port-b"));
}

#[tokio::test]
async fn basic_auth_from_an_env_token_or_a_token_file_and_netrc() {
    let dir = tempfile::tempdir().unwrap();
    let (env_s, file_s, netrc_s) = (http_server().await, http_server().await, http_server().await);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "  file-token\n").unwrap();
    let netrc = dir.path().join("netrc");
    std::fs::write(
        &netrc,
        "# corp\nmachine localhost login carol password \"net pw\"\ndefault login any password everywhere\n",
    )
    .unwrap();
    let mut c = config();
    let env_cred =
        CredentialConfig { user: Some("oauth2".into()), token_env: Some("GIT_TOKEN".into()), ..Default::default() };
    c.credentials.insert(format!("127.0.0.1:{}", env_s.port), env_cred);
    let file_cred = CredentialConfig { token_file: Some(token_file), ..Default::default() };
    c.credentials.insert(format!("127.0.0.1:{}", file_s.port), file_cred);
    c.netrc = None;
    let netrc_path = netrc.to_str().unwrap();
    let n = net(c, &[("GIT_TOKEN", "env-token"), ("NETRC", netrc_path)]).unwrap();
    get(&n, &format!("http://127.0.0.1:{}/", env_s.port)).await.unwrap();
    get(&n, &format!("http://127.0.0.1:{}/", file_s.port)).await.unwrap();
    get(&n, &format!("http://localhost:{}/", netrc_s.port)).await.unwrap();
    // netrc's default entry is not sent to a host it does not name.
    get(&n, &format!("http://127.0.0.1:{}/", netrc_s.port)).await.unwrap();
    // base64("oauth2:env-token"), base64("carol:net pw")
    assert_eq!(env_s.requests()[0].authorization.as_deref(), Some("Basic b2F1dGgyOmVudi10b2tlbg=="));
    assert_eq!(file_s.requests()[0].authorization.as_deref(), Some("Bearer file-token"));
    assert_eq!(netrc_s.requests()[0].authorization.as_deref(), Some("Basic Y2Fyb2w6bmV0IHB3"));
    assert_eq!(netrc_s.requests()[1].authorization, None);
}

#[tokio::test]
async fn credentials_in_the_request_itself_win() {
    let mut c = config();
    c.credentials.insert("h.example".into(), token("configured"));
    let n = net(c, &[]).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
    assert!(!n.authorize("h.example", 443, &mut headers));
    assert_eq!(headers[http::header::AUTHORIZATION], "Basic dXNlcjpwYXNz");
    let mut headers = http::HeaderMap::new();
    assert!(n.authorize("H.Example.", 443, &mut headers));
    assert!(headers[http::header::AUTHORIZATION].is_sensitive());
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
proxy = "http://proxyuser:proxy-secret@127.0.0.1:3128"
[credentials."a.example"]
token = "token-secret"
[credentials."b.example"]
user = "u"
password = "password-secret"
"#;
    let c: attune_net::NetConfig = toml::from_str(toml).unwrap();
    let c = attune_net::NetConfig { netrc: Some(Default::default()), ..c };
    let n = Net::build(&c).unwrap();
    for shown in [format!("{c:?}"), format!("{n:?}")] {
        for secret in ["proxy-secret", "token-secret", "password-secret", "proxyuser"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    // Two secrets for one host: refused, and the message quotes neither.
    let mut c = config();
    c.credentials.insert(
        "a.example".into(),
        CredentialConfig {
            token: Some(Secret::new("token-secret")),
            token_env: Some("X".into()),
            ..Default::default()
        },
    );
    let err = net(c, &[("X", "env-secret")]).unwrap_err().to_string();
    assert!(
        err.contains("more than one secret") && !err.contains("token-secret") && !err.contains("env-secret"),
        "{err}"
    );

    // A token that cannot be a header value (a line break: header injection).
    let mut c = config();
    c.credentials.insert("a.example".into(), token("tok\r\nX-Evil: 1"));
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("cannot carry") && !err.contains("X-Evil"), "{err}");

    // A broken netrc: the parser's complaint may quote a password; ours does not.
    let netrc = dir.path().join("netrc");
    std::fs::write(&netrc, "machine h.example login u hunter2-pw\n").unwrap();
    let mut c = config();
    c.netrc = Some(netrc.clone());
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("not a netrc file (line "), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_missing_token_variable_or_file_names_it() {
    let mut c = config();
    c.credentials
        .insert("a.example".into(), CredentialConfig { token_env: Some("CORP_TOKEN".into()), ..Default::default() });
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("CORP_TOKEN") && err.contains("a.example"), "{err}");

    let mut c = config();
    c.credentials.insert(
        "a.example".into(),
        CredentialConfig { token_file: Some("/nonexistent/tok".into()), ..Default::default() },
    );
    let err = net(c, &[]).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/tok"), "{err}");

    // An operator-named netrc must exist; the default one need not.
    let mut c = config();
    c.netrc = Some("/nonexistent/netrc".into());
    assert!(net(c, &[]).unwrap_err().to_string().contains("/nonexistent/netrc"));
    let mut c = config();
    c.netrc = None;
    assert!(net(c, &[("HOME", "/nonexistent")]).is_ok());
}
