//! Root key rotation: the chain from an old root, a rotated root its old keys
//! did not sign, and recovery from a fast-forward attack by rotating keys.

use attune_tuf::publish::{self, RoleSpec};
use attune_tuf::{Client, Clock, Limits, Repository, SigningKey};

use crate::fixture::{Fixture, TARGET, envelope, key, now, refused, write_signed};
use crate::server::Http;

#[tokio::test]
async fn key_rotation_old_root_still_verifies_chain() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let (root2, root3, targets2) =
        (SigningKey::generate_pem().unwrap(), SigningKey::generate_pem().unwrap(), SigningKey::generate_pem().unwrap());
    let mut spec = fx.keys.spec();
    spec.root = RoleSpec::new(&[&key(&root2)], 1);
    let p = publish::rotate_root(fx.repo(), &spec, &[key(&fx.keys.root), key(&root2)], now()).unwrap();
    assert_eq!(p.root_version, 2);
    spec.root = RoleSpec::new(&[&key(&root3)], 1);
    spec.targets = RoleSpec::new(&[&key(&targets2)], 1);
    publish::rotate_root(fx.repo(), &spec, &[key(&root2), key(&root3)], now()).unwrap();
    let signers = vec![key(&targets2), key(&fx.keys.snapshot), key(&fx.keys.timestamp)];
    publish::sign(fx.repo(), &[TARGET.to_owned()], &signers, &fx.options).unwrap();

    let v = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.facts.root_version, 3);
    assert_eq!(v.facts.key_ids, vec![key(&targets2).key_id().to_owned()]);

    // A new client given only the first root walks 1 → 2 → 3 too.
    let fresh = Client::new(
        Http::default(),
        Repository::under(&fx.server.base),
        fx.tmp.path().join("fresh"),
        Limits::default(),
    );
    let v = fresh.init(&fx.anchor(), TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.facts.root_version, 3);
}

#[tokio::test]
async fn rotated_root_not_signed_by_old_keys_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // Whoever holds only a new key cannot make a root the old one vouches for.
    let usurper = key(&SigningKey::generate_pem().unwrap());
    let mut root = envelope(&fx.meta("1.root.json"))["signed"].clone();
    root["version"] = serde_json::json!(2);
    root["keys"][usurper.key_id()] = serde_json::to_value(&usurper.public().key).unwrap();
    root["roles"]["root"]["keyids"] = serde_json::json!([usurper.key_id()]);
    write_signed(&fx.meta("2.root.json"), &root, &[&usurper]);
    refused(&fx, &Clock::system(), &["root metadata", "signature threshold not met", "0 of the required 1"]).await;
}

#[tokio::test]
async fn fast_forward_recovery_after_timestamp_key_rotation() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let published = fs_err::read(fx.meta("timestamp.json")).unwrap();
    // A leaked timestamp key fast-forwards clients to version 1000.
    let mut ts = envelope(&fx.meta("timestamp.json"));
    ts["signed"]["version"] = serde_json::json!(1000);
    write_signed(&fx.meta("timestamp.json"), &ts["signed"], &[&key(&fx.keys.timestamp)]);
    let v = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.facts.timestamp_version, 1000);

    // The real timestamp now looks like a rollback to this client...
    fs_err::write(fx.meta("timestamp.json"), &published).unwrap();
    refused(&fx, &Clock::system(), &["timestamp metadata", "version 1 is lower than the trusted version 1000"]).await;

    // ...until root 2 rotates the timestamp key: the client drops its trusted timestamp and recovers.
    let new_ts = SigningKey::generate_pem().unwrap();
    let mut spec = fx.keys.spec();
    spec.timestamp = RoleSpec::new(&[&key(&new_ts)], 1);
    publish::rotate_root(fx.repo(), &spec, &[key(&fx.keys.root)], now()).unwrap();
    let signers = vec![key(&fx.keys.targets), key(&fx.keys.snapshot), key(&new_ts)];
    publish::sign(fx.repo(), &[TARGET.to_owned()], &signers, &fx.options).unwrap();
    let v = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert_eq!((v.facts.root_version, v.facts.timestamp_version), (2, 2));
}

#[tokio::test]
async fn root_served_under_another_version_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // Two rotations with the same root key: 3.root.json is validly signed by the keys of root 1.
    let spec = fx.keys.spec();
    publish::rotate_root(fx.repo(), &spec, &[key(&fx.keys.root)], now()).unwrap();
    publish::rotate_root(fx.repo(), &spec, &[key(&fx.keys.root)], now()).unwrap();
    fs_err::copy(fx.meta("3.root.json"), fx.meta("2.root.json")).unwrap();
    refused(&fx, &Clock::system(), &["root metadata", "2.root.json holds version 3"]).await;
}
