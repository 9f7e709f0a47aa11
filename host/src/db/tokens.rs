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

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use super::model::{from_unix_ms, now, to_unix_ms};
use super::{Db, DbError};

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

fn ms(what: &'static str, v: i64) -> Result<OffsetDateTime, DbError> {
    from_unix_ms(v).map_err(|e| DbError::Query { what, source: sqlx::Error::Decode(e.into()) })
}

fn opt_ms(what: &'static str, v: Option<i64>) -> Result<Option<OffsetDateTime>, DbError> {
    v.map(|v| ms(what, v)).transpose()
}

fn row_to_token(r: &sqlx::sqlite::SqliteRow) -> Result<ApiToken, DbError> {
    let what = "reading an API token";
    let q = || DbError::query(what);
    Ok(ApiToken {
        id: r.try_get("id").map_err(q())?,
        name: r.try_get("name").map_err(q())?,
        public_id: r.try_get("public_id").map_err(q())?,
        secret_sha256: r.try_get("secret_sha256").map_err(q())?,
        scope: r.try_get("scope").map_err(q())?,
        created_at: ms(what, r.try_get("created_at").map_err(q())?)?,
        created_by: r.try_get("created_by").map_err(q())?,
        expires_at: opt_ms(what, r.try_get("expires_at").map_err(q())?)?,
        revoked_at: opt_ms(what, r.try_get("revoked_at").map_err(q())?)?,
        revoked_by: r.try_get("revoked_by").map_err(q())?,
        last_used_at: opt_ms(what, r.try_get("last_used_at").map_err(q())?)?,
    })
}

impl Db {
    /// Records a new token. Returns `Ok(None)` when a live token already has
    /// this name (the unique index decides, so two processes cannot both win).
    pub async fn create_token(&self, t: &NewApiToken) -> Result<Option<ApiToken>, DbError> {
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
        .fetch_optional(&self.pool)
        .await
        .map_err(DbError::query(what))?;
        row.as_ref().map(row_to_token).transpose()
    }

    /// The token with this public id, revoked or not (the caller decides).
    pub async fn token_by_public_id(&self, public_id: &str) -> Result<Option<ApiToken>, DbError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE public_id = $1")
            .bind(public_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(DbError::query("looking up an API token"))?;
        row.as_ref().map(row_to_token).transpose()
    }

    /// Every token, oldest first; revoked ones only with `include_revoked`.
    pub async fn tokens(&self, include_revoked: bool) -> Result<Vec<ApiToken>, DbError> {
        let sql = if include_revoked {
            "SELECT * FROM api_tokens ORDER BY id"
        } else {
            "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY id"
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await.map_err(DbError::query("listing API tokens"))?;
        rows.iter().map(row_to_token).collect()
    }

    /// Revokes the live token called `name`. Returns whether there was one.
    pub async fn revoke_token(&self, name: &str, by: &str) -> Result<bool, DbError> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE name = $3 AND revoked_at IS NULL",
        )
        .bind(to_unix_ms(now()))
        .bind(by)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("revoking an API token"))?
        .rows_affected();
        Ok(n > 0)
    }

    /// Stamps when token `id` was last accepted.
    pub async fn touch_token(&self, id: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(to_unix_ms(now()))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(DbError::query("recording an API token's use"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, public_id: &str) -> NewApiToken {
        NewApiToken {
            name: name.into(),
            public_id: public_id.into(),
            secret_sha256: "ab".repeat(32),
            scope: "install".into(),
            created_by: "alice".into(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn create_lookup_revoke_reuse_name() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let t = db.create_token(&new("ci", "p1")).await.unwrap().unwrap();
        assert_eq!((t.name.as_str(), t.scope.as_str(), t.revoked_at), ("ci", "install", None));
        assert!(db.create_token(&new("ci", "p2")).await.unwrap().is_none(), "one live token per name");
        assert_eq!(db.token_by_public_id("p1").await.unwrap().unwrap().id, t.id);
        db.touch_token(t.id).await.unwrap();
        assert!(db.token_by_public_id("p1").await.unwrap().unwrap().last_used_at.is_some());
        assert!(db.revoke_token("ci", "bob").await.unwrap());
        assert!(!db.revoke_token("ci", "bob").await.unwrap());
        assert!(db.tokens(false).await.unwrap().is_empty());
        let again = db.create_token(&new("ci", "p3")).await.unwrap().unwrap();
        assert_ne!(again.id, t.id);
        let all = db.tokens(true).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].revoked_by.as_deref(), Some("bob"));
    }
}
