//! Every API failure as one JSON shape: `{"error": {"code", "message"}}`.
//!
//! Why it exists: clients branch on `code` (snake_case, stable) and show
//! `message`; axum's own rejections (bad JSON, too large, wrong content type,
//! unknown route or method) are rewritten into the same shape, so no response
//! of this server is ever plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API error: the status, a stable snake_case code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.to_string(), message: self.message.clone() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.body() });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"attune\""));
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// How a pipeline or operation error reaches a client.
impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        use crate::Error as E;
        use crate::sources::SourceError as S;
        let message = error_chain(&e);
        let (status, code) = match &e {
            E::NotInstalled { .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::AlreadyInstalled { .. } => (StatusCode::CONFLICT, "already_installed"),
            E::ChecksumMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "checksum_mismatch"),
            E::NoManifest { .. } | E::Manifest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_pack"),
            E::Usage(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            E::Source(S::Runtime(_)) | E::Runtime(_) => (StatusCode::UNPROCESSABLE_ENTITY, "fetch_failed"),
            E::Source(S::PluginFile { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            E::Source(_) => (StatusCode::BAD_REQUEST, "bad_source"),
            E::Registry(r) => {
                use crate::registry::RegistryError as R;
                match r {
                    R::BadSpec { .. } | R::BadName { .. } | R::Credentials { .. } => {
                        (StatusCode::BAD_REQUEST, "bad_request")
                    }
                    R::NoIndexes { .. } | R::NoMatch { .. } | R::UnknownIndex { .. } | R::NotCached { .. } => {
                        (StatusCode::NOT_FOUND, "not_found")
                    }
                    R::Conflict { .. } => (StatusCode::CONFLICT, "dependency_conflict"),
                    R::Exists { .. } => (StatusCode::CONFLICT, "already_exists"),
                    _ => (StatusCode::UNPROCESSABLE_ENTITY, "registry_error"),
                }
            }
            E::Artifact(crate::artifacts::ArtifactError::Io { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            E::Artifact(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_cached"),
            E::Lockfile(_) => (StatusCode::UNPROCESSABLE_ENTITY, "lockfile_error"),
            E::Runtimes(_) => (StatusCode::UNPROCESSABLE_ENTITY, "runtime_requirements"),
            E::Environment { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "environment_failed"),
            E::Signed(e) if matches!(**e, attune_app::SignedIndexError::Io { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            E::Signed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "signed_index"),
            E::Upgrade(u) => {
                use crate::UpgradeError as U;
                match &**u {
                    U::NoActive { .. } | U::NotInstalled { .. } | U::NoPrevious { .. } => {
                        (StatusCode::NOT_FOUND, "not_found")
                    }
                    U::UninstallActive { .. } => (StatusCode::CONFLICT, "active_version"),
                    U::WrongPack { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_pack"),
                    U::Failed { .. } | U::RollbackFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "upgrade_failed"),
                }
            }
            E::Checksum(_) | E::Store(_) | E::Db(_) | E::Io { .. } | E::Corrupt(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        ApiError::new(status, code, message)
    }
}

/// `e: cause: cause…`, as the CLI prints errors.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let part = c.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
    s
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "malformed_json",
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => format!("request body is larger than {} bytes", super::MAX_BODY),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as JSON with `Content-Type: application/json`".into(),
            _ => r.body_text(),
        };
        // Wrong field types are a malformed request like bad syntax: 400.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
        ApiError::new(status, code, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(v))
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Routes nobody serves.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such API route; see GET /api/v1/openapi.json")
}

/// A route served, but not with this method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method")
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
