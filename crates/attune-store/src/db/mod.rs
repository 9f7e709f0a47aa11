//! The installation database: audit trail and crash-safe journal.
//!
//! Why it exists:
//! * **Audit.** Every install, reinstall and uninstall is a row that is never
//!   overwritten by a later action, with who, where, from what (redacted)
//!   source, with which fetcher and checksum. Security-conscious users can ask
//!   "what was on this host, when, and where did it come from".
//! * **Journal.** The install pipeline writes a `pending` row before touching
//!   disk and moves it to `installed` or `failed` after; a crash leaves the
//!   `pending` row behind for start-up repair ([`Db::pending`]), so disk and
//!   database never disagree silently. Each journal step is one transaction,
//!   and the schema itself forbids two live installs of one ref+version on a
//!   host.
//!
//! Two backends sit behind this one API: SQLite (the embedded default, one
//! file shared by several attune processes, hence WAL and a long busy
//! timeout) and PostgreSQL (one database shared by many hosts). The SQL text
//! is written once and runs on either (`on_pool!`): `$N` placeholders,
//! `ON CONFLICT`, `RETURNING`, timestamps as BIGINT unix milliseconds, JSON as
//! TEXT. Only the schema differs, in `migrations/sqlite` and
//! `migrations/postgres`.

mod activations;
mod error;
mod indexes;
mod jobs;
mod lock;
mod migrations;
mod model;
mod plugins;
#[cfg(test)]
mod tests;
mod tokens;

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Database, Transaction};
use time::OffsetDateTime;

pub use activations::Activation;
pub use error::{DbError, redact_url};
pub use indexes::{IndexFetch, IndexRow, IndexSigned};
pub use jobs::JobRow;
pub use lock::PackLock;
#[cfg(test)]
use model::EVENT_COLUMNS;
pub use model::{Action, Channel, Installation, ListedRow, NewInstallation, Pack, Status, VerifyStatus, version_cmp};
use model::{installation_columns, listed_columns, now, record_columns, to_unix_ms};
pub use plugins::{Grant, PluginRow};
pub use tokens::{ApiToken, NewApiToken};

/// How long a statement waits for another process's write lock before failing
/// with "database is locked". Installs are short, but several attune processes
/// may queue behind one another.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds. The body is
/// the same source text for both, type-checked once per backend, so a query
/// that does not suit one of them fails to compile rather than at run time.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:block) => {
        match &$db.pool {
            crate::db::Pool::Sqlite($pool) => $body,
            crate::db::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A listing query's four texts: per backend, on one host (`$1`) or on all.
struct ListingSql {
    sqlite_host: &'static str,
    sqlite_all: &'static str,
    postgres_host: &'static str,
    postgres_all: &'static str,
}

/// The listing query of `$columns`, with `active`: whether the row's version
/// is its pack's newest activation on its host (a lookup in
/// `activations_host_ref` per row). Ordered by ref only, the rest is done
/// in Rust ([`Db::stream_listing`]); by byte order on PostgreSQL too, whose
/// default collation may order `a-b` and `a_b` otherwise.
macro_rules! listing_sql {
    ($columns:expr) => {
        ListingSql {
            sqlite_host: listing_sql!($columns, "host = $1 AND ", "pack_ref"),
            sqlite_all: listing_sql!($columns, "", "pack_ref"),
            postgres_host: listing_sql!($columns, "host = $1 AND ", "pack_ref COLLATE \"C\""),
            postgres_all: listing_sql!($columns, "", "pack_ref COLLATE \"C\""),
        }
    };
    ($columns:expr, $host:literal, $order:literal) => {
        concat!("SELECT ", listing_select!($columns, $host), " ORDER BY ", $order)
    };
}

/// A listing query's text between `SELECT` and `ORDER BY`.
macro_rules! listing_select {
    ($columns:expr, $host:literal) => {
        concat!(
            $columns,
            ", COALESCE((SELECT a.version FROM activations a
                WHERE a.host = installations.host AND a.pack_ref = installations.pack_ref
                ORDER BY a.id DESC LIMIT 1) = installations.version, FALSE) AS active
             FROM installations WHERE ",
            $host,
            "status = 'installed'"
        )
    };
}

/// [`Db::listing_rows`] on SQLite: the same rows, [`LISTED_CHUNK`] to a
/// row, each chunk a JSON array of `[listed_columns, active]` arrays in ref
/// order. sqlx hands every SQLite row from its worker thread to ours
/// through a channel, a thread wake-up per row: 8k context switches and
/// most of `attune list`'s time at 10k packs. A chunk is one wake-up.
macro_rules! listed_chunks_sql {
    ($host:literal) => {
        concat!(
            "SELECT json_group_array(json_array(",
            listed_columns!(),
            ", active) ORDER BY n) FROM (SELECT row_number() OVER (ORDER BY pack_ref) - 1 AS n, ",
            listing_select!(listed_columns!(), $host),
            ") GROUP BY n / ",
            listed_chunk!(),
            " ORDER BY n / ",
            listed_chunk!()
        )
    };
}

/// How many rows [`listed_chunks_sql`] puts in one: a macro so the query
/// text and [`LISTED_CHUNK`] are the same number.
macro_rules! listed_chunk {
    () => {
        1024
    };
}
#[cfg(test)]
const LISTED_CHUNK: usize = listed_chunk!();
const LISTED_CHUNKS_HOST: &str = listed_chunks_sql!("host = $1 AND ");
const LISTED_CHUNKS_ALL: &str = listed_chunks_sql!("");

/// [`Db::listing`]'s query.
const LISTING: ListingSql = listing_sql!(installation_columns!());
/// [`Db::listing_rows`]'s query: only columns of `installations_host_status`.
const LISTING_ROWS: ListingSql = listing_sql!(listed_columns!());

/// Where a listing row goes in listing order: its ref, version and host.
trait ListingOrder {
    fn order_key(&self) -> (&str, &str, &str);
}

impl ListingOrder for ListedRow {
    fn order_key(&self) -> (&str, &str, &str) {
        (&self.pack_ref, &self.version, &self.host)
    }
}

const LISTING_WHAT: &str = "listing installed packs";

/// Listing rows in listing order, from rows in ref order: the rows of one
/// pack, a handful, are put in version order (then host) and handed to
/// `each` when the next pack begins, so no more than one pack's are held.
struct ByPack<T, F> {
    pack: Vec<T>,
    each: F,
}

impl<T: ListingOrder, E, F: FnMut(T) -> Result<(), E>> ByPack<T, F> {
    fn new(each: F) -> Self {
        ByPack { pack: Vec::new(), each }
    }

    fn push(&mut self, row: T) -> Result<(), E> {
        if self.pack.first().is_some_and(|first| first.order_key().0 != row.order_key().0) {
            debug_assert!(self.pack[0].order_key().0 < row.order_key().0, "listing rows out of ref order");
            self.flush()?;
        }
        self.pack.push(row);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), E> {
        self.pack.sort_by(|a, b| {
            let ((_, av, ah), (_, bv, bh)) = (a.order_key(), b.order_key());
            version_cmp(av, bv).then_with(|| ah.cmp(bh))
        });
        self.pack.drain(..).try_for_each(&mut self.each)
    }

    fn finish(mut self) -> Result<(), E> {
        self.flush()
    }
}

/// A row of [`LISTING`]: an installation and its `active` column.
struct WithActive(Installation, bool);

impl ListingOrder for WithActive {
    fn order_key(&self) -> (&str, &str, &str) {
        (&self.0.pack_ref, &self.0.version, &self.0.host)
    }
}

macro_rules! with_active_from_rows {
    ($($row:ty),+) => {$(
        impl<'r> sqlx::FromRow<'r, $row> for WithActive {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(WithActive(Installation::from_row(row)?, row.try_get("active")?))
            }
        }
    )+};
}
with_active_from_rows!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// Reads the ref, version and host of installation `id`, inside `$tx`,
/// insisting it is still pending: completing or failing anything else is a
/// pipeline bug. A macro because the transaction's type differs per backend.
macro_rules! pending_row {
    ($tx:expr, $id:expr, $attempted:expr, $what:expr) => {{
        let (id, attempted, what): (i64, &'static str, &'static str) = ($id, $attempted, $what);
        let row: Option<(String, String, String, String)> =
            sqlx::query_as("SELECT pack_ref, version, host, status FROM installations WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(DbError::query(what))?;
        let Some((pack_ref, version, host, status)) = row else {
            return Err(DbError::NotFound { what: "installation", key: format!("id {id}") });
        };
        match status.parse::<Status>() {
            Ok(Status::Pending) => (pack_ref, version, host),
            Ok(status) => return Err(DbError::NotPending { id, status, attempted }),
            Err(e) => {
                return Err(DbError::Query {
                    what,
                    source: sqlx::Error::ColumnDecode { index: "status".into(), source: e.into() },
                });
            }
        }
    }};
}

/// `INSERT INTO $table (column, …) VALUES (…) RETURNING id` inside `$tx`,
/// each value written next to its column's name: adding a column is one
/// line, and no placeholder number can point at the wrong one.
macro_rules! insert_returning_id {
    ($tx:expr, $what:expr, $table:literal, { $($column:ident: $value:expr),+ $(,)? }) => {{
        let mut query = sqlx::QueryBuilder::new(concat!("INSERT INTO ", $table, " ("));
        let mut columns = query.separated(", ");
        $(columns.push(stringify!($column));)+
        query.push(") VALUES (");
        let mut values = query.separated(", ");
        $(values.push_bind($value);)+
        query.push(") RETURNING id");
        let id: i64 = query.build_query_scalar().fetch_one(&mut *$tx).await.map_err(DbError::query($what))?;
        id
    }};
}

/// Opening a write transaction, the right way for each backend.
trait BeginWrite {
    type Db: Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    /// Takes SQLite's write lock up front. A plain (deferred) `BEGIN` that
    /// reads and then writes fails at once with SQLITE_BUSY when another
    /// connection committed in between, without waiting for the busy timeout.
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    /// A plain `BEGIN`: PostgreSQL's row locks already wait.
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// A handle on the installation database. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    /// `sqlite://{data dir}/attune/attune.db`, e.g.
    /// `sqlite:///home/me/.local/share/attune/attune.db` on Linux. Falls back to
    /// `attune.db` in the working directory where the OS names no data directory.
    pub fn default_url() -> String {
        let path =
            dirs::data_dir().map(|dir| dir.join("attune").join("attune.db")).unwrap_or_else(|| "attune.db".into());
        // sqlx percent-decodes the path; keep these characters literal.
        let path = path.to_string_lossy().replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        format!("sqlite://{path}")
    }

    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// Accepts `sqlite:///abs/path.db`, `sqlite://rel/path.db` (relative to the
    /// working directory; created, parent directory included, if missing),
    /// `sqlite::memory:` (a private database that lives as long as this `Db`
    /// and its clones), and `postgres://user:password@host:port/database`
    /// (or `postgresql://`; the database must exist).
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let db = if let Some(rest) = url.strip_prefix("sqlite:") {
            Db { pool: Pool::Sqlite(connect_sqlite(url, rest).await?) }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db { pool: Pool::Postgres(connect_postgres(url).await?) }
        } else {
            return Err(DbError::UnsupportedUrl { url: redact_url(url) });
        };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations. PostgreSQL's migrator serializes concurrent
    /// runs with an advisory lock; SQLite's takes no lock, so processes opening
    /// a fresh file together race to apply the same migration. Each migration
    /// and its bookkeeping row commit as one transaction, so the losers fail
    /// cleanly ("table exists", a duplicate version, busy) and a second pass
    /// finds the work done. A broken migration fails every pass.
    async fn migrate(&self) -> Result<(), DbError> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            let result = match &self.pool {
                Pool::Sqlite(pool) => migrations::SQLITE.run(pool).await,
                Pool::Postgres(pool) => migrations::POSTGRES.run(pool).await,
            };
            match result {
                Ok(()) => return Ok(()),
                // Only execution errors can be a lost race; a changed or unknown
                // migration is final.
                Err(MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)) if attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(source) => return Err(DbError::Migrate { source }),
            }
        }
    }

    /// Closes every connection, waiting for them to finish. Optional: dropping
    /// the last clone also closes the pool, but without waiting.
    pub async fn close(&self) {
        on_pool!(self, pool => {
            pool.close().await;
        })
    }

    /// Journal step 1, before anything touches disk: records the pack and a
    /// `pending` installation with the action the caller decided. Returns its id.
    pub async fn begin_install(&self, new: &NewInstallation) -> Result<i64, DbError> {
        on_pool!(self, pool => {
            let what = "recording the start of an install";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;

            sqlx::query(
                "INSERT INTO packs (pack_ref, name, description) VALUES ($1, $2, $3)
                 ON CONFLICT (pack_ref) DO UPDATE
                 SET name = excluded.name, description = excluded.description",
            )
            .bind(&new.pack_ref)
            .bind(&new.pack_name)
            .bind(&new.pack_description)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;


            let id = insert_returning_id!(tx, what, "installations", {
                pack_ref: &new.pack_ref,
                version: &new.version,
                host: &new.host,
                action: new.action.as_str(),
                status: Status::Pending.as_str(),
                source_type: new.source_type.as_str(),
                source: &new.source,
                requested_ref: &new.requested_ref,
                resolved_commit: &new.resolved_commit,
                checksum: &new.checksum,
                checksum_algorithm: &new.checksum_algorithm,
                manifest_json: new.manifest.to_string(),
                verified: new.verified,
                installed_at: to_unix_ms(now()),
                installed_by: &new.installed_by,
                method: new.method.as_str(),
                storage_path: &new.storage_path,
                fetcher_name: &new.fetcher_name,
                fetcher_version: &new.fetcher_version,
                fetcher_hash: &new.fetcher_hash,
                metadata_json: new.metadata.to_string(),
                api_token: &new.api_token,
            });

            tx.commit().await.map_err(DbError::query(what))?;
            Ok(id)
        })
    }

    /// Journal step 2, once the files are in place: the pending installation
    /// `id` becomes the live one, and any earlier live install of the same
    /// ref+version on the same host becomes `replaced`.
    pub async fn complete_install(&self, id: i64) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let what = "recording a completed install";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;
            let (pack_ref, version, host) = pending_row!(tx, id, "completed", what);
            let finished = to_unix_ms(now());

            // Demote first: the unique index allows one 'installed' row at a time.
            sqlx::query(
                "UPDATE installations SET status = 'replaced'
                 WHERE pack_ref = $1 AND version = $2 AND host = $3 AND status = 'installed'",
            )
            .bind(&pack_ref)
            .bind(&version)
            .bind(&host)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;

            sqlx::query("UPDATE installations SET status = 'installed', finished_at = $2 WHERE id = $1")
                .bind(id)
                .bind(finished)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what))?;

            sqlx::query(
                "UPDATE packs SET first_installed_at = $2
                 WHERE pack_ref = $1 AND first_installed_at IS NULL",
            )
            .bind(&pack_ref)
            .bind(finished)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;

            // A pack never activated on this host is now owed an active
            // version: journaled with the install, cleared by the activation
            // (`record_activation`), so a kill between the two is found by
            // the start-up check without scanning every installed pack.
            sqlx::query(
                "INSERT INTO pending_activations (host, pack_ref)
                 SELECT $1, $2
                 WHERE NOT EXISTS (SELECT 1 FROM activations WHERE host = $1 AND pack_ref = $2)
                 ON CONFLICT (host, pack_ref) DO NOTHING",
            )
            .bind(&host)
            .bind(&pack_ref)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;

            tx.commit().await.map_err(DbError::query(what))
        })
    }

    /// Journal step 2, when the install did not happen: the pending installation
    /// `id` becomes `failed` with `error`. An earlier live install is untouched.
    pub async fn fail_install(&self, id: i64, error: &str) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let what = "recording a failed install";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;
            pending_row!(tx, id, "failed", what);
            sqlx::query(
                "UPDATE installations SET status = 'failed', error = $2, finished_at = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(to_unix_ms(now()))
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            tx.commit().await.map_err(DbError::query(what))
        })
    }

    /// Records an uninstall: the live installation of `pack_ref`@`version` on
    /// `host` becomes `removed`, and a new `uninstall` row (status `removed`)
    /// copying its source, checksum, manifest and storage path says who removed
    /// it and when (and with which API token, if any). Returns the new row's id; [`DbError::NotFound`] when nothing
    /// is installed.
    pub async fn record_uninstall(
        &self,
        pack_ref: &str,
        version: &str,
        host: &str,
        by: &str,
        method: Channel,
        api_token: Option<&str>,
    ) -> Result<i64, DbError> {
        on_pool!(self, pool => {
            let what = "recording an uninstall";
            let mut tx = pool.begin_write().await.map_err(DbError::query(what))?;

            let live: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM installations
                 WHERE pack_ref = $1 AND version = $2 AND host = $3 AND status = 'installed'",
            )
            .bind(pack_ref)
            .bind(version)
            .bind(host)
            .fetch_optional(&mut *tx)
            .await
            .map_err(DbError::query(what))?;
            let Some(live) = live else {
                return Err(DbError::NotFound {
                    what: "installed pack",
                    key: format!("{pack_ref}@{version} on host {host}"),
                });
            };

            sqlx::query("UPDATE installations SET status = 'removed' WHERE id = $1")
                .bind(live)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what))?;

            let at = to_unix_ms(now());
            let id: i64 = sqlx::query_scalar(concat!(
                "INSERT INTO installations (",
                record_columns!(),
                ", action, status, installed_at, finished_at, installed_by, method, api_token)
                 SELECT ",
                record_columns!(),
                ", 'uninstall', 'removed', $2, $2, $3, $4, $5
                 FROM installations WHERE id = $1
                 RETURNING id"
            ))
            .bind(live)
            .bind(at)
            .bind(by)
            .bind(method.as_str())
            .bind(api_token)
            .fetch_one(&mut *tx)
            .await
            .map_err(DbError::query(what))?;

            tx.commit().await.map_err(DbError::query(what))?;
            Ok(id)
        })
    }

    /// Installations on `host` left `pending` (by a crash or a kill), oldest
    /// first: what start-up repair must complete or fail.
    pub async fn pending(&self, host: &str) -> Result<Vec<Installation>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE host = $1 AND status = 'pending' ORDER BY id"
            ))
                .bind(host)
                .fetch_all(pool)
                .await
                .map_err(DbError::query("listing pending installations"))
        })
    }

    /// The live installations on `host`, by ref, then by version
    /// ([`version_cmp`]: `1.9.0` before `1.10.0`). Reads every one of them:
    /// for what is about all packs (verify, doctor, gc, lock; `attune list`
    /// streams [`Db::listing_rows`] instead); one pack's are
    /// [`Db::installed_of`].
    pub async fn installed(&self, host: &str) -> Result<Vec<Installation>, DbError> {
        on_pool!(self, pool => {
            let mut rows: Vec<Installation> = sqlx::query_as(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE host = $1 AND status = 'installed' ORDER BY pack_ref, version"
            ))
            .bind(host)
            .fetch_all(pool)
            .await
            .map_err(DbError::query("listing installed packs"))?;
            rows.sort_by(|a, b| a.pack_ref.cmp(&b.pack_ref).then_with(|| version_cmp(&a.version, &b.version)));
            Ok(rows)
        })
    }

    /// What `attune list --json` shows: the live installations on `host`
    /// (`None`: on every host), in [`Db::installed`] order then by host, each
    /// with whether it is the active version of its pack on its host, read
    /// in the same query (a lookup in `activations`' index per row).
    ///
    /// Streamed: each row goes to `each` as it is read, and no more than one
    /// pack's rows are held (see [`Db::listing_rows`]). Stops at the first
    /// error, the database's or one `each` returns.
    pub async fn listing<E: From<DbError>>(
        &self,
        host: Option<&str>,
        mut each: impl FnMut(Installation, bool) -> Result<(), E>,
    ) -> Result<(), E> {
        self.stream_listing(&LISTING, host, |WithActive(i, active)| each(i, active)).await
    }

    /// [`Db::listing`] with only what `attune list`'s table shows
    /// ([`ListedRow`]). Every column it reads is in
    /// `installations_host_status`, so on one host it is a walk along that
    /// index, in order, that never reads the table (nor the manifests in it).
    pub async fn listing_rows<E: From<DbError>>(
        &self,
        host: Option<&str>,
        each: impl FnMut(ListedRow) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.pool {
            Pool::Sqlite(pool) => Self::sqlite_listed_chunks(pool, host, each).await,
            Pool::Postgres(_) => self.stream_listing(&LISTING_ROWS, host, each).await,
        }
    }

    /// Runs one of the listing queries and hands its rows to `each` in
    /// listing order: by ref, then version ([`version_cmp`]), then host.
    /// The database orders the rows by ref (byte order on both backends,
    /// as Rust orders strings); the rows of one pack, a handful, are put in
    /// version order here and handed on when the next pack begins.
    async fn stream_listing<T, E>(
        &self,
        sql: &ListingSql,
        host: Option<&str>,
        each: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: ListingOrder
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        E: From<DbError>,
    {
        use futures_util::TryStreamExt as _;
        let mut packs = ByPack::new(each);
        on_pool!(self, pool => {
            let text = match (self.backend(), host) {
                (Backend::Sqlite, Some(_)) => sql.sqlite_host,
                (Backend::Sqlite, None) => sql.sqlite_all,
                (Backend::Postgres, Some(_)) => sql.postgres_host,
                (Backend::Postgres, None) => sql.postgres_all,
            };
            let query = sqlx::query(text);
            let query = match host {
                Some(host) => query.bind(host),
                None => query,
            };
            let mut rows = query.fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(DbError::query(LISTING_WHAT))? {
                packs.push(T::from_row(&row).map_err(DbError::query(LISTING_WHAT))?)?;
            }
        });
        packs.finish()
    }

    /// [`Db::listing_rows`] on SQLite, a chunk of rows at a time (see
    /// [`listed_chunks_sql`]).
    async fn sqlite_listed_chunks<E: From<DbError>>(
        pool: &SqlitePool,
        host: Option<&str>,
        each: impl FnMut(ListedRow) -> Result<(), E>,
    ) -> Result<(), E> {
        use futures_util::TryStreamExt as _;
        let mut packs = ByPack::new(each);
        let query = match host {
            Some(host) => sqlx::query_scalar::<_, String>(LISTED_CHUNKS_HOST).bind(host),
            None => sqlx::query_scalar(LISTED_CHUNKS_ALL),
        };
        let mut chunks = query.fetch(pool);
        while let Some(chunk) = chunks.try_next().await.map_err(DbError::query(LISTING_WHAT))? {
            for row in model::listed_rows_json(&chunk).map_err(DbError::query(LISTING_WHAT))? {
                packs.push(row)?;
            }
        }
        packs.finish()
    }

    /// The live installations on every host sharing this database, by ref,
    /// then version, then host.
    pub async fn installed_on_all_hosts(&self) -> Result<Vec<Installation>, DbError> {
        on_pool!(self, pool => {
            let mut rows: Vec<Installation> =
                sqlx::query_as(concat!(
                    "SELECT ",
                    installation_columns!(),
                    " FROM installations WHERE status = 'installed' ORDER BY pack_ref, version, host"
                ))
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::query("listing installed packs on all hosts"))?;
            rows.sort_by(|a, b| {
                a.pack_ref
                    .cmp(&b.pack_ref)
                    .then_with(|| version_cmp(&a.version, &b.version))
                    .then_with(|| a.host.cmp(&b.host))
            });
            Ok(rows)
        })
    }

    /// The live installations of `pack_ref` on `host`, in [`version_cmp`] order.
    pub async fn installed_of(&self, pack_ref: &str, host: &str) -> Result<Vec<Installation>, DbError> {
        on_pool!(self, pool => {
            let mut rows: Vec<Installation> = sqlx::query_as(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE pack_ref = $1 AND host = $2 AND status = 'installed'"
            ))
            .bind(pack_ref)
            .bind(host)
            .fetch_all(pool)
            .await
            .map_err(DbError::query("listing a pack's installed versions"))?;
            rows.sort_by(|a, b| version_cmp(&a.version, &b.version));
            Ok(rows)
        })
    }

    /// `(ref, version)` of every live installation on `host`, by ref: what
    /// dependency solving needs, read from the index alone.
    pub async fn installed_refs(&self, host: &str) -> Result<Vec<(String, String)>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT pack_ref, version FROM installations
                 WHERE host = $1 AND status = 'installed' ORDER BY pack_ref, version",
            )
            .bind(host)
            .fetch_all(pool)
            .await
            .map_err(DbError::query("listing installed versions"))
        })
    }

    /// The versions of `pack_ref` installed on `host`, in [`version_cmp`] order.
    pub async fn installed_versions(&self, pack_ref: &str, host: &str) -> Result<Vec<String>, DbError> {
        on_pool!(self, pool => {
            let mut versions: Vec<String> = sqlx::query_scalar(
                "SELECT version FROM installations
                 WHERE pack_ref = $1 AND host = $2 AND status = 'installed'",
            )
            .bind(pack_ref)
            .bind(host)
            .fetch_all(pool)
            .await
            .map_err(DbError::query("listing installed versions"))?;
            versions.sort_by(|a, b| version_cmp(a, b));
            Ok(versions)
        })
    }

    /// The live installation of `pack_ref`@`version` on `host`, if any.
    pub async fn current(&self, pack_ref: &str, version: &str, host: &str) -> Result<Option<Installation>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE pack_ref = $1 AND version = $2 AND host = $3 AND status = 'installed'"
            ))
            .bind(pack_ref)
            .bind(version)
            .bind(host)
            .fetch_optional(pool)
            .await
            .map_err(DbError::query("looking up an installed pack"))
        })
    }

    /// Every action ever recorded for `pack_ref`, on every host, newest first.
    pub async fn history(&self, pack_ref: &str) -> Result<Vec<Installation>, DbError> {
        on_pool!(self, pool => {
            // By id, not time: ids follow commit order even when hosts' clocks disagree.
            sqlx::query_as(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE pack_ref = $1 ORDER BY id DESC"
            ))
                .bind(pack_ref)
                .fetch_all(pool)
                .await
                .map_err(DbError::query("reading an installation history"))
        })
    }

    /// One installation row by id.
    pub async fn installation(&self, id: i64) -> Result<Option<Installation>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", installation_columns!(), " FROM installations WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading an installation"))
        })
    }

    /// The per-entry checksum manifest stored with installation `id` (what
    /// `verify` diffs against); `None` if there is no such row.
    pub async fn manifest(&self, id: i64) -> Result<Option<serde_json::Value>, DbError> {
        let what = "reading a stored manifest";
        let text: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT manifest_json FROM installations WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query(what))?
        });
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| DbError::Query {
                what,
                source: sqlx::Error::ColumnDecode { index: "manifest_json".into(), source: e.into() },
            })
        })
        .transpose()
    }

    /// The `packs` row of `pack_ref`, if it was ever (attempted to be) installed.
    pub async fn pack(&self, pack_ref: &str) -> Result<Option<Pack>, DbError> {
        on_pool!(self, pool => {
            sqlx::query_as("SELECT * FROM packs WHERE pack_ref = $1")
                .bind(pack_ref)
                .fetch_optional(pool)
                .await
                .map_err(DbError::query("reading a pack"))
        })
    }

    /// Records the outcome of `attune verify` on installation `id`.
    pub async fn set_verify_result(&self, id: i64, status: VerifyStatus, at: OffsetDateTime) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let done = sqlx::query("UPDATE installations SET verify_status = $2, verified_at = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(to_unix_ms(at))
                .execute(pool)
                .await
                .map_err(DbError::query("recording a verify result"))?;
            if done.rows_affected() == 0 {
                return Err(DbError::NotFound { what: "installation", key: format!("id {id}") });
            }
            Ok(())
        })
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, extended codes included: another connection holds the lock.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Whether the part of a `sqlite:` URL after the scheme names an in-memory
/// database (`:memory:`, `//:memory:` or `mode=memory`), mirroring sqlx's parser.
fn is_memory(rest: &str) -> bool {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (db, params) = rest.split_once('?').unwrap_or((rest, ""));
    db == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

async fn connect_sqlite(url: &str, rest: &str) -> Result<SqlitePool, DbError> {
    let connect_err = |source| DbError::Connect { url: redact_url(url), source };
    let in_memory = is_memory(rest);

    let mut options =
        SqliteConnectOptions::from_str(url).map_err(connect_err)?.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
    let pool_options = if in_memory {
        // An in-memory database dies with its last connection: keep exactly one, forever.
        SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        let path = options.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).map_err(|source| DbError::CreateDir { path: dir.to_owned(), source })?;
        }
        // Owner-only: it holds token hashes and the audit trail. SQLite gives
        // its -wal and -shm files the database file's mode.
        create_private(path).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
        // WAL: readers never block the writer, so `attune list` can run during an install.
        options = options.create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
        // SQLite has one writer at a time anyway; a few connections serve concurrent reads.
        SqlitePoolOptions::new().max_connections(4)
    };

    let pool_options = pool_options.acquire_timeout(BUSY_TIMEOUT);
    let started = Instant::now();
    loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            // Switching a new file to WAL needs an exclusive lock that SQLite does not
            // wait for: processes opening a fresh file together must retry themselves.
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(connect_err(e)),
        }
    }
}

/// Creates `path` empty with mode 0600 unless it exists.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

async fn connect_postgres(url: &str) -> Result<PgPool, DbError> {
    let connect_err = |source| DbError::Connect { url: redact_url(url), source };
    let options = PgConnectOptions::from_str(url).map_err(connect_err)?.application_name("attune");
    // Connect eagerly so a wrong URL or a down server is reported here, not mid-install.
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_err)
}
