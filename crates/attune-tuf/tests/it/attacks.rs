//! One test per attack the TUF specification lists: each makes the server
//! (or a mirror) misbehave after the client trusts the repository, and checks
//! that the update is refused with an error naming the role and the reason,
//! and that the trusted metadata on disk is byte for byte what it was.

use attune_tuf::publish::{RoleSpec, SignOptions};
use attune_tuf::{Anchor, Clock};
use time::Duration;

use crate::fixture::{
    Fixture, INDEX_V2, Keys, TARGET, clock_in, disk, envelope, hex_sha256, hex_sha256_file, key, now, refused,
    write_signed,
};

#[tokio::test]
async fn arbitrary_content_bad_signature_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // The signed part changes, the signature stays: what a host editing metadata produces.
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signed"]["version"] = serde_json::json!(7);
    fs_err::write(&path, serde_json::to_vec(&ts).unwrap()).unwrap();
    refused(&fx, &Clock::system(), &["timestamp metadata", "signature threshold not met", "0 of the required 1"]).await;
}

#[tokio::test]
async fn arbitrary_content_missing_signatures_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    fx.publish(INDEX_V2);
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signatures"] = serde_json::json!([]);
    fs_err::write(&path, serde_json::to_vec(&ts).unwrap()).unwrap();
    refused(&fx, &Clock::system(), &["timestamp metadata", "signature threshold not met", "0 of the required 1"]).await;
}

#[tokio::test]
async fn arbitrary_content_signed_by_an_untrusted_key_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signed"]["version"] = serde_json::json!(2);
    let stranger = key(&attune_tuf::SigningKey::generate_pem().unwrap());
    write_signed(&path, &ts["signed"], &[&stranger]);
    refused(&fx, &Clock::system(), &["timestamp metadata", "signature threshold not met"]).await;
}

#[tokio::test]
async fn threshold_not_met_refused() {
    let mut keys = Keys::new();
    keys.extra.push(attune_tuf::SigningKey::generate_pem().unwrap());
    let mut spec = keys.spec();
    spec.timestamp = RoleSpec::new(&[&key(&keys.timestamp), &key(&keys.extra[0])], 2);
    let fx = Fixture::with_spec(spec, keys, SignOptions::new(now())).await;
    fx.trust_now().await;
    // One of the two timestamp keys leaked: it alone signs a newer timestamp.
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signed"]["version"] = serde_json::json!(2);
    write_signed(&path, &ts["signed"], &[&key(&fx.keys.timestamp)]);
    refused(&fx, &Clock::system(), &["timestamp metadata", "signature threshold not met", "1 of the required 2"]).await;
}

#[tokio::test]
async fn arbitrary_target_content_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    fx.publish(INDEX_V2);
    // The signed metadata is intact; the index document itself is replaced (same length).
    let sha = hex_sha256(INDEX_V2);
    let evil = String::from_utf8(INDEX_V2.to_vec()).unwrap().replace("1.1.0", "6.6.6");
    fs_err::write(fx.repo().join("targets").join(format!("{sha}.{TARGET}")), evil).unwrap();
    refused(&fx, &Clock::system(), &["target index.json", "sha256", "targets metadata says", "tampered"]).await;
}

#[tokio::test]
async fn rollback_timestamp_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let old = fs_err::read(fx.meta("timestamp.json")).unwrap();
    fx.publish(INDEX_V2);
    let v = fx.client().update(TARGET, &Clock::system()).await.unwrap();
    assert_eq!(v.facts.timestamp_version, 2);
    fs_err::write(fx.meta("timestamp.json"), old).unwrap();
    refused(
        &fx,
        &Clock::system(),
        &["timestamp metadata", "version 1 is lower than the trusted version 2", "rollback"],
    )
    .await;
}

#[tokio::test]
async fn rollback_snapshot_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let old_snapshot = fs_err::read(fx.meta("1.snapshot.json")).unwrap();
    fx.publish(INDEX_V2);
    fx.client().update(TARGET, &Clock::system()).await.unwrap();
    // A leaked timestamp key signs a newer timestamp that names the old snapshot.
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signed"]["version"] = serde_json::json!(3);
    ts["signed"]["meta"]["snapshot.json"] = serde_json::json!({
        "version": 1,
        "length": old_snapshot.len(),
    });
    write_signed(&path, &ts["signed"], &[&key(&fx.keys.timestamp)]);
    refused(&fx, &Clock::system(), &["snapshot metadata", "version 1 is lower than the trusted version 2", "rollback"])
        .await;
}

#[tokio::test]
async fn rollback_targets_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    fx.publish(INDEX_V2);
    fx.client().update(TARGET, &Clock::system()).await.unwrap();
    // Leaked snapshot and timestamp keys: a newer snapshot that lists the old targets (version 1).
    let mut snapshot = envelope(&fx.meta("2.snapshot.json"));
    snapshot["signed"]["version"] = serde_json::json!(3);
    snapshot["signed"]["meta"]["targets.json"] = serde_json::json!({"version": 1});
    write_signed(&fx.meta("3.snapshot.json"), &snapshot["signed"], &[&key(&fx.keys.snapshot)]);
    let path = fx.meta("timestamp.json");
    let mut ts = envelope(&path);
    ts["signed"]["version"] = serde_json::json!(3);
    ts["signed"]["meta"]["snapshot.json"] = serde_json::json!({"version": 3});
    write_signed(&path, &ts["signed"], &[&key(&fx.keys.timestamp)]);
    refused(&fx, &Clock::system(), &["targets metadata", "version 1 is lower than the trusted version 2", "rollback"])
        .await;
}

#[tokio::test]
async fn freeze_expired_timestamp_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // The server keeps serving the same metadata; two days on, its 1-day timestamp is stale.
    refused(&fx, &clock_in(Duration::days(2)), &["timestamp metadata", "expired at", "by the test clock", "freeze"])
        .await;
}

#[tokio::test]
async fn freeze_expired_snapshot_refused() {
    let mut options = SignOptions::new(now());
    options.timestamp_expire_in = Duration::days(30);
    options.snapshot_expire_in = Duration::days(1);
    let fx = Fixture::with(options).await;
    fx.trust_now().await;
    refused(&fx, &clock_in(Duration::days(2)), &["snapshot metadata", "expired at", "by the test clock", "freeze"])
        .await;
}

#[tokio::test]
async fn freeze_expired_targets_refused() {
    let mut options = SignOptions::new(now());
    options.timestamp_expire_in = Duration::days(30);
    options.snapshot_expire_in = Duration::days(30);
    options.targets_expire_in = Duration::days(1);
    let fx = Fixture::with(options).await;
    fx.trust_now().await;
    refused(&fx, &clock_in(Duration::days(2)), &["targets metadata", "expired at", "by the test clock", "freeze"])
        .await;
}

#[tokio::test]
async fn freeze_expired_root_refused() {
    let keys = Keys::new();
    let mut spec = keys.spec();
    spec.root_expires_in = Duration::days(1);
    let mut options = SignOptions::new(now());
    options.timestamp_expire_in = Duration::days(30);
    let fx = Fixture::with_spec(spec, keys, options).await;
    fx.trust_now().await;
    refused(&fx, &clock_in(Duration::days(2)), &["root metadata", "expired at", "by the test clock", "freeze"]).await;
}

#[tokio::test]
async fn mix_and_match_refused() {
    let mut options = SignOptions::new(now());
    // Versions only, as python-tuf writes by default: the version check is what stands.
    options.meta_hashes = false;
    let fx = Fixture::with(options).await;
    fx.trust_now().await;
    fx.publish(INDEX_V2);
    // Snapshot 2 lists targets 2; the server answers with release 1's (validly signed) targets.
    fs_err::copy(fx.meta("1.targets.json"), fx.meta("2.targets.json")).unwrap();
    refused(&fx, &Clock::system(), &["targets metadata", "version 1, but snapshot lists version 2", "mix-and-match"])
        .await;
}

#[tokio::test]
async fn endless_data_refused_for_every_role() {
    for (what, path) in [
        ("root metadata", "/metadata/2.root.json"),
        ("timestamp metadata", "/metadata/timestamp.json"),
        ("snapshot metadata", "/metadata/2.snapshot.json"),
        ("targets metadata", "/metadata/2.targets.json"),
        ("target index.json", "TARGET"),
    ] {
        let fx = Fixture::new().await;
        fx.trust_now().await;
        fx.publish(INDEX_V2);
        let path =
            if path == "TARGET" { format!("/targets/{}.{TARGET}", hex_sha256(INDEX_V2)) } else { path.to_owned() };
        fx.server.endless(&path);
        let err = refused(&fx, &Clock::system(), &[what, "is larger than the limit", "endless data"]).await;
        eprintln!("{path}: {err}");
    }
}

#[tokio::test]
async fn mirror_serving_another_repository_refused() {
    let ours = Fixture::new().await;
    let theirs = Fixture::new().await;
    ours.trust_now().await;
    let our_root = ours.anchor();
    // A mirror of our URL serves the other repository's metadata: all valid, signed by its own keys.
    for entry in fs_err::read_dir(theirs.repo().join("metadata")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), ours.meta(&entry.file_name().to_string_lossy())).unwrap();
    }
    refused(&ours, &Clock::system(), &["timestamp metadata", "signature threshold not met", "another repository"])
        .await;
    // Nor can trust start from our root against their server.
    let fresh = theirs.client();
    let err = fresh.init(&our_root, TARGET, &Clock::system()).await.unwrap_err().to_string();
    assert!(err.contains("timestamp metadata") && err.contains("threshold not met"), "{err}");
    assert!(disk(&theirs.trust).is_empty(), "nothing may be trusted after a refused first update");
}

#[tokio::test]
async fn mirror_root_not_matching_the_pinned_hash_refused() {
    let ours = Fixture::new().await;
    let theirs = Fixture::new().await;
    let pinned = hex_sha256_file(&ours.meta("1.root.json"));
    let err = theirs
        .client()
        .init(&Anchor::RootSha256(pinned.clone()), TARGET, &Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("root metadata") && err.contains(&format!("the pinned root is {pinned}")), "{err}");
    assert!(disk(&theirs.trust).is_empty());
}
