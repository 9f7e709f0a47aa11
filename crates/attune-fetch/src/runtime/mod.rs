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
//!
//! What a fetch makes the host hold is accounted in one place (`Limiter`):
//! every linear memory and table of every instance counts against the one
//! memory limit, live resource handles are capped, and wasi:http is linked
//! only for a fetch granted at least one host. What a fetcher says (logs,
//! errors, answers) is capped when it arrives ([`answers`]) and escaped
//! before anyone sees it ([`crate::untrusted`]).

pub mod answers;
pub mod blobs;
pub mod capped;
pub mod digests;
pub mod grants;
pub mod http;
mod imports;
mod lifted;

/// `fetch()` in a version module: the request in that version's own
/// generated `types::FetchRequest` (the same fields in every version so
/// far), the answer lifted with caps (an over-cap result is refused, an
/// error message cut). A version that changes the request writes its own.
macro_rules! fetch_in_own_request_type {
    () => {
        /// `fetch()`, in this version's request type.
        pub async fn fetch(
            store: &mut wasmtime::Store<super::FetchState>,
            instance: &wasmtime::component::Instance,
            request: &super::FetchRequest,
        ) -> wasmtime::Result<Result<Result<super::FetchResult, super::FetchError>, super::answers::AnswerError>> {
            let req = types::FetchRequest {
                source: request.source.clone(),
                input: request.input.as_ref().filter(|p| p.is_dir()).map(|_| super::INPUT_GUEST_PATH.to_string()),
                input_file: request.input_file.clone(),
                reference: request.reference.clone(),
                options: request.options.clone(),
            };
            super::lifted::fetch(store, instance, req).await
        }
    };
}

pub mod since_v0_1_0;
pub mod since_v0_2_0;
pub mod since_v0_3_0;
mod wasi_bounds;

use std::collections::{HashMap, VecDeque};
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
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::staging::{StagingError, StagingWriter, WriteLimits};

pub use grants::Grants;

/// Where the read-only input appears inside the guest.
pub const INPUT_GUEST_PATH: &str = "/input";
/// WIT versions this host can run, newest first. The first is what the SDK
/// and the built-in fetchers are built against.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[since_v0_3_0::VERSION, since_v0_2_0::VERSION, since_v0_1_0::VERSION];
const EPOCH_TICK: Duration = Duration::from_millis(50);
const STDERR_KEEP: usize = 16 * 1024;
const LOG_KEEP: usize = 200;
/// Live resource handles (files, blobs, streams, http fields…) one fetch may
/// hold at once.
pub const MAX_HANDLES: usize = 1024;
/// The most one wasi:http `fields` (a header map) may hold.
pub const MAX_HTTP_FIELDS_BYTES: usize = 32 * 1024;
/// What one table element is counted as against the memory limit (a
/// funcref is a pointer; counted generously).
pub const TABLE_ELEMENT_BYTES: usize = 16;
/// Log lines a fetcher may send in a burst, and per second after that;
/// the rest are dropped and counted.
pub const LOG_BURST: u32 = 200;
pub const LOG_PER_SECOND: u32 = 50;
/// `describe()` must be cheap: it runs under these fixed limits.
pub const DESCRIBE_TIME: Duration = Duration::from_secs(10);
pub const DESCRIBE_MEMORY: u64 = 64 << 20;

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

/// One version a source offers, from a fetcher's `list-versions`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    /// Semver (checked when the answer arrives).
    pub version: String,
    /// The exact source that fetches this version.
    pub source: String,
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

impl LogLevel {
    /// The level's name in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
        }
    }
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
    #[error(
        "plugin `{plugin}`: describe() {what}; describe() must answer at once, so it always runs under fixed \
         limits ({}s, {} MiB) that no flag raises: the plugin is broken, report it to its author",
        DESCRIBE_TIME.as_secs(), DESCRIBE_MEMORY >> 20
    )]
    Describe { plugin: String, what: String },
    #[error("plugin `{plugin}`: its {call}() answer was refused: {error}")]
    Answer { plugin: String, call: &'static str, error: answers::AnswerError },
    #[error(
        "plugin `{plugin}`: {what} is now {now}, but it was {recorded} when the plugin was added; \
         a plugin's describe() answer may not change (remove and add it again to accept the new identity)"
    )]
    IdentityChanged { plugin: String, what: &'static str, recorded: String, now: String },
    #[error("fetcher `{plugin}` hit its memory limit of {} MiB (raise it with --limit-memory){}", .limit >> 20, stderr_tail(.stderr))]
    MemoryLimit { plugin: String, limit: u64, stderr: String },
    #[error("fetcher `{plugin}` crashed: {message}{}{}", stderr_tail(.stderr), backtrace_below(.backtrace))]
    Trap { plugin: String, message: String, stderr: String, backtrace: String },
    #[error("fetcher `{plugin}` wrote outside the rules: {error}")]
    Staging { plugin: String, error: StagingError },
    #[error("fetcher `{plugin}` failed: {error}")]
    Fetch { plugin: String, error: FetchError },
    #[error("fetcher `{plugin}`: {denial}")]
    Denied { plugin: String, denial: String },
    #[error(
        "fetcher `{plugin}`: it called wasi:http, which is not linked for a fetch granted no outbound host; \
         allow {} with --allow-host (or `attune plugin grant {plugin} --allow-host …` for an added plugin)",
        .host.as_deref().map(|h| format!("the host it needs ({h})")).unwrap_or_else(|| "the host it needs".into())
    )]
    HttpNotLinked { plugin: String, host: Option<String> },
    #[error("{path}: cannot open the fetch input: {source}")]
    Input { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The last lines of a fetcher's stderr, each escaped and framed as the
/// fetcher's, so none can pass for attune's own output.
fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = t.lines().rev().take(5).collect();
    let shown: Vec<String> =
        lines.into_iter().rev().map(|l| format!("\n  fetcher stderr | {}", crate::untrusted::escape(l))).collect();
    shown.concat()
}

/// Where in the fetcher it stopped (the first frames), below the cause and
/// the stderr tail; frame names come from the plugin, so they are escaped.
fn backtrace_below(bt: &str) -> String {
    const FRAMES: usize = 8;
    let frames: Vec<&str> = bt.lines().filter(|l| !l.starts_with("error while executing")).collect();
    if frames.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n  where it stopped (wasm backtrace):");
    for f in frames.iter().take(FRAMES) {
        out.push_str("\n  ");
        out.push_str(&crate::untrusted::escape(f));
    }
    if frames.len() > FRAMES {
        out.push_str(&format!("\n      … {} more frames", frames.len() - FRAMES));
    }
    out
}

/// A compiled fetcher ready to run.
#[derive(Clone)]
pub struct Plugin {
    pub info: PluginInfo,
    /// SHA-256 of the wasm bytes.
    pub sha256: String,
    component: Component,
}

/// Who a plugin is, as recorded when it was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub version: String,
    pub schemes: Vec<String>,
    /// As stored: `read-input`, `outbound-host:…`, `larger-limits:…`.
    pub capabilities: Vec<String>,
    pub sha256: String,
}

impl Plugin {
    /// Refuses a plugin whose bytes or `describe()` answer differ from what
    /// was recorded when it was added: an install records that identity,
    /// never a fresh answer, so a plugin cannot change its name or version
    /// in the audit trail later.
    pub fn expect_identity(&self, recorded: &Identity) -> Result<(), RuntimeError> {
        let changed = |what, was: String, now: String| RuntimeError::IdentityChanged {
            plugin: recorded.name.clone(),
            what,
            recorded: was,
            now: crate::untrusted::cap(&crate::untrusted::escape(&now), 200),
        };
        let caps: Vec<String> = self.info.capabilities.iter().map(Capability::to_string).collect();
        if self.sha256 != recorded.sha256 {
            return Err(changed("its wasm's SHA-256", recorded.sha256.clone(), self.sha256.clone()));
        }
        if self.info.name != recorded.name {
            return Err(changed("its name", recorded.name.clone(), self.info.name.clone()));
        }
        if self.info.version != recorded.version {
            return Err(changed("its version", recorded.version.clone(), self.info.version.clone()));
        }
        if self.info.schemes != recorded.schemes {
            return Err(changed("its schemes", recorded.schemes.join(", "), self.info.schemes.join(", ")));
        }
        if caps != recorded.capabilities {
            return Err(changed("what it asks for", recorded.capabilities.join(", "), caps.join(", ")));
        }
        Ok(())
    }
}

/// The engine, its epoch ticker and the compiled-component cache.
pub struct Runtime {
    engine: Engine,
    /// For fetches granted at least one host: WASI, wasi:http and attune.
    linker: Linker<FetchState>,
    /// For every other fetch: no wasi:http at all (its imports trap).
    linker_no_http: Linker<FetchState>,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    /// The operator's network setup, the same for every fetch of this process.
    net: attune_net::Net,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// `cache_dir`: where compiled components are kept (`None`: compile
    /// every time); `net`: how fetches reach the network (trust, proxy,
    /// credentials), never shown to a fetcher.
    pub fn new(cache_dir: Option<PathBuf>, net: attune_net::Net) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| RuntimeError::Instantiate { plugin: "-".into(), message: format!("{e:#}") })?;
        let wire = |r: wasmtime::Result<()>| {
            r.map_err(|e| RuntimeError::Instantiate { plugin: "-".into(), message: format!("{e:#}") })
        };
        let mut linker_no_http = Linker::new(&engine);
        wire(wasmtime_wasi::p2::add_to_linker_async(&mut linker_no_http))?;
        wire(since_v0_1_0::add_to_linker(&mut linker_no_http))?;
        wire(since_v0_2_0::add_to_linker(&mut linker_no_http))?;
        wire(since_v0_3_0::add_to_linker(&mut linker_no_http))?;
        linker_no_http.allow_shadowing(true);
        wire(wasi_bounds::add(&mut linker_no_http))?;
        linker_no_http.allow_shadowing(false);
        let mut linker = linker_no_http.clone();
        wire(wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))?;
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
        Ok(Runtime { engine, linker, linker_no_http, cache_dir, stop, net })
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
        let limits = Limits { time: DESCRIBE_TIME, memory_bytes: DESCRIBE_MEMORY, ..Limits::default() };
        let scratch = tempfile::tempdir().map_err(|e| RuntimeError::Io { path: std::env::temp_dir(), source: e })?;
        let staging = StagingWriter::new(scratch.path(), WriteLimits { max_bytes: 0, max_files: 0, max_open_files: 0 })
            .map_err(|e| RuntimeError::Io { path: scratch.path().to_path_buf(), source: e })?;
        let mut store =
            self.store(label, staging, None, http::OutboundPolicy::deny_all(self.net.clone()), &limits, None)?;
        let linker = self.linker_for(&component, false)?;
        let run = async {
            let instance = linker
                .instantiate_async(&mut store, &component)
                .await
                .map_err(|e| classify(label, e, &mut store, &limits))?;
            lifted::describe(&mut store, &instance, &wit).await.map_err(|e| classify(label, e, &mut store, &limits))
        };
        let describe_failed = |what: String| RuntimeError::Describe { plugin: label.to_string(), what };
        let info = match tokio::time::timeout(limits.time, run).await {
            Err(_) | Ok(Err(RuntimeError::TimeLimit { .. })) => {
                return Err(describe_failed(format!("ran longer than {}s", limits.time.as_secs())));
            }
            Ok(Err(RuntimeError::MemoryLimit { .. })) => {
                return Err(describe_failed(format!("used more than {} MiB", limits.memory_bytes >> 20)));
            }
            Ok(r) => r?,
        };
        let refused = |error| RuntimeError::Answer { plugin: label.to_string(), call: "describe", error };
        let info = info.map_err(refused)?;
        answers::check_info(&info).map_err(refused)?;
        Ok(Plugin { info, sha256, component })
    }

    /// The linker a fetch runs with: wasi:http only when it may reach a
    /// host; otherwise every wasi:http import is present but traps, so a
    /// plugin without a host grant holds no http handles at all.
    fn linker_for(&self, component: &Component, http: bool) -> Result<Linker<FetchState>, RuntimeError> {
        if http {
            return Ok(self.linker.clone());
        }
        let mut linker = self.linker_no_http.clone();
        deny_http(&mut linker, &self.engine, component)
            .map_err(|e| RuntimeError::Instantiate { plugin: "-".into(), message: format!("{e:#}") })?;
        Ok(linker)
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
        // One wasi:random call allocates what it returns: keep that small.
        wasi.max_random_size(64 * 1024);
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
        let limiter = Limiter::new(limits.memory_bytes);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let mut http_ctx = wasmtime_wasi_http::WasiHttpCtx::new();
        http_ctx.set_field_size_limit(MAX_HTTP_FIELDS_BYTES);
        let state = FetchState {
            plugin: label.to_string(),
            wasi: wasi.build(),
            table,
            staging,
            limiter,
            input_dir,
            input_file,
            scratch_count: 0,
            scratch_sha256: HashMap::new(),
            http_ctx,
            policy,
            stderr,
            logs: VecDeque::new(),
            log_gate: LogGate::new(Instant::now()),
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
        let policy = self.policy(grants, limits);
        let mut store = self.store(&label, staging, grants.input.as_deref(), policy, limits, events)?;
        let linker = self.linker_for(&plugin.component, !grants.outbound_hosts.is_empty())?;
        let run = async {
            let instance = linker
                .instantiate_async(&mut store, &plugin.component)
                .await
                .map_err(|e| classify(&label, e, &mut store, limits))?;
            let answer = match plugin.info.wit_version.as_str() {
                since_v0_1_0::VERSION => since_v0_1_0::fetch(&mut store, &instance, request).await,
                since_v0_2_0::VERSION => since_v0_2_0::fetch(&mut store, &instance, request).await,
                _ => since_v0_3_0::fetch(&mut store, &instance, request).await,
            };
            answer.map_err(|e| classify(&label, e, &mut store, limits))
        };
        // A little past the epoch deadline: this one catches guests parked in
        // a host wait (sleep, a stalled stream), which epochs cannot interrupt.
        let outcome = match tokio::time::timeout(limits.time + EPOCH_TICK * 4, run).await {
            // Name the host the source names, so the hint is the flag to type.
            Ok(Err(RuntimeError::HttpNotLinked { plugin, .. })) => {
                let host = url::Url::parse(&request.source).ok().and_then(|u| u.host_str().map(str::to_string));
                let host = host.map(|h| crate::untrusted::cap(&crate::untrusted::escape(&h), 255));
                Err(RuntimeError::HttpNotLinked { plugin, host })
            }
            Ok(r) => r,
            Err(_) => return Err(RuntimeError::TimeLimit { plugin: label, limit: limits.time }),
        };
        let mut state = store.into_data();
        state.flush_dropped_logs();
        // A broken rule wins over whatever the fetcher claimed.
        if let Some(v) = state.staging.violation() {
            return Err(RuntimeError::Staging { plugin: label, error: v.clone() });
        }
        // A failure after the memory limit refused growth is about the limit,
        // even when the guest caught the allocation failure itself.
        if state.limiter.memory_hit && !matches!(outcome, Ok(Ok(Ok(_)))) {
            return Err(RuntimeError::MemoryLimit {
                plugin: label,
                limit: limits.memory_bytes,
                stderr: state.stderr.text(),
            });
        }
        // A failure after a refused request is about that refusal.
        let outcome = match (outcome, state.policy.first_denial()) {
            (Ok(Ok(Ok(r))), _) => Ok(Ok(Ok(r))),
            (_, Some(d)) => return Err(RuntimeError::Denied { plugin: label, denial: d.to_string() }),
            (other, None) => other,
        };
        let refused = |error| RuntimeError::Answer { plugin: label.clone(), call: "fetch", error };
        let result = outcome?
            .map_err(refused)?
            .map_err(|error| RuntimeError::Fetch { plugin: label.clone(), error: answers::tame_error(error) })?;
        let result = answers::check_result(result).map_err(refused)?;
        let summary = state.staging.finish().map_err(|error| RuntimeError::Staging { plugin: label, error })?;
        Ok(Fetched {
            result,
            bytes: summary.bytes,
            entries: summary.entries,
            tree: summary.tree,
            logs: state.logs.into_iter().collect(),
            scratch_sha256: state.scratch_sha256,
        })
    }
}

impl Runtime {
    fn policy(&self, grants: &Grants, limits: &Limits) -> http::OutboundPolicy {
        http::OutboundPolicy {
            allowed: grants.outbound_hosts.clone(),
            // Only what a trusted party named literally may be a private address.
            named: grants.private_hosts.clone(),
            allow_insecure_http: grants.allow_insecure_http,
            timeouts: http::Timeouts::within(limits.time),
            denials: Arc::default(),
            resolver: http::system_resolver(),
            net: self.net.clone(),
        }
    }

    /// Asks a plugin which versions `source` offers (`list-versions`), under
    /// the same grants and limits as a fetch, with nowhere to write. `None`:
    /// the plugin lists no versions (it answered so, or its WIT version has
    /// no `list-versions`).
    pub async fn list_versions(
        &self,
        plugin: &Plugin,
        source: &str,
        grants: &Grants,
        limits: &Limits,
    ) -> Result<Option<Vec<VersionInfo>>, RuntimeError> {
        if plugin.info.wit_version == since_v0_1_0::VERSION {
            return Ok(None);
        }
        let label = plugin.info.name.clone();
        let scratch = tempfile::tempdir().map_err(|e| RuntimeError::Io { path: std::env::temp_dir(), source: e })?;
        let staging = StagingWriter::new(scratch.path(), WriteLimits { max_bytes: 0, max_files: 0, max_open_files: 0 })
            .map_err(|e| RuntimeError::Io { path: scratch.path().to_path_buf(), source: e })?;
        let policy = self.policy(grants, limits);
        let mut store = self.store(&label, staging, None, policy, limits, None)?;
        let linker = self.linker_for(&plugin.component, !grants.outbound_hosts.is_empty())?;
        let run = async {
            let instance = linker
                .instantiate_async(&mut store, &plugin.component)
                .await
                .map_err(|e| classify(&label, e, &mut store, limits))?;
            lifted::list_versions(&mut store, &instance, source)
                .await
                .map_err(|e| classify(&label, e, &mut store, limits))
        };
        let outcome = match tokio::time::timeout(limits.time + EPOCH_TICK * 4, run).await {
            Ok(r) => r,
            Err(_) => return Err(RuntimeError::TimeLimit { plugin: label, limit: limits.time }),
        };
        let mut state = store.into_data();
        state.flush_dropped_logs();
        if state.staging.violation().is_some() {
            let denial = "list-versions() tried to write to staging; listing versions may not write".to_string();
            return Err(RuntimeError::Denied { plugin: label, denial });
        }
        if state.limiter.memory_hit && !matches!(outcome, Ok(Ok(Ok(_)))) {
            return Err(RuntimeError::MemoryLimit {
                plugin: label,
                limit: limits.memory_bytes,
                stderr: state.stderr.text(),
            });
        }
        if !matches!(outcome, Ok(Ok(Ok(_))))
            && let Some(d) = state.policy.first_denial()
        {
            return Err(RuntimeError::Denied { plugin: label, denial: d.to_string() });
        }
        let refused = |error| RuntimeError::Answer { plugin: label.clone(), call: "list-versions", error };
        let versions = outcome?
            .map_err(refused)?
            .map_err(|error| RuntimeError::Fetch { plugin: label.clone(), error: answers::tame_error(error) })?;
        if let Some(v) = &versions {
            answers::check_versions(v).map_err(refused)?;
        }
        Ok(versions)
    }
}

/// What a successful fetch produced.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub result: FetchResult,
    pub bytes: u64,
    pub entries: u64,
    /// Every staged entry, hashed as it was written (see [`crate::staging::Summary::tree`]).
    pub tree: Vec<attune_core::checksum::Entry>,
    pub logs: Vec<(LogLevel, String)>,
    /// The SHA-256 the host itself took of each scratch blob the fetcher
    /// finished and dropped, by number (0 is the http fetcher's download).
    pub scratch_sha256: HashMap<u32, String>,
}

fn write_cache(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    attune_core::fs::write_atomic(path, &bytes)
}

/// The attune:fetcher version a component imports, from its import names.
fn wit_version(engine: &Engine, component: &Component) -> Option<String> {
    component.component_type().imports(engine).find_map(|(name, _)| {
        name.strip_prefix("attune:fetcher/").and_then(|rest| rest.split_once('@')).map(|(_, v)| v.to_string())
    })
}

/// Defines every wasi:http import `component` has as a function that fails
/// (and its own resource types as placeholders nothing can create), so a
/// fetch without a host grant instantiates but cannot make one http handle.
/// Resource types wasi:http only uses (streams, pollables) stay the real ones.
fn deny_http(linker: &mut Linker<FetchState>, engine: &Engine, component: &Component) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    let mut seen: Vec<ResourceType> = Vec::new();
    for (name, import) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else { continue };
        let mut defs = if name.starts_with("wasi:http/") { Some(linker.instance(name)?) } else { None };
        for (export, item) in instance.exports(engine) {
            match (item.ty, defs.as_mut()) {
                (ComponentItem::Resource(ty), defs) if !seen.contains(&ty) => {
                    seen.push(ty);
                    if let Some(defs) = defs {
                        defs.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                    }
                }
                (ComponentItem::ComponentFunc(_), Some(defs)) => {
                    let full = format!("{name}#{export}");
                    defs.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("unknown import: `{full}` has not been defined")
                    })?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Turns a wasmtime error into the limit that caused it, if any.
fn classify(plugin: &str, e: wasmtime::Error, store: &mut Store<FetchState>, limits: &Limits) -> RuntimeError {
    let plugin = plugin.to_string();
    let stderr = store.data().stderr.text();
    if store.data().limiter.memory_hit {
        return RuntimeError::MemoryLimit { plugin, limit: limits.memory_bytes, stderr };
    }
    let backtrace = e.downcast_ref::<wasmtime::WasmBacktrace>().map(|b| b.to_string()).unwrap_or_default();
    // The cause first; wasmtime puts it below the backtrace.
    let cause = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return RuntimeError::TimeLimit { plugin, limit: limits.time },
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    if cause.contains("resource table has no free keys") {
        let message = format!("it held more than {MAX_HANDLES} resource handles at once");
        return RuntimeError::Trap { plugin, message, stderr, backtrace: String::new() };
    }
    if cause.contains("unknown import: `wasi:http/") {
        return RuntimeError::HttpNotLinked { plugin, host: None };
    }
    let message = crate::untrusted::cap(&crate::untrusted::escape(&cause), 1024);
    RuntimeError::Trap { plugin, message, stderr, backtrace: crate::untrusted::cap(&backtrace, 4096) }
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
    /// SHA-256 of each scratch blob dropped finished (see [`Blob::finished_scratch`](blobs::Blob::finished_scratch)).
    scratch_sha256: HashMap<u32, String>,
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    policy: http::OutboundPolicy,
    stderr: TailPipe,
    logs: VecDeque<(LogLevel, String)>,
    log_gate: LogGate,
    events: Option<EventSink>,
}

/// A token bucket for fetcher log lines: a burst, then a steady rate; what
/// it drops is counted and reported as one note.
struct LogGate {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl LogGate {
    fn new(now: Instant) -> LogGate {
        LogGate { tokens: f64::from(LOG_BURST), last: now, dropped: 0 }
    }

    /// Whether a line may pass now; after a gap, first the count of what
    /// was dropped (the caller reports it).
    fn admit(&mut self, now: Instant) -> (bool, u64) {
        let refill = now.duration_since(self.last).as_secs_f64() * f64::from(LOG_PER_SECOND);
        self.tokens = (self.tokens + refill).min(f64::from(LOG_BURST));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            (true, std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            (false, 0)
        }
    }
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
    /// `message` is capped and escaped here, on arrival: nothing of a huge
    /// or hostile line is kept or shown.
    fn on_log(&mut self, level: LogLevel, message: &str) {
        let (admitted, dropped) = self.log_gate.admit(Instant::now());
        self.report_dropped(dropped);
        if admitted {
            let capped = crate::untrusted::cap(message, answers::LOG_MESSAGE_MAX);
            self.emit_log(level, crate::untrusted::escape(&capped).into_owned());
        }
    }

    /// Reports lines the gate dropped since the last one it let through.
    fn flush_dropped_logs(&mut self) {
        let dropped = std::mem::take(&mut self.log_gate.dropped);
        self.report_dropped(dropped);
    }

    fn report_dropped(&mut self, dropped: u64) {
        if dropped > 0 {
            self.emit_log(LogLevel::Warn, format!("{dropped} log messages from the fetcher were dropped (rate limit)"));
        }
    }

    /// One line, shown once: through the install's display when there is
    /// one, else through the log.
    fn emit_log(&mut self, level: LogLevel, message: String) {
        match &self.events {
            Some(sink) => sink(&Event::Log(level, message.clone())),
            None => match level {
                LogLevel::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
                LogLevel::Info => tracing::info!(plugin = %self.plugin, "{message}"),
                LogLevel::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
            },
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

    /// `copy-input-file`: `input_path` is relative to the input folder.
    fn copy_input_file(&mut self, path: &str, input_path: &str) -> Result<u64, StagingError> {
        let Some(dir) = &self.input_dir else {
            return Err(StagingError::Io("this fetch has no input folder to copy from".into()));
        };
        self.staging.copy_from_input(path, dir, input_path)
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

/// The one accounting of what a fetch makes the host hold: every linear
/// memory and every table of every instance, added up against the fetch's
/// memory limit (wasmtime's own limits are per memory), plus caps on how
/// many instances, memories and tables there are. Records which limit
/// stopped a guest, so the error can name it.
struct Limiter {
    budget: usize,
    /// Bytes of all memories and tables, as last grown.
    used: usize,
    memory_hit: bool,
}

impl Limiter {
    const INSTANCES: usize = 32;
    const MEMORIES: usize = 8;
    const TABLES: usize = 64;

    fn new(memory_bytes: u64) -> Limiter {
        Limiter { budget: usize::try_from(memory_bytes).unwrap_or(usize::MAX), used: 0, memory_hit: false }
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.budget {
            self.memory_hit = true;
            return false;
        }
        self.used = total;
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Past its own maximum the growth fails anyway; don't count it.
        Ok(maximum.is_none_or(|m| desired <= m) && self.grow(current, desired))
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let bytes = |n: usize| n.saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(maximum.is_none_or(|m| desired <= m) && self.grow(bytes(current), bytes(desired)))
    }
    fn instances(&self) -> usize {
        Self::INSTANCES
    }
    fn tables(&self) -> usize {
        Self::TABLES
    }
    fn memories(&self) -> usize {
        Self::MEMORIES
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_and_table_counts_against_one_limit() {
        let mut l = Limiter::new(64 << 20);
        // Two memories of 40 MiB: the second does not fit beside the first.
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(!l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(l.memory_hit);
        // Growing the first one further counts only the difference.
        assert!(l.memory_growing(40 << 20, 60 << 20, None).unwrap());
        // Tables count too: 1M elements do not fit in the 4 MiB left.
        assert!(!l.table_growing(0, 1 << 20, None).unwrap());
        assert!(l.table_growing(0, 1024, None).unwrap());
        assert_eq!(l.used, (60 << 20) + 1024 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn growth_past_its_own_maximum_is_not_counted() {
        let mut l = Limiter::new(64 << 20);
        assert!(!l.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert!(!l.memory_hit);
        assert_eq!(l.used, 0);
    }

    #[test]
    fn log_gate_lets_a_burst_through_then_a_steady_rate_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut g = LogGate::new(t0);
        let passed = (0..LOG_BURST + 100).filter(|_| g.admit(t0).0).count();
        assert_eq!(passed, LOG_BURST as usize);
        assert_eq!(g.dropped, 100);
        // A second later, LOG_PER_SECOND more pass; the first reports the drops.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(g.admit(t1), (true, 100));
        let more = (0..LOG_PER_SECOND * 2).filter(|_| g.admit(t1).0).count();
        assert_eq!(more, LOG_PER_SECOND as usize - 1);
    }
}
