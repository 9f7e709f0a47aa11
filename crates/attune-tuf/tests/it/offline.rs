//! `--offline`: the trusted metadata on disk only, expired metadata refused
//! unless allowed, and then reported.

use time::Duration;

use crate::fixture::{Fixture, INDEX_V1, TARGET, clock_in, disk};

#[tokio::test]
async fn offline_reads_trusted_metadata_without_the_server() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // The repository is gone: only the trusted folder can answer.
    fs_err::rename(fx.repo().join("metadata"), fx.tmp.path().join("moved-metadata")).unwrap();
    fs_err::rename(fx.repo().join("targets"), fx.tmp.path().join("moved-targets")).unwrap();
    let v = fx.client().offline(TARGET, &clock_in(Duration::hours(1)), false).await.unwrap();
    assert_eq!(v.bytes, INDEX_V1);
    assert!(v.facts.expired_allowed.is_empty());
    assert_eq!(v.facts.time_source, "test clock");
}

#[tokio::test]
async fn offline_expired_refused_unless_allowed() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let before = disk(&fx.trust);
    let later = clock_in(Duration::days(8));
    let err = fx.client().offline(TARGET, &later, false).await.unwrap_err().to_string();
    assert!(err.contains("timestamp metadata: expired at") && err.contains("by the test clock"), "{err}");
    let v = fx.client().offline(TARGET, &later, true).await.unwrap();
    assert_eq!(v.bytes, INDEX_V1);
    // Timestamp (1 day) and snapshot (7 days) are past; targets (90 days) is not.
    assert_eq!(v.facts.expired_allowed, vec!["timestamp".to_owned(), "snapshot".to_owned()]);
    assert_eq!(disk(&fx.trust), before);
}

#[tokio::test]
async fn offline_target_tampered_on_disk_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    let copy = disk(&fx.trust).into_keys().find(|n| n.starts_with("target-")).expect("target copy");
    fs_err::write(fx.trust.join(&copy), b"{\"version\": \"1.0\", \"packs\": []}").unwrap();
    let err = fx.client().offline(TARGET, &clock_in(Duration::hours(1)), false).await.unwrap_err().to_string();
    assert!(err.contains("target index.json") && err.contains("targets metadata says"), "{err}");
}

#[tokio::test]
async fn trusted_metadata_tampered_on_disk_refused() {
    let fx = Fixture::new().await;
    fx.trust_now().await;
    // Someone with write access to the cache edits the stored targets metadata.
    let path = fx.trust.join(attune_tuf::STATE_FILE);
    let mut state: serde_json::Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
    let targets = state["targets"].as_str().unwrap().replace("\"version\": 1", "\"version\": 9");
    state["targets"] = serde_json::json!(targets);
    fs_err::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    for err in [
        fx.client().offline(TARGET, &clock_in(Duration::hours(1)), false).await.unwrap_err().to_string(),
        fx.client().update(TARGET, &attune_tuf::Clock::system()).await.unwrap_err().to_string(),
    ] {
        assert!(err.contains("targets metadata: signature threshold not met"), "{err}");
    }
}
