//! Lockfiles: what is installed on a host, written down so another host (or
//! this one, later) can be made to match it exactly.
//!
//! `attune lock` writes every installed pack with its source and tree
//! checksum; `attune sync --locked` installs what is missing through the one
//! install pipeline, each held to its locked tree checksum (and a git source
//! to its locked commit), removes what the lockfile does not list, and
//! refuses any difference in checksum, including a pack whose files changed
//! on disk. The format is in docs/lockfile.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::{self, Checksum, ChecksumKind};
use crate::context::Context;
use crate::db::{Channel, Installation};
use crate::install::{ExpectedPack, IndexTrust, InstallReport, InstallRequest};
use crate::packs::{PackSpec, UninstallReport};
use crate::{Error, LockfileError};

/// The lockfile format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A lockfile: a format version and the packs, sorted by ref then version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    #[serde(default, rename = "pack")]
    pub packs: Vec<LockedPack>,
}

/// One installed pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPack {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    /// As recorded: credentials were never stored.
    pub source: String,
    pub source_type: crate::source::SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_commit: Option<String>,
    /// `sha256-tree-v1:<hex>`.
    pub checksum: String,
    /// The archive's own SHA-256 (`sha256:<hex>`), for archive and http sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    /// Installed by name from a signed index: which, at what targets version, signed by which keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_trust: Option<IndexTrust>,
    /// Its runtime environment's resolved requirements, with their hashes:
    /// `sync --locked` installs exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::environments::EnvRecord>,
}

impl LockedPack {
    pub fn label(&self) -> String {
        format!("{}@{}", self.pack_ref, self.version)
    }

    fn from_installation(i: &Installation) -> LockedPack {
        let archive_sha256 = match i.source_type.is_artifact() {
            true => {
                i.metadata_json["fetcher"][attune_core::keys::ARCHIVE_SHA256].as_str().map(|h| format!("sha256:{h}"))
            }
            _ => None,
        };
        LockedPack {
            pack_ref: i.pack_ref.clone(),
            version: i.version.clone(),
            source: i.source.clone(),
            source_type: i.source_type,
            requested_ref: i.requested_ref.clone(),
            resolved_commit: i.resolved_commit.clone(),
            checksum: i.checksum.clone(),
            archive_sha256,
            index_trust: serde_json::from_value(i.metadata_json["index_trust"].clone()).ok(),
            environment: crate::environments::EnvRecord::of_metadata(&i.metadata_json).ok().flatten(),
        }
    }

    /// The source string the install pipeline takes for this entry.
    fn install_source(&self) -> String {
        match self.source_type {
            crate::source::SourceKind::Git => crate::source::git_source(&self.source),
            _ => self.source.clone(),
        }
    }
}

impl Lockfile {
    /// Every pack installed on this host.
    pub async fn of_host(ctx: &Context) -> Result<Lockfile, Error> {
        let mut packs: Vec<LockedPack> =
            ctx.db.installed(&ctx.machine).await?.iter().map(LockedPack::from_installation).collect();
        packs.sort_by(|a, b| (&a.pack_ref, &a.version, &a.source).cmp(&(&b.pack_ref, &b.version, &b.source)));
        Ok(Lockfile { version: FORMAT_VERSION, packs })
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("a lockfile serializes");
        format!("# Written by `attune lock`; `attune sync --locked` makes a host match it.\n{body}")
    }

    pub fn read(path: &Path) -> Result<Lockfile, LockfileError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| LockfileError::Read { path: path.to_path_buf(), source: e })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Lockfile, LockfileError> {
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        let parse = |reason: String| LockfileError::Parse { path: path.to_path_buf(), reason };
        let header: Header = toml::from_str(text).map_err(|e| parse(e.message().to_string()))?;
        if header.version != FORMAT_VERSION {
            return Err(LockfileError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: header.version,
                supported: FORMAT_VERSION,
            });
        }
        let lock: Lockfile = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &lock.packs {
            let bad = |reason: String| LockfileError::BadEntry { path: path.to_path_buf(), pack: p.label(), reason };
            if !crate::registry::is_ref(&p.pack_ref) {
                return Err(bad(format!("ref {:?} is not a pack ref (1-64 of a-z, 0-9, _ and -)", p.pack_ref)));
            }
            if !seen.insert((&p.pack_ref, &p.version)) {
                return Err(bad("listed twice".into()));
            }
            match p.checksum.parse::<Checksum>() {
                Ok(c) if matches!(c.kind(), ChecksumKind::Tree(_)) => {}
                _ => return Err(bad(format!("checksum {:?} is not a tree checksum (sha256-tree-v1:…)", p.checksum))),
            }
            semver::Version::parse(&p.version).map_err(|e| bad(format!("version {:?}: {e}", p.version)))?;
            if let Some(a) = &p.archive_sha256
                && !a.parse::<Checksum>().is_ok_and(|c| c.kind() == ChecksumKind::Sha256)
            {
                return Err(bad(format!("archive_sha256 {a:?} is not a SHA-256 (sha256:<64 hex digits>)")));
            }
            if p.source_type == crate::source::SourceKind::Git && p.resolved_commit.is_none() {
                return Err(bad("a git entry needs its resolved_commit".into()));
            }
        }
        Ok(lock)
    }
}

/// What `sync` does to one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Installed and matching: left alone.
    Keep,
    Install,
    /// Installed but not in the lockfile.
    Remove,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub source: String,
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub plan: Vec<Step>,
    pub installed: Vec<InstallReport>,
    pub removed: Vec<UninstallReport>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub offline: bool,
    pub allow_hosts: Vec<String>,
    pub allow_insecure_http: bool,
    /// Install even when a pack's runtime requirements are not met here
    /// (each install report lists what was ignored).
    pub ignore_runtime_requirements: bool,
    /// Where this host keeps its indexes' trusted metadata: an entry locked
    /// from a signed index is refused when its targets version is older than
    /// the one this host trusts now.
    pub cache_dir: Option<PathBuf>,
    /// `--no-env`, `--rebuild-env`…; each entry's locked environment is added.
    pub env: crate::environments::EnvOptions,
}

/// Refuses a lock whose index metadata is older than what this host trusts
/// for that index (a replayed old lock would reinstall what a newer signed
/// index dropped); an index not signed or not known here is not checked.
async fn check_index_trust(ctx: &Context, cache_dir: &Path, lock: &Lockfile) -> Result<(), Error> {
    if !lock.packs.iter().any(|p| p.index_trust.is_some()) {
        return Ok(());
    }
    let trusted = crate::indexes::trusted_facts(ctx, cache_dir).await?;
    for p in &lock.packs {
        let Some(t) = &p.index_trust else { continue };
        if let Some(facts) = trusted.get(&t.index) {
            attune_tuf::check_locked(t.targets_version, facts).map_err(|error| {
                crate::SignedIndexError::LockRollback {
                    pack: p.label(),
                    index: t.index.clone(),
                    error: Box::new(error),
                }
            })?;
        }
    }
    Ok(())
}

/// Makes this host match `lock`: checks every installed pack the lockfile
/// lists first (a checksum difference or a changed tree fails before
/// anything changes), then installs what is missing, each held to its locked
/// tree checksum (if one fails, the packs this run installed are uninstalled
/// again), then removes what the lockfile does not list.
pub async fn sync(
    ctx: &Context,
    lock: &Lockfile,
    options: &SyncOptions,
    progress: Option<crate::install::InstallProgress>,
) -> Result<SyncReport, Error> {
    sync_with(ctx, lock, options, progress.map(crate::set_progress::forward_to)).await
}

/// [`sync`], reporting pack by pack to `events` (the plan, each install's
/// phases and end, kept packs, rollbacks, removals), as installs by name do.
pub async fn sync_with(
    ctx: &Context,
    lock: &Lockfile,
    options: &SyncOptions,
    events: Option<crate::set_progress::SetProgress>,
) -> Result<SyncReport, Error> {
    use crate::set_progress::{self as set, SetEvent};
    let emit = |e: SetEvent| {
        if let Some(p) = &events {
            p(&e)
        }
    };
    if let Some(cache_dir) = &options.cache_dir {
        check_index_trust(ctx, cache_dir, lock).await?;
    }
    let installed = ctx.db.installed(&ctx.machine).await?;
    let mut plan = Vec::new();
    for want in &lock.packs {
        let step = |action| Step {
            action,
            pack_ref: want.pack_ref.clone(),
            version: want.version.clone(),
            source: want.source.clone(),
            checksum: want.checksum.clone(),
        };
        match installed.iter().find(|i| i.pack_ref == want.pack_ref && i.version == want.version) {
            None => plan.push(step(Action::Install)),
            Some(have) => {
                if have.checksum != want.checksum {
                    return Err(LockfileError::Mismatch {
                        pack: want.label(),
                        expected: want.checksum.clone(),
                        actual: have.checksum.clone(),
                    }
                    .into());
                }
                let path = PathBuf::from(&have.storage_path);
                if !path.is_dir() {
                    return Err(LockfileError::Missing { pack: want.label(), path: have.storage_path.clone() }.into());
                }
                let algorithm = checksum::Algorithm::of_stored(&want.checksum);
                let now = tokio::task::spawn_blocking(move || checksum::tree_as(&path, algorithm))
                    .await
                    .expect("checksum task panicked")?;
                if now.digest.to_string() != want.checksum {
                    return Err(LockfileError::Tampered {
                        pack: want.label(),
                        path: have.storage_path.clone(),
                        expected: want.checksum.clone(),
                        actual: now.digest.to_string(),
                    }
                    .into());
                }
                plan.push(step(Action::Keep));
            }
        }
    }
    for have in &installed {
        if !lock.packs.iter().any(|p| p.pack_ref == have.pack_ref && p.version == have.version) {
            plan.push(Step {
                action: Action::Remove,
                pack_ref: have.pack_ref.clone(),
                version: have.version.clone(),
                source: have.source.clone(),
                checksum: have.checksum.clone(),
            });
        }
    }
    let mut report = SyncReport { dry_run: options.dry_run, plan, installed: vec![], removed: vec![] };
    if options.dry_run {
        return Ok(report);
    }
    let packs = report
        .plan
        .iter()
        .map(|s| set::PlannedPack {
            pack_ref: s.pack_ref.clone(),
            version: s.version.clone(),
            index: None,
            action: match s.action {
                Action::Keep => "keep",
                Action::Install => "install",
                Action::Remove => "remove",
            },
        })
        .collect();
    emit(SetEvent::Plan { spec: "the lockfile".into(), packs });
    for s in report.plan.iter().filter(|s| s.action == Action::Keep) {
        let (pack_ref, version) = (s.pack_ref.clone(), Some(s.version.clone()));
        emit(SetEvent::Skipped { pack_ref, version, reason: set::Skip::AlreadyInstalled });
    }

    for step in report.plan.iter().filter(|s| s.action == Action::Install) {
        let want =
            lock.packs.iter().find(|p| p.pack_ref == step.pack_ref && p.version == step.version).expect("planned");
        let req = InstallRequest {
            expected_checksum: Some(want.checksum.parse::<Checksum>().expect("checked when read")),
            allow_hosts: options.allow_hosts.clone(),
            // Fetched at the locked commit, recorded as first asked for, so
            // this host's lockfile comes out the same.
            reference: want.resolved_commit.clone(),
            record_reference: want.requested_ref.clone(),
            allow_insecure_http: options.allow_insecure_http,
            expected_pack: Some(ExpectedPack {
                pack_ref: want.pack_ref.clone(),
                version: want.version.clone(),
                origin: "the lockfile".into(),
                // Recorded again as locked, so this host's lockfile comes out the same.
                index_trust: want.index_trust.clone(),
            }),
            offline: options.offline,
            ignore_runtime_requirements: options.ignore_runtime_requirements,
            // Source builds stay this host's operator's choice (--allow-source-builds),
            // whatever the locking host allowed.
            env: crate::environments::EnvOptions { locked: want.environment.clone(), ..options.env.clone() },
            ..InstallRequest::new(want.install_source(), ctx.limits, Channel::Cli)
        };
        let progress = events.as_ref().map(|e| set::for_pack(e, &want.pack_ref, &want.version));
        match crate::install::install(ctx, req, progress).await {
            Ok(r) => {
                emit(SetEvent::Done { report: Box::new(r.clone()) });
                report.installed.push(r)
            }
            Err(e) => {
                let (pack_ref, version) = (want.pack_ref.clone(), want.version.clone());
                emit(SetEvent::Failed { pack_ref, version, error: e.to_string() });
                // All or nothing: what this run installed goes again.
                for r in report.installed.iter().rev() {
                    let spec =
                        PackSpec { pack_ref: r.pack_ref.clone(), version: semver::Version::parse(&r.version).ok() };
                    let outcome = crate::packs::uninstall(ctx, &spec, Channel::Cli, None, true).await;
                    if let Err(u) = &outcome {
                        tracing::warn!("{}@{}: could not roll back: {u}", r.pack_ref, r.version);
                    }
                    let (pack_ref, version) = (r.pack_ref.clone(), r.version.clone());
                    emit(SetEvent::RolledBack { pack_ref, version, error: outcome.err().map(|u| u.to_string()) });
                }
                return Err(match e {
                    Error::ChecksumMismatch { source_str, expected, actual } => {
                        LockfileError::SourceChanged { pack: want.label(), source_str, expected, actual }.into()
                    }
                    e => e,
                });
            }
        }
    }
    for step in report.plan.iter().filter(|s| s.action == Action::Remove) {
        let spec = PackSpec { pack_ref: step.pack_ref.clone(), version: semver::Version::parse(&step.version).ok() };
        report.removed.push(crate::packs::uninstall(ctx, &spec, Channel::Cli, None, true).await?);
        emit(SetEvent::Removed { pack_ref: step.pack_ref.clone(), version: step.version.clone() });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(r: &str, v: &str) -> LockedPack {
        LockedPack {
            pack_ref: r.into(),
            version: v.into(),
            source: "https://h/x.tgz".into(),
            source_type: crate::source::SourceKind::Http,
            requested_ref: None,
            resolved_commit: None,
            checksum: format!("sha256-tree-v1:{}", "ab".repeat(32)),
            archive_sha256: Some(format!("sha256:{}", "cd".repeat(32))),
            index_trust: None,
            environment: None,
        }
    }

    #[test]
    fn round_trips_and_checks() {
        let lock = Lockfile { version: 1, packs: vec![entry("a", "1.0.0"), entry("b", "2.0.0")] };
        let text = lock.to_toml();
        assert!(text.contains("version = 1\n"), "{text}");
        assert!(text.contains("[[pack]]"), "{text}");
        assert_eq!(Lockfile::parse(Path::new("l"), &text).unwrap(), lock);
        let future = text.replace("version = 1\n", "version = 2\n");
        assert!(matches!(Lockfile::parse(Path::new("l"), &future), Err(LockfileError::UnsupportedVersion { .. })));
        let twice = Lockfile { version: 1, packs: vec![entry("a", "1.0.0"), entry("a", "1.0.0")] }.to_toml();
        assert!(matches!(Lockfile::parse(Path::new("l"), &twice), Err(LockfileError::BadEntry { .. })));
        let bad = text.replacen("sha256-tree-v1:", "sha256:", 1);
        assert!(matches!(Lockfile::parse(Path::new("l"), &bad), Err(LockfileError::BadEntry { .. })));
    }

    /// Found by the `lockfile` fuzz target: `archive_sha256` was read as any
    /// text (`"sha256:bc70e26f4250adc990a8c"`); the same check found that a
    /// ref was never checked (it is shown in sync's plan, events and errors).
    #[test]
    fn regression_archive_sha256_and_ref_are_checked() {
        let with = |r: &str, archive: &str| {
            let mut p = entry(r, "1.0.0");
            p.archive_sha256 = Some(archive.into());
            Lockfile::parse(Path::new("l"), &Lockfile { version: 1, packs: vec![p] }.to_toml())
        };
        let err = with("a", "sha256:bc70e26f4250adc990a8c").unwrap_err();
        assert!(matches!(&err, LockfileError::BadEntry { reason, .. } if reason.contains("archive_sha256")), "{err}");
        let tree = format!("sha256-tree-v1:{}", "ab".repeat(32));
        assert!(matches!(with("a", &tree), Err(LockfileError::BadEntry { .. })));
        assert!(with("a", &format!("sha256:{}", "ab".repeat(32))).is_ok());
        let err = with("a\u{1b}[2J", &format!("sha256:{}", "ab".repeat(32))).unwrap_err();
        assert!(matches!(&err, LockfileError::BadEntry { reason, .. } if reason.contains("not a pack ref")), "{err}");
    }
}
