//! `attune serve` jobs, durable and shared.
//!
//! Why it exists: a job kept only in a server's memory is lost when it
//! restarts, and is invisible to another replica in front of the same
//! database. Here every job is a row: replicas claim queued rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two never take the same
//! one; SQLite serializes writers anyway), say they are still running them
//! (`heartbeat_at`), and any replica marks a job whose runner went silent
//! `interrupted`. Portable SQL except the claim.

use super::model::{Columns, now, to_unix_ms};
use super::{Db, DbError, Pool, on_pool};

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub source: String,
    pub work: String,
    pub token: String,
    pub accepted_by: String,
    pub pinned: bool,
    pub claimed_by: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub events: String,
}

fn row_to_job(r: &impl Columns) -> Result<JobRow, DbError> {
    let q = || DbError::query("reading a job");
    Ok(JobRow {
        id: r.col("id").map_err(q())?,
        kind: r.col("kind").map_err(q())?,
        state: r.col("state").map_err(q())?,
        source: r.col("source").map_err(q())?,
        work: r.col("work").map_err(q())?,
        token: r.col("token").map_err(q())?,
        accepted_by: r.col("accepted_by").map_err(q())?,
        pinned: r.col::<i64>("pinned").map_err(q())? != 0,
        claimed_by: r.col("claimed_by").map_err(q())?,
        created_at: r.col("created_at").map_err(q())?,
        started_at: r.col("started_at").map_err(q())?,
        finished_at: r.col("finished_at").map_err(q())?,
        result: r.col("result").map_err(q())?,
        error: r.col("error").map_err(q())?,
        events: r.col("events").map_err(q())?,
    })
}

impl JobRow {
    /// Now, as the table stores times (unix ms).
    pub fn now_ms() -> i64 {
        to_unix_ms(now())
    }
}

/// Finished jobs kept; older ones are deleted as new ones finish.
const KEEP_FINISHED: i64 = 1000;

impl Db {
    /// Queues a job, unless `capacity` jobs are already queued or running
    /// (on every replica). Returns whether it was queued.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_job(
        &self,
        id: &str,
        kind: &str,
        source: &str,
        work: &str,
        token: &str,
        accepted_by: &str,
        pinned: bool,
        capacity: i64,
        events: &str,
    ) -> Result<bool, DbError> {
        let at = to_unix_ms(now());
        on_pool!(self, pool => {
            let n = sqlx::query(
                "INSERT INTO jobs (id, kind, state, source, work, token, accepted_by, pinned, heartbeat_at, created_at, events)
                 SELECT $1, $2, 'queued', $3, $4, $5, $6, $7, $8, $8, $9
                 WHERE (SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')) < $10",
            )
            .bind(id)
            .bind(kind)
            .bind(source)
            .bind(work)
            .bind(token)
            .bind(accepted_by)
            .bind(i64::from(pinned))
            .bind(at)
            .bind(events)
            .bind(capacity)
            .execute(pool)
            .await
            .map_err(DbError::query("queueing a job"))?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Takes the oldest queued job this replica may run (unpinned, or
    /// pinned to it) and marks it running by `me`.
    pub async fn claim_job(&self, me: &str) -> Result<Option<JobRow>, DbError> {
        let at = to_unix_ms(now());
        let what = "claiming a job";
        let row = match &self.pool {
            // One writer at a time: the sub-select and the update are one step.
            Pool::Sqlite(pool) => sqlx::query(
                "UPDATE jobs SET state = 'running', claimed_by = $1, started_at = $2, heartbeat_at = $2
                 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND (pinned = 0 OR accepted_by = $1)
                             ORDER BY created_at, id LIMIT 1)
                 RETURNING *",
            )
            .bind(me)
            .bind(at)
            .fetch_optional(pool)
            .await
            .map_err(DbError::query(what))?
            .as_ref()
            .map(row_to_job)
            .transpose()?,
            // Replicas skip rows another is claiming instead of waiting on them.
            Pool::Postgres(pool) => sqlx::query(
                "UPDATE jobs SET state = 'running', claimed_by = $1, started_at = $2, heartbeat_at = $2
                 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND (pinned = 0 OR accepted_by = $1)
                             ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                   AND state = 'queued'
                 RETURNING *",
            )
            .bind(me)
            .bind(at)
            .fetch_optional(pool)
            .await
            .map_err(DbError::query(what))?
            .as_ref()
            .map(row_to_job)
            .transpose()?,
        };
        Ok(row)
    }

    /// Says `me` is alive: for the jobs it runs, and the pinned ones it holds.
    pub async fn heartbeat_jobs(&self, me: &str) -> Result<(), DbError> {
        let at = to_unix_ms(now());
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET heartbeat_at = $1
                 WHERE (state = 'running' AND claimed_by = $2) OR (state = 'queued' AND pinned = 1 AND accepted_by = $2)",
            )
            .bind(at)
            .bind(me)
            .execute(pool)
            .await
            .map_err(DbError::query("a job heartbeat"))?;
            Ok(())
        })
    }

    /// Marks `interrupted`, with `error` (JSON), the jobs whose replica went
    /// silent before `cutoff` (unix ms): running ones, and queued ones only
    /// it could run. Returns how many.
    pub async fn interrupt_stale_jobs(&self, cutoff: i64, error: &str) -> Result<u64, DbError> {
        let at = to_unix_ms(now());
        on_pool!(self, pool => {
            let n = sqlx::query(
                "UPDATE jobs SET state = 'interrupted', finished_at = $1, error = $2
                 WHERE (state = 'running' OR (state = 'queued' AND pinned = 1)) AND heartbeat_at < $3",
            )
            .bind(at)
            .bind(error)
            .bind(cutoff)
            .execute(pool)
            .await
            .map_err(DbError::query("interrupting stale jobs"))?
            .rows_affected();
            Ok(n)
        })
    }

    /// Stores a running job's progress so far.
    pub async fn set_job_events(&self, id: &str, events: &str) -> Result<(), DbError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET events = $1 WHERE id = $2 AND state IN ('queued', 'running')")
                .bind(events)
                .bind(id)
                .execute(pool)
                .await
                .map_err(DbError::query("storing a job's events"))?;
            Ok(())
        })
    }

    /// Ends a job that is still in state `from` (`running`, or `queued`
    /// when a replica shuts down) as `state` (`succeeded`, `failed`); a job
    /// in any other state (interrupted meanwhile, claimed by another
    /// replica) is left as it is. Returns whether it was ended here.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_job(
        &self,
        id: &str,
        from: &str,
        state: &str,
        result: Option<&str>,
        error: Option<&str>,
        events: &str,
    ) -> Result<bool, DbError> {
        let at = to_unix_ms(now());
        on_pool!(self, pool => {
            let n = sqlx::query(
                "UPDATE jobs SET state = $1, finished_at = $2, result = $3, error = $4, events = $5
                 WHERE id = $6 AND state = $7",
            )
            .bind(state)
            .bind(at)
            .bind(result)
            .bind(error)
            .bind(events)
            .bind(id)
            .bind(from)
            .execute(pool)
            .await
            .map_err(DbError::query("finishing a job"))?
            .rows_affected();
            sqlx::query(
                "DELETE FROM jobs WHERE finished_at < (
                     SELECT finished_at FROM jobs WHERE finished_at IS NOT NULL
                     ORDER BY finished_at DESC LIMIT 1 OFFSET $1)",
            )
            .bind(KEEP_FINISHED)
            .execute(pool)
            .await
            .map_err(DbError::query("forgetting old jobs"))?;
            Ok(n == 1)
        })
    }

    /// Queued jobs `me` accepted and nobody has started.
    pub async fn queued_jobs_accepted_by(&self, me: &str) -> Result<Vec<JobRow>, DbError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM jobs WHERE state = 'queued' AND accepted_by = $1")
                .bind(me)
                .fetch_all(pool)
                .await
                .map_err(DbError::query("listing queued jobs"))?;
            rows.iter().map(row_to_job).collect()
        })
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, DbError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading a job"))?;
            row.as_ref().map(row_to_job).transpose()
        })
    }

    /// (queued, running) jobs on every replica.
    pub async fn job_counts(&self) -> Result<(i64, i64), DbError> {
        on_pool!(self, pool => {
            let (q, r): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0)
                 FROM jobs WHERE state IN ('queued', 'running')",
            )
            .fetch_one(pool)
            .await
            .map_err(DbError::query("counting jobs"))?;
            Ok((q, r))
        })
    }
}

#[cfg(test)]
mod tests {
    /// Every migration exists for both backends, under the same name.
    #[test]
    fn migrations_are_one_for_one() {
        let names = |d: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(d);
            let mut v: Vec<String> =
                std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        let (sqlite, postgres) = (names("sqlite"), names("postgres"));
        assert!(sqlite.iter().any(|n| n.ends_with("_jobs.sql")), "{sqlite:?}");
        assert_eq!(sqlite, postgres);
    }
}
