//! The handlers behind `/api/v1`: thin translations from HTTP to the same
//! operations the CLI runs ([`crate::install`], [`crate::ops`]).
//!
//! Why it exists: to keep HTTP concerns (status codes, JSON shapes, scopes)
//! out of the pipeline. Each handler checks the caller's token first, then
//! calls exactly one library operation.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::AppState;
use super::auth::{Scope, authorize};
use super::error::{ApiError, Json, Path, Query};
use super::jobs::Work;
use crate::checksum::Checksum;
use crate::db::Method;
use crate::install::InstallRequest;
use crate::ops::{self, PackSpec, slim_json};

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
        "installs": st.jobs.stats(),
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

pub async fn list_packs(State(st): S, headers: HeaderMap, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Read).await?;
    let rows = ops::list_with_active(&st.ctx, q.all_hosts).await?;
    let packs: Vec<serde_json::Value> = rows.iter().map(ops::Listed::slim_json).collect();
    Ok(Json(serde_json::json!({ "packs": packs })).into_response())
}

pub async fn get_pack(State(st): S, headers: HeaderMap, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Read).await?;
    let p = ops::info(&st.ctx, &spec(&pack_ref, None)?).await?;
    Ok(Json(serde_json::json!({
        "ref": p.pack_ref, "name": p.name, "description": p.description,
        "installed": p.installed.iter().map(slim_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn pack_installations(
    State(st): S,
    headers: HeaderMap,
    Path(pack_ref): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Read).await?;
    let p = ops::info(&st.ctx, &spec(&pack_ref, None)?).await?;
    Ok(Json(serde_json::json!({ "installations": p.history.iter().map(slim_json).collect::<Vec<_>>() }))
        .into_response())
}

pub async fn verify_pack(State(st): S, headers: HeaderMap, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Install).await?;
    let reports = ops::verify(&st.ctx, &[spec(&pack_ref, None)?]).await?;
    let ok = reports.iter().all(|r| r.status == crate::db::VerifyStatus::Ok);
    Ok(Json(serde_json::json!({ "ok": ok, "packs": reports })).into_response())
}

pub async fn delete_pack(State(st): S, headers: HeaderMap, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    uninstall(&st, &headers, spec(&pack_ref, None)).await
}

pub async fn delete_pack_version(
    State(st): S,
    headers: HeaderMap,
    Path((pack_ref, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    uninstall(&st, &headers, spec(&pack_ref, Some(&version))).await
}

async fn uninstall(st: &AppState, headers: &HeaderMap, spec: Result<PackSpec, ApiError>) -> Result<Response, ApiError> {
    let caller = authorize(&st.ctx.db, headers, Scope::Install).await?;
    if st.jobs.shutting_down() {
        return Err(super::jobs::shutting_down());
    }
    let r = ops::uninstall(&st.ctx, &spec?, Method::Api, Some(&caller.name), false).await?;
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
}

#[derive(Debug, Deserialize)]
pub struct InstallQuery {
    #[serde(default)]
    pub wait: bool,
}

pub async fn install(
    State(st): S,
    headers: HeaderMap,
    Query(q): Query<InstallQuery>,
    Json(body): Json<InstallBody>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st.ctx.db, &headers, Scope::Install).await?;
    let _ = body.skip_tests;
    let named = crate::registry::is_spec(&body.source);
    if named && (body.checksum.is_some() || body.ref_spec.is_some()) {
        return Err(ApiError::bad_request(format!(
            "{}: a pack from an index takes its source, ref and checksum from the index; drop checksum and ref_spec",
            body.source
        )));
    }
    let expected = body
        .checksum
        .as_deref()
        .map(|c| c.parse::<Checksum>().map_err(|e| ApiError::bad_request(format!("checksum {c:?}: {e}"))))
        .transpose()?;
    let source = match named {
        true => body.source.clone(),
        false => st.local.check(&st.ctx, &body.source).await?,
    };
    let req = InstallRequest {
        force: body.force,
        expected_checksum: expected,
        allow_hosts: st.allow_hosts.clone(),
        reference: body.ref_spec.clone(),
        api_token: Some(caller.name.clone()),
        ignore_runtime_requirements: body.ignore_runtime_requirements,
        ..InstallRequest::new(source, st.ctx.limits, Method::Api)
    };
    let work = match named {
        true => Work::Named { spec: body.source.clone(), base: req, skip_deps: body.skip_deps },
        false => Work::Install(req),
    };
    submit(&st, work, &caller.name, q.wait, StatusCode::CREATED).await
}

/// Admits a job; with `wait`, answers with its outcome (`done` status on
/// success), else 202 with the job and its `Location`.
async fn submit(st: &AppState, work: Work, token: &str, wait: bool, done: StatusCode) -> Result<Response, ApiError> {
    let job = st.jobs.submit(work, token)?;
    if wait {
        job.finished().await;
        return match job.outcome() {
            Some(Ok(report)) => Ok((done, Json(report)).into_response()),
            Some(Err(e)) => Err(e),
            None => Err(ApiError::internal("the job ended without an outcome")),
        };
    }
    let location = format!("/api/v1/jobs/{}", job.id);
    let mut r = (StatusCode::ACCEPTED, Json(serde_json::json!({ "job": job.view() }))).into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("hex id"));
    Ok(r)
}

pub async fn get_job(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Read).await?;
    let job = st.jobs.get(&id).ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
    Ok(Json(serde_json::json!({ "job": job.view() })).into_response())
}

/// Server-sent events: the job's history, then live events, ending after
/// the terminal `done` or `failed` event.
pub async fn job_events(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Read).await?;
    let job = st.jobs.get(&id).ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
    Ok(Sse::new(event_stream(job)).keep_alive(KeepAlive::default()).into_response())
}

fn event_stream(job: Arc<super::jobs::Job>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let rx = job.subscribe();
    // (job, receiver, next event index, done)
    let init = (job, rx, 0usize, false);
    stream::unfold(init, |(job, mut rx, next, done)| async move {
        if done {
            return None;
        }
        loop {
            // Mark seen before reading, so an event pushed in between wakes us.
            rx.borrow_and_update();
            let (events, _) = job.events_from(next);
            if !events.is_empty() {
                let next = next + events.len();
                let ended = events.iter().any(|e| matches!(e.kind, "done" | "failed"));
                let batch: Vec<Result<SseEvent, Infallible>> = events
                    .iter()
                    .map(|e| {
                        Ok(SseEvent::default()
                            .event(e.kind)
                            .id(e.seq.to_string())
                            .json_data(&e.data)
                            .expect("event data serializes"))
                    })
                    .collect();
                return Some((stream::iter(batch), (job, rx, next, ended)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .flatten()
}

pub async fn list_tokens(State(st): S, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Admin).await?;
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
    headers: HeaderMap,
    Path(pack_ref): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Install).await?;
    let spec = spec(&pack_ref, Some(&body.version))?;
    let version = spec.version.ok_or_else(|| ApiError::bad_request("version: required"))?;
    let switch = crate::upgrade::activate(&st.ctx, &spec.pack_ref, &version).await?;
    Ok(Json(switch).into_response())
}

/// `POST /packs/{ref}/rollback`: back to the previously active version.
pub async fn rollback(State(st): S, headers: HeaderMap, Path(pack_ref): Path<String>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Install).await?;
    let spec = spec(&pack_ref, None)?;
    let switch = crate::upgrade::rollback(&st.ctx, &spec.pack_ref).await?;
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
}

/// `POST /packs/{ref}/upgrade`: a job, like an install (`?wait=true` for the
/// outcome, 200).
pub async fn upgrade(
    State(st): S,
    headers: HeaderMap,
    Path(pack_ref): Path<String>,
    Query(q): Query<InstallQuery>,
    Json(body): Json<UpgradeBody>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st.ctx.db, &headers, Scope::Install).await?;
    let spec = spec(&pack_ref, None)?;
    let req = crate::upgrade::UpgradeRequest {
        pack_ref: spec.pack_ref,
        to: body.to,
        from: None,
        base: InstallRequest {
            allow_hosts: st.allow_hosts.clone(),
            api_token: Some(caller.name.clone()),
            ignore_runtime_requirements: body.ignore_runtime_requirements,
            ..InstallRequest::new("", st.ctx.limits, Method::Api)
        },
    };
    submit(&st, Work::Upgrade(req), &caller.name, q.wait, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    /// Versions kept per pack besides the active one (default: the server's `gc_keep`, else 3).
    #[serde(default)]
    pub keep: Option<usize>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /gc` (admin): uninstall old, inactive versions.
pub async fn gc(State(st): S, headers: HeaderMap, Json(body): Json<GcBody>) -> Result<Response, ApiError> {
    authorize(&st.ctx.db, &headers, Scope::Admin).await?;
    if st.jobs.shutting_down() {
        return Err(super::jobs::shutting_down());
    }
    let report = crate::upgrade::gc(&st.ctx, body.keep.unwrap_or(st.gc_keep), body.dry_run, Method::Api).await?;
    Ok(Json(report).into_response())
}
