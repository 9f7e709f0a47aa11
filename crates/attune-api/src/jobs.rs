//! Install jobs: durable, shared by replicas, bounded.
//!
//! Why it exists: installs are long, so `POST /packs/install` (and
//! `POST /packs/{ref}/upgrade`) answer 202 with a job and the work runs here,
//! through the one pipeline ([`crate::install::install`], or the registry's
//! [`crate::by_name::install_by_name`] and [`crate::upgrade::upgrade`]
//! on top of it).
//!
//! Every job is a row of the `jobs` table ([`crate::db::JobRow`]), not a
//! value in this process's memory: a restart loses none, and
//! several `attune serve` replicas in front of one database share one queue.
//! Each replica runs at most `max_concurrent` jobs, claiming the oldest
//! queued row it may run; at most `max_concurrent + max_queued` jobs are
//! queued or running in all (429 and `Retry-After` beyond). A replica
//! stamps the jobs it runs every [`HEARTBEAT`]; a job whose replica stayed
//! silent for [`STALE`] (killed, crashed, restarted) is marked
//! `interrupted` by whichever replica notices first, at start or later.
//!
//! What the database must not hold (an open local-source handle, URL
//! credentials) stays in the accepting replica's memory, and that job is
//! *pinned* to it: only it may claim it.
//!
//! Progress is throttled (by time and by bytes) and a job's history is
//! capped in bytes; when the job ends, superseded progress events are
//! dropped (compaction). The running replica keeps the live history and
//! stores it every `FLUSH_EVERY`; any replica serves it from the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::error::{ApiError, ErrorBody};
use crate::context::Context;
use crate::db::JobRow;
use crate::install::{InstallEvent, InstallRequest, OpenedInput};
use crate::runtime::Event;

/// How often a replica says it is still running its jobs.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Silence after which a running job is marked interrupted.
pub const STALE: Duration = Duration::from_secs(10);
/// How often a running job's history is stored.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Progress events (`staged`, `fetch_progress`) at most this often...
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// ...and only after this many more bytes (or files) were written.
const PROGRESS_BYTES: u64 = 256 * 1024;
/// A job's history, in bytes of JSON; past it only the terminal event is added.
pub const MAX_HISTORY_BYTES: usize = 64 * 1024;

/// What a job does, as stored (`jobs.work`): the API request, validated,
/// without credentials. A replica turns it into an [`InstallRequest`] with
/// its own configuration (allowed hosts, limits) when it claims the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkSpec {
    /// Install a source (folder, archive, URL, git).
    Install {
        source: String,
        reference: Option<String>,
        force: bool,
        checksum: Option<String>,
        ignore_runtime_requirements: bool,
        #[serde(default)]
        env: EnvSpec,
    },
    /// Install a pack by name from the registered indexes, with its
    /// dependencies unless `skip_deps`.
    Named {
        spec: String,
        force: bool,
        skip_deps: bool,
        ignore_runtime_requirements: bool,
        #[serde(default)]
        env: EnvSpec,
    },
    /// Upgrade a pack, rolling back on any failure.
    Upgrade {
        pack_ref: String,
        to: Option<String>,
        ignore_runtime_requirements: bool,
        #[serde(default)]
        env: EnvSpec,
    },
}

/// What an API caller may ask of a pack's runtime environment: the CLI's
/// `--no-env` and `--rebuild-env`. Source builds (which run a package's
/// build code) and unlocked node installs stay the operator's CLI choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    #[serde(default)]
    pub no_env: bool,
    #[serde(default)]
    pub rebuild_env: bool,
}

impl EnvSpec {
    /// The environment step's options, by the rules both channels share.
    pub fn options(self) -> Result<attune_app::environments::EnvOptions, ApiError> {
        let args =
            attune_app::request::EnvArgs { no_env: self.no_env, rebuild_env: self.rebuild_env, ..Default::default() };
        Ok(attune_app::request::env_options(attune_app::db::Channel::Api, &args)?)
    }
}

impl WorkSpec {
    fn kind(&self) -> &'static str {
        match self {
            WorkSpec::Install { .. } | WorkSpec::Named { .. } => "install",
            WorkSpec::Upgrade { .. } => "upgrade",
        }
    }

    fn shown(&self) -> String {
        match self {
            WorkSpec::Install { source, .. } => crate::sources::redact_url(source),
            WorkSpec::Named { spec, .. } => spec.clone(),
            WorkSpec::Upgrade { pack_ref, .. } => pack_ref.clone(),
        }
    }
}

/// What only the accepting replica holds for a job (see the module docs).
#[derive(Debug, Default)]
pub struct Held {
    /// The source with its credentials.
    pub source: Option<String>,
    /// The local source, opened when it was checked.
    pub opened: Option<Arc<OpenedInput>>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.source.is_none() && self.opened.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Its replica stopped while running it (or holding it queued).
    Interrupted,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Interrupted)
    }
    fn parse(s: &str) -> JobState {
        serde_json::from_value(serde_json::Value::String(s.to_string())).unwrap_or(JobState::Failed)
    }
}

/// One entry of a job's progress history (an SSE event: `event: {kind}`,
/// `id: {seq}`, `data: {data}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobEvent {
    pub seq: usize,
    /// `state`, `phase`, `staged`, `fetch_progress`, `log`, `waiting`, then
    /// `done` or `failed`.
    pub kind: String,
    pub data: serde_json::Value,
}

impl JobEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind.as_str(), "done" | "failed")
    }
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub state: JobState,
    pub source: String,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// An install's report (with `registry` for a pack by name), or an
    /// upgrade's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    pub events: usize,
}

fn ms(t: Option<i64>) -> Option<OffsetDateTime> {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000).ok())
}

/// A job as stored, with what the API needs of it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub row: JobRow,
}

impl Stored {
    pub fn state(&self) -> JobState {
        JobState::parse(&self.row.state)
    }
    pub fn events(&self) -> Vec<JobEvent> {
        serde_json::from_str(&self.row.events).unwrap_or_default()
    }
    pub fn error(&self) -> Option<StoredError> {
        self.row.error.as_deref().and_then(|e| serde_json::from_str(e).ok())
    }
    pub fn result(&self) -> Option<serde_json::Value> {
        self.row.result.as_deref().and_then(|r| serde_json::from_str(r).ok())
    }
    pub fn view(&self) -> JobView {
        JobView {
            id: self.row.id.clone(),
            kind: self.row.kind.clone(),
            state: self.state(),
            source: self.row.source.clone(),
            token: self.row.token.clone(),
            created_at: ms(Some(self.row.created_at)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            started_at: ms(self.row.started_at),
            finished_at: ms(self.row.finished_at),
            result: self.result(),
            error: self.error().map(|e| ErrorBody { code: e.code, message: e.message }),
            events: self.events().len(),
        }
    }
    /// The outcome, once terminal.
    pub fn outcome(&self) -> Option<Result<serde_json::Value, ApiError>> {
        if !self.state().is_terminal() {
            return None;
        }
        match (self.result(), self.error()) {
            (Some(r), _) => Some(Ok(r)),
            (None, Some(e)) => Some(Err(e.into_api())),
            _ => None,
        }
    }
}

/// An [`ApiError`] as stored in `jobs.error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl StoredError {
    fn of(e: &ApiError) -> StoredError {
        StoredError { status: e.status.as_u16(), code: e.code.to_string(), message: e.message.clone() }
    }
    fn into_api(self) -> ApiError {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, static_code(&self.code), self.message)
    }
}

/// A job running on this replica: its live history.
pub struct Live {
    inner: Mutex<History>,
    /// The number of events so far; subscribers wait on it.
    seq: watch::Sender<usize>,
}

#[derive(Default)]
struct History {
    events: Vec<JobEvent>,
    bytes: usize,
    next_seq: usize,
    last_progress: Option<(Instant, u64)>,
    dirty: bool,
    dropped: usize,
}

impl Live {
    fn new(events: Vec<JobEvent>) -> Live {
        let bytes = events.iter().map(event_bytes).sum();
        let next_seq = events.last().map_or(0, |e| e.seq + 1);
        let n = events.len();
        Live { inner: Mutex::new(History { events, bytes, next_seq, ..Default::default() }), seq: watch::channel(n).0 }
    }

    /// Events from sequence number `from` on.
    pub fn events_from(&self, from: usize) -> Vec<JobEvent> {
        let i = self.inner.lock().expect("job lock");
        i.events.iter().filter(|e| e.seq >= from).cloned().collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.seq.subscribe()
    }

    fn push(&self, kind: &str, data: serde_json::Value) {
        let mut i = self.inner.lock().expect("job lock");
        let e = JobEvent { seq: i.next_seq, kind: kind.to_string(), data };
        let size = event_bytes(&e);
        if !e.is_terminal() && i.bytes + size > MAX_HISTORY_BYTES {
            i.dropped += 1;
            return;
        }
        i.next_seq += 1;
        i.bytes += size;
        i.events.push(e);
        i.dirty = true;
        let n = i.events.len();
        self.seq.send_replace(n);
    }

    fn progress(&self, e: InstallEvent) {
        let due = match &e {
            InstallEvent::Staged { bytes, entries } => self.due(bytes.saturating_add(entries.saturating_mul(4096))),
            InstallEvent::Fetcher(Event::Progress { done, .. }) => self.due(*done),
            _ => true,
        };
        if due {
            let (kind, data) = e.wire();
            self.push(kind, data);
        }
    }

    /// Whether a progress event at `amount` (bytes) is due: the first one,
    /// then one per [`PROGRESS_EVERY`] and [`PROGRESS_BYTES`] more.
    fn due(&self, amount: u64) -> bool {
        let mut i = self.inner.lock().expect("job lock");
        let due = match i.last_progress {
            None => true,
            Some((t, last)) => t.elapsed() >= PROGRESS_EVERY && amount.saturating_sub(last) >= PROGRESS_BYTES,
        };
        if due {
            i.last_progress = Some((Instant::now(), amount));
        }
        due
    }

    fn take_dirty(&self) -> Option<String> {
        let mut i = self.inner.lock().expect("job lock");
        if !std::mem::take(&mut i.dirty) {
            return None;
        }
        Some(serde_json::to_string(&i.events).expect("events serialize"))
    }

    /// The history to keep once the job ended: superseded progress events
    /// (every `staged` and `fetch_progress` but the last of each) dropped.
    fn compacted(&self) -> String {
        let i = self.inner.lock().expect("job lock");
        let last = |kind: &str| i.events.iter().rposition(|e| e.kind == kind);
        let (ls, lf) = (last("staged"), last("fetch_progress"));
        let kept: Vec<&JobEvent> = (i.events.iter().enumerate())
            .filter(|(n, e)| match e.kind.as_str() {
                "staged" => Some(*n) == ls,
                "fetch_progress" => Some(*n) == lf,
                _ => true,
            })
            .map(|(_, e)| e)
            .collect();
        serde_json::to_string(&kept).expect("events serialize")
    }
}

fn event_bytes(e: &JobEvent) -> usize {
    e.kind.len() + e.data.to_string().len() + 16
}

/// Runs one job's work; its result as the job shows it.
async fn perform(
    ctx: &Context,
    cache_dir: Option<&std::path::Path>,
    work: Work,
    progress: crate::install::InstallProgress,
) -> Result<serde_json::Value, crate::Error> {
    let no_cache = || {
        crate::Error::Usage(
            "this server has no cache folder, so no registry indexes; start it with --cache-dir".to_string(),
        )
    };
    match work {
        Work::Install(req) => value(&crate::install::install(ctx, *req, Some(progress)).await?),
        Work::Named { spec, base, skip_deps } => {
            let cache_dir = cache_dir.ok_or_else(no_cache)?;
            let named =
                crate::by_name::install_by_name(ctx, cache_dir, &spec, *base, Some(progress), skip_deps).await?;
            let mut v = value(&named.install)?;
            v["registry"] = serde_json::json!({
                "resolved": named.resolved,
                "expected_checksum": named.expected_checksum,
                "dependencies": named.dependencies,
                "skipped_dependencies": named.skipped_dependencies,
            });
            Ok(v)
        }
        Work::Upgrade(req) => {
            let cache_dir = cache_dir.ok_or_else(no_cache)?;
            value(&crate::upgrade::upgrade(ctx, cache_dir, *req, Some(progress)).await?)
        }
    }
}

/// What a job runs, built from its [`WorkSpec`] by the replica that claimed it.
enum Work {
    Install(Box<InstallRequest>),
    Named { spec: String, base: Box<InstallRequest>, skip_deps: bool },
    Upgrade(Box<crate::upgrade::UpgradeRequest>),
}

fn value<T: Serialize>(v: &T) -> Result<serde_json::Value, crate::Error> {
    serde_json::to_value(v).map_err(|e| crate::Error::Corrupt(e.to_string()))
}

/// An error as an API caller may see it: never what a remote answered
/// (status text, a body's digest, a `Location`, ref names, a fetcher's
/// stderr), which could describe a service inside the server's network.
/// The full error goes to the operator's log.
pub fn for_caller(job: &str, e: crate::Error) -> ApiError {
    use crate::Error as E;
    use crate::UpgradeError as U;
    use crate::runtime::RuntimeError as R;
    use crate::sources::SourceError as S;
    let said = |r: &R| matches!(r, R::Fetch { .. } | R::Trap { .. } | R::MemoryLimit { .. });
    let hidden = match &e {
        E::Runtime(r) | E::Source(S::Runtime(r)) if said(r) => Some(format!(
            "the fetch failed; nothing was installed (what the source answered is in the server's log, job {job})"
        )),
        E::ChecksumMismatch { source_str, expected, .. } => Some(format!(
            "{source_str}: checksum mismatch: the fetched pack is not {expected}; nothing was installed \
             (the server's log has what it was; job {job})"
        )),
        // An upgrade keeps its cause as text: keep only our own part.
        E::Upgrade(u) => match &**u {
            U::Failed { pack_ref, from, to, step, .. } => Some(format!(
                "upgrade of {pack_ref} from {from} to {to} failed at {step} and was rolled back; \
                 the server's log has why (job {job})"
            )),
            U::RollbackFailed { pack_ref, from, to, .. } => Some(format!(
                "upgrade of {pack_ref} from {from} to {to} failed and so did its rollback; the server's log has \
                 why (job {job}); run `attune verify {pack_ref}` and `attune activate {pack_ref}@{from}` on the server"
            )),
            _ => None,
        },
        _ => None,
    };
    // Our own refusal is shown, but not what a name resolved to inside.
    let resolved = matches!(&e, E::Runtime(R::Denied { .. }) | E::Source(S::Runtime(R::Denied { .. })));
    let mut api = ApiError::from(e);
    if resolved && let Some((head, tail)) = api.message.split_once(" resolves to ") {
        let tail = tail.split_once(", ").map_or(tail, |(_, rest)| rest);
        api.message = format!("{head} resolves to {tail}");
    }
    if let Some(message) = hidden {
        tracing::warn!("job {job}: {}", crate::sources::redact_url(&api.message));
        api.message = message;
    }
    api.message = crate::sources::redact_url(&api.message);
    api
}

/// Counters the server reports in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Jobs running on this replica.
    pub running: usize,
    /// Jobs queued, on every replica sharing the database.
    pub queued: usize,
    /// The most jobs that ever ran at once on this replica.
    pub max_running_seen: usize,
    pub max_concurrent: usize,
    pub max_queued: usize,
}

/// This replica's configuration for the jobs it runs.
pub struct Config {
    pub cache_dir: Option<std::path::PathBuf>,
    pub max_concurrent: usize,
    pub max_queued: usize,
    /// The operator's `--allow-host` (config `allow_hosts`).
    pub allow_hosts: Vec<String>,
}

pub struct Jobs {
    ctx: Arc<Context>,
    cfg: Config,
    /// This replica, in `jobs.accepted_by` / `claimed_by`.
    pub me: String,
    live: Mutex<HashMap<String, Arc<Live>>>,
    held: Mutex<HashMap<String, Held>>,
    running: AtomicUsize,
    max_running_seen: AtomicUsize,
    shutdown: watch::Sender<bool>,
    wake: Notify,
    admit: tokio::sync::Mutex<()>,
    claiming: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Jobs {
    pub fn new(ctx: Arc<Context>, cfg: Config) -> Arc<Jobs> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).expect("the OS random number generator works");
        let me = format!("{}/{}", ctx.machine, hex::encode(b));
        Arc::new(Jobs {
            ctx,
            cfg,
            me,
            live: Mutex::default(),
            held: Mutex::default(),
            running: AtomicUsize::new(0),
            max_running_seen: AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
            wake: Notify::new(),
            admit: tokio::sync::Mutex::new(()),
            claiming: tokio::sync::Mutex::new(()),
            tasks: Mutex::default(),
        })
    }

    /// Marks the jobs of silent replicas interrupted, then starts claiming
    /// queued jobs and the heartbeat.
    pub async fn start(self: &Arc<Self>) -> Result<(), crate::Error> {
        self.sweep().await?;
        let me = self.clone();
        self.spawn(async move { me.claim_loop().await });
        let me = self.clone();
        self.spawn(async move { me.heartbeat_loop().await });
        Ok(())
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(f));
    }

    async fn sweep(&self) -> Result<u64, crate::Error> {
        let cutoff = crate::db::JobRow::now_ms() - STALE.as_millis() as i64;
        let error = serde_json::to_string(&StoredError {
            status: 503,
            code: "interrupted".into(),
            message: "the server running this job stopped before it ended; \
                      check the pack's state (GET /packs/{ref}) and submit it again"
                .into(),
        })
        .expect("serializes");
        let n = self.ctx.db.interrupt_stale_jobs(cutoff, &error).await?;
        if n > 0 {
            tracing::warn!("{n} job(s) marked interrupted: their server stopped while running them");
        }
        Ok(n)
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.ctx.db.heartbeat_jobs(&self.me).await {
                tracing::warn!("job heartbeat: {e}");
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!("job sweep: {e}");
            }
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            if self.shutting_down() {
                return;
            }
            self.claim_some().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                // Other replicas' submissions are seen by polling.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Claims queued jobs while this replica has a free slot.
    async fn claim_some(self: &Arc<Self>) {
        let _one = self.claiming.lock().await;
        while self.running.load(Ordering::SeqCst) < self.cfg.max_concurrent && !self.shutting_down() {
            match self.ctx.db.claim_job(&self.me).await {
                Ok(Some(row)) => {
                    let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                    self.max_running_seen.fetch_max(now, Ordering::SeqCst);
                    let me = self.clone();
                    self.spawn(async move { me.run(row).await });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("claiming a job: {e}");
                    break;
                }
            }
        }
    }

    pub fn stats_local(&self) -> (usize, usize) {
        (self.running.load(Ordering::SeqCst), self.max_running_seen.load(Ordering::SeqCst))
    }

    pub async fn stats(&self) -> Stats {
        let (running, max_running_seen) = self.stats_local();
        let queued = self.ctx.db.job_counts().await.map(|(q, _)| q as usize).unwrap_or(0);
        Stats {
            running,
            queued,
            max_running_seen,
            max_concurrent: self.cfg.max_concurrent,
            max_queued: self.cfg.max_queued,
        }
    }

    /// The job, from the database.
    pub async fn get(&self, id: &str) -> Result<Option<Stored>, ApiError> {
        let row = self.ctx.db.job(id).await.map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(row.map(|row| Stored { row }))
    }

    /// The live history, when this replica runs the job.
    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.live.lock().expect("jobs lock").get(id).cloned()
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Queues a job or refuses it (429 when the queue is full, 503 when
    /// shutting down). Returns its id.
    pub async fn submit(self: &Arc<Self>, work: WorkSpec, held: Held, token: &str) -> Result<Stored, ApiError> {
        if self.shutting_down() {
            return Err(shutting_down());
        }
        let id = new_id();
        let events = vec![JobEvent { seq: 0, kind: "state".into(), data: serde_json::json!({ "state": "queued" }) }];
        let events = serde_json::to_string(&events).expect("serializes");
        let spec = serde_json::to_string(&work).expect("serializes");
        let pinned = !held.is_empty();
        if pinned {
            self.held.lock().expect("held lock").insert(id.clone(), held);
        }
        let capacity = (self.cfg.max_concurrent + self.cfg.max_queued) as i64;
        // One admission at a time here; the insert itself checks the count.
        let queued = {
            let _one = self.admit.lock().await;
            self.ctx
                .db
                .queue_job(&id, work.kind(), &work.shown(), &spec, token, &self.me, pinned, capacity, &events)
                .await
        };
        let queued = queued.map_err(|e| ApiError::internal(e.to_string()));
        if !matches!(queued, Ok(true)) {
            self.held.lock().expect("held lock").remove(&id);
        }
        if !queued? {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_installs",
                format!(
                    "{} jobs may run and {} more wait on each server; that many are queued or running; retry later",
                    self.cfg.max_concurrent, self.cfg.max_queued
                ),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        // Start it now if there is room, so the answer already says so.
        self.claim_some().await;
        self.get(&id).await?.ok_or_else(|| ApiError::internal("a queued job vanished"))
    }

    /// Turns a claimed job's spec into the work this replica runs.
    fn work(&self, row: &JobRow, held: Option<Held>) -> Result<Work, ApiError> {
        let spec: WorkSpec = serde_json::from_str(&row.work)
            .map_err(|e| ApiError::internal(format!("job {}: unreadable work: {e}", row.id)))?;
        let held = held.unwrap_or_default();
        if row.pinned && held.is_empty() {
            return Err(ApiError::internal("this job's server no longer holds what it needs; submit it again"));
        }
        let base = |source: String| InstallRequest {
            allow_hosts: self.cfg.allow_hosts.clone(),
            api_token: Some(row.token.clone()),
            untrusted_caller: true,
            ..InstallRequest::new(source, self.ctx.limits, crate::db::Channel::Api)
        };
        Ok(match spec {
            WorkSpec::Install { source, reference, force, checksum, ignore_runtime_requirements, env } => {
                let expected_checksum = checksum
                    .as_deref()
                    .map(|c| c.parse().map_err(|e| ApiError::bad_request(format!("checksum {c:?}: {e}"))))
                    .transpose()?;
                let source = held.source.unwrap_or(source);
                Work::Install(Box::new(InstallRequest {
                    force,
                    expected_checksum,
                    reference,
                    ignore_runtime_requirements,
                    opened_input: held.opened,
                    env: env.options()?,
                    ..base(source)
                }))
            }
            WorkSpec::Named { spec, force, skip_deps, ignore_runtime_requirements, env } => Work::Named {
                spec,
                base: Box::new(InstallRequest {
                    force,
                    ignore_runtime_requirements,
                    env: env.options()?,
                    ..base(String::new())
                }),
                skip_deps,
            },
            WorkSpec::Upgrade { pack_ref, to, ignore_runtime_requirements, env } => {
                Work::Upgrade(Box::new(crate::upgrade::UpgradeRequest {
                    pack_ref,
                    to,
                    from: None,
                    base: InstallRequest { ignore_runtime_requirements, env: env.options()?, ..base(String::new()) },
                }))
            }
        })
    }

    async fn run(self: Arc<Self>, row: JobRow) {
        let id = row.id.clone();
        let live = Arc::new(Live::new(Stored { row: row.clone() }.events()));
        self.live.lock().expect("jobs lock").insert(id.clone(), live.clone());
        live.push("state", serde_json::json!({ "state": "running" }));
        let held = self.held.lock().expect("held lock").remove(&id);
        let outcome = match self.work(&row, held) {
            Err(e) => Err(e),
            Ok(work) => {
                let l = live.clone();
                let progress: crate::install::InstallProgress = Arc::new(move |e| l.progress(e));
                // In its own task, so even a panic in the pipeline ends the
                // job (as failed) and frees its slot.
                let (ctx, cache_dir) = (self.ctx.clone(), self.cfg.cache_dir.clone());
                let job = id.clone();
                let mut task = tokio::spawn(async move {
                    perform(&ctx, cache_dir.as_deref(), work, progress).await.map_err(|e| for_caller(&job, e))
                });
                loop {
                    tokio::select! {
                        r = &mut task => break match r {
                            Ok(r) => r,
                            Err(e) => Err(ApiError::internal(format!("the job stopped unexpectedly: {e}"))),
                        },
                        _ = tokio::time::sleep(FLUSH_EVERY) => {
                            if let Some(events) = live.take_dirty()
                                && let Err(e) = self.ctx.db.set_job_events(&id, &events).await
                            {
                                tracing::warn!("job {id}: storing progress: {e}");
                            }
                        }
                    }
                }
            }
        };
        let (state, result, error) = match &outcome {
            Ok(r) => {
                live.push("done", serde_json::json!({ "state": "succeeded", "result": r }));
                ("succeeded", Some(r.to_string()), None)
            }
            Err(e) => {
                live.push("failed", serde_json::json!({ "state": "failed", "error": e.body() }));
                ("failed", None, Some(serde_json::to_string(&StoredError::of(e)).expect("serializes")))
            }
        };
        let events = live.compacted();
        match self.ctx.db.finish_job(&id, "running", state, result.as_deref(), error.as_deref(), &events).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("job {id}: it was marked interrupted while it ran; its outcome is dropped"),
            Err(e) => tracing::error!("job {id}: storing its outcome: {e}"),
        }
        self.live.lock().expect("jobs lock").remove(&id);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Refuses new jobs and fails the queued ones this replica holds;
    /// running ones go on.
    pub async fn begin_shutdown(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        let rows = match self.ctx.db.queued_jobs_accepted_by(&self.me).await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!("failing queued jobs: {e}"),
        };
        for row in rows {
            let e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server shut down before this install started; nothing was installed",
            );
            let live = Live::new(Stored { row: row.clone() }.events());
            live.push("failed", serde_json::json!({ "state": "failed", "error": e.body() }));
            let error = serde_json::to_string(&StoredError::of(&e)).expect("serializes");
            let _ = self.ctx.db.finish_job(&row.id, "queued", "failed", None, Some(&error), &live.compacted()).await;
            self.held.lock().expect("held lock").remove(&row.id);
        }
    }

    /// Waits for every job this replica runs to end.
    pub async fn drain(&self) {
        loop {
            let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

/// A stored error code as the `&'static str` [`ApiError`] holds.
fn static_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "active_version",
        "already_exists",
        "already_installed",
        "bad_request",
        "bad_source",
        "checksum_mismatch",
        "dependency_conflict",
        "fetch_failed",
        "internal",
        "interrupted",
        "invalid_pack",
        "local_source_refused",
        "lockfile_error",
        "not_cached",
        "not_found",
        "registry_error",
        "runtime_requirements",
        "shutting_down",
        "upgrade_failed",
    ];
    CODES.iter().find(|c| **c == code).copied().unwrap_or("failed")
}

pub fn shutting_down() -> ApiError {
    let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down");
    e.retry_after = Some(5);
    e
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random number generator works");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(bytes: u64) -> InstallEvent {
        InstallEvent::Staged { bytes, entries: 0 }
    }

    #[test]
    fn progress_is_throttled_by_time_and_bytes_and_compacted_at_the_end() {
        let live = Live::new(vec![]);
        live.progress(InstallEvent::Phase("fetching"));
        // A flood of small writes: only the first is recorded at once...
        for n in 1..=10_000u64 {
            live.progress(staged(n * 512));
        }
        assert_eq!(live.events_from(0).len(), 2);
        // ...then one per 500 ms that also moved 256 KiB since the last recorded.
        std::thread::sleep(PROGRESS_EVERY);
        live.progress(staged(512 + PROGRESS_BYTES - 1));
        assert_eq!(live.events_from(0).len(), 2, "not enough bytes since the last one");
        live.progress(staged(512 + PROGRESS_BYTES));
        assert_eq!(live.events_from(0).len(), 3);
        live.push("done", serde_json::json!({ "state": "succeeded" }));
        let kept: Vec<JobEvent> = serde_json::from_str(&live.compacted()).unwrap();
        let kinds: Vec<&str> = kept.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["phase", "staged", "done"], "the last progress event is kept");
        assert_eq!(kept.last().unwrap().seq, 3, "sequence numbers survive compaction");
    }

    #[test]
    fn a_history_is_capped_in_bytes_but_always_ends() {
        let live = Live::new(vec![]);
        for _ in 0..10_000 {
            live.push("log", serde_json::json!({ "level": "warn", "message": "x".repeat(100) }));
        }
        live.push("failed", serde_json::json!({ "state": "failed" }));
        let events = live.events_from(0);
        let bytes: usize = events.iter().map(event_bytes).sum();
        assert!(bytes <= MAX_HISTORY_BYTES + 100, "{bytes}");
        assert_eq!(events.last().unwrap().kind, "failed");
    }
}
