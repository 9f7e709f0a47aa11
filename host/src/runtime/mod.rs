//! Runs fetchers: wasm components in a wasmtime sandbox with no ambient authority.
//!
//! A fetch gets a fresh [`Store`] with: no environment, arguments or sockets;
//! at most one read-only input folder; stdout discarded and stderr kept (its
//! head) for error messages; memory capped by a resource limiter; wall time
//! capped by a deadline checked on every epoch tick and by a timeout around
//! the whole call (which also stops a guest blocked in a host wait, where
//! epochs cannot reach it); and the `staging` interface as its only
//! writable place. Compiled components are cached on disk, so a fetcher
//! starts in milliseconds after its first run.

pub mod blobs;
pub mod grants;
pub mod http;
pub mod since_v0_1_0;

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::staging::{StagingError, StagingWriter, WriteLimits};

pub use grants::Grants;

/// Where the read-only input appears inside the guest.
pub const INPUT_GUEST_PATH: &str = "/input";
/// WIT versions this host can run, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[since_v0_1_0::VERSION];
const EPOCH_TICK: Duration = Duration::from_millis(50);
const STDERR_KEEP: usize = 16 * 1024;
const LOG_KEEP: usize = 200;

/// What a fetcher asks for. See `wit/fetcher.wit`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Capability {
    ReadInput,
    OutboundHost(String),
    LargerLimits(LimitRequest),
}

/// Limits a fetcher asks to have raised (`None` keeps the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimitRequest {
    pub memory_bytes: Option<u64>,
    pub time_seconds: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

impl LimitRequest {
    /// `limits` raised to this request; a limit already higher stays.
    pub fn raise(&self, limits: &Limits) -> Limits {
        let mut l = *limits;
        if let Some(m) = self.memory_bytes {
            l.memory_bytes = l.memory_bytes.max(m);
        }
        if let Some(t) = self.time_seconds {
            l.time = l.time.max(Duration::from_secs(t));
        }
        if let Some(b) = self.max_bytes {
            l.write.max_bytes = l.write.max_bytes.max(b);
        }
        if let Some(f) = self.max_files {
            l.write.max_files = l.write.max_files.max(f);
        }
        l
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::ReadInput => f.write_str("read-input"),
            Capability::OutboundHost(h) => write!(f, "outbound-host:{h}"),
            Capability::LargerLimits(r) => {
                let parts: Vec<String> = [
                    r.memory_bytes.map(|v| format!("memory={v}")),
                    r.time_seconds.map(|v| format!("time={v}s")),
                    r.max_bytes.map(|v| format!("bytes={v}")),
                    r.max_files.map(|v| format!("files={v}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                write!(f, "larger-limits:{}", parts.join(","))
            }
        }
    }
}

/// A fetcher's `describe`, plus what the host learned loading it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub schemes: Vec<String>,
    pub capabilities: Vec<Capability>,
    pub wit_version: String,
}

#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    pub source: String,
    /// Host path of the read-only input (mounted at [`INPUT_GUEST_PATH`]).
    pub input: Option<PathBuf>,
    pub input_file: Option<String>,
    pub reference: Option<String>,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    pub resolved_source: String,
    pub resolved_commit: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// The fetcher's own error, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    #[error("invalid source: {0}")]
    InvalidSource(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("network: {0}")]
    Network(String),
    #[error("invalid content: {0}")]
    InvalidContent(String),
    #[error("staging: {0}")]
    Staging(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
}

/// Something a running fetcher reported.
#[derive(Debug, Clone)]
pub enum Event {
    Log(LogLevel, String),
    Progress { done: u64, total: Option<u64> },
}

pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Limits for one fetch; every one is enforced by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub time: Duration,
    pub write: WriteLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 << 20, time: Duration::from_secs(300), write: WriteLimits::default() }
    }
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("plugin `{plugin}`: not a valid WebAssembly component: {message}")]
    Compile { plugin: String, message: String },
    #[error(
        "plugin `{plugin}` was built against attune:fetcher@{found}, which this attune does not support \
         (supported: {}); rebuild it against a supported version of the attune plugin SDK",
        SUPPORTED_WIT_VERSIONS.join(", ")
    )]
    UnsupportedWit { plugin: String, found: String },
    #[error("plugin `{plugin}` is not an attune fetcher (it imports no attune:fetcher interface)")]
    NotAFetcher { plugin: String },
    #[error("plugin `{plugin}`: {message}")]
    Instantiate { plugin: String, message: String },
    #[error("fetcher `{plugin}` ran out of time: it ran longer than the limit of {}s (raise it with --limit-time)", .limit.as_secs_f64())]
    TimeLimit { plugin: String, limit: Duration },
    #[error("fetcher `{plugin}` hit its memory limit of {} MiB (raise it with --limit-memory){}", .limit >> 20, stderr_tail(.stderr))]
    MemoryLimit { plugin: String, limit: u64, stderr: String },
    #[error("fetcher `{plugin}` crashed: {message}{}", stderr_tail(.stderr))]
    Trap { plugin: String, message: String, stderr: String },
    #[error("fetcher `{plugin}` wrote outside the rules: {error}")]
    Staging { plugin: String, error: StagingError },
    #[error("fetcher `{plugin}` failed: {error}")]
    Fetch { plugin: String, error: FetchError },
    #[error("fetcher `{plugin}`: {denial}")]
    Denied { plugin: String, denial: String },
    #[error("{path}: cannot open the fetch input: {source}")]
    Input { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = t.lines().rev().take(5).collect();
    let shown: Vec<&str> = lines.into_iter().rev().collect();
    format!("\n  fetcher stderr: {}", shown.join("\n  "))
}

/// A compiled fetcher ready to run.
#[derive(Clone)]
pub struct Plugin {
    pub info: PluginInfo,
    /// SHA-256 of the wasm bytes.
    pub sha256: String,
    component: Component,
}

/// The engine, its epoch ticker and the compiled-component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<FetchState>,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// `cache_dir`: where compiled components are kept (`None`: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| RuntimeError::Instantiate { plugin: "-".into(), message: format!("{e:#}") })?;
        let mut linker = Linker::new(&engine);
        let wire = |r: wasmtime::Result<()>| {
            r.map_err(|e| RuntimeError::Instantiate { plugin: "-".into(), message: format!("{e:#}") })
        };
        wire(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        wire(wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))?;
        wire(since_v0_1_0::add_to_linker(&mut linker))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("attune-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match e.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Io { path: "epoch thread".into(), source: e })?;
        Ok(Runtime { engine, linker, cache_dir, stop })
    }

    /// Compiles (or loads from cache) a fetcher, checks its WIT version and
    /// asks it to `describe` itself. `label` names it in errors.
    pub async fn load(&self, label: &str, wasm: &[u8]) -> Result<Plugin, RuntimeError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let component = self.compile(label, wasm, &sha256)?;
        let wit = wit_version(&self.engine, &component)
            .ok_or_else(|| RuntimeError::NotAFetcher { plugin: label.to_string() })?;
        if !SUPPORTED_WIT_VERSIONS.contains(&wit.as_str()) {
            return Err(RuntimeError::UnsupportedWit { plugin: label.to_string(), found: wit });
        }
        let limits = Limits { time: Duration::from_secs(10), ..Limits::default() };
        let scratch = tempfile::tempdir().map_err(|e| RuntimeError::Io { path: std::env::temp_dir(), source: e })?;
        let staging = StagingWriter::new(scratch.path(), WriteLimits { max_bytes: 0, max_files: 0, max_open_files: 0 })
            .map_err(|e| RuntimeError::Io { path: scratch.path().to_path_buf(), source: e })?;
        let mut store = self.store(label, staging, None, http::OutboundPolicy::deny_all(), &limits, None)?;
        let run = async {
            let instance = since_v0_1_0::Fetcher::instantiate_async(&mut store, &component, &self.linker)
                .await
                .map_err(|e| RuntimeError::Instantiate { plugin: label.to_string(), message: format!("{e:#}") })?;
            since_v0_1_0::describe(&mut store, &instance).await.map_err(|e| classify(label, e, &mut store, &limits))
        };
        let info = tokio::time::timeout(limits.time, run)
            .await
            .map_err(|_| RuntimeError::TimeLimit { plugin: label.to_string(), limit: limits.time })??;
        Ok(Plugin { info, sha256, component })
    }

    fn compile(&self, label: &str, wasm: &[u8], sha256: &str) -> Result<Component, RuntimeError> {
        let cached = self.cache_dir.as_ref().map(|d| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            d.join("components-v1").join(format!("{sha256}-{}-{:016x}.cwasm", env!("CARGO_PKG_VERSION"), h.finish()))
        });
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: only files this function wrote are loaded: the name is the
            // hash of the wasm and of this engine's configuration, under our cache dir.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!("{}: unusable compiled component, recompiling: {e:#}", path.display()),
            }
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| RuntimeError::Compile { plugin: label.to_string(), message: format!("{e:#}") })?;
        if let Some(path) = cached {
            // A cache that cannot be written only costs speed.
            if let Err(e) = write_cache(&path, &component) {
                tracing::debug!("{}: cannot cache compiled component: {e}", path.display());
            }
        }
        Ok(component)
    }

    fn store(
        &self,
        label: &str,
        staging: StagingWriter,
        input: Option<&Path>,
        policy: http::OutboundPolicy,
        limits: &Limits,
        events: Option<EventSink>,
    ) -> Result<Store<FetchState>, RuntimeError> {
        let stderr = TailPipe::default();
        let mut wasi = WasiCtx::builder();
        // File reads of the read-only input are short: doing them on this
        // thread instead of hopping to a blocking pool per call is several
        // times faster for a fetcher that copies many files.
        wasi.stderr(stderr.clone()).allow_blocking_current_thread(true);
        // A folder is mounted read-only; a single file is offered as a blob
        // only, so nothing beside it is visible.
        let (input_dir, input_file) = match input {
            Some(path) if path.is_dir() => {
                wasi.preopened_dir(path, INPUT_GUEST_PATH, wasmtime_wasi::FsPerms::ReadOnly).map_err(|e| {
                    RuntimeError::Input { path: path.to_path_buf(), source: std::io::Error::other(format!("{e:#}")) }
                })?;
                let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
                    .map_err(|e| RuntimeError::Input { path: path.to_path_buf(), source: e })?;
                (Some(dir), None)
            }
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| RuntimeError::Input { path: path.to_path_buf(), source: e })?;
                (None, Some(Arc::new(file)))
            }
            None => (None, None),
        };
        let limiter = Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
                .instances(32)
                .tables(64)
                .memories(8)
                .table_elements(1 << 20)
                .trap_on_grow_failure(false)
                .build(),
            memory_hit: false,
        };
        let state = FetchState {
            plugin: label.to_string(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            staging,
            limiter,
            input_dir,
            input_file,
            scratch_count: 0,
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            policy,
            stderr,
            logs: VecDeque::new(),
            events,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick: trap past the deadline, else yield so a busy guest
        // never starves the executor (or the timeout around it).
        let deadline = Instant::now() + limits.time;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline { Err(Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        Ok(store)
    }

    /// Runs one fetch into `staging`. On success the staging folder holds the
    /// pack as the fetcher wrote it; on any error the caller discards it.
    pub async fn fetch(
        &self,
        plugin: &Plugin,
        request: &FetchRequest,
        grants: &Grants,
        staging: StagingWriter,
        limits: &Limits,
        events: Option<EventSink>,
    ) -> Result<Fetched, RuntimeError> {
        let label = plugin.info.name.clone();
        let policy = http::OutboundPolicy {
            allowed: grants.outbound_hosts.clone(),
            // Only what a trusted party named literally may be a private address.
            named: grants.private_hosts.clone(),
            allow_insecure_http: grants.allow_insecure_http,
            timeouts: http::Timeouts::within(limits.time),
            denials: Arc::default(),
            resolver: http::system_resolver(),
        };
        let mut store = self.store(&label, staging, grants.input.as_deref(), policy, limits, events)?;
        let run = async {
            let instance = since_v0_1_0::Fetcher::instantiate_async(&mut store, &plugin.component, &self.linker)
                .await
                .map_err(|e| classify(&label, e, &mut store, limits))?;
            since_v0_1_0::fetch(&mut store, &instance, request)
                .await
                .map_err(|e| classify(&label, e, &mut store, limits))
        };
        // A little past the epoch deadline: this one catches guests parked in
        // a host wait (sleep, a stalled stream), which epochs cannot interrupt.
        let outcome = match tokio::time::timeout(limits.time + EPOCH_TICK * 4, run).await {
            Ok(r) => r,
            Err(_) => return Err(RuntimeError::TimeLimit { plugin: label, limit: limits.time }),
        };
        let state = store.into_data();
        // A broken rule wins over whatever the fetcher claimed.
        if let Some(v) = state.staging.violation() {
            return Err(RuntimeError::Staging { plugin: label, error: v.clone() });
        }
        // A failure after the memory limit refused growth is about the limit,
        // even when the guest caught the allocation failure itself.
        if state.limiter.memory_hit && !matches!(outcome, Ok(Ok(_))) {
            return Err(RuntimeError::MemoryLimit {
                plugin: label,
                limit: limits.memory_bytes,
                stderr: state.stderr.text(),
            });
        }
        // A failure after a refused request is about that refusal.
        let outcome = match (outcome, state.policy.first_denial()) {
            (Ok(Ok(r)), _) => Ok(Ok(r)),
            (_, Some(d)) => return Err(RuntimeError::Denied { plugin: label, denial: d.to_string() }),
            (other, None) => other,
        };
        let result = outcome?.map_err(|error| RuntimeError::Fetch { plugin: label.clone(), error })?;
        let summary = state.staging.finish().map_err(|error| RuntimeError::Staging { plugin: label, error })?;
        Ok(Fetched { result, bytes: summary.bytes, entries: summary.entries, logs: state.logs.into_iter().collect() })
    }
}

/// What a successful fetch produced.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub result: FetchResult,
    pub bytes: u64,
    pub entries: u64,
    pub logs: Vec<(LogLevel, String)>,
}

fn write_cache(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    fs_err::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The attune:fetcher version a component imports, from its import names.
fn wit_version(engine: &Engine, component: &Component) -> Option<String> {
    component.component_type().imports(engine).find_map(|(name, _)| {
        name.strip_prefix("attune:fetcher/").and_then(|rest| rest.split_once('@')).map(|(_, v)| v.to_string())
    })
}

/// Turns a wasmtime error into the limit that caused it, if any.
fn classify(plugin: &str, e: wasmtime::Error, store: &mut Store<FetchState>, limits: &Limits) -> RuntimeError {
    let plugin = plugin.to_string();
    let stderr = store.data().stderr.text();
    if store.data().limiter.memory_hit {
        return RuntimeError::MemoryLimit { plugin, limit: limits.memory_bytes, stderr };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RuntimeError::TimeLimit { plugin, limit: limits.time },
        Some(trap) => RuntimeError::Trap { plugin, message: trap.to_string(), stderr },
        None => RuntimeError::Trap { plugin, message: format!("{e:#}"), stderr },
    }
}

/// Per-fetch state owned by the store.
pub struct FetchState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) staging: StagingWriter,
    limiter: Limiter,
    input_dir: Option<Dir>,
    input_file: Option<Arc<std::fs::File>>,
    scratch_count: u32,
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    policy: http::OutboundPolicy,
    stderr: TailPipe,
    logs: VecDeque<(LogLevel, String)>,
    events: Option<EventSink>,
}

impl WasiView for FetchState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for FetchState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http_ctx, table: &mut self.table, hooks: &mut self.policy }
    }
}

impl FetchState {
    fn on_log(&mut self, level: LogLevel, mut message: String) {
        message.truncate(message.floor_char_boundary(2048));
        match level {
            LogLevel::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin = %self.plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
        }
        if let Some(sink) = &self.events {
            sink(&Event::Log(level, message.clone()));
        }
        if self.logs.len() == LOG_KEEP {
            self.logs.pop_front();
        }
        self.logs.push_back((level, message));
    }

    fn on_progress(&mut self, done: u64, total: Option<u64>) {
        if let Some(sink) = &self.events {
            sink(&Event::Progress { done, total });
        }
    }

    fn new_scratch(&mut self) -> Result<blobs::Blob, StagingError> {
        let dir =
            self.staging.scratch_dir().ok_or_else(|| StagingError::Io("this fetch has no scratch space".into()))?;
        let blob = blobs::Blob::scratch(&dir, self.scratch_count)?;
        self.scratch_count += 1;
        Ok(blob)
    }

    fn input_mode(&self, guest_path: &str) -> Result<u32, String> {
        use cap_std::fs::PermissionsExt;
        let dir = self.input_dir.as_ref().ok_or("this fetch has no input")?;
        let rel = guest_path
            .strip_prefix(INPUT_GUEST_PATH)
            .map(|r| r.trim_start_matches('/'))
            .ok_or_else(|| format!("{guest_path}: not under {INPUT_GUEST_PATH}"))?;
        let rel = if rel.is_empty() { "." } else { rel };
        if rel != "." {
            crate::staging::paths::check(rel).map_err(|e| e.to_string())?;
        }
        let meta = dir.symlink_metadata(rel).map_err(|e| format!("{guest_path}: {e}"))?;
        Ok(meta.permissions().mode() & 0o777)
    }
}

/// Records which limit stopped a guest, so the error can name it.
struct Limiter {
    inner: StoreLimits,
    memory_hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            self.memory_hit = true;
        }
        Ok(ok)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The guest's stderr: keeps the first [`STDERR_KEEP`] bytes and silently
/// drops the rest, so a chatty or hostile fetcher neither fills memory nor
/// crashes on a full pipe.
#[derive(Clone, Default)]
struct TailPipe(Arc<std::sync::Mutex<Vec<u8>>>);

impl TailPipe {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for TailPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let mut v = self.0.lock().unwrap();
        let room = STDERR_KEEP.saturating_sub(v.len());
        v.extend_from_slice(&buf[..buf.len().min(room)]);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
