//! `attune index keygen|init|sign`: making and re-signing a TUF repository
//! around an index folder, so a CI job can publish a signed index (see
//! `docs/registry.md`, "Signed indexes"). Thin over `attune_tuf::publish`;
//! they read only the repository folder and the key files: no database, no
//! network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use attune_app::tuf::SigningKey;
use attune_app::tuf::publish::{self, Published, RoleSpec, RootSpec, SignOptions};
use clap::Args;
use time::{Duration, OffsetDateTime};

use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum TufPublishError {
    #[error(transparent)]
    Key(#[from] attune_app::tuf::KeyError),
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: already exists; a key is never overwritten, choose another file")]
    KeyExists { path: PathBuf },
    #[error(
        "{repo}: no index document under targets/ (index.json or v1/index.json); put it there or name it with --target"
    )]
    NoTarget { repo: PathBuf },
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error(
        "the new root gives the {role} role no key; give {all} FILE (every role's) or --{role}-key FILE \
         (the current root keys sign with --key)"
    )]
    NoRoleKeys { role: &'static str, all: &'static str },
}

/// The keys of every role, and how long each signature holds.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A private key (ed25519 PKCS#8 PEM) that signs; repeatable. On `init`
    /// also the keys every role gets unless a --*-key flag names that role's
    /// own (on `--rotate-root` that is --new-key).
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    /// The root role's own keys (repeatable; `init` and `--rotate-root`; they sign too).
    #[arg(long, value_name = "FILE")]
    root_key: Vec<PathBuf>,
    /// The targets role's own keys.
    #[arg(long, value_name = "FILE")]
    targets_key: Vec<PathBuf>,
    /// The snapshot role's own keys.
    #[arg(long, value_name = "FILE")]
    snapshot_key: Vec<PathBuf>,
    /// The timestamp role's own keys (the one CI keeps online).
    #[arg(long, value_name = "FILE")]
    timestamp_key: Vec<PathBuf>,
    /// How many of a role's keys must sign it (every role).
    #[arg(long, default_value_t = 1)]
    threshold: u64,
    /// The target files under DIR/targets/ to list (default: index.json and
    /// v1/index.json, those that exist); repeatable.
    #[arg(long, value_name = "NAME")]
    target: Vec<String>,
    /// How long the root metadata holds.
    #[arg(long, value_name = "DURATION", default_value = "365d")]
    root_expires: String,
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    targets_expires: String,
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    snapshot_expires: String,
    /// How long the timestamp holds: re-sign it (`sign --timestamp-only`) more often.
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    timestamp_expires: String,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the new private key (ed25519 PKCS#8 PEM, mode 0600).
    path: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository folder: the index document under DIR/targets/, metadata written to DIR/metadata/.
    dir: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    /// Name snapshots by version and targets by hash (clients then fetch N.snapshot.json, HASH.index.json).
    #[arg(long)]
    consistent_snapshot: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The repository folder made by `attune index init`.
    dir: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    /// Only a new timestamp (new expiry, same snapshot): what CI runs daily.
    #[arg(long, conflicts_with = "rotate_root")]
    timestamp_only: bool,
    /// Publish root N+1 with the keys of --new-key (and --root-key etc.), signed
    /// by the current root keys (--key) and the new ones; then re-sign the rest.
    #[arg(long)]
    rotate_root: bool,
    /// The new keys on --rotate-root (every role's, unless a --*-key flag names a role's own).
    #[arg(long, value_name = "FILE", requires = "rotate_root")]
    new_key: Vec<PathBuf>,
    /// Name snapshots by version and targets by hash in the new root (--rotate-root).
    #[arg(long, requires = "rotate_root")]
    consistent_snapshot: bool,
}

fn duration(flag: &'static str, text: &str) -> Result<Duration, TufPublishError> {
    // Days too, which config durations do not take.
    if let Some(days) = text.strip_suffix('d') {
        let n: i64 = days.trim().parse().map_err(|_| TufPublishError::Flag {
            flag,
            reason: format!("{text:?} is not a duration; write e.g. 90d, 12h, 30m or 45s"),
        })?;
        return Ok(Duration::days(n));
    }
    let d = config::parse_duration(text).map_err(|e| TufPublishError::Flag { flag, reason: e.to_string() })?;
    Duration::try_from(d).map_err(|e| TufPublishError::Flag { flag, reason: e.to_string() })
}

fn load(paths: &[PathBuf]) -> Result<Vec<SigningKey>, TufPublishError> {
    paths.iter().map(|p| SigningKey::from_pem_file(p).map_err(TufPublishError::from)).collect()
}

fn targets(dir: &Path, given: &[String]) -> Result<Vec<String>, TufPublishError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let found: Vec<String> = ["index.json", "v1/index.json"]
        .into_iter()
        .filter(|t| dir.join("targets").join(t).is_file())
        .map(str::to_owned)
        .collect();
    if found.is_empty() {
        return Err(TufPublishError::NoTarget { repo: dir.to_owned() });
    }
    Ok(found)
}

fn options(k: &KeyArgs) -> Result<SignOptions, TufPublishError> {
    let mut o = SignOptions::new(OffsetDateTime::now_utc());
    o.targets_expire_in = duration("--targets-expires", &k.targets_expires)?;
    o.snapshot_expire_in = duration("--snapshot-expires", &k.snapshot_expires)?;
    o.timestamp_expire_in = duration("--timestamp-expires", &k.timestamp_expires)?;
    Ok(o)
}

/// The root a set of keys makes: `all` for every role unless the role's own flag names keys.
/// Returns it and every key it names (all of which sign).
fn root_spec(
    k: &KeyArgs,
    (all_flag, all): (&'static str, &[PathBuf]),
    consistent_snapshot: bool,
) -> Result<(RootSpec, Vec<SigningKey>), TufPublishError> {
    let pick = |own: &[PathBuf]| if own.is_empty() { all.to_vec() } else { own.to_vec() };
    let roles = [
        ("root", pick(&k.root_key)),
        ("targets", pick(&k.targets_key)),
        ("snapshot", pick(&k.snapshot_key)),
        ("timestamp", pick(&k.timestamp_key)),
    ];
    let mut signers: Vec<SigningKey> = Vec::new();
    let mut specs = Vec::new();
    for (role, paths) in &roles {
        if paths.is_empty() {
            return Err(TufPublishError::NoRoleKeys { role, all: all_flag });
        }
        let keys = load(paths)?;
        specs.push(RoleSpec::new(&keys.iter().collect::<Vec<_>>(), k.threshold));
        for key in keys {
            if !signers.iter().any(|s| s.key_id() == key.key_id()) {
                signers.push(key);
            }
        }
    }
    let [root, targets, snapshot, timestamp]: [RoleSpec; 4] = specs.try_into().expect("four roles");
    let spec = RootSpec {
        root,
        targets,
        snapshot,
        timestamp,
        consistent_snapshot,
        root_expires_in: duration("--root-expires", &k.root_expires)?,
    };
    Ok((spec, signers))
}

fn report(what: &str, dir: &Path, p: &Published, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        super::output::print_json(&serde_json::json!({
            "repository": dir,
            "root_version": p.root_version,
            "targets_version": p.targets_version,
            "snapshot_version": p.snapshot_version,
            "timestamp_version": p.timestamp_version,
        }))?;
    } else {
        outln!(
            "{what} {}: root v{}, targets v{}, snapshot v{}, timestamp v{}",
            dir.display(),
            p.root_version,
            p.targets_version,
            p.snapshot_version,
            p.timestamp_version
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keygen(a: &KeygenArgs, json: bool) -> anyhow::Result<ExitCode> {
    let pem = SigningKey::generate_pem().map_err(TufPublishError::from)?;
    let key = SigningKey::from_pem(&pem, "the new key").map_err(TufPublishError::from)?;
    let io = |source| TufPublishError::Io { path: a.path.clone(), source };
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(&a.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => TufPublishError::KeyExists { path: a.path.clone() },
        _ => io(e),
    })?;
    std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    if json {
        super::output::print_json(&serde_json::json!({ "path": a.path, "key_id": key.key_id() }))?;
    } else {
        outln!("wrote {} (key id {})", a.path.display(), key.key_id());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn init(a: &InitArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (spec, signers) = root_spec(&a.keys, ("--key", &a.keys.keys), a.consistent_snapshot)?;
    let targets = targets(&a.dir, &a.keys.target)?;
    let p = publish::init(&a.dir, &spec, &targets, &signers, &options(&a.keys)?).map_err(TufPublishError::from)?;
    report("initialized", &a.dir, &p, json)
}

pub fn sign(a: &SignArgs, json: bool) -> anyhow::Result<ExitCode> {
    let k = &a.keys;
    let mut signers = load(&k.keys)?;
    if a.timestamp_only {
        let expire_in = duration("--timestamp-expires", &k.timestamp_expires)?;
        let p = publish::resign_timestamp(&a.dir, &signers, OffsetDateTime::now_utc(), expire_in)
            .map_err(TufPublishError::from)?;
        return report("re-signed the timestamp of", &a.dir, &p, json);
    }
    let mut what = "signed";
    if a.rotate_root {
        let (spec, new) = root_spec(k, ("--new-key", &a.new_key), a.consistent_snapshot)?;
        for key in new {
            if !signers.iter().any(|s| s.key_id() == key.key_id()) {
                signers.push(key);
            }
        }
        publish::rotate_root(&a.dir, &spec, &signers, OffsetDateTime::now_utc()).map_err(TufPublishError::from)?;
        what = "rotated the root and signed";
    }
    // After a rotation the new root's keys sign the rest.
    let targets = targets(&a.dir, &k.target)?;
    let p = publish::sign(&a.dir, &targets, &signers, &options(k)?).map_err(TufPublishError::from)?;
    report(what, &a.dir, &p, json)
}
