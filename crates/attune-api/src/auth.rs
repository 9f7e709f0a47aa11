//! Bearer tokens: making them, and checking them on every API request.
//!
//! Why it exists: a token is the only credential the API accepts. The format
//! is `attune_<public id>_<secret>`; the database holds the public id (to find
//! the row) and the SHA-256 of the secret (never the secret), and the hashes
//! are compared with `subtle`'s constant-time equality. Scopes are ordered:
//! `read` < `install` < `admin`; a route needs one scope and any higher scope
//! passes.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::error::ApiError;
use crate::db::{ApiToken, Db, DbError, NewApiToken};

/// What a token may do. Ordered: each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List and show packs, installations and jobs.
    Read,
    /// Also install, uninstall and verify packs.
    Install,
    /// Everything, including listing the server's tokens.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Install => "install",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "install" => Ok(Scope::Install),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: use read, install or admin")),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const PREFIX: &str = "attune_";
/// Hex characters of the public id and of the secret.
const PUBLIC_LEN: usize = 16;
const SECRET_LEN: usize = 64;

/// A token as a client sends it, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Presented<'a> {
    pub public_id: &'a str,
    pub secret: &'a str,
}

/// Splits `attune_<public id>_<secret>`; `None` if it is not one.
pub fn parse_token(s: &str) -> Option<Presented<'_>> {
    let rest = s.strip_prefix(PREFIX)?;
    let (public_id, secret) = rest.split_once('_')?;
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex(public_id, PUBLIC_LEN) && hex(secret, SECRET_LEN)).then_some(Presented { public_id, secret })
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(chars: usize) -> String {
    let mut bytes = vec![0u8; chars / 2];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    hex::encode(bytes)
}

/// Why `create` did not make a token.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a live token named {0:?} exists; revoke it first (`attune token revoke {0}`) or pick another name")]
    NameTaken(String),
    #[error("token name {0:?}: use 1-64 of a-z A-Z 0-9 . _ -")]
    BadName(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Makes a token: stores its hash, returns the row and the token itself (the
/// only time it exists in clear).
pub async fn create(
    db: &Db,
    name: &str,
    scope: Scope,
    expires_at: Option<OffsetDateTime>,
    by: &str,
) -> Result<(ApiToken, String), CreateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(CreateError::BadName(name.to_string()));
    }
    let public_id = random_hex(PUBLIC_LEN);
    let secret = random_hex(SECRET_LEN);
    let new = NewApiToken {
        name: name.to_string(),
        public_id: public_id.clone(),
        secret_sha256: hash_secret(&secret),
        scope: scope.as_str().to_string(),
        created_by: by.to_string(),
        expires_at,
    };
    let row = db.create_token(&new).await?.ok_or_else(|| CreateError::NameTaken(name.to_string()))?;
    Ok((row, format!("{PREFIX}{public_id}_{secret}")))
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name, recorded with installs and uninstalls.
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// 403 unless this caller's scope reaches `need`.
    pub fn require(&self, need: Scope) -> Result<(), ApiError> {
        if self.scope < need {
            return Err(ApiError::forbidden(
                "insufficient_scope",
                format!("token {:?} has scope {}; this needs {need}", self.name, self.scope),
            ));
        }
        Ok(())
    }

    /// Whether this caller may see a job submitted by token `owner`: its
    /// own, or any with `admin`.
    pub fn sees_job_of(&self, owner: &str) -> bool {
        self.scope == Scope::Admin || self.name == owner
    }
}

/// The scope a route needs: reading needs `read`; `POST /gc` and
/// `GET /tokens` need `admin`; every other change needs `install`.
pub fn needed_scope(method: &axum::http::Method, path: &str) -> Scope {
    use axum::http::Method;
    if matches!(path, "/api/v1/gc" | "/api/v1/tokens") {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Install
    }
}

/// Checks the `Authorization: Bearer …` header: 401 unless a live token,
/// 403 unless its scope reaches `need`.
pub async fn authorize(db: &Db, headers: &HeaderMap, need: Scope) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized("this route needs `Authorization: Bearer <token>`"));
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`"));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`"));
    }
    let invalid = || ApiError::unauthorized("invalid token");
    let presented = parse_token(token.trim()).ok_or_else(invalid)?;
    let row = db
        .token_by_public_id(presented.public_id)
        .await
        .map_err(|e| ApiError::internal(format!("checking the token: {e}")))?;
    // Hash anyway when there is no row, so both paths cost the same.
    let given = hash_secret(presented.secret);
    let stored = row.as_ref().map(|r| r.secret_sha256.clone()).unwrap_or_else(|| "0".repeat(64));
    let same: bool = given.as_bytes().ct_eq(stored.as_bytes()).into();
    let Some(row) = row.filter(|_| same) else { return Err(invalid()) };
    if row.revoked_at.is_some() {
        return Err(ApiError::unauthorized(format!("token {:?} was revoked", row.name)));
    }
    if row.expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(ApiError::unauthorized(format!("token {:?} has expired", row.name)));
    }
    let scope: Scope = row.scope.parse().map_err(ApiError::internal)?;
    if scope < need {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            format!("token {:?} has scope {scope}; this needs {need}", row.name),
        ));
    }
    // Best effort: a failed stamp must not fail the request.
    let _ = db.touch_token(row.id).await;
    Ok(Caller { name: row.name, scope })
}

/// `30d`, `12h`, `90m`, `45s`, `2w` from now, or an RFC 3339 time.
pub fn parse_expiry(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let bad = || format!("{s:?}: write a duration (30d, 12h, 90m, 2w) or an RFC 3339 time (2027-01-31T00:00:00Z)");
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit).filter(|s| *s > 0).ok_or_else(bad)?;
    now.checked_add(time::Duration::seconds(secs)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format_round_trips() {
        let t = format!("attune_{}_{}", "a".repeat(16), "0".repeat(64));
        assert_eq!(parse_token(&t), Some(Presented { public_id: &"a".repeat(16), secret: &"0".repeat(64) }));
        for bad in ["", "attune_", "attune_abc_def", &t.to_uppercase(), &format!("{t}0"), &t.replace("attune", "x")] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Read < Scope::Install && Scope::Install < Scope::Admin);
    }

    #[test]
    fn expiry_forms() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(parse_expiry("30d", now).unwrap().unix_timestamp(), 30 * 86_400);
        assert_eq!(parse_expiry("2h", now).unwrap().unix_timestamp(), 7200);
        assert_eq!(parse_expiry("2027-01-31T00:00:00Z", now).unwrap().year(), 2027);
        for bad in ["", "d", "0d", "5y", "tomorrow"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }
}
