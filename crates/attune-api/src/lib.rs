//! attune-api: `attune serve`, the HTTP API.
//!
//! Why it exists: automation installs packs without a shell on the host. The
//! API is a thin layer over the same library the CLI uses: one [`Context`]
//! opened at start and shared, installs through [`crate::install::install`]
//! (as jobs, [`jobs`]), everything else through [`crate::packs`]. Every route
//! but `/health` and `/openapi.json` needs a bearer token ([`auth`]), checked
//! before anything of the request is parsed; local sources are refused
//! unless allowed ([`local`]); TLS is optional ([`tls`]), and without it only
//! loopback addresses are served unless `--insecure`.
//!
//! A caller is not the operator: what it names may not reach the
//! server's own network ([`crate::runtime::http`]), its errors never carry
//! what a remote answered ([`jobs::for_caller`]), and it sees only its own
//! jobs. The server is bounded under abuse ([`server`]): header, body and
//! idle timeouts, a connection limit, TLS handshakes off the accept loop,
//! and a shutdown deadline.
//!
//! Scopes: `read` lists and shows packs, installations and jobs; `install`
//! also installs (by source or by name), uninstalls, verifies, activates,
//! upgrades and rolls back; `admin` may do everything, including `gc` and
//! `GET /api/v1/tokens`.
//!
//! May import: `attune-app` (and through it the crates below). Nothing imports
//! this crate but the `attune` binary.

pub mod auth;
pub mod error;
pub mod jobs;
pub mod local;
mod routes;
pub mod server;
pub mod tls;

use attune_app::{
    Error, UpgradeError, artifacts, by_name, context, db, install, packs, plugins, registry, runtime, sources, upgrade,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::context::Context;

/// The largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI 3.1 document, checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: String,
    /// PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on a non-loopback address.
    pub insecure: bool,
    pub allow_local_source: Option<PathBuf>,
    pub max_concurrent_installs: usize,
    pub max_queued: usize,
    /// Hosts every download may reach besides the source's own (config).
    pub allow_hosts: Vec<String>,
    pub handshake_timeout: Duration,
    /// Time to send a request's headers (and idle time between requests).
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// A response the client does not read for this long closes the connection.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// How long a shutdown waits for running installs and connections.
    pub shutdown_deadline: Duration,
    /// Where registry indexes are cached (installs by name, upgrades).
    pub cache_dir: Option<PathBuf>,
    /// `POST /gc`'s default `keep` (config `gc_keep`).
    pub gc_keep: usize,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: DEFAULT_LISTEN.to_string(),
            tls: None,
            insecure: false,
            allow_local_source: None,
            max_concurrent_installs: 2,
            max_queued: 16,
            allow_hosts: vec![],
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            shutdown_deadline: Duration::from_secs(30),
            cache_dir: None,
            gc_keep: 3,
        }
    }
}

pub struct AppState {
    pub ctx: Arc<Context>,
    pub jobs: Arc<jobs::Jobs>,
    pub local: local::LocalSources,
    pub gc_keep: usize,
    pub body_timeout: Duration,
}

/// Where the server listens, once bound.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bound {
    pub listen: SocketAddr,
    pub tls: bool,
    pub url: String,
}

/// Every route, built once; [`routes`] lists them for the OpenAPI test.
struct Table {
    router: Router<Arc<AppState>>,
    list: Vec<(&'static str, &'static str)>,
}

impl Table {
    fn add<H, T>(mut self, method: &'static str, path: &'static str, h: H) -> Table
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        let mr = match method {
            "GET" => get(h),
            "POST" => post(h),
            "DELETE" => delete(h),
            other => unreachable!("method {other} is not used"),
        };
        self.router = self.router.route(path, mr);
        self.list.push((method, path));
        self
    }
}

fn table() -> Table {
    Table { router: Router::new(), list: vec![] }
        .add("GET", "/api/v1/health", routes::health)
        .add("GET", "/api/v1/openapi.json", routes::openapi)
        .add("GET", "/api/v1/packs", routes::list_packs)
        .add("POST", "/api/v1/packs/install", routes::install)
        .add("GET", "/api/v1/packs/{ref}", routes::get_pack)
        .add("DELETE", "/api/v1/packs/{ref}", routes::delete_pack)
        .add("GET", "/api/v1/packs/{ref}/installations", routes::pack_installations)
        .add("POST", "/api/v1/packs/{ref}/verify", routes::verify_pack)
        .add("DELETE", "/api/v1/packs/{ref}/{version}", routes::delete_pack_version)
        .add("POST", "/api/v1/packs/{ref}/activate", routes::activate)
        .add("POST", "/api/v1/packs/{ref}/rollback", routes::rollback)
        .add("POST", "/api/v1/packs/{ref}/upgrade", routes::upgrade)
        .add("POST", "/api/v1/gc", routes::gc)
        .add("GET", "/api/v1/jobs/{id}", routes::get_job)
        .add("GET", "/api/v1/jobs/{id}/events", routes::job_events)
        .add("GET", "/api/v1/tokens", routes::list_tokens)
}

/// (method, path template) of every route the server has.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().list
}

pub fn router(state: Arc<AppState>) -> Router {
    table()
        .router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Routes anyone may call.
const OPEN: &[&str] = &["/api/v1/health", "/api/v1/openapi.json"];

/// Before any handler: the token and its scope (401/403 before a byte of
/// the body or the query is read), and the body's deadline.
async fn authenticate(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let body_deadline = st.body_timeout;
    let (parts, body) = req.into_parts();
    req = Request::from_parts(parts, axum::body::Body::new(server::DeadlineBody::new(body, body_deadline)));
    if OPEN.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let need = auth::needed_scope(req.method(), req.uri().path());
    let caller = match auth::authorize(&st.ctx.db, req.headers(), need).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Binds, calls `ready` with the bound address, serves until SIGINT or
/// SIGTERM, then shuts down gracefully: no new connections or installs,
/// the queued installs this server holds fail cleanly, running ones and
/// open connections finish, all within `shutdown_deadline`.
pub async fn serve(ctx: Context, opts: ServeOptions, ready: impl FnOnce(&Bound)) -> Result<(), Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&opts.listen)
        .await
        .map_err(|e| {
            Error::Usage(format!("--listen {:?}: {e}; write ADDRESS:PORT, e.g. {DEFAULT_LISTEN}", opts.listen))
        })?
        .collect();
    let Some(addr) = addrs.first().copied() else {
        return Err(Error::Usage(format!("--listen {:?}: resolves to no address", opts.listen)));
    };
    if opts.tls.is_none() && !opts.insecure && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::Usage(format!(
            "--listen {}: refusing to serve plain HTTP beyond loopback, where tokens would cross the network in clear; \
             give --tls-cert and --tls-key, or --insecure if something else encrypts the traffic",
            opts.listen
        )));
    }
    if opts.max_concurrent_installs == 0 {
        return Err(Error::Usage("--max-concurrent-installs must be at least 1".into()));
    }
    if opts.max_connections == 0 {
        return Err(Error::Usage("--max-connections must be at least 1".into()));
    }
    let tls = opts.tls.as_ref().map(|(c, k)| tls::server_config(c, k)).transpose()?;
    let local = local::LocalSources::new(opts.allow_local_source.as_deref())?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("--listen {}: cannot listen on {addr}: {e}", opts.listen)))?;
    let bound = tcp.local_addr().map_err(|e| Error::Io { path: PathBuf::from(&opts.listen), source: e })?;

    let ctx = Arc::new(ctx);
    let jobs = jobs::Jobs::new(
        ctx.clone(),
        jobs::Config {
            cache_dir: opts.cache_dir.clone(),
            max_concurrent: opts.max_concurrent_installs,
            max_queued: opts.max_queued,
            allow_hosts: opts.allow_hosts.clone(),
        },
    );
    jobs.start().await?;
    let state = Arc::new(AppState {
        ctx: ctx.clone(),
        jobs: jobs.clone(),
        local,
        gc_keep: opts.gc_keep,
        body_timeout: opts.body_timeout,
    });
    let app = router(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    ready(&Bound { listen: bound, tls: tls.is_some(), url: format!("{scheme}://{bound}") });

    let limits = server::Limits {
        header_timeout: opts.header_timeout,
        idle_timeout: opts.idle_timeout,
        max_connections: opts.max_connections,
        handshake_timeout: opts.handshake_timeout,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server::run(tcp, tls, app, limits, stop_rx));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing running installs (at most {:?})", opts.shutdown_deadline);
    let deadline = tokio::time::Instant::now() + opts.shutdown_deadline;
    jobs.begin_shutdown().await;
    let _ = stop_tx.send(true);
    // Running installs and open connections get until the deadline; then
    // the server exits anyway (a job still running is marked interrupted
    // by the next server that sees the database).
    let drained = tokio::time::timeout_at(deadline, async {
        jobs.drain().await;
        let _ = serving.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown deadline reached: exiting with work still running");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ctx.db.close()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Without signal handlers, serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
