//! Active versions (`attune activate|upgrade|rollback`): which of a pack's
//! installed versions is the one in use on a host.
//!
//! Every switch is a new row of `activations`, never an update, so the table
//! is also the audit trail of switches: the newest row per (host, pack_ref)
//! is the current state, and its `previous_version` is where `rollback` goes.
//! Portable SQL: `$N` placeholders, BIGINT unix milliseconds, TEXT.

use serde::Serialize;
use time::OffsetDateTime;

use super::model::Columns;
use super::model::{now, stored_time, to_unix_ms};
use super::{BeginWrite, Db, DbError, on_pool};

/// One switch of a pack's active version on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    pub id: i64,
    pub host: String,
    #[serde(rename = "ref")]
    pub pack_ref: String,
    /// `None`: the pack was left without an active version.
    pub version: Option<String>,
    /// What was active before this switch.
    pub previous_version: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub activated_at: OffsetDateTime,
    pub activated_by: String,
    /// `install`, `activate`, `upgrade`, `rollback`, `upgrade-rollback` or `uninstall`.
    pub reason: String,
}

fn row_to_activation(r: &impl Columns) -> Result<Activation, DbError> {
    let what = "reading an activation";
    let q = || DbError::query(what);
    let at: i64 = r.col("activated_at").map_err(q())?;
    Ok(Activation {
        id: r.col("id").map_err(q())?,
        host: r.col("host").map_err(q())?,
        pack_ref: r.col("pack_ref").map_err(q())?,
        version: r.col("version").map_err(q())?,
        previous_version: r.col("previous_version").map_err(q())?,
        activated_at: stored_time(what, at)?,
        activated_by: r.col("activated_by").map_err(q())?,
        reason: r.col("reason").map_err(q())?,
    })
}

impl Db {
    /// Records that `version` (`None`: nothing) is now the active version of
    /// `pack_ref` on `host`; the previous active version is read in the same
    /// transaction and stored with it. Returns the new row.
    pub async fn record_activation(
        &self,
        host: &str,
        pack_ref: &str,
        version: Option<&str>,
        by: &str,
        reason: &str,
    ) -> Result<Activation, DbError> {
        on_pool!(self, pool => {
            let what = "recording an activation";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;
            let previous: Option<(Option<String>,)> = sqlx::query_as(
                "SELECT version FROM activations WHERE host = $1 AND pack_ref = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(host)
            .bind(pack_ref)
            .fetch_optional(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            let row = sqlx::query(
                "INSERT INTO activations (host, pack_ref, version, previous_version, activated_at, activated_by, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 RETURNING *",
            )
            .bind(host)
            .bind(pack_ref)
            .bind(version)
            .bind(previous.and_then(|p| p.0))
            .bind(to_unix_ms(now()))
            .bind(by)
            .bind(reason)
            .fetch_one(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            let activation = row_to_activation(&row)?;
            // Whatever install was owed an activation of this pack has it now.
            sqlx::query("DELETE FROM pending_activations WHERE host = $1 AND pack_ref = $2")
                .bind(host)
                .bind(pack_ref)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what))?;
            tx.commit().await.map_err(DbError::query(what))?;
            Ok(activation)
        })
    }

    /// The newest activation of `pack_ref` on `host` (its `version` is the
    /// active one), or `None` if it was never activated there.
    pub async fn activation(&self, host: &str, pack_ref: &str) -> Result<Option<Activation>, DbError> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT * FROM activations WHERE host = $1 AND pack_ref = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(host)
            .bind(pack_ref)
            .fetch_optional(pool)
            .await
            .map_err(DbError::query("reading the active version"))?;
            row.as_ref().map(row_to_activation).transpose()
        })
    }

    /// The active version of `pack_ref` on `host`, if it has one.
    pub async fn active_version(&self, host: &str, pack_ref: &str) -> Result<Option<String>, DbError> {
        Ok(self.activation(host, pack_ref).await?.and_then(|a| a.version))
    }

    /// Every switch of `pack_ref` on `host`, newest first.
    pub async fn activation_history(&self, host: &str, pack_ref: &str) -> Result<Vec<Activation>, DbError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM activations WHERE host = $1 AND pack_ref = $2 ORDER BY id DESC")
                .bind(host)
                .bind(pack_ref)
                .fetch_all(pool)
                .await
                .map_err(DbError::query("reading the activation history"))?;
            rows.iter().map(row_to_activation).collect()
        })
    }

    /// Packs on `host` whose install was recorded before any activation of
    /// them (migration 0008): normally none, as the install activates its
    /// first version right after; one left over means that install was
    /// killed in between. By ref, read from the table's primary key.
    pub async fn pending_activations(&self, host: &str) -> Result<Vec<String>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_scalar("SELECT pack_ref FROM pending_activations WHERE host = $1 ORDER BY pack_ref")
                .bind(host)
                .fetch_all(pool)
                .await
                .map_err(DbError::query("listing packs owed an active version"))
        })
    }

    /// Drops `pack_ref` from [`Db::pending_activations`] of `host` without
    /// activating anything (it has no installed version left, or was
    /// activated already).
    pub async fn forget_pending_activation(&self, host: &str, pack_ref: &str) -> Result<(), DbError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM pending_activations WHERE host = $1 AND pack_ref = $2")
                .bind(host)
                .bind(pack_ref)
                .execute(pool)
                .await
                .map_err(DbError::query("forgetting a pack owed an active version"))?;
            Ok(())
        })
    }

    /// The newest activation of every pack on `host` (including those left
    /// with no active version), ordered by ref.
    pub async fn activations(&self, host: &str) -> Result<Vec<Activation>, DbError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT a.* FROM activations a
                 WHERE a.host = $1
                   AND a.id = (SELECT MAX(b.id) FROM activations b WHERE b.host = a.host AND b.pack_ref = a.pack_ref)
                 ORDER BY a.pack_ref",
            )
            .bind(host)
            .fetch_all(pool)
            .await
            .map_err(DbError::query("listing active versions"))?;
            rows.iter().map(row_to_activation).collect()
        })
    }
}
