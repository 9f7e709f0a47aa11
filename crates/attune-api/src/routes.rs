//! The handlers behind `/api/v1`: thin translations from HTTP to the same
//! operations the CLI runs ([`crate::install`], [`crate::packs`]).
//!
//! Why it exists: to keep HTTP concerns (status codes, JSON shapes, scopes)
//! out of the pipeline. The caller's token and scope are checked before any
//! handler runs, before its body or query is read ([`super::authenticate`]);
//! each handler then calls exactly one library operation.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Json, Path, Query};
use super::jobs::{EnvSpec, Held, WorkSpec};
use crate::db::Channel;
use crate::packs::{self, PackSpec, slim_json};
use attune_app::request::Target;

type S = State<Arc<AppState>>;

fn spec(pack_ref: &str, version: Option<&str>) -> Result<PackSpec, ApiError> {
    let s = match version {
        Some(v) => format!("{pack_ref}@{v}"),
        None => pack_ref.to_string(),
    };
    s.parse::<PackSpec>().map_err(ApiError::from)
}

pub async fn health(State(st): S) -> Response {
    Json(serde_json::json!({
        "status": if st.jobs.shutting_down() { "shutting_down" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "installs": st.jobs.stats().await,
    }))
    .into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Every host sharing the database, not just the server's.
    #[serde(default)]
    pub all_hosts: bool,
}

pub async fn list_packs(State(st): S, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let rows = packs::list_with_active(&st.ctx, q.all_hosts).await?;
    let packs: Vec<serde_json::Value> = rows.iter().map(packs::Listed::slim_json).collect();
    Ok(Json(serde_json::json!({ "packs": packs })).into_response())
}

pub async fn get_pack(State(st): S, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    let p = packs::info(&st.ctx, &spec(&pack_ref, None)?).await?;
    Ok(Json(serde_json::json!({
        "ref": p.pack_ref, "name": p.name, "description": p.description,
        "installed": p.installed.iter().map(slim_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn pack_installations(State(st): S, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    let p = packs::info(&st.ctx, &spec(&pack_ref, None)?).await?;
    Ok(Json(serde_json::json!({ "installations": p.history.iter().map(slim_json).collect::<Vec<_>>() }))
        .into_response())
}

pub async fn verify_pack(State(st): S, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    let reports = packs::verify(&st.ctx, &[spec(&pack_ref, None)?]).await?;
    let ok = reports.iter().all(|r| r.status == crate::db::VerifyStatus::Ok);
    Ok(Json(serde_json::json!({ "ok": ok, "packs": reports })).into_response())
}

pub async fn delete_pack(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Path(pack_ref): Path<String>,
) -> Result<Response, ApiError> {
    uninstall(&st, &caller, spec(&pack_ref, None)).await
}

pub async fn delete_pack_version(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Path((pack_ref, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    uninstall(&st, &caller, spec(&pack_ref, Some(&version))).await
}

async fn uninstall(st: &AppState, caller: &Caller, spec: Result<PackSpec, ApiError>) -> Result<Response, ApiError> {
    if st.jobs.shutting_down() {
        return Err(super::jobs::shutting_down());
    }
    let r = packs::uninstall(&st.ctx, &spec?, Channel::Api, Some(&caller.name), false).await?;
    Ok(Json(r).into_response())
}

/// `POST /packs/install`. Only these fields: the CLI's plugin and grant
/// options (`plugin_file`, `plugin`, `allow_host`, `allow_insecure_http`)
/// are deliberately not offered, so an unknown field is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    pub source: String,
    /// A branch, tag or commit, for git sources.
    #[serde(default)]
    pub ref_spec: Option<String>,
    #[serde(default)]
    pub force: bool,
    /// Accepted for compatibility; attune runs no pack tests.
    #[serde(default)]
    pub skip_tests: bool,
    /// For a pack by name: install just it, not the dependencies its index lists.
    #[serde(default)]
    pub skip_deps: bool,
    #[serde(default)]
    pub checksum: Option<String>,
    /// Install even if this host's python / node do not meet the pack's
    /// runtime requirements (the report lists what was ignored).
    #[serde(default)]
    pub ignore_runtime_requirements: bool,
    /// Install without the pack's runtime environment (the CLI's `--no-env`).
    #[serde(default)]
    pub no_env: bool,
    /// Build the environment afresh (the CLI's `--rebuild-env`).
    #[serde(default)]
    pub rebuild_env: bool,
}

impl InstallBody {
    /// Checked now, so a contradiction is a 400 rather than a failed job.
    fn env(&self) -> Result<EnvSpec, ApiError> {
        let env = EnvSpec { no_env: self.no_env, rebuild_env: self.rebuild_env };
        env.options()?;
        Ok(env)
    }
}

#[derive(Debug, Deserialize)]
pub struct InstallQuery {
    #[serde(default)]
    pub wait: bool,
}

pub async fn install(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Query(q): Query<InstallQuery>,
    Json(body): Json<InstallBody>,
) -> Result<Response, ApiError> {
    let _ = body.skip_tests;
    let args = attune_app::request::InstallArgs {
        source: &body.source,
        checksum: body.checksum.as_deref(),
        reference: body.ref_spec.as_deref(),
        plugin: false,
        skip_deps: body.skip_deps,
    };
    let named = attune_app::request::install_target(Channel::Api, &args)? == Target::ByName;
    let (work, held) = match named {
        true => (
            WorkSpec::Named {
                spec: body.source.clone(),
                force: body.force,
                skip_deps: body.skip_deps,
                ignore_runtime_requirements: body.ignore_runtime_requirements,
                env: body.env()?,
            },
            Held::default(),
        ),
        false => {
            let opened = st.local.check(&st.ctx, &body.source).await?;
            let shown = match &opened {
                Some(o) => o.path.display().to_string(),
                None => crate::sources::redact_url(&body.source),
            };
            // Credentials stay in this process, never in the jobs table.
            let secret = (shown != body.source && opened.is_none()).then(|| body.source.clone());
            let work = WorkSpec::Install {
                source: shown,
                reference: body.ref_spec.clone(),
                force: body.force,
                checksum: body.checksum.clone(),
                ignore_runtime_requirements: body.ignore_runtime_requirements,
                env: body.env()?,
            };
            (work, Held { source: secret, opened })
        }
    };
    submit(&st, &caller, work, held, q.wait, StatusCode::CREATED).await
}

/// Admits a job; with `wait`, answers with its outcome (`done` status on
/// success), else 202 with the job and its `Location`.
async fn submit(
    st: &AppState,
    caller: &Caller,
    work: WorkSpec,
    held: Held,
    wait: bool,
    done: StatusCode,
) -> Result<Response, ApiError> {
    let job = st.jobs.submit(work, held, &caller.name).await?;
    let id = job.row.id.clone();
    if wait {
        loop {
            let job = st.jobs.get(&id).await?.ok_or_else(|| ApiError::internal("the job vanished"))?;
            match job.outcome() {
                Some(Ok(report)) => return Ok((done, Json(report)).into_response()),
                Some(Err(e)) => return Err(e),
                None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
    let location = format!("/api/v1/jobs/{id}");
    let mut r = (StatusCode::ACCEPTED, Json(serde_json::json!({ "job": job.view() }))).into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("hex id"));
    Ok(r)
}

/// A job this caller may see (its own; any for admin), else 404 as if
/// there were none.
async fn visible_job(st: &AppState, caller: &Caller, id: &str) -> Result<super::jobs::Stored, ApiError> {
    match st.jobs.get(id).await? {
        Some(job) if caller.sees_job_of(&job.row.token) => Ok(job),
        _ => Err(ApiError::not_found(format!("no job {id:?}"))),
    }
}

pub async fn get_job(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&st, &caller, &id).await?;
    let mut view = job.view();
    if let Some(live) = st.jobs.live(&id) {
        view.events = view.events.max(live.events_from(0).len());
    }
    Ok(Json(serde_json::json!({ "job": view })).into_response())
}

/// Server-sent events: the job's history, then live events, ending after
/// the terminal `done` or `failed` event (or when the job is interrupted).
/// Served from this replica's live history when it runs the job, else
/// from the database, polled.
pub async fn job_events(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible_job(&st, &caller, &id).await?;
    Ok(Sse::new(event_stream(st.clone(), id)).keep_alive(KeepAlive::default()).into_response())
}

fn sse(e: &super::jobs::JobEvent) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default()
        .event(e.kind.clone())
        .id(e.seq.to_string())
        .json_data(&e.data)
        .expect("event data serializes"))
}

fn event_stream(st: Arc<AppState>, id: String) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // (state, job id, events sent so far, done)
    stream::unfold((st, id, 0usize, false), |(st, id, next, done)| async move {
        if done {
            return None;
        }
        loop {
            // Live, here: wait on the job's own signal.
            if let Some(live) = st.jobs.live(&id) {
                let mut rx = live.subscribe();
                rx.borrow_and_update();
                let events = live.events_from(next);
                if !events.is_empty() {
                    let ended = events.iter().any(|e| e.is_terminal());
                    let batch: Vec<_> = events.iter().map(sse).collect();
                    return Some((stream::iter(batch), (st, id, next + events.len(), ended)));
                }
                let _ = tokio::time::timeout(std::time::Duration::from_millis(500), rx.changed()).await;
                continue;
            }
            // Elsewhere or ended: the stored history.
            let job = st.jobs.get(&id).await.ok().flatten()?;
            let events = job.events();
            let terminal = job.state().is_terminal();
            // Compaction may have shortened a finished history: go by sequence number.
            let fresh: Vec<_> = events.iter().filter(|e| e.seq >= next).cloned().collect();
            if !fresh.is_empty() || terminal {
                let last = fresh.last().map_or(next, |e| e.seq + 1);
                let mut batch: Vec<_> = fresh.iter().map(sse).collect();
                let ended = terminal || fresh.iter().any(|e| e.is_terminal());
                if terminal && !fresh.iter().any(|e| e.is_terminal()) && !events.iter().any(|e| e.is_terminal()) {
                    // Interrupted: say so, as a `failed` event.
                    let data = serde_json::json!({ "state": job.row.state, "error": job.view().error });
                    batch.push(Ok(SseEvent::default()
                        .event("failed")
                        .id(last.to_string())
                        .json_data(&data)
                        .expect("json")));
                }
                return Some((stream::iter(batch), (st, id, last, ended)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    })
    .flatten()
}

pub async fn list_tokens(State(st): S) -> Result<Response, ApiError> {
    let tokens = st.ctx.db.tokens(false).await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "tokens": tokens })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    pub version: String,
}

/// `POST /packs/{ref}/activate`: make an installed version the active one.
pub async fn activate(
    State(st): S,

    Path(pack_ref): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<Response, ApiError> {
    let spec = spec(&pack_ref, Some(&body.version))?;
    let version = spec.version.ok_or_else(|| ApiError::bad_request("version: required"))?;
    let switch = crate::upgrade::activate(&st.ctx, &spec.pack_ref, &version).await?;
    Ok(Json(switch).into_response())
}

/// `POST /packs/{ref}/rollback`: back to the previously active version.
pub async fn rollback(State(st): S, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    let pack_ref = attune_app::request::ref_only(Channel::Api, attune_app::request::Command::Rollback, &pack_ref)?;
    let switch = crate::upgrade::rollback(&st.ctx, &pack_ref).await?;
    Ok(Json(switch).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    /// A version or range; default: the highest newer than the active one.
    #[serde(default)]
    pub to: Option<String>,
    /// Upgrade even if this host does not meet the new version's runtime
    /// requirements (the report lists what was ignored).
    #[serde(default)]
    pub ignore_runtime_requirements: bool,
    /// Upgrade without the new version's runtime environment (`--no-env`).
    #[serde(default)]
    pub no_env: bool,
    /// Build the new version's environment afresh (`--rebuild-env`).
    #[serde(default)]
    pub rebuild_env: bool,
}

/// `POST /packs/{ref}/upgrade`: a job, like an install (`?wait=true` for the
/// outcome, 200).
pub async fn upgrade(
    State(st): S,
    Extension(caller): Extension<Caller>,
    Path(pack_ref): Path<String>,
    Query(q): Query<InstallQuery>,
    Json(body): Json<UpgradeBody>,
) -> Result<Response, ApiError> {
    let pack_ref = attune_app::request::ref_only(Channel::Api, attune_app::request::Command::Upgrade, &pack_ref)?;
    let work = WorkSpec::Upgrade {
        pack_ref,
        to: body.to,
        ignore_runtime_requirements: body.ignore_runtime_requirements,
        env: {
            let env = EnvSpec { no_env: body.no_env, rebuild_env: body.rebuild_env };
            env.options()?;
            env
        },
    };
    submit(&st, &caller, work, Held::default(), q.wait, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    /// Versions kept per pack besides the active one (default: the server's `gc_keep`, else 3).
    #[serde(default)]
    pub keep: Option<usize>,
    /// Required: a gc is never run by an empty or defaulted body.
    pub dry_run: bool,
}

/// `POST /gc` (admin): uninstall old, inactive versions.
pub async fn gc(State(st): S, Json(body): Json<GcBody>) -> Result<Response, ApiError> {
    if st.jobs.shutting_down() {
        return Err(super::jobs::shutting_down());
    }
    let report = crate::upgrade::gc(&st.ctx, body.keep.unwrap_or(st.gc_keep), body.dry_run, Channel::Api).await?;
    Ok(Json(report).into_response())
}
