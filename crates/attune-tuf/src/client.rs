//! The TUF 1.0 client workflow (spec §5): root rotation chain, timestamp →
//! snapshot → targets with delegations, then one target whose length and
//! hashes the signed targets metadata fixes.
//!
//! Everything is checked in memory against the trusted state read from the
//! caller's folder; the folder is written once, at the end, and only when
//! every step passed. So a refused update (any attack of the spec) leaves the
//! trusted metadata on disk byte for byte as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use time::OffsetDateTime;

use crate::schema::{self, DelegatedRole, Key, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp, tuf_date};
use crate::store::{self, State, StoreError, StoredTarget};
use crate::transport::{Transport, TransportError};
use crate::verify::{self, VerifyError};

#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Fetch {
        what: String,
        #[source]
        source: TransportError,
    },
    #[error(
        "{what}: {url} is larger than the limit of {limit} bytes for it (endless data attack?); nothing was trusted"
    )]
    TooLarge { what: String, url: String, limit: u64 },
    #[error(
        "{role} metadata: expired at {expires} (now {now} by the {time_source}) (freeze attack?); the repository must \
         re-sign it, or this machine's clock is wrong"
    )]
    Expired { role: String, expires: String, now: String, time_source: String },
    #[error(
        "{role} metadata: version {new} is lower than the trusted version {trusted} (rollback attack); nothing was changed"
    )]
    Rollback { role: String, trusted: u64, new: u64 },
    #[error(
        "snapshot metadata: no longer lists {file}, which the trusted snapshot listed (rollback attack); nothing was changed"
    )]
    RollbackRemoved { file: String },
    #[error(
        "{role} metadata: version {found}, but {listed_by} lists version {listed} (mix-and-match attack); the \
         server mixes files of different releases"
    )]
    VersionMismatch { role: String, listed_by: String, listed: u64, found: u64 },
    #[error("root metadata: {expected}.root.json holds version {found}; the server serves a root under the wrong name")]
    RootVersion { expected: u64, found: u64 },
    #[error("{role}: {found} bytes, but {listed_by} says {expected} (tampered or mixed files)")]
    Length { role: String, listed_by: String, expected: u64, found: u64 },
    #[error("{role}: {algorithm} is {found}, but {listed_by} says {expected} (tampered or mixed files)")]
    Hash { role: String, listed_by: String, algorithm: String, expected: String, found: String },
    #[error("{role}: {listed_by} lists no sha256 or sha512 hash of it; the repository must list one of those")]
    NoHash { role: String, listed_by: String },
    #[error("{role} metadata: lists no {file}; the repository's metadata is incomplete")]
    MissingMeta { role: String, file: String },
    #[error(
        "target {target}: not listed by the targets metadata or any delegated role trusted for that path; check \
         the target name (e.g. index.json or v1/index.json)"
    )]
    TargetNotFound { target: String },
    #[error(
        "target {target}: listed as {length} bytes, over the limit of {limit}; raise the limit if this is expected"
    )]
    TargetTooLarge { target: String, length: u64, limit: u64 },
    #[error(
        "target {target}: not a plain relative path (empty, '.', '..' or '\\' parts); the name cannot be fetched safely"
    )]
    BadTargetName { target: String },
    #[error(
        "root metadata: 1.root.json has SHA-256 {found}, but the pinned root is {expected}; the server sends another \
         root (wrong URL or a malicious mirror)"
    )]
    PinnedRoot { expected: String, found: String },
    #[error("{dir}: no trusted metadata yet; add the index with its root (--root FILE or --root-sha256 HEX)")]
    NoTrust { dir: PathBuf },
    #[error("{role} metadata: not on disk; run the update once while online")]
    NotStored { role: String },
    #[error("target {target}: more than {limit} delegated roles visited; the repository's delegations are too deep")]
    TooManyDelegations { target: String, limit: usize },
    #[error("delegated role {name:?}: has the name of a top-level role; the delegating metadata is invalid")]
    DelegatedName { name: String },
    #[error(
        "lock: index metadata targets version {locked} is older than the version {trusted} this host trusts (rollback \
         via an old lock); update the lock"
    )]
    LockRollback { locked: u64, trusted: u64 },
}

/// Where a repository's metadata and targets are, as URLs (a trailing `/` is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub metadata_base: String,
    pub targets_base: String,
}

impl Repository {
    /// The layout `attune index init` writes: `{base}/metadata/` and `{base}/targets/`.
    pub fn under(base: &str) -> Repository {
        let base = base.trim_end_matches('/');
        Repository { metadata_base: format!("{base}/metadata"), targets_base: format!("{base}/targets") }
    }

    fn metadata_url(&self, file: &str) -> String {
        format!("{}/{file}", self.metadata_base.trim_end_matches('/'))
    }
}

/// How many bytes each role may have before it is refused (endless data),
/// and how far the client follows chains. The defaults are python-tuf's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub root: u64,
    pub timestamp: u64,
    pub snapshot: u64,
    /// Top-level and delegated targets metadata.
    pub targets: u64,
    /// The target file itself (the index document).
    pub target: u64,
    /// How many newer roots one update follows.
    pub max_root_rotations: u64,
    /// How many delegated roles one target search visits.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root: 512 * 1024,
            timestamp: 16 * 1024,
            snapshot: 2_000_000,
            targets: 5_000_000,
            target: 64 * 1024 * 1024,
            max_root_rotations: 256,
            max_delegations: 32,
        }
    }
}

impl Limits {
    /// The most `trusted.json` can hold: every role at its limit, JSON-escaped (×2).
    fn stored(&self) -> u64 {
        let targets = self.targets.saturating_mul(1 + self.max_delegations as u64);
        let all = self.root.saturating_add(self.timestamp).saturating_add(self.snapshot).saturating_add(targets);
        all.saturating_mul(2).saturating_add(4096)
    }
}

/// The time expiry is checked against, and where it came from (named in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub now: OffsetDateTime,
    pub source: String,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { now: OffsetDateTime::now_utc(), source: "system clock".into() }
    }

    pub fn fixed(now: OffsetDateTime, source: &str) -> Clock {
        Clock { now, source: source.to_owned() }
    }
}

/// Where trust starts when a repository is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// A root.json obtained out of band (`--root FILE`).
    Root(Vec<u8>),
    /// `1.root.json` fetched from the repository, whose SHA-256 (hex) must be this (`--root-sha256`).
    RootSha256(String),
}

/// What an installation from this target records, and `info` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    /// The top-level targets metadata version (what a lock records).
    pub targets_version: u64,
    /// The role whose metadata lists the target: `targets` or a delegated role.
    pub target_role: String,
    pub target_role_version: u64,
    /// Ids of the keys whose valid signatures on `target_role` met its threshold.
    pub key_ids: Vec<String>,
    pub target_sha256: String,
    pub target_length: u64,
    #[serde(with = "tuf_date")]
    pub root_expires: OffsetDateTime,
    #[serde(with = "tuf_date")]
    pub timestamp_expires: OffsetDateTime,
    #[serde(with = "tuf_date")]
    pub snapshot_expires: OffsetDateTime,
    #[serde(with = "tuf_date")]
    pub targets_expires: OffsetDateTime,
    /// The clock expiry was checked against.
    pub time_source: String,
    /// Roles found expired and used anyway (offline with `allow_expired` only).
    pub expired_allowed: Vec<String>,
}

/// A verified target: its bytes and what vouches for them.
#[derive(Debug, Clone)]
pub struct Verified {
    pub target: String,
    pub bytes: Vec<u8>,
    pub facts: Facts,
    /// Whether the trusted metadata on disk changed.
    pub changed: bool,
}

/// One repository's client: a transport, its URLs, and the folder holding its trusted metadata.
pub struct Client<T> {
    transport: T,
    repo: Repository,
    dir: PathBuf,
    limits: Limits,
}

/// One verified role in memory, with the raw text that is stored.
#[derive(Debug, Clone)]
struct Held<T> {
    meta: T,
    raw: String,
    signers: Vec<String>,
}

/// How one run checks expiry: against one clock read at its start, refusing or (offline, when allowed) noting.
struct Session<'a> {
    clock: &'a Clock,
    allow_expired: bool,
    expired_allowed: Vec<String>,
}

impl Session<'_> {
    fn check_expiry(&mut self, role: &str, expires: OffsetDateTime) -> Result<(), TufError> {
        if expires > self.clock.now {
            return Ok(());
        }
        if self.allow_expired {
            self.expired_allowed.push(role.to_owned());
            return Ok(());
        }
        Err(TufError::Expired {
            role: role.to_owned(),
            expires: tuf_date::format(expires),
            now: tuf_date::format(self.clock.now),
            time_source: self.clock.source.clone(),
        })
    }
}

fn utf8(role: &str, bytes: Vec<u8>) -> Result<String, TufError> {
    String::from_utf8(bytes)
        .map_err(|_| VerifyError::Parse { role: role.to_owned(), reason: "not UTF-8".into() }.into())
}

/// A root checked against its own keys (how a stored or out-of-band root is read).
fn self_signed_root(raw: String) -> Result<Held<Root>, TufError> {
    let parsed = verify::parse("root", raw.as_bytes())?;
    let root: Root = parsed.read("root")?;
    let role = root_role(&root, "root")?;
    let signers = parsed.verify(&root.keys, &role.keyids, role.threshold)?;
    Ok(Held { meta: root, raw, signers })
}

fn root_role<'r>(root: &'r Root, role: &str) -> Result<&'r schema::RoleKeys, TufError> {
    root.roles.get(role).ok_or_else(|| TufError::MissingMeta { role: "root".into(), file: format!("the {role} role") })
}

/// Reads a top-level role's file signed by the keys `root` gives that role.
fn signed_by_root<T: serde::de::DeserializeOwned>(root: &Root, role: &str, raw: String) -> Result<Held<T>, TufError> {
    let parsed = verify::parse(role, raw.as_bytes())?;
    let keys = root_role(root, role)?;
    let signers = parsed.verify(&root.keys, &keys.keyids, keys.threshold)?;
    let meta = parsed.read(role)?;
    Ok(Held { meta, raw, signers })
}

/// Checks length and every supported hash that `listed_by` fixes for `role`.
fn check_meta(role: &str, listed_by: &str, meta: &MetaFile, bytes: &[u8]) -> Result<(), TufError> {
    if let Some(expected) = meta.length
        && expected != bytes.len() as u64
    {
        return Err(TufError::Length {
            role: role.into(),
            listed_by: listed_by.into(),
            expected,
            found: bytes.len() as u64,
        });
    }
    if let Some(hashes) = &meta.hashes {
        check_hashes(role, listed_by, hashes, bytes)?;
    }
    Ok(())
}

fn digest(algorithm: &str, bytes: &[u8]) -> Option<String> {
    let alg = match algorithm {
        "sha256" => &ring::digest::SHA256,
        "sha512" => &ring::digest::SHA512,
        _ => return None,
    };
    Some(hex::encode(ring::digest::digest(alg, bytes)))
}

/// Every listed hash we can compute must match, and there must be at least one.
fn check_hashes(role: &str, listed_by: &str, hashes: &BTreeMap<String, String>, bytes: &[u8]) -> Result<(), TufError> {
    let mut checked = 0;
    for (algorithm, expected) in hashes {
        let Some(found) = digest(algorithm, bytes) else { continue };
        if !found.eq_ignore_ascii_case(expected) {
            return Err(TufError::Hash {
                role: role.into(),
                listed_by: listed_by.into(),
                algorithm: algorithm.clone(),
                expected: expected.clone(),
                found,
            });
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(TufError::NoHash { role: role.into(), listed_by: listed_by.into() });
    }
    Ok(())
}

fn check_version(role: &str, listed_by: &str, listed: u64, found: u64) -> Result<(), TufError> {
    if listed != found {
        return Err(TufError::VersionMismatch { role: role.into(), listed_by: listed_by.into(), listed, found });
    }
    Ok(())
}

/// Characters kept as they are in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn check_target_name(target: &str) -> Result<(), TufError> {
    let bad = target.is_empty()
        || target.contains('\\')
        || target.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || target.chars().any(char::is_control);
    if bad { Err(TufError::BadTargetName { target: target.to_owned() }) } else { Ok(()) }
}

/// The target's URL; with consistent snapshots, `dir/{hash}.{file}`.
fn target_url(repo: &Repository, target: &str, file: &TargetFile, consistent: bool) -> String {
    let mut segments: Vec<String> = target.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect();
    if consistent {
        let hash = file.hashes.get("sha256").or_else(|| file.hashes.get("sha512"));
        if let (Some(hash), Some(last)) = (hash, segments.last_mut()) {
            *last = format!("{}.{last}", utf8_percent_encode(hash, SEGMENT));
        }
    }
    format!("{}/{}", repo.targets_base.trim_end_matches('/'), segments.join("/"))
}

/// The trusted roles after (or during) verification.
struct Trusted {
    root: Held<Root>,
    timestamp: Option<Held<Timestamp>>,
    snapshot: Option<Held<Snapshot>>,
    targets: Option<Held<Targets>>,
    delegated: BTreeMap<String, Held<Targets>>,
}

impl Trusted {
    /// Reads a stored state back, verifying each role against the stored root.
    fn from_state(state: &State) -> Result<Trusted, TufError> {
        let root = self_signed_root(state.root.clone())?;
        let timestamp = match &state.timestamp {
            Some(raw) => Some(signed_by_root::<Timestamp>(&root.meta, "timestamp", raw.clone())?),
            None => None,
        };
        let snapshot = match &state.snapshot {
            Some(raw) => Some(signed_by_root::<Snapshot>(&root.meta, "snapshot", raw.clone())?),
            None => None,
        };
        let targets = match &state.targets {
            Some(raw) => Some(signed_by_root::<Targets>(&root.meta, "targets", raw.clone())?),
            None => None,
        };
        // Delegated roles are verified when a search reaches them (their keys come from the delegator).
        let mut delegated = BTreeMap::new();
        for (name, raw) in &state.delegated {
            let parsed = verify::parse(name, raw.as_bytes())?;
            let meta: Targets = parsed.read("targets")?;
            delegated.insert(name.clone(), Held { meta, raw: raw.clone(), signers: vec![] });
        }
        Ok(Trusted { root, timestamp, snapshot, targets, delegated })
    }

    fn to_state(&self, target: Option<StoredTarget>) -> State {
        let mut state = State::new(self.root.raw.clone());
        state.timestamp = self.timestamp.as_ref().map(|h| h.raw.clone());
        state.snapshot = self.snapshot.as_ref().map(|h| h.raw.clone());
        state.targets = self.targets.as_ref().map(|h| h.raw.clone());
        state.delegated = self.delegated.iter().map(|(k, v)| (k.clone(), v.raw.clone())).collect();
        state.target = target;
        state
    }
}

/// Where a delegated role's metadata comes from during a search.
enum Source<'a, T> {
    Network(&'a Client<T>),
    Disk,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T, repo: Repository, dir: impl Into<PathBuf>, limits: Limits) -> Client<T> {
        Client { transport, repo, dir: dir.into(), limits }
    }

    /// The folder holding this repository's trusted metadata.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `what` names the file in errors: `timestamp metadata`, `target index.json`.
    async fn fetch(&self, what: &str, url: &str, max_len: u64) -> Result<Vec<u8>, TufError> {
        let bytes = match self.transport.fetch(url, max_len).await {
            Ok(b) => b,
            Err(TransportError::TooLarge { .. }) => {
                return Err(TufError::TooLarge { what: what.into(), url: url.into(), limit: max_len });
            }
            Err(source) => return Err(TufError::Fetch { what: what.into(), source }),
        };
        if bytes.len() as u64 > max_len {
            return Err(TufError::TooLarge { what: what.into(), url: url.into(), limit: max_len });
        }
        Ok(bytes)
    }

    /// `index add`: trust starts from `anchor` (any stored state is replaced),
    /// then the full update runs; nothing is written unless it all passes.
    pub async fn init(&self, anchor: &Anchor, target: &str, clock: &Clock) -> Result<Verified, TufError> {
        let raw = match anchor {
            Anchor::Root(bytes) => {
                if bytes.len() as u64 > self.limits.root {
                    return Err(TufError::TooLarge {
                        what: "root metadata".into(),
                        url: "--root".into(),
                        limit: self.limits.root,
                    });
                }
                utf8("root", bytes.clone())?
            }
            Anchor::RootSha256(expected) => {
                let url = self.repo.metadata_url("1.root.json");
                let bytes = self.fetch("root metadata", &url, self.limits.root).await?;
                let found = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
                if !found.eq_ignore_ascii_case(expected.trim()) {
                    return Err(TufError::PinnedRoot { expected: expected.clone(), found });
                }
                utf8("root", bytes)?
            }
        };
        let root = self_signed_root(raw)?;
        if let Anchor::RootSha256(_) = anchor
            && root.meta.version != 1
        {
            return Err(TufError::RootVersion { expected: 1, found: root.meta.version });
        }
        let trusted = Trusted { root, timestamp: None, snapshot: None, targets: None, delegated: BTreeMap::new() };
        self.run(trusted, None, target, clock).await
    }

    /// `index update`: the client workflow from the stored trusted state.
    pub async fn update(&self, target: &str, clock: &Clock) -> Result<Verified, TufError> {
        let state = store::load(&self.dir, self.limits.stored())?.ok_or(TufError::NoTrust { dir: self.dir.clone() })?;
        let trusted = Trusted::from_state(&state)?;
        self.run(trusted, Some(state), target, clock).await
    }

    /// The target from the trusted metadata on disk only (`--offline`): expired
    /// metadata is refused unless `allow_expired`, and then listed in the facts.
    pub async fn offline(&self, target: &str, clock: &Clock, allow_expired: bool) -> Result<Verified, TufError> {
        let state = store::load(&self.dir, self.limits.stored())?.ok_or(TufError::NoTrust { dir: self.dir.clone() })?;
        let trusted = Trusted::from_state(&state)?;
        let mut session = Session { clock, allow_expired, expired_allowed: vec![] };
        session.check_expiry("root", trusted.root.meta.expires)?;
        let ts = trusted.timestamp.as_ref().ok_or(TufError::NotStored { role: "timestamp".into() })?;
        session.check_expiry("timestamp", ts.meta.expires)?;
        let snap = trusted.snapshot.as_ref().ok_or(TufError::NotStored { role: "snapshot".into() })?;
        let listed = ts.meta.meta.get("snapshot.json").ok_or_else(|| missing("timestamp", "snapshot.json"))?;
        check_version("snapshot", "timestamp", listed.version, snap.meta.version)?;
        session.check_expiry("snapshot", snap.meta.expires)?;
        let tgts = trusted.targets.as_ref().ok_or(TufError::NotStored { role: "targets".into() })?;
        let listed = snap.meta.meta.get("targets.json").ok_or_else(|| missing("snapshot", "targets.json"))?;
        check_version("targets", "snapshot", listed.version, tgts.meta.version)?;
        session.check_expiry("targets", tgts.meta.expires)?;
        let mut delegated = trusted.delegated.clone();
        let found =
            find_target::<T>(Source::Disk, &trusted, &mut delegated, &mut session, target, self.limits.max_delegations)
                .await?;
        let stored = state
            .target
            .as_ref()
            .filter(|t| t.name == target)
            .ok_or(TufError::NotStored { role: format!("target {target}") })?;
        let bytes = store::load_target(&self.dir, stored, self.limits.target)?;
        check_target(target, &found.file, &found.role, &bytes)?;
        let facts = facts(&trusted, &found, &bytes, session);
        Ok(Verified { target: target.to_owned(), bytes, facts, changed: false })
    }

    /// What this host trusts now (expiry not enforced), or `None` before the first update.
    pub async fn trusted(&self, target: &str) -> Result<Option<Facts>, TufError> {
        if store::load(&self.dir, self.limits.stored())?.is_none() {
            return Ok(None);
        }
        let clock = Clock::fixed(OffsetDateTime::UNIX_EPOCH, "trusted-state read (expiry not enforced)");
        Ok(Some(self.offline(target, &clock, true).await?.facts))
    }

    async fn run(
        &self,
        mut trusted: Trusted,
        previous: Option<State>,
        target: &str,
        clock: &Clock,
    ) -> Result<Verified, TufError> {
        check_target_name(target)?;
        let mut session = Session { clock, allow_expired: false, expired_allowed: vec![] };
        self.update_root(&mut trusted).await?;
        session.check_expiry("root", trusted.root.meta.expires)?;
        self.update_timestamp(&mut trusted, &mut session).await?;
        self.update_snapshot(&mut trusted, &mut session).await?;
        self.update_targets(&mut trusted, &mut session).await?;

        // Delegated roles: the search loads what it needs; stored ones are reused when their version still holds.
        let mut delegated = std::mem::take(&mut trusted.delegated);
        let found = find_target(
            Source::Network(self),
            &trusted,
            &mut delegated,
            &mut session,
            target,
            self.limits.max_delegations,
        )
        .await?;
        trusted.delegated = delegated;

        if found.file.length > self.limits.target {
            return Err(TufError::TargetTooLarge {
                target: target.into(),
                length: found.file.length,
                limit: self.limits.target,
            });
        }
        // The stored copy serves when the signed hashes still name it.
        let stored = previous.as_ref().and_then(|s| s.target.clone()).filter(|t| {
            t.name == target && found.file.hashes.get("sha256").is_some_and(|h| h.eq_ignore_ascii_case(&t.sha256))
        });
        let local = stored.as_ref().and_then(|t| store::load_target(&self.dir, t, self.limits.target).ok());
        let bytes = match local {
            Some(bytes) if check_target(target, &found.file, &found.role, &bytes).is_ok() => bytes,
            _ => {
                let url = target_url(&self.repo, target, &found.file, trusted.root.meta.consistent_snapshot);
                let bytes = self.fetch(&format!("target {target}"), &url, found.file.length).await?;
                check_target(target, &found.file, &found.role, &bytes)?;
                bytes
            }
        };
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        let state = trusted.to_state(Some(StoredTarget { name: target.to_owned(), sha256 }));
        let changed = previous.as_ref() != Some(&state);
        if changed {
            store::save(&self.dir, &state, Some(&bytes))?;
        }
        let facts = facts(&trusted, &found, &bytes, session);
        Ok(Verified { target: target.to_owned(), bytes, facts, changed })
    }

    /// Spec §5.3: follow N+1.root.json while the server has one, each signed by
    /// the old root's keys and its own; a rotation of the timestamp or snapshot
    /// keys drops their trusted copies (fast-forward attack recovery).
    async fn update_root(&self, trusted: &mut Trusted) -> Result<(), TufError> {
        let start = trusted.root.meta.clone();
        for _ in 0..self.limits.max_root_rotations {
            let next = trusted.root.meta.version + 1;
            let url = self.repo.metadata_url(&format!("{next}.root.json"));
            let bytes = match self.fetch("root metadata", &url, self.limits.root).await {
                Ok(b) => b,
                Err(TufError::Fetch { source: TransportError::NotFound { .. }, .. }) => break,
                Err(e) => return Err(e),
            };
            let raw = utf8("root", bytes)?;
            let parsed = verify::parse("root", raw.as_bytes())?;
            let old = root_role(&trusted.root.meta, "root")?;
            parsed.verify(&trusted.root.meta.keys, &old.keyids, old.threshold)?;
            let new: Root = parsed.read("root")?;
            let own = root_role(&new, "root")?;
            let signers = parsed.verify(&new.keys, &own.keyids, own.threshold)?;
            if new.version != next {
                return Err(TufError::RootVersion { expected: next, found: new.version });
            }
            trusted.root = Held { meta: new, raw, signers };
        }
        let rotated = |role: &str| {
            let keys = |root: &Root| {
                root.roles.get(role).map(|r| {
                    r.keyids.iter().filter_map(|id| root.keys.get(id).map(|k| k.keyval.public.clone())).collect()
                })
            };
            let before: Option<BTreeSet<String>> = keys(&start);
            before != keys(&trusted.root.meta)
        };
        if rotated("timestamp") || rotated("snapshot") {
            trusted.timestamp = None;
            trusted.snapshot = None;
        }
        if rotated("targets") {
            trusted.targets = None;
            trusted.delegated.clear();
        }
        Ok(())
    }

    /// Spec §5.4.
    async fn update_timestamp(&self, trusted: &mut Trusted, session: &mut Session<'_>) -> Result<(), TufError> {
        let url = self.repo.metadata_url("timestamp.json");
        let raw = utf8("timestamp", self.fetch("timestamp metadata", &url, self.limits.timestamp).await?)?;
        let new: Held<Timestamp> = signed_by_root(&trusted.root.meta, "timestamp", raw)?;
        let new_snap = new.meta.meta.get("snapshot.json").ok_or_else(|| missing("timestamp", "snapshot.json"))?;
        if let Some(old) = &trusted.timestamp {
            if new.meta.version < old.meta.version {
                return Err(TufError::Rollback {
                    role: "timestamp".into(),
                    trusted: old.meta.version,
                    new: new.meta.version,
                });
            }
            if let Some(old_snap) = old.meta.meta.get("snapshot.json")
                && new_snap.version < old_snap.version
            {
                return Err(TufError::Rollback {
                    role: "snapshot".into(),
                    trusted: old_snap.version,
                    new: new_snap.version,
                });
            }
        }
        session.check_expiry("timestamp", new.meta.expires)?;
        // An equal version is the trusted one again (spec §5.4.3.1: keep the trusted copy).
        if trusted.timestamp.as_ref().is_none_or(|old| old.meta.version < new.meta.version) {
            trusted.timestamp = Some(new);
        }
        Ok(())
    }

    /// Spec §5.5.
    async fn update_snapshot(&self, trusted: &mut Trusted, session: &mut Session<'_>) -> Result<(), TufError> {
        let ts = trusted.timestamp.as_ref().ok_or_else(|| missing("timestamp", "snapshot.json"))?;
        let listed = ts.meta.meta.get("snapshot.json").ok_or_else(|| missing("timestamp", "snapshot.json"))?.clone();
        if let Some(old) = &trusted.snapshot
            && old.meta.version == listed.version
        {
            return session.check_expiry("snapshot", old.meta.expires);
        }
        let file = if trusted.root.meta.consistent_snapshot {
            format!("{}.snapshot.json", listed.version)
        } else {
            "snapshot.json".to_owned()
        };
        let max = listed.length.unwrap_or(self.limits.snapshot).min(self.limits.snapshot);
        let bytes = self.fetch("snapshot metadata", &self.repo.metadata_url(&file), max).await?;
        check_meta("snapshot", "timestamp", &listed, &bytes)?;
        let new: Held<Snapshot> = signed_by_root(&trusted.root.meta, "snapshot", utf8("snapshot", bytes)?)?;
        check_version("snapshot", "timestamp", listed.version, new.meta.version)?;
        if let Some(old) = &trusted.snapshot {
            for (file, was) in &old.meta.meta {
                let Some(now) = new.meta.meta.get(file) else {
                    return Err(TufError::RollbackRemoved { file: file.clone() });
                };
                if now.version < was.version {
                    let role = file.strip_suffix(".json").unwrap_or(file);
                    return Err(TufError::Rollback { role: role.into(), trusted: was.version, new: now.version });
                }
            }
        }
        session.check_expiry("snapshot", new.meta.expires)?;
        trusted.snapshot = Some(new);
        Ok(())
    }

    /// Spec §5.6 for the top-level targets role.
    async fn update_targets(&self, trusted: &mut Trusted, session: &mut Session<'_>) -> Result<(), TufError> {
        let snap = trusted.snapshot.as_ref().ok_or_else(|| missing("timestamp", "snapshot.json"))?;
        let listed = snap.meta.meta.get("targets.json").ok_or_else(|| missing("snapshot", "targets.json"))?.clone();
        if let Some(old) = &trusted.targets
            && old.meta.version == listed.version
        {
            return session.check_expiry("targets", old.meta.expires);
        }
        let raw = self.fetch_listed("targets", "targets", &listed, trusted.root.meta.consistent_snapshot).await?;
        let new: Held<Targets> = signed_by_root(&trusted.root.meta, "targets", raw)?;
        check_version("targets", "snapshot", listed.version, new.meta.version)?;
        session.check_expiry("targets", new.meta.expires)?;
        trusted.targets = Some(new);
        Ok(())
    }

    /// Fetches a targets role's file (`N.name.json` with consistent snapshots), checked against the snapshot's listing.
    async fn fetch_listed(
        &self,
        role: &str,
        name: &str,
        listed: &MetaFile,
        consistent: bool,
    ) -> Result<String, TufError> {
        let name = utf8_percent_encode(name, SEGMENT).to_string();
        let file = if consistent { format!("{}.{name}.json", listed.version) } else { format!("{name}.json") };
        let max = listed.length.unwrap_or(self.limits.targets).min(self.limits.targets);
        let bytes = self.fetch(&format!("{role} metadata"), &self.repo.metadata_url(&file), max).await?;
        check_meta(role, "snapshot", listed, &bytes)?;
        utf8(role, bytes)
    }
}

fn missing(role: &str, file: &str) -> TufError {
    TufError::MissingMeta { role: role.into(), file: file.into() }
}

fn check_target(target: &str, file: &TargetFile, role: &str, bytes: &[u8]) -> Result<(), TufError> {
    let what = format!("target {target}");
    let listed_by = format!("{role} metadata");
    if bytes.len() as u64 != file.length {
        return Err(TufError::Length { role: what, listed_by, expected: file.length, found: bytes.len() as u64 });
    }
    check_hashes(&what, &listed_by, &file.hashes, bytes)
}

/// The target as found by the search.
struct Found {
    file: TargetFile,
    role: String,
    role_version: u64,
    signers: Vec<String>,
}

fn facts(trusted: &Trusted, found: &Found, bytes: &[u8], session: Session<'_>) -> Facts {
    let ts = trusted.timestamp.as_ref();
    let snap = trusted.snapshot.as_ref();
    let tgts = trusted.targets.as_ref();
    let epoch = OffsetDateTime::UNIX_EPOCH;
    Facts {
        root_version: trusted.root.meta.version,
        timestamp_version: ts.map_or(0, |h| h.meta.version),
        snapshot_version: snap.map_or(0, |h| h.meta.version),
        targets_version: tgts.map_or(0, |h| h.meta.version),
        target_role: found.role.clone(),
        target_role_version: found.role_version,
        key_ids: found.signers.clone(),
        target_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        target_length: bytes.len() as u64,
        root_expires: trusted.root.meta.expires,
        timestamp_expires: ts.map_or(epoch, |h| h.meta.expires),
        snapshot_expires: snap.map_or(epoch, |h| h.meta.expires),
        targets_expires: tgts.map_or(epoch, |h| h.meta.expires),
        time_source: session.clock.source.clone(),
        expired_allowed: session.expired_allowed,
    }
}

/// Refuses a lock whose recorded targets version is older than the trusted one (`sync --locked`).
pub fn check_locked(locked_targets_version: u64, trusted: &Facts) -> Result<(), TufError> {
    if locked_targets_version < trusted.targets_version {
        return Err(TufError::LockRollback { locked: locked_targets_version, trusted: trusted.targets_version });
    }
    Ok(())
}

/// A search step's pending work: a delegated role and the keys its delegator gave it.
struct Pending {
    role: DelegatedRole,
    keys: BTreeMap<String, Key>,
}

/// The delegations of `meta` that cover `target`, in order; `true` when a
/// terminating one matched (the search then goes no further than its subtree).
fn children(meta: &Targets, target: &str) -> (Vec<Pending>, bool) {
    let mut out = Vec::new();
    let Some(delegations) = &meta.delegations else { return (out, false) };
    for role in &delegations.roles {
        if role.covers(target) {
            out.push(Pending { role: role.clone(), keys: delegations.keys.clone() });
            if role.terminating {
                return (out, true);
            }
        }
    }
    (out, false)
}

/// Spec §5.6.7: a pre-order depth-first search of the delegation graph for
/// `target`, each delegated role verified with its delegator's keys and the
/// version the snapshot lists. `delegated` holds the stored roles on entry and
/// the roles visited on return.
async fn find_target<T: Transport>(
    source: Source<'_, T>,
    trusted: &Trusted,
    delegated: &mut BTreeMap<String, Held<Targets>>,
    session: &mut Session<'_>,
    target: &str,
    limit: usize,
) -> Result<Found, TufError> {
    let top = trusted.targets.as_ref().ok_or(TufError::NotStored { role: "targets".into() })?;
    if let Some(file) = top.meta.targets.get(target) {
        delegated.clear();
        return Ok(Found {
            file: file.clone(),
            role: "targets".into(),
            role_version: top.meta.version,
            signers: top.signers.clone(),
        });
    }
    let (first, _) = children(&top.meta, target);
    let mut stack: Vec<Pending> = first.into_iter().rev().collect();
    let mut visited = BTreeSet::new();
    let mut found = None;
    while let Some(pending) = stack.pop() {
        let name = pending.role.name.clone();
        if !visited.insert(name.clone()) {
            continue;
        }
        if visited.len() > limit {
            return Err(TufError::TooManyDelegations { target: target.into(), limit });
        }
        let held = load_delegated(&source, trusted, delegated, session, &pending).await?;
        if let Some(file) = held.meta.targets.get(target) {
            found = Some(Found {
                file: file.clone(),
                role: name,
                role_version: held.meta.version,
                signers: held.signers.clone(),
            });
            break;
        }
        let (next, terminating) = children(&held.meta, target);
        if terminating {
            stack.clear();
        }
        stack.extend(next.into_iter().rev());
    }
    delegated.retain(|name, _| visited.contains(name));
    found.ok_or_else(|| TufError::TargetNotFound { target: target.into() })
}

async fn load_delegated<T: Transport>(
    source: &Source<'_, T>,
    trusted: &Trusted,
    delegated: &mut BTreeMap<String, Held<Targets>>,
    session: &mut Session<'_>,
    pending: &Pending,
) -> Result<Held<Targets>, TufError> {
    let name = &pending.role.name;
    if ["root", "timestamp", "snapshot", "targets"].contains(&name.as_str()) {
        return Err(TufError::DelegatedName { name: name.clone() });
    }
    let snap = trusted.snapshot.as_ref().ok_or(TufError::NotStored { role: "snapshot".into() })?;
    let file = format!("{name}.json");
    let listed = snap.meta.meta.get(&file).ok_or_else(|| missing("snapshot", &file))?;
    let raw = match (delegated.get(name), source) {
        (Some(held), _) if held.meta.version == listed.version => held.raw.clone(),
        (_, Source::Network(client)) => {
            client.fetch_listed(name, name, listed, trusted.root.meta.consistent_snapshot).await?
        }
        (_, Source::Disk) => return Err(TufError::NotStored { role: name.clone() }),
    };
    let parsed = verify::parse(name, raw.as_bytes())?;
    let signers = parsed.verify(&pending.keys, &pending.role.keyids, pending.role.threshold)?;
    let meta: Targets = parsed.read("targets")?;
    check_version(name, "snapshot", listed.version, meta.version)?;
    session.check_expiry(name, meta.expires)?;
    let held = Held { meta, raw, signers };
    delegated.insert(name.clone(), held.clone());
    Ok(held)
}
