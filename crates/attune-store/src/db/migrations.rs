//! The schema migrations, embedded in the binary, one list per dialect.
//!
//! Listed here rather than found by `sqlx::migrate!`: that macro was the only
//! use of sqlx's `macros` feature, which builds a second bundled SQLite, the
//! drivers and a proc-macro stack for the build machine alone, on every
//! build. These are the `Migration`s the macro made (version, description,
//! SHA-384 of the text), so a database migrated by an earlier attune is
//! recognised as up to date. A test holds each list to its folder: a file
//! added there without a line here fails it.

use std::sync::LazyLock;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The migrations, named once: each is a file of the same name in both
/// dialects' folders (`both_dialects_have_the_same_migrations`). Expands to
/// `SQLITE_FILES` and `POSTGRES_FILES`, the `(file name, text)` of each.
macro_rules! migrations {
    ($($file:literal),+ $(,)?) => {
        pub(crate) const SQLITE_FILES: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("../../../../migrations/sqlite/", $file)))),+];
        pub(crate) const POSTGRES_FILES: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("../../../../migrations/postgres/", $file)))),+];
    };
}

migrations!(
    "0001_installations.sql",
    "0002_plugins.sql",
    "0003_api_tokens.sql",
    "0004_indexes.sql",
    "0005_active_versions.sql",
    "0006_jobs.sql",
    "0007_signed_indexes.sql",
    "0008_pending_activations.sql",
    "0009_listing_index.sql",
    "0010_activations_version.sql",
);

pub(crate) static SQLITE: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE_FILES));
pub(crate) static POSTGRES: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES_FILES));

/// What `sqlx::migrate!` makes of `NNNN_some_name.sql`: version NNNN,
/// description "some name", the checksum of the exact text.
fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(file, sql)| {
            let (version, rest) = file.split_once('_').expect("a migration file is NNNN_name.sql");
            let version = version.parse().expect("a migration file starts with its version");
            let description = rest.trim_end_matches(".sql").replace('_', " ");
            let no_tx = sql.starts_with("-- no-transaction");
            Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), no_tx)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sqlx::migrate!` would find in the folder, read now.
    fn on_disk(dialect: &str) -> Vec<(i64, String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(dialect);
        let found = sqlx::migrate::resolve_blocking(&dir).unwrap();
        found.into_iter().map(|(m, _)| (m.version, m.description.to_string(), m.checksum.to_vec())).collect()
    }

    fn embedded(m: &Migrator) -> Vec<(i64, String, Vec<u8>)> {
        m.iter().map(|m| (m.version, m.description.to_string(), m.checksum.to_vec())).collect()
    }

    #[test]
    fn each_list_is_its_folder_as_sqlx_reads_it() {
        assert_eq!(embedded(&SQLITE), on_disk("sqlite"), "migrations/sqlite and SQLITE_FILES differ");
        assert_eq!(embedded(&POSTGRES), on_disk("postgres"), "migrations/postgres and POSTGRES_FILES differ");
    }
}
