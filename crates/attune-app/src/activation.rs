//! The active version of a pack: which of its installed versions the host
//! runs. Recorded twice on purpose: in the database (`activations`, one row
//! per switch, newest wins: the audit trail, where `rollback` looks) and on
//! disk as the link `{packs_dir}/{ref}` → `{ref}-{version}` (what the
//! automation that runs the packs follows), and `{envs_dir}/{ref}` to the
//! same version's environment. The one place that changes both,
//! used by install (a first version becomes active), uninstall, upgrade,
//! `activate`/`rollback` and the start-up backfill.

use crate::context::Context;
use crate::db::Activation;
use crate::{Error, UpgradeError};

/// Makes `version` the active version of `pack_ref`, with the pack lock held
/// by the caller: the link first, then the record; if the record fails, the
/// link is pointed back.
pub async fn activate_locked(
    ctx: &Context,
    pack_ref: &str,
    version: &semver::Version,
    reason: &str,
) -> Result<Activation, Error> {
    let v = version.to_string();
    if ctx.db.current(pack_ref, &v, &ctx.machine).await?.is_none() {
        return Err(not_installed(ctx, pack_ref, &v).await);
    }
    let previous = ctx.db.active_version(&ctx.machine, pack_ref).await?;
    ctx.store.set_active(pack_ref, version)?;
    crate::environments::link(ctx, pack_ref, Some(version))?;
    match ctx.db.record_activation(&ctx.machine, pack_ref, Some(&v), &ctx.user, reason).await {
        Ok(a) => Ok(a),
        Err(e) => {
            match previous.as_deref().map(semver::Version::parse) {
                Some(Ok(p)) => {
                    ctx.store.set_active(pack_ref, &p)?;
                    crate::environments::link(ctx, pack_ref, Some(&p))?;
                }
                _ => {
                    ctx.store.clear_active(pack_ref)?;
                    crate::environments::link(ctx, pack_ref, None)?;
                }
            }
            Err(e.into())
        }
    }
}

/// Leaves `pack_ref` with no active version (its active one was uninstalled),
/// with the pack lock held by the caller.
pub async fn deactivate_locked(ctx: &Context, pack_ref: &str, reason: &str) -> Result<(), Error> {
    ctx.db.record_activation(&ctx.machine, pack_ref, None, &ctx.user, reason).await?;
    ctx.store.clear_active(pack_ref)?;
    crate::environments::link(ctx, pack_ref, None)?;
    Ok(())
}

pub(crate) async fn not_installed(ctx: &Context, pack_ref: &str, version: &str) -> Error {
    let installed = match ctx.db.installed_of(pack_ref, &ctx.machine).await {
        Ok(rows) => rows.into_iter().map(|i| i.version).collect(),
        Err(e) => return e.into(),
    };
    UpgradeError::NotInstalled { pack_ref: pack_ref.into(), version: version.into(), installed }.into()
}
