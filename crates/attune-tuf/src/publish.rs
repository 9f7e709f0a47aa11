//! Making and re-signing a TUF repository for an index folder: what backs
//! `attune index init` and `attune index sign` (and their `--rotate-root` /
//! `--timestamp-only` forms), so a CI job can publish a signed index.
//!
//! Layout (served as is by any static file server):
//! `{repo}/targets/<name>` the target files (the index document), plus
//! `{sha256}.<name>` copies when snapshots are consistent; `{repo}/metadata/`
//! `root.json` and `N.root.json`, `timestamp.json`, `snapshot.json` and
//! `targets.json` (also `N.snapshot.json`, `N.targets.json` when consistent).
//! Every file is written atomically; timestamp last, so a reader never sees a
//! timestamp naming a snapshot that is not there yet.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::keys::{PublicKey, SigningKey};
use crate::schema::{
    self, Envelope, Key, MetaFile, RoleKeys, Root, SPEC_VERSION, Snapshot, TargetFile, Targets, Timestamp,
};

/// Metadata files the publisher reads back (its own output) are bounded like the client's.
const MAX_METADATA: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: a repository is already there; use sign to publish, or rotate_root to change keys")]
    Exists { path: PathBuf },
    #[error("{path}: no repository metadata there; run init first")]
    NotInitialized { path: PathBuf },
    #[error("{path}: {reason}; the repository's metadata is damaged")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{role}: {have} of the given keys belong to this role, but its threshold is {threshold}; pass more of its \
         key files"
    )]
    NotEnoughKeys { role: String, have: usize, threshold: u64 },
    #[error("{role}: threshold {threshold} with {keys} keys; a threshold must be between 1 and the number of keys")]
    Threshold { role: String, threshold: u64, keys: usize },
    #[error("target {name}: not a plain relative path under targets/ (no empty, '.', '..' or '\\' parts)")]
    TargetName { name: String },
    #[error(
        "delegated role {name:?}: not a plain name (a-z A-Z 0-9 . _ -, not starting with .); rename it in targets.json"
    )]
    RoleName { name: String },
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
}

impl From<std::io::Error> for PublishError {
    fn from(source: std::io::Error) -> Self {
        PublishError::Io { source }
    }
}

/// The keys and threshold of one role.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub keys: Vec<PublicKey>,
    pub threshold: u64,
}

impl RoleSpec {
    pub fn new(keys: &[&SigningKey], threshold: u64) -> RoleSpec {
        RoleSpec { keys: keys.iter().map(|k| k.public().clone()).collect(), threshold }
    }
}

/// What a root says: every role's keys and threshold.
#[derive(Debug, Clone)]
pub struct RootSpec {
    pub root: RoleSpec,
    pub targets: RoleSpec,
    pub snapshot: RoleSpec,
    pub timestamp: RoleSpec,
    pub consistent_snapshot: bool,
    pub root_expires_in: Duration,
}

/// How the non-root roles are signed.
#[derive(Debug, Clone)]
pub struct SignOptions {
    pub now: OffsetDateTime,
    pub targets_expire_in: Duration,
    pub snapshot_expire_in: Duration,
    pub timestamp_expire_in: Duration,
    /// Whether timestamp and snapshot list length and hashes of what they name
    /// (not just the version); on by default, off only to test the version checks.
    pub meta_hashes: bool,
}

impl SignOptions {
    /// 90 days for targets, 7 for snapshot, 1 for timestamp (re-signed by CI daily).
    pub fn new(now: OffsetDateTime) -> SignOptions {
        SignOptions {
            now,
            targets_expire_in: Duration::days(90),
            snapshot_expire_in: Duration::days(7),
            timestamp_expire_in: Duration::days(1),
            meta_hashes: true,
        }
    }
}

/// The versions now published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub root_version: u64,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
}

fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

fn role_keys(spec: &RoleSpec, role: &str, keys: &mut BTreeMap<String, Key>) -> Result<RoleKeys, PublishError> {
    if spec.threshold == 0 || spec.threshold as usize > spec.keys.len() {
        return Err(PublishError::Threshold { role: role.into(), threshold: spec.threshold, keys: spec.keys.len() });
    }
    for k in &spec.keys {
        keys.insert(k.key_id.clone(), k.key.clone());
    }
    Ok(RoleKeys { keyids: spec.keys.iter().map(|k| k.key_id.clone()).collect(), threshold: spec.threshold })
}

fn make_root(spec: &RootSpec, version: u64, now: OffsetDateTime) -> Result<Root, PublishError> {
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (name, role) in
        [("root", &spec.root), ("targets", &spec.targets), ("snapshot", &spec.snapshot), ("timestamp", &spec.timestamp)]
    {
        roles.insert(name.to_owned(), role_keys(role, name, &mut keys)?);
    }
    Ok(Root {
        kind: "root".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: now + spec.root_expires_in,
        consistent_snapshot: spec.consistent_snapshot,
        keys,
        roles,
    })
}

/// The signers among `signers` that `role` lists, refusing fewer than its threshold.
fn pick<'k>(
    role: &str,
    keyids: &[String],
    threshold: u64,
    signers: &'k [SigningKey],
) -> Result<Vec<&'k SigningKey>, PublishError> {
    let chosen: Vec<&SigningKey> = signers.iter().filter(|s| keyids.iter().any(|id| id == s.key_id())).collect();
    if (chosen.len() as u64) < threshold {
        return Err(PublishError::NotEnoughKeys { role: role.into(), have: chosen.len(), threshold });
    }
    Ok(chosen)
}

/// A signed envelope's file text: `signed` signed by every key given.
pub fn sign_metadata<T: Serialize>(signed: &T, signers: &[&SigningKey]) -> Result<Vec<u8>, PublishError> {
    let message = schema::canonical(signed)?;
    let mut seen = std::collections::BTreeSet::new();
    let signatures = signers.iter().filter(|s| seen.insert(s.key_id().to_owned())).map(|s| s.sign(&message)).collect();
    let envelope = Envelope { signed, signatures };
    let mut bytes =
        serde_json::to_vec_pretty(&envelope).map_err(|e| schema::SchemaError::Canonical { reason: e.to_string() })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes one file atomically (synced temporary file renamed into place).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let dir = path.parent().ok_or_else(|| PublishError::NotInitialized { path: path.to_owned() })?;
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let with_path = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    tmp.write_all(bytes).map_err(with_path)?;
    tmp.as_file().sync_all().map_err(with_path)?;
    tmp.persist(path).map_err(|e| with_path(e.error))?;
    Ok(())
}

fn read_signed<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PublishError> {
    let mut bytes = Vec::new();
    fs_err::File::open(path)?.take(MAX_METADATA).read_to_end(&mut bytes)?;
    let envelope: Envelope<T> = serde_json::from_slice(&bytes)
        .map_err(|e| PublishError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    Ok(envelope.signed)
}

fn current_root(repo: &Path) -> Result<Root, PublishError> {
    let path = metadata_dir(repo).join("root.json");
    if !path.exists() {
        return Err(PublishError::NotInitialized { path });
    }
    read_signed(&path)
}

fn optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PublishError> {
    if path.exists() { read_signed(path).map(Some) } else { Ok(None) }
}

fn check_name(name: &str) -> Result<(), PublishError> {
    let bad = name.is_empty()
        || name.contains('\\')
        || name.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || name.chars().any(char::is_control);
    if bad { Err(PublishError::TargetName { name: name.to_owned() }) } else { Ok(()) }
}

/// Length and SHA-256 of a file, read in chunks.
fn describe(path: &Path) -> Result<TargetFile, PublishError> {
    let mut file = fs_err::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        length += n as u64;
    }
    let hashes = BTreeMap::from([("sha256".to_owned(), hex::encode(ctx.finish()))]);
    Ok(TargetFile { length, hashes, custom: None })
}

fn meta_of(version: u64, bytes: &[u8], with_hashes: bool) -> MetaFile {
    if !with_hashes {
        return MetaFile { version, length: None, hashes: None };
    }
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes));
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(BTreeMap::from([("sha256".to_owned(), sha256)])),
    }
}

/// `attune index init`: a new repository for the target files under
/// `{repo}/targets/` named in `targets` (e.g. `["index.json"]`): root version 1,
/// then targets, snapshot and timestamp as [`sign`] makes them.
pub fn init(
    repo: &Path,
    spec: &RootSpec,
    targets: &[String],
    signers: &[SigningKey],
    options: &SignOptions,
) -> Result<Published, PublishError> {
    let dir = metadata_dir(repo);
    if dir.join("root.json").exists() || dir.join("1.root.json").exists() {
        return Err(PublishError::Exists { path: dir });
    }
    let root = make_root(spec, 1, options.now)?;
    let keys = root_keys(&root, "root")?;
    let chosen = pick("root", &keys.keyids, keys.threshold, signers)?;
    let bytes = sign_metadata(&root, &chosen)?;
    write_file(&dir.join("1.root.json"), &bytes)?;
    write_file(&dir.join("root.json"), &bytes)?;
    sign(repo, targets, signers, options)
}

/// `attune index sign`: publishes the current target files as new targets,
/// snapshot and timestamp versions (delegations in the previous targets
/// metadata are kept, and the delegated roles' current files listed).
pub fn sign(
    repo: &Path,
    targets: &[String],
    signers: &[SigningKey],
    options: &SignOptions,
) -> Result<Published, PublishError> {
    let dir = metadata_dir(repo);
    let root = current_root(repo)?;
    let old_targets: Option<Targets> = optional(&dir.join("targets.json"))?;
    let old_snapshot: Option<Snapshot> = optional(&dir.join("snapshot.json"))?;
    let old_timestamp: Option<Timestamp> = optional(&dir.join("timestamp.json"))?;

    let mut listed = BTreeMap::new();
    for name in targets {
        check_name(name)?;
        let path = repo.join("targets").join(name);
        let file = describe(&path)?;
        if root.consistent_snapshot {
            let hashed = path.with_file_name(format!(
                "{}.{}",
                file.hashes["sha256"],
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ));
            fs_err::copy(&path, &hashed)?;
        }
        listed.insert(name.clone(), file);
    }
    let delegations = old_targets.as_ref().and_then(|t| t.delegations.clone());
    let new_targets = Targets {
        kind: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version: old_targets.as_ref().map_or(1, |t| t.version + 1),
        expires: options.now + options.targets_expire_in,
        targets: listed,
        delegations,
    };
    let keys = root_keys(&root, "targets")?;
    let targets_bytes = sign_metadata(&new_targets, &pick("targets", &keys.keyids, keys.threshold, signers)?)?;
    write_versioned(&dir, "targets", new_targets.version, root.consistent_snapshot, &targets_bytes)?;

    let mut meta = BTreeMap::from([(
        "targets.json".to_owned(),
        meta_of(new_targets.version, &targets_bytes, options.meta_hashes),
    )]);
    for role in new_targets.delegations.iter().flat_map(|d| &d.roles) {
        // The name becomes a file name here: one plain segment only.
        let plain = !role.name.is_empty()
            && !role.name.starts_with('.')
            && role.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(PublishError::RoleName { name: role.name.clone() });
        }
        let path = dir.join(format!("{}.json", role.name));
        let bytes = read_bounded(&path)?;
        let delegated: Envelope<Targets> = serde_json::from_slice(&bytes)
            .map_err(|e| PublishError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        meta.insert(format!("{}.json", role.name), meta_of(delegated.signed.version, &bytes, options.meta_hashes));
    }
    let snapshot = Snapshot {
        kind: "snapshot".into(),
        spec_version: SPEC_VERSION.into(),
        version: old_snapshot.as_ref().map_or(1, |s| s.version + 1),
        expires: options.now + options.snapshot_expire_in,
        meta,
    };
    let keys = root_keys(&root, "snapshot")?;
    let snapshot_bytes = sign_metadata(&snapshot, &pick("snapshot", &keys.keyids, keys.threshold, signers)?)?;
    write_versioned(&dir, "snapshot", snapshot.version, root.consistent_snapshot, &snapshot_bytes)?;

    let timestamp = Timestamp {
        kind: "timestamp".into(),
        spec_version: SPEC_VERSION.into(),
        version: old_timestamp.as_ref().map_or(1, |t| t.version + 1),
        expires: options.now + options.timestamp_expire_in,
        meta: BTreeMap::from([(
            "snapshot.json".to_owned(),
            meta_of(snapshot.version, &snapshot_bytes, options.meta_hashes),
        )]),
    };
    write_timestamp(&dir, &root, &timestamp, signers)?;
    Ok(Published {
        root_version: root.version,
        targets_version: new_targets.version,
        snapshot_version: snapshot.version,
        timestamp_version: timestamp.version,
    })
}

/// `attune index sign --timestamp-only`: a new timestamp version (new expiry)
/// naming the same snapshot; what a CI job runs daily.
pub fn resign_timestamp(
    repo: &Path,
    signers: &[SigningKey],
    now: OffsetDateTime,
    expire_in: Duration,
) -> Result<Published, PublishError> {
    let dir = metadata_dir(repo);
    let root = current_root(repo)?;
    let path = dir.join("timestamp.json");
    let old: Timestamp = optional(&path)?.ok_or(PublishError::NotInitialized { path })?;
    let snapshot_version = old.meta.get("snapshot.json").map_or(0, |m| m.version);
    let targets: Option<Targets> = optional(&dir.join("targets.json"))?;
    let timestamp = Timestamp { version: old.version + 1, expires: now + expire_in, ..old };
    write_timestamp(&dir, &root, &timestamp, signers)?;
    Ok(Published {
        root_version: root.version,
        targets_version: targets.map_or(0, |t| t.version),
        snapshot_version,
        timestamp_version: timestamp.version,
    })
}

/// `attune index sign --rotate-root`: root N+1 with the keys of `spec`,
/// signed by a threshold of the old root keys and of the new ones (so clients
/// trusting N accept it). Run [`sign`] next, with the new keys, when the
/// targets, snapshot or timestamp keys changed.
pub fn rotate_root(
    repo: &Path,
    spec: &RootSpec,
    signers: &[SigningKey],
    now: OffsetDateTime,
) -> Result<Published, PublishError> {
    let dir = metadata_dir(repo);
    let old = current_root(repo)?;
    let new = make_root(spec, old.version + 1, now)?;
    let old_keys = root_keys(&old, "root")?;
    let new_keys = root_keys(&new, "root")?;
    let mut chosen = pick("root (the current root keys)", &old_keys.keyids, old_keys.threshold, signers)?;
    chosen.extend(pick("root (the new root keys)", &new_keys.keyids, new_keys.threshold, signers)?);
    let bytes = sign_metadata(&new, &chosen)?;
    write_file(&dir.join(format!("{}.root.json", new.version)), &bytes)?;
    write_file(&dir.join("root.json"), &bytes)?;
    let version = |name: &str| -> Result<u64, PublishError> {
        #[derive(serde::Deserialize)]
        struct V {
            version: u64,
        }
        Ok(optional::<V>(&dir.join(name))?.map_or(0, |v| v.version))
    };
    Ok(Published {
        root_version: new.version,
        targets_version: version("targets.json")?,
        snapshot_version: version("snapshot.json")?,
        timestamp_version: version("timestamp.json")?,
    })
}

fn root_keys<'r>(root: &'r Root, role: &str) -> Result<&'r RoleKeys, PublishError> {
    root.roles
        .get(role)
        .ok_or_else(|| PublishError::Corrupt { path: PathBuf::from("root.json"), reason: format!("no {role} role") })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, PublishError> {
    let mut bytes = Vec::new();
    fs_err::File::open(path)?.take(MAX_METADATA).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn write_versioned(dir: &Path, role: &str, version: u64, consistent: bool, bytes: &[u8]) -> Result<(), PublishError> {
    if consistent {
        write_file(&dir.join(format!("{version}.{role}.json")), bytes)?;
    }
    write_file(&dir.join(format!("{role}.json")), bytes)
}

fn write_timestamp(dir: &Path, root: &Root, timestamp: &Timestamp, signers: &[SigningKey]) -> Result<(), PublishError> {
    let keys = root_keys(root, "timestamp")?;
    let bytes = sign_metadata(timestamp, &pick("timestamp", &keys.keyids, keys.threshold, signers)?)?;
    write_file(&dir.join("timestamp.json"), &bytes)
}
