//! The start-up check, run when a command opens its context: leftovers of
//! killed runs are removed, interrupted installs are finished or marked
//! failed, and packs installed before active versions existed get one, so
//! disk and database never disagree silently.

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

/// Packs with installed versions but no activation record at all were
/// installed before active versions existed (migration 0005): their
/// highest version becomes active, once, recorded as `backfill`. Packs
/// another process is changing are left for a later run.
async fn backfill_active(ctx: &Context) -> Result<Vec<String>, Error> {
    let known: std::collections::BTreeSet<String> =
        ctx.db.activations(&ctx.machine).await?.into_iter().map(|a| a.pack_ref).collect();
    let mut highest: std::collections::BTreeMap<String, semver::Version> = Default::default();
    for row in ctx.db.installed(&ctx.machine).await? {
        if known.contains(&row.pack_ref) {
            continue;
        }
        if let Ok(v) = semver::Version::parse(&row.version) {
            let e = highest.entry(row.pack_ref).or_insert_with(|| v.clone());
            if v > *e {
                *e = v;
            }
        }
    }
    let mut done = Vec::new();
    for (pack_ref, version) in highest {
        let Some(switches) = ctx.try_lock_pack(&format!("{pack_ref}.switch")).await? else { continue };
        let Some(lock) = ctx.try_lock_pack(&pack_ref).await? else { continue };
        // Checked again under the locks: another process may have just done it.
        if ctx.db.activation(&ctx.machine, &pack_ref).await?.is_none()
            && ctx.store.pack_dir(&pack_ref, &version).is_dir()
        {
            crate::activation::activate_locked(ctx, &pack_ref, &version, "backfill").await?;
            done.push(format!("{pack_ref}@{version}"));
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
                && let Ok(Some(aside)) = crate::environments::take_out(ctx, &row.pack_ref, &v)
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
