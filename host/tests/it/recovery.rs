//! The start-up check, driven through the library: a pending journal row is
//! what a process killed between "begin" and "complete" leaves behind, a
//! `pending_activations` row what one killed between "complete" and the
//! activation of a first version leaves. And the check's cost: it must not
//! read every installed row, so a command costs the same with 10 packs or 10k.

use attune_app::context::{Context, Settings};
use attune_app::db::{Action, Channel, NewInstallation};
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
    row_of(ctx, "killed", path, checksum)
}

fn row_of(ctx: &Context, pack_ref: &str, path: &std::path::Path, checksum: &str) -> NewInstallation {
    NewInstallation {
        pack_ref: pack_ref.into(),
        action: Action::Install,
        pack_name: pack_ref.into(),
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

/// A raw statement, from a thread of its own (the helper runs its own runtime).
fn sql(env: &crate::common::Env, statement: &str) {
    std::thread::scope(|s| s.spawn(|| crate::common::query(env, statement)).join().unwrap());
}

/// Records `pack_ref`@1.0.0 as installed (its folder written, its journal
/// rows begun and completed) without activating it, as an install killed
/// right after its record leaves it.
async fn installed_not_activated(ctx: &Context, env: &crate::common::Env, pack_ref: &str) -> std::path::PathBuf {
    let dest = env.packs().join(format!("{pack_ref}-1.0.0"));
    crate::common::write_pack(&dest, pack_ref, "1.0.0");
    let sum = attune_app::checksum::tree(&dest).unwrap().digest.to_string();
    let id = ctx.db.begin_install(&row_of(ctx, pack_ref, &dest, &sum)).await.unwrap();
    ctx.db.complete_install(id).await.unwrap();
    dest
}

#[tokio::test]
async fn killed_between_the_record_and_the_activation_is_activated() {
    let env = crate::common::Env::new();
    let (ctx, _) = attune_app::open(&settings(&env)).await.unwrap();
    installed_not_activated(&ctx, &env, "killed").await;
    assert_eq!(ctx.db.pending_activations(&ctx.machine).await.unwrap(), ["killed"]);
    drop(ctx);

    let (ctx, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert_eq!(recovery.activated, vec!["killed@1.0.0"]);
    assert_eq!(ctx.db.active_version(&ctx.machine, "killed").await.unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(ctx.store.linked_version("killed").map(|v| v.to_string()).as_deref(), Some("1.0.0"));
    assert!(ctx.db.pending_activations(&ctx.machine).await.unwrap().is_empty());
    drop(ctx);
    // Once.
    let (_, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert!(recovery.activated.is_empty());
}

/// The start-up check with many packs installed reads none of their rows: one
/// installed row that cannot be read (its metadata is not JSON) trips
/// anything that reads them all, as `list` shows, yet opening a context, with
/// a killed install and a pack owed its activation to repair, works, and so
/// do `info` and `uninstall` of another pack. Likewise no listing reads the
/// stored manifests: with every one of them unreadable, `list` works.
#[tokio::test]
async fn start_up_reads_no_installed_row() {
    let env = crate::common::Env::new();
    let (ctx, _) = attune_app::open(&settings(&env)).await.unwrap();
    for i in 0..60 {
        let dest = env.packs().join(format!("p{i:02}-1.0.0"));
        crate::common::write_pack(&dest, &format!("p{i:02}"), "1.0.0");
        let id = ctx.db.begin_install(&row_of(&ctx, &format!("p{i:02}"), &dest, "sha256-tree-v1:00")).await.unwrap();
        ctx.db.complete_install(id).await.unwrap();
        ctx.db.record_activation(&ctx.machine, &format!("p{i:02}"), Some("1.0.0"), "t", "install").await.unwrap();
    }
    installed_not_activated(&ctx, &env, "owed").await;
    let dest = env.packs().join("killed-1.0.0");
    ctx.db.begin_install(&row(&ctx, &dest, "sha256-tree-v1:00")).await.unwrap();
    drop(ctx);
    sql(&env, "UPDATE installations SET metadata_json = 'not json' WHERE pack_ref = 'p33'");
    sql(&env, "UPDATE installations SET manifest_json = 'not json either'");

    let (ctx, recovery) = attune_app::open(&settings(&env)).await.unwrap();
    assert_eq!(recovery.rolled_back, vec!["killed@1.0.0"]);
    assert_eq!(recovery.activated, vec!["owed@1.0.0"]);
    let spec = |s: &str| s.parse::<attune_app::packs::PackSpec>().unwrap();
    let info = attune_app::packs::info(&ctx, &spec("p07")).await.unwrap();
    assert_eq!(info.installed.len(), 1);
    attune_app::packs::uninstall(&ctx, &spec("p08"), Channel::Cli, None, false).await.unwrap();
    // The trap is armed: reading every installed row trips on p33.
    let err = format!("{:?}", attune_app::packs::list(&ctx, false).await.unwrap_err());
    assert!(err.contains("metadata_json"), "{err}");

    sql(&env, "UPDATE installations SET metadata_json = '{}' WHERE pack_ref = 'p33'");
    let listed = attune_app::packs::list_with_active(&ctx, false).await.unwrap();
    assert_eq!(listed.len(), 60, "p00..p59 less p08, plus owed");
    assert!(listed.iter().all(|l| l.active));
    // Only verify reads manifests.
    assert!(attune_app::packs::verify(&ctx, &[spec("p07")]).await.is_err());
}
