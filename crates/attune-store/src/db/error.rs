//! Errors of the installation journal, and URL redaction for them.

use std::path::PathBuf;

use super::Status;

/// Everything that can go wrong talking to the installation database.
///
/// The causes are kept as `#[source]`, not repeated in the message: print with
/// `{:#}` (anyhow) or walk `source()` to see them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "unsupported database URL `{url}`: attune supports SQLite, as \
         `sqlite:///absolute/path/attune.db`, `sqlite://relative/path.db` or `sqlite::memory:`, \
         and PostgreSQL, as `postgres://user:password@host:5432/database`"
    )]
    UnsupportedUrl {
        /// Redacted: never holds a password.
        url: String,
    },

    #[error(
        "cannot create the directory {} for the attune database; create it, or point \
         attune at a database URL in a writable location",
        path.display()
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot open the attune database at `{url}`; for SQLite check that the file is readable \
         and writable and is an SQLite database, for PostgreSQL that the server is up and the \
         database, user and password are right; or point attune at another database URL"
    )]
    Connect {
        /// Redacted: never holds a password.
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot bring the attune database schema up to date; if this database was written \
         by a newer attune, upgrade attune, otherwise restore it from a backup"
    )]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("database error while {what}; retry, and if it persists check the database file")]
    Query {
        /// What attune was doing, as "recording ...", "listing ...".
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("no {what} found for {key}; check the pack reference, version and host")]
    NotFound {
        /// The kind of record, e.g. "installed pack".
        what: &'static str,
        /// Which one was looked for, human-readable.
        key: String,
    },

    #[error(
        "installation #{id} is {status}, not pending, so it cannot be {attempted}; \
         this is a bug in the install pipeline"
    )]
    NotPending {
        id: i64,
        status: Status,
        /// "completed" or "failed".
        attempted: &'static str,
    },
}

impl DbError {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
        move |source| DbError::Query { what, source }
    }
}

/// `url` with any password replaced by `***`: in the userinfo
/// (`scheme://user:pw@host`) and in query parameters whose name mentions a
/// password (`?password=pw`). Error messages and logs only ever see this form.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };

    let mut out = match head.find("://") {
        Some(scheme_end) => {
            let auth_start = scheme_end + 3;
            let rest = &head[auth_start..];
            let auth_end = rest.find(['/', '#']).unwrap_or(rest.len());
            // The last '@' ends the userinfo: passwords may contain '@' unescaped.
            match rest[..auth_end].rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    let hidden = if userinfo.contains(':') { ":***" } else { "" };
                    format!("{}{user}{hidden}{}", &head[..auth_start], &rest[at..])
                }
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };

    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("pass") => {
                    format!("{key}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}
