//! Install jobs: admission, a bounded queue, progress history and following.
//!
//! Why it exists: installs are long, so `POST /packs/install` (and
//! `POST /packs/{ref}/upgrade`) answer 202 with a job and the work runs here,
//! through the one pipeline ([`crate::install::install`], or the registry's
//! [`crate::registry::admin::install_by_name`] and [`crate::upgrade::upgrade`]
//! on top of it). At most `max_concurrent` installs run at a
//! time (a semaphore); at most `max_queued` more wait for a permit; beyond
//! that a submission is refused with 429 and `Retry-After`. Every progress
//! event is kept in the job's history, so a late subscriber to
//! `GET /jobs/{id}/events` first gets what it missed, then the rest live,
//! ending with a terminal `done` or `failed` event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::error::{ApiError, ErrorBody};
use crate::context::Context;
use crate::install::{InstallEvent, InstallRequest};
use crate::runtime::{Event, LogLevel};
use crate::upgrade::UpgradeRequest;

/// What a job does.
#[derive(Debug, Clone)]
pub enum Work {
    /// Install a source (folder, archive, URL, git).
    Install(InstallRequest),
    /// Install a pack by name from the registered indexes, with its
    /// dependencies unless `skip_deps`.
    Named { spec: String, base: InstallRequest, skip_deps: bool },
    /// Upgrade a pack, rolling back on any failure.
    Upgrade(UpgradeRequest),
}

impl Work {
    fn kind(&self) -> &'static str {
        match self {
            Work::Install(_) | Work::Named { .. } => "install",
            Work::Upgrade(_) => "upgrade",
        }
    }

    fn shown(&self) -> String {
        match self {
            Work::Install(r) => crate::sources::redact_url(&r.source),
            Work::Named { spec, .. } => spec.clone(),
            Work::Upgrade(r) => r.pack_ref.clone(),
        }
    }
}

/// Finished jobs kept for `GET /jobs/{id}`; older ones are forgotten.
const KEEP_FINISHED: usize = 1000;
/// Events kept per job; past this only the terminal event is added.
const MAX_EVENTS: usize = 10_000;
/// `staged` progress events are recorded at most this often.
const STAGED_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// One entry of a job's progress history (an SSE event: `event: {kind}`,
/// `id: {seq}`, `data: {data}`).
#[derive(Debug, Clone, Serialize)]
pub struct JobEvent {
    pub seq: usize,
    /// `state`, `phase`, `staged`, `log`, `waiting`, then `done` or `failed`.
    pub kind: &'static str,
    pub data: serde_json::Value,
}

pub struct Job {
    pub id: String,
    /// `install` or `upgrade`.
    pub kind: &'static str,
    pub source: String,
    /// The name of the token that submitted it.
    pub token: String,
    pub created_at: OffsetDateTime,
    inner: Mutex<Inner>,
    /// The number of events so far; subscribers wait on it.
    seq: watch::Sender<usize>,
}

struct Inner {
    state: JobState,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    result: Option<serde_json::Value>,
    error: Option<ApiError>,
    events: Vec<JobEvent>,
    last_staged: Option<Instant>,
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub kind: &'static str,
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

impl Job {
    pub fn view(&self) -> JobView {
        let i = self.inner.lock().expect("job lock");
        JobView {
            id: self.id.clone(),
            kind: self.kind,
            state: i.state,
            source: self.source.clone(),
            token: self.token.clone(),
            created_at: self.created_at,
            started_at: i.started_at,
            finished_at: i.finished_at,
            result: i.result.clone(),
            error: i.error.as_ref().map(ApiError::body),
            events: i.events.len(),
        }
    }

    pub fn state(&self) -> JobState {
        self.inner.lock().expect("job lock").state
    }

    /// The outcome, once terminal.
    pub fn outcome(&self) -> Option<Result<serde_json::Value, ApiError>> {
        let i = self.inner.lock().expect("job lock");
        match (&i.result, &i.error) {
            (Some(r), _) => Some(Ok(r.clone())),
            (None, Some(e)) => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// Events from `from` on, and whether the last of them ends the job.
    pub fn events_from(&self, from: usize) -> (Vec<JobEvent>, bool) {
        let i = self.inner.lock().expect("job lock");
        let evs: Vec<JobEvent> = i.events.get(from..).map(<[JobEvent]>::to_vec).unwrap_or_default();
        (evs, i.state.is_terminal())
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.seq.subscribe()
    }

    /// Waits until the job is terminal.
    pub async fn finished(&self) {
        let mut rx = self.subscribe();
        while !self.state().is_terminal() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn push(&self, i: &mut Inner, kind: &'static str, data: serde_json::Value) {
        let terminal = matches!(kind, "done" | "failed");
        if i.events.len() >= MAX_EVENTS && !terminal {
            return;
        }
        let seq = i.events.len();
        i.events.push(JobEvent { seq, kind, data });
        self.seq.send_replace(seq + 1);
    }

    fn progress(&self, e: InstallEvent) {
        let mut i = self.inner.lock().expect("job lock");
        let (kind, data) = match e {
            InstallEvent::Phase(p) => ("phase", serde_json::json!({ "phase": p })),
            InstallEvent::Staged { bytes, entries } => {
                if i.last_staged.is_some_and(|t| t.elapsed() < STAGED_EVERY) {
                    return;
                }
                i.last_staged = Some(Instant::now());
                ("staged", serde_json::json!({ "bytes": bytes, "entries": entries }))
            }
            InstallEvent::Waiting(m) => ("waiting", serde_json::json!({ "message": m })),
            InstallEvent::Fetcher(Event::Log(level, m)) => {
                let level = match level {
                    LogLevel::Debug => "debug",
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warn",
                };
                ("log", serde_json::json!({ "level": level, "message": m }))
            }
            InstallEvent::Fetcher(Event::Progress { done, total }) => {
                ("fetch_progress", serde_json::json!({ "done": done, "total": total }))
            }
        };
        self.push(&mut i, kind, data);
    }

    fn set_running(&self) {
        let mut i = self.inner.lock().expect("job lock");
        i.state = JobState::Running;
        i.started_at = Some(OffsetDateTime::now_utc());
        self.push(&mut i, "state", serde_json::json!({ "state": "running" }));
    }

    fn finish(&self, outcome: Result<serde_json::Value, ApiError>) {
        let mut i = self.inner.lock().expect("job lock");
        i.finished_at = Some(OffsetDateTime::now_utc());
        match outcome {
            Ok(r) => {
                i.state = JobState::Succeeded;
                let data = serde_json::json!({ "state": "succeeded", "result": r });
                i.result = Some(r);
                self.push(&mut i, "done", data);
            }
            Err(e) => {
                i.state = JobState::Failed;
                let data = serde_json::json!({ "state": "failed", "error": e.body() });
                i.error = Some(e);
                self.push(&mut i, "failed", data);
            }
        }
    }
}

/// Runs one job's work; its result as the job shows it.
async fn perform(
    ctx: &Context,
    cache_dir: Option<&std::path::Path>,
    work: Work,
    progress: crate::install::InstallProgress,
) -> Result<serde_json::Value, ApiError> {
    let no_cache = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this server has no cache folder, so no registry indexes; start it with --cache-dir",
        )
    };
    match work {
        Work::Install(req) => value(&crate::install::install(ctx, req, Some(progress)).await?),
        Work::Named { spec, base, skip_deps } => {
            let cache_dir = cache_dir.ok_or_else(no_cache)?;
            let named =
                crate::registry::admin::install_by_name(ctx, cache_dir, &spec, base, Some(progress), skip_deps).await?;
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
            value(&crate::upgrade::upgrade(ctx, cache_dir, req, Some(progress)).await?)
        }
    }
}

fn value<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Counters the server reports in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub running: usize,
    pub queued: usize,
    /// The most installs that ever ran at once.
    pub max_running_seen: usize,
    pub max_concurrent: usize,
    pub max_queued: usize,
}

/// Jobs by id, and their ids oldest first (to forget the oldest finished).
#[derive(Default)]
struct Known {
    by_id: HashMap<String, Arc<Job>>,
    order: VecDeque<String>,
}

pub struct Jobs {
    ctx: Arc<Context>,
    /// Where the registered indexes are cached (`None`: no installs by name
    /// or upgrades from indexes).
    cache_dir: Option<std::path::PathBuf>,
    map: Mutex<Known>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_queued: usize,
    /// Queued plus running.
    admitted: AtomicUsize,
    running: AtomicUsize,
    max_running_seen: AtomicUsize,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Jobs {
    pub fn new(
        ctx: Arc<Context>,
        cache_dir: Option<std::path::PathBuf>,
        max_concurrent: usize,
        max_queued: usize,
    ) -> Jobs {
        Jobs {
            ctx,
            cache_dir,
            map: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_queued,
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running_seen: AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
            tasks: Mutex::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        let running = self.running.load(Ordering::SeqCst);
        Stats {
            running,
            queued: self.admitted.load(Ordering::SeqCst).saturating_sub(running),
            max_running_seen: self.max_running_seen.load(Ordering::SeqCst),
            max_concurrent: self.max_concurrent,
            max_queued: self.max_queued,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.map.lock().expect("jobs lock").by_id.get(id).cloned()
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Admits an install or refuses it (429 when the queue is full, 503 when
    /// shutting down); the install starts when a permit is free.
    pub fn submit(self: &Arc<Self>, work: Work, token: &str) -> Result<Arc<Job>, ApiError> {
        if self.shutting_down() {
            return Err(shutting_down());
        }
        let capacity = self.max_concurrent + self.max_queued;
        let admitted =
            self.admitted.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < capacity).then_some(n + 1));
        if admitted.is_err() {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_installs",
                format!(
                    "{} installs are running and {} are queued, the most this server takes; retry later",
                    self.max_concurrent, self.max_queued
                ),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        let job = Arc::new(Job {
            id: new_id(),
            kind: work.kind(),
            source: work.shown(),
            token: token.to_string(),
            created_at: OffsetDateTime::now_utc(),
            inner: Mutex::new(Inner {
                state: JobState::Queued,
                started_at: None,
                finished_at: None,
                result: None,
                error: None,
                events: Vec::new(),
                last_staged: None,
            }),
            seq: watch::channel(0).0,
        });
        {
            let mut i = job.inner.lock().expect("job lock");
            job.push(&mut i, "state", serde_json::json!({ "state": "queued" }));
        }
        self.remember(&job);
        let (me, j) = (self.clone(), job.clone());
        let handle = tokio::spawn(async move { me.run(j, work).await });
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
        Ok(job)
    }

    async fn run(self: Arc<Self>, job: Arc<Job>, work: Work) {
        let mut stop = self.shutdown.subscribe();
        let permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait_for(|s| *s) => {
                job.finish(Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the server shut down before this install started; nothing was installed",
                )));
                self.admitted.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running_seen.fetch_max(now, Ordering::SeqCst);
        job.set_running();
        let j = job.clone();
        let progress: crate::install::InstallProgress = Arc::new(move |e| j.progress(e));
        // In its own task, so even a panic in the pipeline ends the job (as
        // failed) and frees its slot.
        let (ctx, cache_dir) = (self.ctx.clone(), self.cache_dir.clone());
        let outcome = match tokio::spawn(async move { perform(&ctx, cache_dir.as_deref(), work, progress).await }).await
        {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(format!("the job stopped unexpectedly: {e}"))),
        };
        // Terminal before the permit goes: never two jobs "running" over the limit.
        job.finish(outcome);
        self.running.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }

    fn remember(&self, job: &Arc<Job>) {
        let mut guard = self.map.lock().expect("jobs lock");
        let Known { by_id: map, order } = &mut *guard;
        map.insert(job.id.clone(), job.clone());
        order.push_back(job.id.clone());
        if order.len() > KEEP_FINISHED + self.max_concurrent + self.max_queued {
            // Forget the oldest finished job (live ones are never dropped).
            if let Some(pos) = order.iter().position(|id| map.get(id).is_some_and(|j| j.state().is_terminal())) {
                let id = order.remove(pos).expect("position is in range");
                map.remove(&id);
            }
        }
    }

    /// Refuses new installs and fails queued ones; running ones go on.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits for every job task to end.
    pub async fn drain(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
    }
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
