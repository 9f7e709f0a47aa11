//! Registered registry indexes (`attune index add|list|update|remove`).
//!
//! The registration is shared by every host of the database; the fetched
//! index itself is cached per host (see `registry::admin`). Portable SQL:
//! `$N` placeholders, BIGINT unix milliseconds, TEXT.

use serde::Serialize;
use time::OffsetDateTime;

use super::model::Columns;
use super::model::{now, stored_time, to_unix_ms};
use super::{Db, DbError, on_pool};

/// One registered index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexRow {
    pub id: i64,
    pub name: String,
    /// An http(s) URL or an absolute path.
    pub location: String,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    pub added_by: String,
    /// Facts of the last successful fetch, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched: Option<IndexFetch>,
    /// Set when the index is a TUF repository; `None`: unsigned.
    pub signed: Option<IndexSigned>,
}

/// How a signed index is verified: which target is the index document, and
/// the targets metadata version its last verified fetch trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSigned {
    pub target: String,
    /// 0 before the first verified fetch is recorded.
    pub targets_version: i64,
}

/// What the last successful fetch of an index found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexFetch {
    /// `attune` or `exchange`.
    pub format: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub by: String,
    /// SHA-256 (hex) of the fetched bytes.
    pub sha256: String,
    pub packs: i64,
    pub versions: i64,
}

fn row_to_index(r: &impl Columns) -> Result<IndexRow, DbError> {
    let what = "reading an index";
    let q = || DbError::query(what);
    let ms = |v: i64| stored_time(what, v);
    let fetched_at: Option<i64> = r.col("fetched_at").map_err(q())?;
    let fetched = match fetched_at {
        None => None,
        Some(at) => Some(IndexFetch {
            format: r.col::<Option<String>>("format").map_err(q())?.unwrap_or_default(),
            at: ms(at)?,
            by: r.col::<Option<String>>("fetched_by").map_err(q())?.unwrap_or_default(),
            sha256: r.col::<Option<String>>("content_sha256").map_err(q())?.unwrap_or_default(),
            packs: r.col::<Option<i64>>("pack_count").map_err(q())?.unwrap_or_default(),
            versions: r.col::<Option<i64>>("version_count").map_err(q())?.unwrap_or_default(),
        }),
    };
    let signed = match r.col::<Option<String>>("tuf_target").map_err(q())? {
        None => None,
        Some(target) => Some(IndexSigned {
            target,
            targets_version: r.col::<Option<i64>>("tuf_targets_version").map_err(q())?.unwrap_or_default(),
        }),
    };
    Ok(IndexRow {
        id: r.col("id").map_err(q())?,
        name: r.col("name").map_err(q())?,
        location: r.col("location").map_err(q())?,
        added_at: ms(r.col("added_at").map_err(q())?)?,
        added_by: r.col("added_by").map_err(q())?,
        fetched,
        signed,
    })
}

impl Db {
    /// Registers index `name` at `location` together with its first fetch
    /// (and, for a signed index, its target and trusted targets version).
    /// Fails with [`DbError::Query`] (a unique violation) if the name is taken.
    pub async fn add_index(
        &self,
        name: &str,
        location: &str,
        by: &str,
        fetch: &IndexFetch,
        signed: Option<&IndexSigned>,
    ) -> Result<IndexRow, DbError> {
        on_pool!(self, pool => {
            let what = "adding an index";
            let row = sqlx::query(
                "INSERT INTO indexes (name, location, added_at, added_by,
                                      format, fetched_at, fetched_by, content_sha256, pack_count, version_count,
                                      tuf_target, tuf_targets_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 RETURNING *",
            )
            .bind(name)
            .bind(location)
            .bind(to_unix_ms(now()))
            .bind(by)
            .bind(&fetch.format)
            .bind(to_unix_ms(fetch.at))
            .bind(&fetch.by)
            .bind(&fetch.sha256)
            .bind(fetch.packs)
            .bind(fetch.versions)
            .bind(signed.map(|s| s.target.clone()))
            .bind(signed.map(|s| s.targets_version))
            .fetch_one(pool)
            .await
            .map_err(DbError::query(what))?;
            row_to_index(&row)
        })
    }

    /// Every registered index, in the order they were added.
    pub async fn indexes(&self) -> Result<Vec<IndexRow>, DbError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM indexes ORDER BY id")
                .fetch_all(pool)
                .await
                .map_err(DbError::query("listing indexes"))?;
            rows.iter().map(row_to_index).collect()
        })
    }

    pub async fn index(&self, name: &str) -> Result<Option<IndexRow>, DbError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM indexes WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading an index"))?;
            row.as_ref().map(row_to_index).transpose()
        })
    }

    /// Records a successful fetch of index `name`; `targets_version` is the
    /// trusted targets metadata version of a signed index (kept when `None`).
    pub async fn index_fetched(
        &self,
        name: &str,
        fetch: &IndexFetch,
        targets_version: Option<i64>,
    ) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE indexes SET format = $2, fetched_at = $3, fetched_by = $4, content_sha256 = $5,
                                    pack_count = $6, version_count = $7,
                                    tuf_targets_version = COALESCE($8, tuf_targets_version)
                 WHERE name = $1",
            )
            .bind(name)
            .bind(&fetch.format)
            .bind(to_unix_ms(fetch.at))
            .bind(&fetch.by)
            .bind(&fetch.sha256)
            .bind(fetch.packs)
            .bind(fetch.versions)
            .bind(targets_version)
            .execute(pool)
            .await
            .map_err(DbError::query("recording an index fetch"))?;
            if done.rows_affected() == 0 {
                return Err(DbError::NotFound { what: "index", key: name.to_owned() });
            }
            Ok(())
        })
    }

    /// Unregisters index `name`; returns whether it was registered.
    pub async fn remove_index(&self, name: &str) -> Result<bool, DbError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM indexes WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await
                .map_err(DbError::query("removing an index"))?;
            Ok(done.rows_affected() > 0)
        })
    }
}
