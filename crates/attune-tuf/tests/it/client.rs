//! The client's ordinary path: trust from a root, follow new releases, an
//! Exchange-format index as a target in a subfolder, delegations, the lock check.

use attune_tuf::publish::{self, sign_metadata};
use attune_tuf::schema::{DelegatedRole, Delegations, SPEC_VERSION, TargetFile, Targets};
use attune_tuf::{Anchor, Clock, TufError, check_locked};
use std::collections::BTreeMap;
use time::Duration;

use crate::fixture::{
    Fixture, INDEX_V1, INDEX_V2, TARGET, disk, envelope, hex_sha256, hex_sha256_file, key, now, write_signed,
};

#[tokio::test]
async fn init_then_update_follows_new_releases() {
    let fx = Fixture::new().await;
    let first = fx.client().init(&fx.anchor(), TARGET, &Clock::system()).await.unwrap();
    assert_eq!(first.bytes, INDEX_V1);
    assert!(first.changed);
    let f = &first.facts;
    assert_eq!((f.root_version, f.timestamp_version, f.snapshot_version, f.targets_version), (1, 1, 1, 1));
    assert_eq!(f.target_role, "targets");
    assert_eq!(f.key_ids, vec![key(&fx.keys.targets).key_id().to_owned()]);
    assert_eq!(f.target_sha256, hex_sha256(INDEX_V1));
    assert_eq!(f.time_source, "system clock");
    assert!(f.expired_allowed.is_empty());

    // Nothing new: the trusted files stay as they are.
    let before = disk(&fx.trust);
    let same = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert!(!same.changed);
    assert_eq!(disk(&fx.trust), before);

    fx.publish(INDEX_V2);
    let next = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert!(next.changed);
    assert_eq!(next.bytes, INDEX_V2);
    assert_eq!(next.facts.targets_version, 2);
    assert_ne!(disk(&fx.trust), before);
}

#[tokio::test]
async fn update_without_trusted_metadata_refused() {
    let fx = Fixture::new().await;
    let err = fx.client().update(TARGET, &Clock::system()).await.unwrap_err();
    assert!(matches!(err, TufError::NoTrust { .. }), "{err}");
    assert!(err.to_string().contains("--root"), "{err}");
}

#[tokio::test]
async fn root_sha256_pin_bootstraps_trust() {
    let fx = Fixture::new().await;
    let pin = hex_sha256_file(&fx.meta("1.root.json"));
    let v = fx.client().init(&Anchor::RootSha256(pin), TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.bytes, INDEX_V1);
}

#[tokio::test]
async fn exchange_index_in_a_subfolder_end_to_end() {
    let fx = Fixture::new().await;
    let exchange = br#"{"packs": {"core_utils": {"ref": "core_utils", "name": "core_utils", "version": "1.4.2",
        "repo_url": "https://example.invalid/core_utils", "content": {}}}}"#;
    fs_err::create_dir_all(fx.repo().join("targets/v1")).unwrap();
    fs_err::write(fx.repo().join("targets/v1/index.json"), exchange).unwrap();
    let names = [TARGET.to_owned(), "v1/index.json".to_owned()];
    publish::sign(fx.repo(), &names, &fx.keys.signers(), &fx.options).unwrap();
    let v = fx.client().init(&fx.anchor(), "v1/index.json", &Clock::system()).await.unwrap();
    assert_eq!(v.bytes, exchange);
    let doc: serde_json::Value = serde_json::from_slice(&v.bytes).unwrap();
    assert_eq!(doc["packs"]["core_utils"]["version"], "1.4.2");
    // Fetched under its consistent-snapshot name, in its folder.
    assert!(fx.repo().join(format!("targets/v1/{}.index.json", hex_sha256(exchange))).is_file());
}

/// Adds a delegation of `v1/*` to role `packs` (key `delegate`) listing `v1/index.json`.
fn delegate(fx: &Fixture, delegate_pem: &str, signer_pem: &str) {
    let delegate = key(delegate_pem);
    let content = b"{\"packs\": {}}";
    fs_err::create_dir_all(fx.repo().join("targets/v1")).unwrap();
    fs_err::write(fx.repo().join(format!("targets/v1/{}.index.json", hex_sha256(content))), content).unwrap();
    let packs = Targets {
        kind: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version: 1,
        expires: now() + Duration::days(30),
        targets: BTreeMap::from([(
            "v1/index.json".to_owned(),
            TargetFile {
                length: content.len() as u64,
                hashes: BTreeMap::from([("sha256".to_owned(), hex_sha256(content))]),
                custom: None,
            },
        )]),
        delegations: None,
    };
    let bytes = sign_metadata(&packs, &[&key(signer_pem)]).unwrap();
    fs_err::write(fx.meta("packs.json"), &bytes).unwrap();
    fs_err::write(fx.meta("1.packs.json"), &bytes).unwrap();
    let path = fx.meta("targets.json");
    let mut targets = envelope(&path);
    let delegations = Delegations {
        keys: BTreeMap::from([(delegate.key_id().to_owned(), delegate.public().key.clone())]),
        roles: vec![DelegatedRole {
            name: "packs".into(),
            keyids: vec![delegate.key_id().to_owned()],
            threshold: 1,
            terminating: true,
            paths: Some(vec!["v1/*".into()]),
            path_hash_prefixes: None,
        }],
    };
    targets["signed"]["delegations"] = serde_json::to_value(delegations).unwrap();
    write_signed(&path, &targets["signed"], &[&key(&fx.keys.targets)]);
    publish::sign(fx.repo(), &[TARGET.to_owned()], &fx.keys.signers(), &fx.options).unwrap();
}

#[tokio::test]
async fn delegated_role_signs_a_target() {
    let fx = Fixture::new().await;
    let pem = attune_tuf::SigningKey::generate_pem().unwrap();
    delegate(&fx, &pem, &pem);
    let v = fx.client().init(&fx.anchor(), "v1/index.json", &Clock::system()).await.unwrap();
    assert_eq!(v.bytes, b"{\"packs\": {}}");
    assert_eq!(v.facts.target_role, "packs");
    assert_eq!(v.facts.key_ids, vec![key(&pem).key_id().to_owned()]);
    assert!(disk(&fx.trust)["trusted.json"].windows(5).any(|w| w == b"packs"), "the delegated role is stored");
    // A path no delegation covers is not found, whatever the server has.
    let err = fx.client().update("v2/index.json", &Clock::system()).await.unwrap_err().to_string();
    assert!(err.contains("target v2/index.json: not listed"), "{err}");
}

#[tokio::test]
async fn delegated_role_signed_by_another_key_refused() {
    let fx = Fixture::new().await;
    let pem = attune_tuf::SigningKey::generate_pem().unwrap();
    let stranger = attune_tuf::SigningKey::generate_pem().unwrap();
    delegate(&fx, &pem, &stranger);
    let err = fx.client().init(&fx.anchor(), "v1/index.json", &Clock::system()).await.unwrap_err().to_string();
    assert!(err.contains("packs metadata: signature threshold not met"), "{err}");
    assert!(disk(&fx.trust).is_empty());
}

#[tokio::test]
async fn lock_older_than_trusted_metadata_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    fx.publish(INDEX_V2);
    fx.client().update(TARGET, &Clock::system()).await.unwrap();
    let trusted = fx.client().trusted(TARGET).await.unwrap().expect("trusted state");
    assert_eq!(trusted.targets_version, 2);
    check_locked(2, &trusted).unwrap();
    check_locked(3, &trusted).unwrap();
    let err = check_locked(1, &trusted).unwrap_err().to_string();
    assert!(err.contains("targets version 1 is older than the version 2"), "{err}");
}

/// The host runs updates inside `attune serve`'s tasks: the futures must be `Send`.
#[test]
fn client_futures_are_send() {
    fn send<F: std::future::Future + Send>(_: F) {}
    let client = attune_tuf::Client::new(
        crate::server::Http::default(),
        attune_tuf::Repository::under("http://127.0.0.1:9"),
        std::env::temp_dir().join("attune-tuf-never-written"),
        attune_tuf::Limits::default(),
    );
    let clock = Clock::system();
    let anchor = Anchor::Root(vec![]);
    send(client.init(&anchor, TARGET, &clock));
    send(client.update(TARGET, &clock));
    send(client.offline(TARGET, &clock, false));
    send(client.trusted(TARGET));
}
