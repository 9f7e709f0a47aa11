//! The publisher: what it refuses, keys from OpenSSL, the daily timestamp re-sign.

use attune_tuf::publish::{self, RoleSpec, RootSpec, SignOptions};
use attune_tuf::{Clock, SigningKey};
use time::Duration;

use crate::fixture::{Fixture, INDEX_V1, TARGET, key, now};

#[tokio::test]
async fn sign_with_too_few_keys_refused() {
    let fx = Fixture::new().await;
    let err = publish::sign(fx.repo(), &[TARGET.to_owned()], &[key(&fx.keys.root)], &fx.options).unwrap_err();
    assert!(
        err.to_string().contains("targets: 0 of the given keys belong to this role, but its threshold is 1"),
        "{err}"
    );
}

#[tokio::test]
async fn rotate_root_without_the_old_root_keys_refused() {
    let fx = Fixture::new().await;
    let new_root = SigningKey::generate_pem().unwrap();
    let mut spec = fx.keys.spec();
    spec.root = RoleSpec::new(&[&key(&new_root)], 1);
    let err = publish::rotate_root(fx.repo(), &spec, &[key(&new_root)], now()).unwrap_err();
    assert!(err.to_string().contains("root (the current root keys)"), "{err}");
    assert!(!fx.meta("2.root.json").exists());
}

#[tokio::test]
async fn init_twice_and_bad_threshold_refused() {
    let fx = Fixture::new().await;
    let err =
        publish::init(fx.repo(), &fx.keys.spec(), &[TARGET.to_owned()], &fx.keys.signers(), &fx.options).unwrap_err();
    assert!(err.to_string().contains("a repository is already there"), "{err}");
    let other = tempfile::tempdir().unwrap();
    let mut spec = fx.keys.spec();
    spec.targets.threshold = 2;
    let err = publish::init(other.path(), &spec, &[], &fx.keys.signers(), &fx.options).unwrap_err();
    assert!(err.to_string().contains("targets: threshold 2 with 1 keys"), "{err}");
}

#[tokio::test]
async fn openssl_ed25519_key_signs_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    let status =
        std::process::Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out"]).arg(&pem).status();
    let Ok(status) = status else {
        assert!(std::env::var_os("CI").is_none(), "openssl is not on PATH (apt-get install openssl)");
        eprintln!("note: openssl is not on PATH (apt-get install openssl); skipping this test");
        return;
    };
    assert!(status.success());
    let k = SigningKey::from_pem_file(&pem).unwrap();
    let role = RoleSpec::new(&[&k], 1);
    let spec = RootSpec {
        root: role.clone(),
        targets: role.clone(),
        snapshot: role.clone(),
        timestamp: role,
        consistent_snapshot: false,
        root_expires_in: Duration::days(30),
    };
    let repo = dir.path().join("repo");
    fs_err::create_dir_all(repo.join("targets")).unwrap();
    fs_err::write(repo.join("targets").join(TARGET), INDEX_V1).unwrap();
    publish::init(&repo, &spec, &[TARGET.to_owned()], &[k], &SignOptions::new(now())).unwrap();
    let server = crate::server::Server::start(repo.clone()).await;
    let client = attune_tuf::Client::new(
        crate::server::Http::default(),
        attune_tuf::Repository::under(&server.base),
        dir.path().join("trust"),
        attune_tuf::Limits::default(),
    );
    let root = fs_err::read(repo.join("metadata/1.root.json")).unwrap();
    let v = client.init(&attune_tuf::Anchor::Root(root), TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.bytes, INDEX_V1);

    // A key file that is not one is refused with its path named.
    fs_err::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let err = SigningKey::from_pem_file(&dir.path().join("bad.pem")).unwrap_err().to_string();
    assert!(err.contains("bad.pem") && err.contains("PKCS#8 PEM"), "{err}");
}

#[tokio::test]
async fn resign_timestamp_keeps_clients_current() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // Two days on the 1-day timestamp is stale; CI re-signs it and clients accept again.
    let later = now() + Duration::days(2);
    let p = publish::resign_timestamp(fx.repo(), &fx.keys.signers(), later, Duration::days(1)).unwrap();
    assert_eq!((p.timestamp_version, p.snapshot_version, p.targets_version), (2, 1, 1));
    let v = fx.client().update(TARGET, &Clock::fixed(later, "test clock")).await.unwrap();
    assert_eq!(v.facts.timestamp_version, 2);
    assert_eq!(v.bytes, INDEX_V1);
}
