//! The start-up check, driven through the library: a pending journal row is
//! what a process killed between "begin" and "complete" leaves behind.

use attune_app::context::{Context, Settings};
use attune_app::db::{Channel, NewInstallation};
use attune_app::runtime::Limits;

fn settings(env: &crate::common::Env) -> Settings {
    Settings {
        packs_dir: env.packs(),
        database_url: env.db_url(),
        cache_dir: Some(crate::common::cache_dir()),
        limits: Limits::default(),
        host_name: None,
        net: attune_net::Net::build(&Default::default()).unwrap(),
        envs_dir: None,
    }
}

fn row(ctx: &Context, path: &std::path::Path, checksum: &str) -> NewInstallation {
    NewInstallation {
        pack_ref: "killed".into(),
        pack_name: "killed".into(),
        pack_description: None,
        version: "1.0.0".into(),
        source_type: attune_app::source::SourceKind::Local,
        source: "/src".into(),
        requested_ref: None,
        resolved_commit: None,
        checksum: checksum.into(),
        checksum_algorithm: "sha256-tree-v1".into(),
        manifest: serde_json::json!({}),
        verified: false,
        installed_by: ctx.user.clone(),
        method: Channel::Cli,
        storage_path: path.display().to_string(),
        fetcher_name: "local".into(),
        fetcher_version: "0.1.0".into(),
        fetcher_hash: None,
        host: ctx.machine.clone(),
        metadata: serde_json::json!({}),
        api_token: None,
    }
}

#[tokio::test]
async fn killed_after_the_rename_is_completed() {
    let env = crate::common::Env::new();
    let (ctx, _) = attune_app::open(&settings(&env)).await.unwrap();
    let dest = env.packs().join("killed-1.0.0");
    crate::common::write_pack(&dest, "killed", "1.0.0");
    let sum = attune_app::checksum::tree(&dest).unwrap().digest.to_string();
    let id = ctx.db.begin_install(&row(&ctx, &dest, &sum)).await.unwrap();
    drop(ctx);

    let (ctx, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert_eq!(recovery.completed, vec!["killed@1.0.0"]);
    let cur = ctx.db.current("killed", "1.0.0", &ctx.machine).await.unwrap().unwrap();
    assert_eq!(cur.id, id);
}

#[tokio::test]
async fn killed_before_the_rename_is_rolled_back() {
    let env = crate::common::Env::new();
    let (ctx, _) = attune_app::open(&settings(&env)).await.unwrap();
    let dest = env.packs().join("killed-1.0.0");
    ctx.db.begin_install(&row(&ctx, &dest, "sha256-tree-v1:00")).await.unwrap();
    drop(ctx);

    let (ctx, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert_eq!(recovery.rolled_back, vec!["killed@1.0.0"]);
    assert!(ctx.db.current("killed", "1.0.0", &ctx.machine).await.unwrap().is_none());
    assert!(ctx.db.pending(&ctx.machine).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_live_install_in_another_process_is_left_alone() {
    let env = crate::common::Env::new();
    let (ctx, _) = attune_app::open(&settings(&env)).await.unwrap();
    let dest = env.packs().join("killed-1.0.0");
    ctx.db.begin_install(&row(&ctx, &dest, "sha256-tree-v1:00")).await.unwrap();
    // Its owner still holds the pack lock.
    let _held = ctx.store.lock_pack("killed", || {}).unwrap();
    let (ctx2, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert!(recovery.rolled_back.is_empty() && recovery.completed.is_empty());
    assert_eq!(ctx2.db.pending(&ctx2.machine).await.unwrap().len(), 1);
}
