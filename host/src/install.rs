//! The install pipeline, the one path every entry point takes.
//!
//! source → fetcher (sandboxed) → staging → `pack.yaml` rules → checksum →
//! pack lock → journal row (pending) → atomic rename → journal row
//! (installed). Any failure before the rename leaves the previous state
//! untouched and nothing half-installed; a kill after it is finished by the
//! next run's start-up check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::checksum::{self, Checksum};
use crate::context::Context;
use crate::db::{Method, NewInstallation};
use crate::runtime::{Event, EventSink, Limits};
use crate::staging::StagingWriter;
use crate::{Error, manifest, sources};

#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub source: String,
    pub force: bool,
    /// The tree checksum the result must have (`sha256-tree-v1:…`).
    pub expected_checksum: Option<Checksum>,
    pub limits: Limits,
    pub method: Method,
    /// Fetch with this component instead of the built-in fetcher.
    pub plugin_file: Option<PathBuf>,
}

/// What the pipeline is doing, for progress displays.
#[derive(Debug, Clone)]
pub enum InstallEvent {
    Phase(&'static str),
    /// Bytes and entries staged so far.
    Staged {
        bytes: u64,
        entries: u64,
    },
    Fetcher(Event),
    /// Waiting for another process that holds the pack's lock.
    Waiting(String),
}

pub type InstallProgress = Arc<dyn Fn(InstallEvent) + Send + Sync>;

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallReport {
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub version: String,
    pub path: PathBuf,
    pub checksum: String,
    pub replaced: bool,
    pub files: u64,
    pub bytes: u64,
    pub source_type: String,
    pub source: String,
    pub fetcher: sources::FetcherFacts,
    pub installation_id: i64,
}

pub async fn install(
    ctx: &Context,
    req: InstallRequest,
    progress: Option<InstallProgress>,
) -> Result<InstallReport, Error> {
    let emit = |e: InstallEvent| {
        if let Some(p) = &progress {
            p(e)
        }
    };
    let spec = match &req.plugin_file {
        Some(wasm) => sources::parse_for_plugin(&req.source, wasm),
        None => sources::parse(&req.source)?,
    };
    let staging = ctx.store.new_staging()?;
    let pack_path = staging.pack_path();

    emit(InstallEvent::Phase("fetching"));
    let source = sources::resolve(spec, ctx.runtime.clone()).await?;
    let writer = StagingWriter::new(&pack_path, req.limits.write)
        .map_err(|e| Error::Io { path: pack_path.clone(), source: e })?;
    let counters = writer.counters();
    let events: Option<EventSink> =
        progress.clone().map(|p| Arc::new(move |e: &Event| p(InstallEvent::Fetcher(e.clone()))) as EventSink);
    let fetch = source.fetch(writer, &req.limits, events);
    tokio::pin!(fetch);
    let fetched = loop {
        tokio::select! {
            r = &mut fetch => break r?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                use std::sync::atomic::Ordering::Relaxed;
                emit(InstallEvent::Staged { bytes: counters.bytes.load(Relaxed), entries: counters.files.load(Relaxed) });
            }
        }
    };
    emit(InstallEvent::Staged { bytes: fetched.bytes, entries: fetched.entries });

    emit(InstallEvent::Phase("checking"));
    let manifest = manifest::read(&pack_path)?;
    let tree = {
        let p = pack_path.clone();
        tokio::task::spawn_blocking(move || checksum::tree(&p)).await.expect("checksum task panicked")?
    };
    if let Some(expected) = &req.expected_checksum
        && *expected != tree.digest
    {
        return Err(Error::ChecksumMismatch {
            source_str: source.display(),
            expected: expected.to_string(),
            actual: tree.digest.to_string(),
        });
    }

    let pack_ref = manifest.r#ref.clone();
    let version = manifest.version.clone();
    let _lock = {
        let store = ctx.store.clone();
        let r = pack_ref.clone();
        let p = progress.clone();
        tokio::task::spawn_blocking(move || {
            store.lock_pack(&r, || {
                if let Some(p) = &p {
                    p(InstallEvent::Waiting(format!("another attune process is changing {r}; waiting for it")))
                }
            })
        })
        .await
        .expect("lock task panicked")?
    };
    let dest = ctx.store.pack_dir(&pack_ref, &version);
    let recorded = ctx.db.current(&pack_ref, &version.to_string(), &ctx.host).await?;
    let on_disk = fs_err::symlink_metadata(&dest).is_ok();
    if (recorded.is_some() || on_disk) && !req.force {
        return Err(Error::AlreadyInstalled { pack_ref, version: version.to_string(), path: dest });
    }

    emit(InstallEvent::Phase("committing"));
    let new = NewInstallation {
        pack_ref: pack_ref.clone(),
        pack_name: manifest.name.clone(),
        pack_description: manifest.description.clone(),
        version: version.to_string(),
        source_type: source.kind().as_str().to_string(),
        source: source.display(),
        requested_ref: None,
        resolved_commit: fetched.result.resolved_commit.clone(),
        checksum: tree.digest.to_string(),
        checksum_algorithm: tree.algorithm.name().to_string(),
        manifest: serde_json::to_value(&tree).expect("manifest serializes"),
        verified: req.expected_checksum.is_some(),
        installed_by: ctx.user.clone(),
        method: req.method,
        storage_path: dest.display().to_string(),
        fetcher_name: source.fetcher().name,
        fetcher_version: source.fetcher().version,
        fetcher_hash: Some(source.fetcher().sha256),
        host: ctx.host.clone(),
        metadata: serde_json::json!({
            "resolved_source": fetched.result.resolved_source,
            "fetcher": fetched.result.metadata.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        }),
    };
    let id = ctx.db.begin_install(&new).await?;
    if let Err(e) = ctx.store.commit(&staging, &pack_ref, &version, req.force) {
        ctx.db.fail_install(id, &e.to_string()).await?;
        return Err(e.into());
    }
    ctx.db.complete_install(id).await?;
    drop(staging);
    Ok(InstallReport {
        pack_ref,
        version: version.to_string(),
        path: dest,
        checksum: tree.digest.to_string(),
        replaced: recorded.is_some() || on_disk,
        files: tree.file_count() as u64,
        bytes: tree.total_bytes(),
        source_type: new.source_type,
        source: new.source,
        fetcher: source.fetcher(),
        installation_id: id,
    })
}
