//! Rows of the installation journal and the values their text columns may hold.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, FromRow, Postgres, Row, Sqlite, Type};
use time::OffsetDateTime;

/// Declares a closed set of strings stored in a TEXT column with a CHECK
/// constraint, so Rust and the schema agree on the spelling in one place.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " `{}` in the database"),
                        other
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// What an installation row records being done.
    Action {
        Install = "install",
        /// An install of a ref+version that was already installed on that host.
        Reinstall = "reinstall",
        Uninstall = "uninstall",
    }
}

text_enum! {
    /// Where an installation row stands. Only `pending` moves on by itself
    /// (to `installed` or `failed`); `installed` later becomes `replaced` or
    /// `removed`.
    Status {
        /// Begun, files maybe half-written: start-up repair looks at these.
        Pending = "pending",
        /// The live installation of its ref+version on its host (at most one).
        Installed = "installed",
        /// Superseded by a later reinstall of the same ref+version.
        Replaced = "replaced",
        /// Uninstalled (also the status of the `uninstall` row itself).
        Removed = "removed",
        Failed = "failed",
    }
}

text_enum! {
    /// The channel an action came through: the command line or the API
    /// (recorded in the `method` column of the audit trail).
    Channel {
        Cli = "cli",
        Api = "api",
    }
}

text_enum! {
    /// Outcome of the last `attune verify` of an installation.
    VerifyStatus {
        Ok = "ok",
        Tampered = "tampered",
        Missing = "missing",
    }
}

/// What the install pipeline knows when it starts an install.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInstallation {
    pub pack_ref: String,
    /// `Install`, or `Reinstall` when this ref+version is live on this host:
    /// decided by the install pipeline under the pack's lock, and recorded
    /// as given.
    pub action: Action,
    /// Display name, stored on the `packs` row (latest install wins).
    pub pack_name: String,
    pub pack_description: Option<String>,
    pub version: String,
    pub source_type: attune_core::source::SourceKind,
    /// URL or path, ALREADY REDACTED by the caller: it is stored verbatim.
    pub source: String,
    pub requested_ref: Option<String>,
    pub resolved_commit: Option<String>,
    /// Printed form, e.g. `sha256-tree-v1:<hex>`.
    pub checksum: String,
    /// e.g. `sha256-tree-v1`.
    pub checksum_algorithm: String,
    /// Per-entry checksum manifest, for `verify` to diff against.
    pub manifest: serde_json::Value,
    /// Whether the checksum was checked against an expected value.
    pub verified: bool,
    /// OS user.
    pub installed_by: String,
    pub method: Channel,
    pub storage_path: String,
    pub fetcher_name: String,
    pub fetcher_version: String,
    /// sha256 of the fetcher's wasm.
    pub fetcher_hash: Option<String>,
    /// Hostname: several hosts may share one database.
    pub host: String,
    /// Extra facts about the source.
    pub metadata: serde_json::Value,
    /// The name of the API token the install was made with (`None` from the CLI).
    pub api_token: Option<String>,
}

/// One row of `installations`: one install, reinstall or uninstall action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Installation {
    pub id: i64,
    pub pack_ref: String,
    pub version: String,
    pub action: Action,
    pub status: Status,
    pub source_type: attune_core::source::SourceKind,
    pub source: String,
    pub requested_ref: Option<String>,
    pub resolved_commit: Option<String>,
    pub checksum: String,
    pub checksum_algorithm: String,
    // The per-entry manifest is not here: it can be large and only `verify`
    // needs it ([`super::Db::manifest`]).
    pub verified: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    pub verify_status: Option<VerifyStatus>,
    /// When the action began (for an `uninstall` row: when it happened).
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    pub installed_by: String,
    pub method: Channel,
    pub storage_path: String,
    pub fetcher_name: String,
    pub fetcher_version: String,
    pub fetcher_hash: Option<String>,
    pub host: String,
    pub metadata_json: serde_json::Value,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The name of the API token this action was made with (`None` from the CLI).
    pub api_token: Option<String>,
}

/// What `attune list`'s table shows of a live installation, and whether it
/// is its pack's active version on its host: every column is in
/// `installations_host_status`, so a listing of these reads that index
/// alone, never the table (see [`super::Db::listing_rows`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedRow {
    pub pack_ref: String,
    pub version: String,
    pub host: String,
    pub source_type: attune_core::source::SourceKind,
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    pub checksum: String,
    pub active: bool,
}

/// One row of `packs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pack {
    pub pack_ref: String,
    pub name: String,
    pub description: Option<String>,
    /// When the first install of any version completed; `None` while none has.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_installed_at: Option<OffsetDateTime>,
}

/// The columns an [`Installation`] is read from: every column of
/// `installations` but `manifest_json`, so listings never read manifests.
/// A macro so queries are built with `concat!` and stay `&'static str`.
macro_rules! installation_columns {
    () => {
        "id, pack_ref, version, action, status, source_type, source, requested_ref, resolved_commit, \
         checksum, checksum_algorithm, verified, verified_at, verify_status, installed_at, installed_by, \
         method, storage_path, fetcher_name, fetcher_version, fetcher_hash, host, metadata_json, error, \
         finished_at, api_token"
    };
}
pub(crate) use installation_columns;

/// The columns a [`ListedRow`] is read from, in the order [`listed_row`]
/// reads them (by position: the hot loop of `attune list`). Followed by
/// the `active` column of a listing query.
macro_rules! listed_columns {
    () => {
        "pack_ref, version, host, source_type, installed_at, checksum"
    };
}
pub(crate) use listed_columns;

/// The columns that say what an installation put where: copied unchanged
/// from the row an uninstall ends. Every other column of `installations`
/// describes one event (who, when, how, the outcome) and is in
/// [`EVENT_COLUMNS`]; `a_column_is_either_a_record_or_an_event` holds the
/// schema to that split, so a new column cannot be left out of the copy.
macro_rules! record_columns {
    () => {
        "pack_ref, version, host, source_type, source, requested_ref, resolved_commit, checksum, \
         checksum_algorithm, manifest_json, verified, storage_path, fetcher_name, fetcher_version, \
         fetcher_hash, metadata_json"
    };
}
pub(crate) use record_columns;

/// The columns of `installations` set per event rather than copied; see [`record_columns`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "id",
    "action",
    "status",
    "installed_at",
    "installed_by",
    "method",
    "api_token",
    "finished_at",
    "error",
    "verified_at",
    "verify_status",
];

// Hand-written rather than derived: sqlx is built without its `time` feature
// and timestamps are stored as unix milliseconds, so columns need converting.
fn installation(row: &impl Columns) -> Result<Installation, sqlx::Error> {
    {
        Ok(Installation {
            id: row.col("id")?,
            pack_ref: row.col("pack_ref")?,
            version: row.col("version")?,
            action: text(row, "action")?,
            status: text(row, "status")?,
            source_type: text(row, "source_type")?,
            source: row.col("source")?,
            requested_ref: row.col("requested_ref")?,
            resolved_commit: row.col("resolved_commit")?,
            checksum: row.col("checksum")?,
            checksum_algorithm: row.col("checksum_algorithm")?,
            verified: row.col("verified")?,
            verified_at: opt_timestamp(row, "verified_at")?,
            verify_status: opt_text(row, "verify_status")?,
            installed_at: timestamp(row, "installed_at")?,
            installed_by: row.col("installed_by")?,
            method: text(row, "method")?,
            storage_path: row.col("storage_path")?,
            fetcher_name: row.col("fetcher_name")?,
            fetcher_version: row.col("fetcher_version")?,
            fetcher_hash: row.col("fetcher_hash")?,
            host: row.col("host")?,
            metadata_json: json(row, "metadata_json")?,
            error: row.col("error")?,
            finished_at: opt_timestamp(row, "finished_at")?,
            api_token: row.col("api_token")?,
        })
    }
}

/// A row of a listing query of [`listed_columns`] and `active`, by position.
fn listed_row<'r, R: Row>(row: &'r R) -> Result<ListedRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    listed(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
    )
}

/// A [`ListedRow`] from its columns as stored, from a row or a chunk.
fn listed(
    pack_ref: String,
    version: String,
    host: String,
    source_type: &str,
    installed_at: i64,
    checksum: String,
    active: bool,
) -> Result<ListedRow, sqlx::Error> {
    Ok(ListedRow {
        pack_ref,
        version,
        host,
        source_type: source_type.parse().map_err(|e: String| decode_error("source_type", e))?,
        installed_at: from_unix_ms(installed_at).map_err(|e| decode_error("installed_at", e))?,
        checksum,
        active,
    })
}

/// The rows of one chunk of a chunked SQLite listing (`listed_chunks_sql`
/// in `db`): a JSON array of `[listed_columns, active]` arrays.
pub(crate) fn listed_rows_json(chunk: &str) -> Result<Vec<ListedRow>, sqlx::Error> {
    type Listed = (String, String, String, String, i64, String, i64);
    let rows: Vec<Listed> = serde_json::from_str(chunk).map_err(|e| decode_error("listing chunk", e))?;
    rows.into_iter()
        .map(|(pack_ref, version, host, source_type, installed_at, checksum, active)| {
            listed(pack_ref, version, host, &source_type, installed_at, checksum, active != 0)
        })
        .collect()
}

fn pack(row: &impl Columns) -> Result<Pack, sqlx::Error> {
    {
        Ok(Pack {
            pack_ref: row.col("pack_ref")?,
            name: row.col("name")?,
            description: row.col("description")?,
            first_installed_at: opt_timestamp(row, "first_installed_at")?,
        })
    }
}

/// Reading a column by name from either backend's rows, so each model type
/// converts rows in one place.
pub(crate) trait Columns {
    fn col<T>(&self, column: &str) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>;
}

macro_rules! backend_rows {
    ($($row:ty),+) => {$(
        impl Columns for $row {
            fn col<T>(&self, column: &str) -> Result<T, sqlx::Error>
            where
                T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>,
            {
                self.try_get(column)
            }
        }

        impl<'r> FromRow<'r, $row> for Installation {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                installation(row)
            }
        }

        impl<'r> FromRow<'r, $row> for ListedRow {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                listed_row(row)
            }
        }

        impl<'r> FromRow<'r, $row> for Pack {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                pack(row)
            }
        }
    )+};
}
backend_rows!(SqliteRow, PgRow);

fn decode_error(column: &str, source: impl Into<sqlx::error::BoxDynError>) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: source.into() }
}

fn text<T: FromStr<Err = String>>(row: &impl Columns, column: &str) -> Result<T, sqlx::Error> {
    let raw: String = row.col(column)?;
    raw.parse().map_err(|e: String| decode_error(column, e))
}

fn opt_text<T: FromStr<Err = String>>(row: &impl Columns, column: &str) -> Result<Option<T>, sqlx::Error> {
    let raw: Option<String> = row.col(column)?;
    raw.map(|raw| raw.parse().map_err(|e: String| decode_error(column, e))).transpose()
}

fn json(row: &impl Columns, column: &str) -> Result<serde_json::Value, sqlx::Error> {
    let raw: String = row.col(column)?;
    serde_json::from_str(&raw).map_err(|e| decode_error(column, e))
}

fn timestamp(row: &impl Columns, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
    from_unix_ms(row.col(column)?).map_err(|e| decode_error(column, e))
}

fn opt_timestamp(row: &impl Columns, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let raw: Option<i64> = row.col(column)?;
    raw.map(|ms| from_unix_ms(ms).map_err(|e| decode_error(column, e))).transpose()
}

/// The stored form of a timestamp: unix milliseconds, UTC. Integers rather
/// than text because they sort and compare the same in SQLite and PostgreSQL
/// and need no parser (the host builds `time` without `parsing`).
pub(crate) fn to_unix_ms(t: OffsetDateTime) -> i64 {
    // Every OffsetDateTime (years ±9999) fits in i64 milliseconds.
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, time::error::ComponentRange> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
}

/// A stored timestamp read back, or a decode error naming what was being read.
pub(crate) fn stored_time(what: &'static str, ms: i64) -> Result<OffsetDateTime, super::DbError> {
    from_unix_ms(ms).map_err(|e| super::DbError::Query { what, source: sqlx::Error::Decode(e.into()) })
}

/// Now, at the precision that is stored, so a value read back equals the one written.
pub(crate) fn now() -> OffsetDateTime {
    from_unix_ms(to_unix_ms(OffsetDateTime::now_utc())).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Orders version strings "semver-ish": runs of digits compare as numbers, so
/// `1.9.0 < 1.10.0`; everything else compares as text. Pre-release rules are
/// not applied (`1.0.0-rc1` sorts after `1.0.0`).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a_rest, mut b_rest) = (a, b);
    loop {
        match (chunk(a_rest), chunk(b_rest)) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ca, ra)), Some((cb, rb))) => {
                let by_chunk = match (ca.as_bytes()[0].is_ascii_digit(), cb.as_bytes()[0].is_ascii_digit()) {
                    (true, true) => {
                        let (na, nb) = (ca.trim_start_matches('0'), cb.trim_start_matches('0'));
                        // Longer digit string (without leading zeros) is the larger number:
                        // no overflow, however long the number.
                        na.len().cmp(&nb.len()).then_with(|| na.cmp(nb))
                    }
                    _ => ca.cmp(cb),
                };
                if by_chunk != Ordering::Equal {
                    return by_chunk;
                }
                (a_rest, b_rest) = (ra, rb);
            }
        }
    }
}

/// Splits off the leading run of digits or of non-digits.
fn chunk(s: &str) -> Option<(&str, &str)> {
    let first = s.bytes().next()?;
    let digits = first.is_ascii_digit();
    let end = s.bytes().position(|b| b.is_ascii_digit() != digits).unwrap_or(s.len());
    Some(s.split_at(end))
}
