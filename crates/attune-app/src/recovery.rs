//! The start-up check, run when a command opens its context: leftovers of
//! killed runs are removed, interrupted installs are finished or marked
//! failed, and packs installed before active versions existed get one, so
//! disk and database never disagree silently.
//!
//! Every command pays for it, so it costs the same with ten packs installed
//! or ten thousand: it reads the two folders of leftovers (staging, trash),
//! the `pending` journal rows (an index lookup) and the packs journaled as
//! owed an activation, never the installed rows themselves.

use std::path::PathBuf;

use crate::Error;
use crate::checksum;
use crate::context::{Context, Settings};
use crate::db::Status;

/// Opens a context and runs the start-up check on it.
pub async fn open(settings: &Settings) -> Result<(Context, Recovery), Error> {
    let ctx = Context::open_handles(settings).await?;
    let recovery = recover(&ctx).await?;
    Ok((ctx, recovery))
}

/// What the start-up check did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Recovery {
    pub leftovers_removed: usize,
    pub completed: Vec<String>,
    pub rolled_back: Vec<String>,
    /// Packs installed before attune kept active versions, given their
    /// highest installed version as the active one (`ref@version`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activated: Vec<String>,
}

/// Packs whose install was recorded but not their activation (the
/// database's `pending_activations`: installed before active versions
/// existed, or killed between its record and its activation) get their
/// highest installed version as the active one, once, recorded as
/// `backfill`. Only those packs are looked at, never every installed one.
/// Packs another process is changing are left for a later run.
async fn backfill_active(ctx: &Context) -> Result<Vec<String>, Error> {
    let mut done = Vec::new();
    for pack_ref in ctx.db.pending_activations(&ctx.machine).await? {
        let Some(switches) = ctx.try_lock_pack(&format!("{pack_ref}.switch")).await? else { continue };
        let Some(lock) = ctx.try_lock_pack(&pack_ref).await? else { continue };
        // Under the locks: another process may have just done it.
        let activated = ctx.db.activation(&ctx.machine, &pack_ref).await?.is_some();
        let installed = ctx.db.installed_versions(&pack_ref, &ctx.machine).await?;
        let highest = installed.iter().filter_map(|v| semver::Version::parse(v).ok()).max();
        match highest {
            _ if activated => ctx.db.forget_pending_activation(&ctx.machine, &pack_ref).await?,
            None => ctx.db.forget_pending_activation(&ctx.machine, &pack_ref).await?,
            // Its folder is missing: left for `doctor`, and for a later run.
            Some(version) if !ctx.store.pack_dir(&pack_ref, &version).is_dir() => {}
            Some(version) => {
                crate::activation::activate_locked(ctx, &pack_ref, &version, "backfill").await?;
                done.push(format!("{pack_ref}@{version}"));
            }
        }
        lock.release().await;
        switches.release().await;
    }
    Ok(done)
}

/// Finishes or rolls back installs a killed process left pending.
pub async fn recover(ctx: &Context) -> Result<Recovery, Error> {
    let leftovers = ctx.store.clean_leftovers()? + ctx.envs.clean_leftovers()?;
    let mut r = Recovery { leftovers_removed: leftovers, ..Default::default() };
    for row in ctx.db.pending(&ctx.machine).await? {
        debug_assert_eq!(row.status, Status::Pending);
        // A held lock means the install is alive in another process: the
        // file lock for this folder's processes, the database's for other
        // folders of this host (PostgreSQL).
        let Some(_lock) = ctx.store.try_lock_pack(&row.pack_ref)? else { continue };
        let Some(_db_lock) = ctx.db.try_lock_pack(&ctx.machine, &row.pack_ref).await? else { continue };
        let label = format!("{}@{}", row.pack_ref, row.version);
        let path = PathBuf::from(&row.storage_path);
        let on_disk = match path.is_dir() {
            true => {
                let (p, algorithm) = (path.clone(), checksum::Algorithm::of_stored(&row.checksum));
                tokio::task::spawn_blocking(move || checksum::tree_as(&p, algorithm)).await.ok().and_then(|r| r.ok())
            }
            false => None,
        };
        if on_disk.is_some_and(|m| m.digest.to_string() == row.checksum) {
            // Killed after the rename: the new tree is in place, finish the record.
            ctx.db.complete_install(row.id).await?;
            r.completed.push(label);
        } else {
            ctx.db
                .fail_install(row.id, "interrupted before the pack was moved into place; the previous state was kept")
                .await?;
            // An environment published just before the kill belongs to no installed version.
            if ctx.db.current(&row.pack_ref, &row.version, &ctx.machine).await?.is_none()
                && let Ok(v) = semver::Version::parse(&row.version)
                && let Ok(Some(aside)) = ctx.envs.take_out_if_present(&row.pack_ref, &v)
            {
                ctx.envs.discard(&aside);
            }
            r.rolled_back.push(label);
        }
    }
    // Not worth failing the command for: the next run tries again.
    match backfill_active(ctx).await {
        Ok(done) => r.activated = done,
        Err(e) => tracing::warn!("choosing active versions for packs installed before attune kept them: {e}"),
    }
    Ok(r)
}
