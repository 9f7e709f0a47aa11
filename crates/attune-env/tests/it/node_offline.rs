//! npm offline with an empty cache: a clear error, nothing contacted (the
//! lockfile's registry URL is a closed loopback port).

use attune_env::{NodeError, NodeRequest, build_node};

use crate::support;

#[tokio::test]
async fn offline_with_an_empty_npm_cache_names_what_is_missing() {
    let Some(npm) = support::npm().await else { return };
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    std::fs::write(pack.join("package.json"), r#"{"name":"p","version":"1.0.0","dependencies":{"leftpad":"1.0.0"}}"#)
        .unwrap();
    std::fs::write(
        pack.join("package-lock.json"),
        r#"{"name":"p","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{
            "":{"name":"p","version":"1.0.0","dependencies":{"leftpad":"1.0.0"}},
            "node_modules/leftpad":{"version":"1.0.0","resolved":"http://127.0.0.1:9/leftpad/-/leftpad-1.0.0.tgz",
              "integrity":"sha512-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}}}"#,
    )
    .unwrap();
    let env = t.path().join("env");
    let mut req = NodeRequest::new(&pack);
    req.offline = true;
    req.cache_dir = Some(t.path().join("empty-npm-cache"));

    let err = build_node(&npm, &req, &env, &|_| {}).await.unwrap_err();

    assert!(matches!(&err, NodeError::OfflineMissing { detail } if detail.contains("leftpad")), "{err:?}");
    assert!(!env.exists());
}
