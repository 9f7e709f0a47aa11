//! A private git repository over HTTPS: `git http-backend` behind a TLS
//! front that wants a token, read with the smart-http requests the git
//! fetcher sends (discovery, then upload-pack), credentials from the config.

use attune_net::config::CredentialConfig;
use base64::Engine as _;
use bytes::Bytes;

use crate::support::{Ca, Tinyproxy, config, git_backend, git_repo, net, request, tls_server_with};

const TOKEN: &str = "glpat-private-token-123";

struct PrivateGit {
    server: crate::support::Server,
    head: String,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn private_git() -> PrivateGit {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    std::fs::create_dir_all(&root).unwrap();
    let head = git_repo(&root, "pack.git");
    let ca = Ca::new("Corp Test CA");
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{TOKEN}")));
    let server = tls_server_with(&ca.leaf(&["localhost"]), None, git_backend(root, auth)).await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    PrivateGit { server, head, ca_file, _dir: dir }
}

fn with_token(g: &PrivateGit) -> attune_net::NetConfig {
    let mut c = config();
    c.tls.ca_files.push(g.ca_file.clone());
    let cred =
        CredentialConfig { user: Some("oauth2".into()), token_env: Some("GITLAB_TOKEN".into()), ..Default::default() };
    c.credentials.insert(format!("localhost:{}", g.server.port), cred);
    c
}

/// Discovery and a fetch of `head`: what a clone asks.
async fn clone_requests(n: &attune_net::Net, port: u16, head: &str) -> Result<(), String> {
    let base = format!("https://localhost:{port}/pack.git");
    let (status, refs) =
        request(n, http::Method::GET, &format!("{base}/info/refs?service=git-upload-pack"), &[], Bytes::new()).await?;
    if status != 200 {
        return Err(format!("discovery: {status}"));
    }
    let refs = String::from_utf8_lossy(&refs);
    assert!(refs.contains("# service=git-upload-pack") && refs.contains(&format!("{head} refs/heads/main")), "{refs}");
    let want = format!("0032want {head}\n00000009done\n");
    let headers = [("content-type", "application/x-git-upload-pack-request")];
    let (status, pack) =
        request(n, http::Method::POST, &format!("{base}/git-upload-pack"), &headers, Bytes::from(want)).await?;
    assert_eq!(status, 200);
    assert!(pack.windows(4).any(|w| w == b"PACK"), "no pack in the answer");
    Ok(())
}

#[tokio::test]
async fn a_private_git_repository_is_read_over_https_with_the_token_from_the_config() {
    let g = private_git().await;
    let n = net(with_token(&g), &[("GITLAB_TOKEN", TOKEN)]).unwrap();
    clone_requests(&n, g.server.port, &g.head).await.unwrap();

    // Without the credentials the server says no.
    let mut c = config();
    c.tls.ca_files.push(g.ca_file.clone());
    let err = clone_requests(&net(c, &[]).unwrap(), g.server.port, &g.head).await.unwrap_err();
    assert_eq!(err, "discovery: 401");
}

#[tokio::test]
async fn a_private_git_repository_is_read_through_the_proxy_and_the_token_stays_in_the_tunnel() {
    let Some(proxy) = Tinyproxy::start(None).await else { return };
    let g = private_git().await;
    let n = net(with_token(&g), &[("GITLAB_TOKEN", TOKEN), ("HTTPS_PROXY", proxy.url().as_str())]).unwrap();
    clone_requests(&n, g.server.port, &g.head).await.unwrap();
    let seen = proxy.requests();
    assert!(
        !seen.is_empty() && seen.iter().all(|r| r == &format!("CONNECT localhost:{} HTTP/1.1", g.server.port)),
        "{seen:?}"
    );
    let log = proxy.log();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{TOKEN}"));
    assert!(!log.contains(TOKEN) && !log.contains(&encoded), "the proxy's log holds the token");
}
