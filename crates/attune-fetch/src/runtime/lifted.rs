//! What fetchers answer, lifted out of the guest with caps.
//!
//! The exports' results (`describe`, `fetch`, `list-versions`) have the same
//! shape in every WIT version served so far, so they are lifted here once,
//! through [`Text`] and [`List`] so nothing past a cap is copied out of the
//! guest, and converted to the host's own types. Each version's module calls
//! the export by name with these types; wasmtime checks them against the
//! component's own when the function is looked up.

use wasmtime::component::{ComponentType, Lift};

use super::answers::{self as caps, AnswerError};
use super::capped::{List, Text};
use super::{Capability as HostCapability, FetchError as HostError, FetchResult as HostResult};
use super::{FetchState, LimitRequest, PluginInfo, VersionInfo as HostVersionInfo};

/// Error texts are lifted up to this much, then cut to
/// [`caps::ERROR_MESSAGE_MAX`] where they are shown.
const ERROR_LIFT_MAX: usize = 64 * 1024;
type Message = Text<ERROR_LIFT_MAX>;

#[derive(ComponentType, Lift)]
#[component(record)]
pub struct FetcherInfo {
    #[component(name = "name")]
    name: Text<{ caps::NAME_MAX }>,
    #[component(name = "version")]
    version: Text<{ caps::VERSION_MAX }>,
    #[component(name = "summary")]
    summary: Text<{ caps::SUMMARY_MAX }>,
    #[component(name = "schemes")]
    schemes: List<Text<{ caps::SCHEME_MAX }>, { caps::SCHEMES_MAX }>,
    #[component(name = "capabilities")]
    capabilities: List<Capability, { caps::CAPABILITIES_MAX }>,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum Capability {
    #[component(name = "read-input")]
    ReadInput,
    #[component(name = "outbound-host")]
    OutboundHost(Text<{ caps::HOST_PATTERN_MAX }>),
    #[component(name = "larger-limits")]
    LargerLimits(WireLimitRequest),
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub struct FetchResult {
    #[component(name = "resolved-source")]
    resolved_source: Text<{ caps::RESOLVED_SOURCE_MAX }>,
    #[component(name = "resolved-commit")]
    resolved_commit: Option<Text<64>>,
    #[component(name = "metadata")]
    metadata:
        List<(Text<{ caps::METADATA_KEY_MAX }>, Text<{ caps::METADATA_VALUE_MAX }>), { caps::METADATA_ENTRIES_MAX }>,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum FetchError {
    #[component(name = "invalid-source")]
    InvalidSource(Message),
    #[component(name = "not-found")]
    NotFound(Message),
    #[component(name = "denied")]
    Denied(Message),
    #[component(name = "network")]
    Network(Message),
    #[component(name = "invalid-content")]
    InvalidContent(Message),
    #[component(name = "staging")]
    Staging(StagingError),
    #[component(name = "other")]
    Other(Message),
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum StagingError {
    #[component(name = "invalid-path")]
    InvalidPath(Message),
    #[component(name = "already-exists")]
    AlreadyExists(Message),
    #[component(name = "not-a-directory")]
    NotADirectory(Message),
    #[component(name = "symlink-escapes")]
    SymlinkEscapes(Message),
    #[component(name = "bad-link")]
    BadLink(Message),
    #[component(name = "too-many-bytes")]
    TooManyBytes(u64),
    #[component(name = "too-many-files")]
    TooManyFiles(u64),
    #[component(name = "too-many-open-files")]
    TooManyOpenFiles(u32),
    #[component(name = "closed")]
    Closed,
    #[component(name = "io")]
    Io(Message),
}

fn text<const N: usize>(field: &str, t: Text<N>) -> Result<String, AnswerError> {
    match t {
        Text::Ok(s) => Ok(s),
        Text::Over(len) => Err(AnswerError::TooLong { field: field.to_string(), len, cap: N }),
    }
}

fn list<T, const N: usize>(field: &'static str, l: List<T, N>) -> Result<Vec<T>, AnswerError> {
    match l {
        List::Ok(v) => Ok(v),
        List::Over(count) => Err(AnswerError::TooMany { field, count, cap: N }),
    }
}

/// A message is never refused: an over-long one is replaced by its length.
fn message(m: Message) -> String {
    match m {
        Text::Ok(s) => s,
        Text::Over(len) => format!("(a message of {len} bytes, not shown: the cap is {ERROR_LIFT_MAX})"),
    }
}

impl FetcherInfo {
    pub fn into_host(self, wit_version: &str) -> Result<PluginInfo, AnswerError> {
        let schemes = list("schemes", self.schemes)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| text(&format!("schemes[{i}]"), s))
            .collect::<Result<_, _>>()?;
        let capabilities = list("capabilities", self.capabilities)?
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(match c {
                    Capability::ReadInput => HostCapability::ReadInput,
                    Capability::OutboundHost(h) => {
                        HostCapability::OutboundHost(text(&format!("capabilities[{i}]"), h)?)
                    }
                    Capability::LargerLimits(r) => HostCapability::LargerLimits(LimitRequest {
                        memory_bytes: r.memory_bytes,
                        time_seconds: r.time_seconds,
                        max_bytes: r.max_bytes,
                        max_files: r.max_files,
                    }),
                })
            })
            .collect::<Result<_, AnswerError>>()?;
        Ok(PluginInfo {
            name: text("name", self.name)?,
            version: text("version", self.version)?,
            summary: text("summary", self.summary)?,
            schemes,
            capabilities,
            wit_version: wit_version.to_string(),
        })
    }
}

impl FetchResult {
    pub fn into_host(self) -> Result<HostResult, AnswerError> {
        let metadata = list("metadata", self.metadata)?
            .into_iter()
            .map(|(k, v)| {
                let k = text("metadata key", k)?;
                let v = text(&format!("metadata {}", crate::untrusted::escape(&k)), v)?;
                Ok((k, v))
            })
            .collect::<Result<_, AnswerError>>()?;
        Ok(HostResult {
            resolved_source: text("resolved-source", self.resolved_source)?,
            resolved_commit: self.resolved_commit.map(|c| text("resolved-commit", c)).transpose()?,
            metadata,
        })
    }
}

impl FetchError {
    pub fn into_host(self) -> HostError {
        match self {
            FetchError::InvalidSource(m) => HostError::InvalidSource(message(m)),
            FetchError::NotFound(m) => HostError::NotFound(message(m)),
            FetchError::Denied(m) => HostError::Denied(message(m)),
            FetchError::Network(m) => HostError::Network(message(m)),
            FetchError::InvalidContent(m) => HostError::InvalidContent(message(m)),
            FetchError::Staging(s) => HostError::Staging(match s {
                StagingError::InvalidPath(m)
                | StagingError::AlreadyExists(m)
                | StagingError::NotADirectory(m)
                | StagingError::SymlinkEscapes(m)
                | StagingError::BadLink(m)
                | StagingError::Io(m) => message(m),
                StagingError::TooManyBytes(n) => format!("byte limit of {n} reached"),
                StagingError::TooManyFiles(n) => format!("file limit of {n} reached"),
                StagingError::TooManyOpenFiles(n) => format!("more than {n} files open"),
                StagingError::Closed => "write to a finished file".into(),
            }),
            FetchError::Other(m) => HostError::Other(message(m)),
        }
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub struct WireLimitRequest {
    #[component(name = "memory-bytes")]
    memory_bytes: Option<u64>,
    #[component(name = "time-seconds")]
    time_seconds: Option<u64>,
    #[component(name = "max-bytes")]
    max_bytes: Option<u64>,
    #[component(name = "max-files")]
    max_files: Option<u64>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub struct VersionInfo {
    #[component(name = "version")]
    version: Text<{ caps::VERSION_MAX }>,
    #[component(name = "source")]
    source: Text<{ caps::RESOLVED_SOURCE_MAX }>,
}

/// The answer of `list-versions`: `None` when the fetcher lists no versions.
pub type Versions = Option<List<VersionInfo, { caps::VERSIONS_MAX }>>;

/// `list-versions`' answer in host types; `None`: the plugin lists no versions.
pub fn versions_into_host(v: Versions) -> Result<Option<Vec<HostVersionInfo>>, AnswerError> {
    let Some(l) = v else { return Ok(None) };
    let entries = list("versions", l)?
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(HostVersionInfo {
                version: text(&format!("versions[{i}].version"), e.version)?,
                source: text(&format!("versions[{i}].source"), e.source)?,
            })
        })
        .collect::<Result<Vec<_>, AnswerError>>()?;
    Ok(Some(entries))
}

/// `describe()`, its answer lifted with caps; an answer over a cap is
/// refused naming the field. The same export in every version.
pub async fn describe(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    wit_version: &str,
) -> wasmtime::Result<Result<PluginInfo, AnswerError>> {
    let func = instance.get_typed_func::<(), (FetcherInfo,)>(&mut *store, "describe")?;
    let (info,) = func.call_async(&mut *store, ()).await?;
    Ok(info.into_host(wit_version))
}

/// `fetch(request)`, with the request in the calling version's own type;
/// the answer lifted with caps: an over-cap result is refused, an error
/// message cut.
pub async fn fetch<R>(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    request: R,
) -> wasmtime::Result<Result<Result<HostResult, HostError>, AnswerError>>
where
    R: ComponentType + wasmtime::component::Lower + Send + Sync + 'static,
{
    type Answer = Result<FetchResult, FetchError>;
    let func = instance.get_typed_func::<(R,), (Answer,)>(&mut *store, "fetch")?;
    let (r,) = func.call_async(&mut *store, (request,)).await?;
    Ok(match r {
        Ok(r) => r.into_host().map(Ok),
        Err(e) => Ok(Err(e.into_host())),
    })
}

/// `list-versions(source)`: `None` when the plugin lists no versions. The
/// same export in every version that has it (0.2.0 on).
pub async fn list_versions(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    source: &str,
) -> wasmtime::Result<Result<Result<Option<Vec<HostVersionInfo>>, HostError>, AnswerError>> {
    type Answer = Result<Versions, FetchError>;
    let func = instance.get_typed_func::<(String,), (Answer,)>(&mut *store, "list-versions")?;
    let (r,) = func.call_async(&mut *store, (source.to_string(),)).await?;
    Ok(match r {
        Ok(v) => versions_into_host(v).map(Ok),
        Err(e) => Ok(Err(e.into_host())),
    })
}
