//! API bearer tokens (`attune token …`, checked by `attune serve`).
//!
//! Why it exists: the API must know who is calling and what they may do, and
//! the audit trail must say which token installed or removed a pack. Only the
//! SHA-256 of a token's secret is stored; the token is found by its public id
//! (see `crate::api::auth`). Rows are never deleted: revoking stamps them, so
//! the names in `installations.api_token` stay explainable.
//!
//! Portable SQL only (`$N`, BIGINT unix ms, TEXT), so the PostgreSQL port is
//! the same text.

use super::model::Columns;
use serde::Serialize;
use time::OffsetDateTime;

use super::model::{now, stored_time as ms, to_unix_ms};
use super::{Db, DbError, on_pool};

/// What `token create` records.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: String,
    pub public_id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// `read`, `install` or `admin`.
    pub scope: String,
    pub created_by: String,
    pub expires_at: Option<OffsetDateTime>,
}

/// A stored token (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub public_id: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

fn opt_ms(what: &'static str, v: Option<i64>) -> Result<Option<OffsetDateTime>, DbError> {
    v.map(|v| ms(what, v)).transpose()
}

fn row_to_token(r: &impl Columns) -> Result<ApiToken, DbError> {
    let what = "reading an API token";
    let q = || DbError::query(what);
    Ok(ApiToken {
        id: r.col("id").map_err(q())?,
        name: r.col("name").map_err(q())?,
        public_id: r.col("public_id").map_err(q())?,
        secret_sha256: r.col("secret_sha256").map_err(q())?,
        scope: r.col("scope").map_err(q())?,
        created_at: ms(what, r.col("created_at").map_err(q())?)?,
        created_by: r.col("created_by").map_err(q())?,
        expires_at: opt_ms(what, r.col("expires_at").map_err(q())?)?,
        revoked_at: opt_ms(what, r.col("revoked_at").map_err(q())?)?,
        revoked_by: r.col("revoked_by").map_err(q())?,
        last_used_at: opt_ms(what, r.col("last_used_at").map_err(q())?)?,
    })
}

impl Db {
    /// Records a new token. Returns `Ok(None)` when a live token already has
    /// this name (the unique index decides, so two processes cannot both win).
    pub async fn create_token(&self, t: &NewApiToken) -> Result<Option<ApiToken>, DbError> {
        on_pool!(self, pool => {
            let what = "creating an API token";
            let row = sqlx::query(
                "INSERT INTO api_tokens (name, public_id, secret_sha256, scope, created_at, created_by, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT DO NOTHING
                 RETURNING *",
            )
            .bind(&t.name)
            .bind(&t.public_id)
            .bind(&t.secret_sha256)
            .bind(&t.scope)
            .bind(to_unix_ms(now()))
            .bind(&t.created_by)
            .bind(t.expires_at.map(to_unix_ms))
            .fetch_optional(pool)
            .await
            .map_err(DbError::query(what))?;
            row.as_ref().map(row_to_token).transpose()
        })
    }

    /// The token with this public id, revoked or not (the caller decides).
    pub async fn token_by_public_id(&self, public_id: &str) -> Result<Option<ApiToken>, DbError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM api_tokens WHERE public_id = $1")
                .bind(public_id)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("looking up an API token"))?;
            row.as_ref().map(row_to_token).transpose()
        })
    }

    /// Every token, oldest first; revoked ones only with `include_revoked`.
    pub async fn tokens(&self, include_revoked: bool) -> Result<Vec<ApiToken>, DbError> {
        on_pool!(self, pool => {
            let sql = if include_revoked {
                "SELECT * FROM api_tokens ORDER BY id"
            } else {
                "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY id"
            };
            let rows = sqlx::query(sql).fetch_all(pool).await.map_err(DbError::query("listing API tokens"))?;
            rows.iter().map(row_to_token).collect()
        })
    }

    /// Revokes the live token called `name`. Returns whether there was one.
    pub async fn revoke_token(&self, name: &str, by: &str) -> Result<bool, DbError> {
        on_pool!(self, pool => {
            let n = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE name = $3 AND revoked_at IS NULL",
            )
            .bind(to_unix_ms(now()))
            .bind(by)
            .bind(name)
            .execute(pool)
            .await
            .map_err(DbError::query("revoking an API token"))?
            .rows_affected();
            Ok(n > 0)
        })
    }

    /// Stamps when token `id` was last accepted.
    pub async fn touch_token(&self, id: i64) -> Result<(), DbError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(to_unix_ms(now()))
                .bind(id)
                .execute(pool)
                .await
                .map_err(DbError::query("recording an API token's use"))?;
            Ok(())
        })
    }
}
