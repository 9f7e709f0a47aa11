//! Serializes changes to one pack on one host across processes, in the database.
//!
//! On SQLite the store's file lock already does this (every process of a host
//! shares its packs folder), so the lock here is empty. On PostgreSQL several
//! hosts, or several packs folders, share one database: a session-level
//! advisory lock keyed by host and ref makes two processes installing the same
//! pack on the same host take turns, whatever folders they use, and the server
//! drops it by itself if the holder dies.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::{Db, DbError, Pool};

/// Held while a pack is being changed; [`PackLock::release`] it when done.
/// Dropping it without releasing closes its connection, which also frees the lock.
#[must_use = "the lock is released when this is dropped"]
pub struct PackLock {
    held: Option<(PoolConnection<Postgres>, String)>,
}

impl std::fmt::Debug for PackLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackLock").field("key", &self.held.as_ref().map(|(_, k)| k)).finish()
    }
}

/// One 64-bit advisory-lock key per (host, ref), hashed by the server so
/// every attune version and host computes the same key.
const LOCK_SQL: &str = "SELECT pg_advisory_lock(hashtextextended($1, 0))";
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";

impl Db {
    /// Locks `pack_ref` on `host`, calling `on_wait` once if another process
    /// holds it and this call has to wait.
    pub async fn lock_pack(&self, host: &str, pack_ref: &str, on_wait: impl FnOnce()) -> Result<PackLock, DbError> {
        self.take_pack_lock(host, pack_ref, Some(on_wait)).await.map(|l| l.expect("a waiting lock is always taken"))
    }

    /// Locks `pack_ref` on `host` if nobody holds it: `None` means a live
    /// process is changing it (start-up repair must leave its row alone).
    pub async fn try_lock_pack(&self, host: &str, pack_ref: &str) -> Result<Option<PackLock>, DbError> {
        self.take_pack_lock(host, pack_ref, None::<fn()>).await
    }

    async fn take_pack_lock(
        &self,
        host: &str,
        pack_ref: &str,
        wait: Option<impl FnOnce()>,
    ) -> Result<Option<PackLock>, DbError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(PackLock { held: None }));
        };
        let what = "locking a pack";
        let key = format!("attune:pack:{host}:{pack_ref}");
        let mut conn = pool.acquire().await.map_err(DbError::query(what))?;
        let got: bool =
            sqlx::query_scalar(TRY_LOCK_SQL).bind(&key).fetch_one(&mut *conn).await.map_err(DbError::query(what))?;
        if !got {
            let Some(on_wait) = wait else { return Ok(None) };
            on_wait();
            sqlx::query(LOCK_SQL).bind(&key).execute(&mut *conn).await.map_err(DbError::query(what))?;
        }
        Ok(Some(PackLock { held: Some((conn, key)) }))
    }
}

impl PackLock {
    /// Frees the lock and returns its connection to the pool.
    pub async fn release(mut self) {
        if let Some((mut conn, key)) = self.held.take() {
            // On failure the connection is closed instead, which frees the lock too.
            if sqlx::query(UNLOCK_SQL).bind(&key).execute(&mut *conn).await.is_err() {
                drop(conn.detach());
            }
        }
    }
}

impl Drop for PackLock {
    fn drop(&mut self) {
        // Not returned to the pool: a pooled connection would keep the lock.
        if let Some((conn, _)) = self.held.take() {
            drop(conn.detach());
        }
    }
}
