//! Added plugins, their content-addressed wasm, and the grants operators made.

use serde::Serialize;
use sqlx::Row;

use super::model::Columns;
use time::OffsetDateTime;

use super::model::{now, stored_time as ms, to_unix_ms};
use super::{BeginWrite, Db, DbError, on_pool};

/// A plugin as recorded when it was added.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRow {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub summary: String,
    pub sha256: String,
    pub schemes: Vec<String>,
    /// As the plugin asked, e.g. `outbound-host:*.example.com`.
    pub capabilities: Vec<String>,
    pub added_from: String,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    pub added_by: String,
}

/// One capability an operator granted (and maybe revoked).
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub id: i64,
    pub plugin: String,
    pub capability: String,
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
    pub granted_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<String>,
}

fn row_to_plugin(r: &impl Columns) -> Result<PluginRow, DbError> {
    let what = "reading a plugin";
    let q = DbError::query(what);
    let json = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(PluginRow {
        name: r.col("name").map_err(DbError::query(what))?,
        version: r.col("version").map_err(DbError::query(what))?,
        wit_version: r.col("wit_version").map_err(DbError::query(what))?,
        summary: r.col("summary").map_err(DbError::query(what))?,
        sha256: r.col("sha256").map_err(DbError::query(what))?,
        schemes: json(r.col("schemes_json").map_err(DbError::query(what))?),
        capabilities: json(r.col("capabilities_json").map_err(DbError::query(what))?),
        added_from: r.col("added_from").map_err(DbError::query(what))?,
        added_at: ms(what, r.col("added_at").map_err(DbError::query(what))?)?,
        added_by: r.col("added_by").map_err(q)?,
    })
}

impl Db {
    /// Records a plugin and its wasm. Fails if the name is taken.
    pub async fn add_plugin(&self, p: &PluginRow, wasm: &[u8]) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let what = "adding a plugin";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;
            sqlx::query("INSERT INTO plugin_blobs (sha256, wasm) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING")
                .bind(&p.sha256)
                .bind(wasm)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what))?;
            sqlx::query(
                "INSERT INTO plugins (name, version, wit_version, summary, sha256, schemes_json, capabilities_json,
                                      added_from, added_at, added_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&p.name)
            .bind(&p.version)
            .bind(&p.wit_version)
            .bind(&p.summary)
            .bind(&p.sha256)
            .bind(serde_json::to_string(&p.schemes).expect("strings serialize"))
            .bind(serde_json::to_string(&p.capabilities).expect("strings serialize"))
            .bind(&p.added_from)
            .bind(to_unix_ms(p.added_at))
            .bind(&p.added_by)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            tx.commit().await.map_err(DbError::query(what))
        })
    }

    pub async fn plugins(&self) -> Result<Vec<PluginRow>, DbError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM plugins ORDER BY name")
                .fetch_all(pool)
                .await
                .map_err(DbError::query("listing plugins"))?;
            rows.iter().map(row_to_plugin).collect()
        })
    }

    pub async fn plugin(&self, name: &str) -> Result<Option<PluginRow>, DbError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM plugins WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading a plugin"))?;
            row.as_ref().map(row_to_plugin).transpose()
        })
    }

    pub async fn plugin_wasm(&self, sha256: &str) -> Result<Option<Vec<u8>>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_scalar("SELECT wasm FROM plugin_blobs WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading a plugin's wasm"))
        })
    }

    /// Removes a plugin and revokes its grants (they stay as history).
    pub async fn remove_plugin(&self, name: &str, by: &str) -> Result<bool, DbError> {
        on_pool!(self, pool => {
            let what = "removing a plugin";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;
            let gone = sqlx::query("DELETE FROM plugins WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what))?
                .rows_affected();
            sqlx::query(
                "UPDATE plugin_grants SET revoked_at = $1, revoked_by = $2 WHERE plugin = $3 AND revoked_at IS NULL",
            )
            .bind(to_unix_ms(now()))
            .bind(by)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            tx.commit().await.map_err(DbError::query(what))?;
            Ok(gone > 0)
        })
    }

    /// Grants `capability` unless a live grant of it exists. Returns whether it was new.
    pub async fn grant(&self, plugin: &str, capability: &str, by: &str) -> Result<bool, DbError> {
        on_pool!(self, pool => {
            if self.grants(plugin, false).await?.iter().any(|g| g.capability == capability) {
                return Ok(false);
            }
            sqlx::query("INSERT INTO plugin_grants (plugin, capability, granted_at, granted_by) VALUES ($1, $2, $3, $4)")
                .bind(plugin)
                .bind(capability)
                .bind(to_unix_ms(now()))
                .bind(by)
                .execute(pool)
                .await
                .map_err(DbError::query("granting a capability"))?;
            Ok(true)
        })
    }

    /// Revokes a live grant. Returns whether there was one.
    pub async fn revoke(&self, plugin: &str, capability: &str, by: &str) -> Result<bool, DbError> {
        on_pool!(self, pool => {
            let n = sqlx::query(
                "UPDATE plugin_grants SET revoked_at = $1, revoked_by = $2
                 WHERE plugin = $3 AND capability = $4 AND revoked_at IS NULL",
            )
            .bind(to_unix_ms(now()))
            .bind(by)
            .bind(plugin)
            .bind(capability)
            .execute(pool)
            .await
            .map_err(DbError::query("revoking a capability"))?
            .rows_affected();
            Ok(n > 0)
        })
    }

    /// Grants of `plugin`, live ones only unless `history`.
    pub async fn grants(&self, plugin: &str, history: bool) -> Result<Vec<Grant>, DbError> {
        on_pool!(self, pool => {
            let sql = if history {
                "SELECT * FROM plugin_grants WHERE plugin = $1 ORDER BY id"
            } else {
                "SELECT * FROM plugin_grants WHERE plugin = $1 AND revoked_at IS NULL ORDER BY id"
            };
            let what = "listing grants";
            let rows = sqlx::query(sql).bind(plugin).fetch_all(pool).await.map_err(DbError::query(what))?;
            rows.iter()
                .map(|r| {
                    Ok(Grant {
                        id: r.try_get("id").map_err(DbError::query(what))?,
                        plugin: r.try_get("plugin").map_err(DbError::query(what))?,
                        capability: r.try_get("capability").map_err(DbError::query(what))?,
                        granted_at: ms(what, r.try_get("granted_at").map_err(DbError::query(what))?)?,
                        granted_by: r.try_get("granted_by").map_err(DbError::query(what))?,
                        revoked_at: r
                            .try_get::<Option<i64>, _>("revoked_at")
                            .map_err(DbError::query(what))?
                            .map(|v| ms(what, v))
                            .transpose()?,
                        revoked_by: r.try_get("revoked_by").map_err(DbError::query(what))?,
                    })
                })
                .collect()
        })
    }
}
