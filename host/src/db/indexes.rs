//! Registered registry indexes (`attune index add|list|update|remove`).
//!
//! The registration is shared by every host of the database; the fetched
//! index itself is cached per host (see `registry::admin`). Portable SQL:
//! `$N` placeholders, BIGINT unix milliseconds, TEXT.

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use super::model::{from_unix_ms, now, to_unix_ms};
use super::{Db, DbError};

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

fn row_to_index(r: &sqlx::sqlite::SqliteRow) -> Result<IndexRow, DbError> {
    let what = "reading an index";
    let q = || DbError::query(what);
    let ms = |v: i64| from_unix_ms(v).map_err(|e| DbError::Query { what, source: sqlx::Error::Decode(e.into()) });
    let fetched_at: Option<i64> = r.try_get("fetched_at").map_err(q())?;
    let fetched = match fetched_at {
        None => None,
        Some(at) => Some(IndexFetch {
            format: r.try_get::<Option<String>, _>("format").map_err(q())?.unwrap_or_default(),
            at: ms(at)?,
            by: r.try_get::<Option<String>, _>("fetched_by").map_err(q())?.unwrap_or_default(),
            sha256: r.try_get::<Option<String>, _>("content_sha256").map_err(q())?.unwrap_or_default(),
            packs: r.try_get::<Option<i64>, _>("pack_count").map_err(q())?.unwrap_or_default(),
            versions: r.try_get::<Option<i64>, _>("version_count").map_err(q())?.unwrap_or_default(),
        }),
    };
    Ok(IndexRow {
        id: r.try_get("id").map_err(q())?,
        name: r.try_get("name").map_err(q())?,
        location: r.try_get("location").map_err(q())?,
        added_at: ms(r.try_get("added_at").map_err(q())?)?,
        added_by: r.try_get("added_by").map_err(q())?,
        fetched,
    })
}

impl Db {
    /// Registers index `name` at `location` together with its first fetch.
    /// Fails with [`DbError::Query`] (a unique violation) if the name is taken.
    pub async fn add_index(
        &self,
        name: &str,
        location: &str,
        by: &str,
        fetch: &IndexFetch,
    ) -> Result<IndexRow, DbError> {
        let what = "adding an index";
        let row = sqlx::query(
            "INSERT INTO indexes (name, location, added_at, added_by,
                                  format, fetched_at, fetched_by, content_sha256, pack_count, version_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
        .fetch_one(&self.pool)
        .await
        .map_err(DbError::query(what))?;
        row_to_index(&row)
    }

    /// Every registered index, in the order they were added.
    pub async fn indexes(&self) -> Result<Vec<IndexRow>, DbError> {
        let rows = sqlx::query("SELECT * FROM indexes ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(DbError::query("listing indexes"))?;
        rows.iter().map(row_to_index).collect()
    }

    pub async fn index(&self, name: &str) -> Result<Option<IndexRow>, DbError> {
        let row = sqlx::query("SELECT * FROM indexes WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(DbError::query("reading an index"))?;
        row.as_ref().map(row_to_index).transpose()
    }

    /// Records a successful fetch of index `name`.
    pub async fn index_fetched(&self, name: &str, fetch: &IndexFetch) -> Result<(), DbError> {
        let done = sqlx::query(
            "UPDATE indexes SET format = $2, fetched_at = $3, fetched_by = $4, content_sha256 = $5,
                                pack_count = $6, version_count = $7
             WHERE name = $1",
        )
        .bind(name)
        .bind(&fetch.format)
        .bind(to_unix_ms(fetch.at))
        .bind(&fetch.by)
        .bind(&fetch.sha256)
        .bind(fetch.packs)
        .bind(fetch.versions)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("recording an index fetch"))?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound { what: "index", key: name.to_owned() });
        }
        Ok(())
    }

    /// Unregisters index `name`; returns whether it was registered.
    pub async fn remove_index(&self, name: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM indexes WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(DbError::query("removing an index"))?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(sha: &str, packs: i64) -> IndexFetch {
        IndexFetch {
            format: "attune".into(),
            at: now(),
            by: "tester".into(),
            sha256: sha.into(),
            packs,
            versions: packs * 2,
        }
    }

    #[tokio::test]
    async fn add_list_update_remove() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        assert!(db.indexes().await.unwrap().is_empty());
        let a = db.add_index("main", "https://example.com/index.json", "tester", &fetch("aa", 3)).await.unwrap();
        assert_eq!((a.name.as_str(), a.added_by.as_str()), ("main", "tester"));
        assert_eq!(a.fetched, Some(fetch("aa", 3)).map(|f| IndexFetch { at: a.fetched.as_ref().unwrap().at, ..f }));
        db.add_index("local", "/srv/index.json", "tester", &fetch("bb", 1)).await.unwrap();
        // Names are unique.
        assert!(db.add_index("main", "/other.json", "tester", &fetch("cc", 1)).await.is_err());

        let names: Vec<String> = db.indexes().await.unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["main", "local"], "in the order added");

        db.index_fetched("local", &fetch("dd", 7)).await.unwrap();
        let local = db.index("local").await.unwrap().unwrap();
        assert_eq!(local.fetched.as_ref().map(|f| (f.sha256.as_str(), f.packs, f.versions)), Some(("dd", 7, 14)));
        assert!(matches!(db.index_fetched("nope", &fetch("ee", 1)).await, Err(DbError::NotFound { .. })));

        assert!(db.remove_index("main").await.unwrap());
        assert!(!db.remove_index("main").await.unwrap());
        assert!(db.index("main").await.unwrap().is_none());
        assert_eq!(db.indexes().await.unwrap().len(), 1);
    }
}
