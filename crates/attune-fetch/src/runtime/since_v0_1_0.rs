//! Bindings for `attune:fetcher@0.1.0`.
//!
//! One module per WIT version (the Zed extension-host pattern): `bindgen!`
//! runs here over that version's WIT, and the generated types are converted
//! to the host's own types here and nowhere else. A new WIT version gets a
//! sibling module; the rest of the host never sees generated types.

use wasmtime::component::{Resource, ResourceTable};

use super::answers::AnswerError;
use super::{FetchState, LogLevel, PluginInfo};
use crate::staging::{StagedFile, StagingError};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "fetcher",
    // Exports run async so a tokio timeout can stop a guest that is blocked
    // in a host wait; our own imports are quick and stay sync.
    exports: { default: async },
    with: {
        "attune:fetcher/staging.file": crate::staging::StagedFile,
        "attune:fetcher/blobs.blob": super::blobs::Blob,
    },
});

pub const VERSION: &str = "0.1.0";

use self::attune::fetcher::{blobs, host, staging, types};
use super::blobs::Blob;

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<FetchState>) -> wasmtime::Result<()> {
    Fetcher::add_to_linker::<FetchState, wasmtime::component::HasSelf<FetchState>>(linker, |s| s)?;
    // The generated imports lift every string and list whole, so one call
    // could make the host copy as much as the guest's whole memory. These
    // replace the ones whose arguments a guest can make large: they read
    // the argument in place and copy at most a cap (a path, a log line) or
    // one chunk at a time (file data).
    linker.allow_shadowing(true);
    bounded::add(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The imports whose arguments are read in place, capped before copying.
mod bounded {
    use wasmtime::StoreContextMut;
    use wasmtime::component::{Linker, Resource, WasmList, WasmStr};

    use super::super::answers::LOG_MESSAGE_MAX;
    use super::super::{FetchState, LogLevel};
    use super::{Blob, host, types};
    use crate::staging::{StagedFile, StagingError, StagingWriter};

    type Cx<'a> = StoreContextMut<'a, FetchState>;
    type StagingResult<T> = Result<T, types::StagingError>;

    /// Longest path the staging rules accept (see the WIT `staging` docs).
    const PATH_MAX: usize = crate::staging::paths::MAX_PATH_BYTES;
    /// File data is copied out of the guest this much at a time.
    const CHUNK: usize = 1 << 20;

    /// A path argument, refused without a copy when over [`PATH_MAX`].
    fn path(store: &mut Cx<'_>, s: &WasmStr) -> wasmtime::Result<Result<String, StagingError>> {
        let text = s.to_str(&*store)?;
        if text.len() > PATH_MAX {
            let len = text.len();
            return Ok(Err(store.data_mut().staging.refuse_long_path(len)));
        }
        Ok(Ok(text.into_owned()))
    }

    /// A call taking two paths (a link and what it points at), each capped.
    fn two_paths(
        store: &mut Cx<'_>,
        a: &WasmStr,
        b: &WasmStr,
        call: fn(&mut StagingWriter, &str, &str) -> Result<(), StagingError>,
    ) -> wasmtime::Result<(StagingResult<()>,)> {
        let r = match (path(store, a)?, path(store, b)?) {
            (Ok(a), Ok(b)) => call(&mut store.data_mut().staging, &a, &b),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        Ok((r.map_err(types::StagingError::from),))
    }

    /// Feeds a byte list to `sink` in chunks of at most [`CHUNK`].
    fn chunks(
        store: &mut Cx<'_>,
        data: &WasmList<u8>,
        mut sink: impl FnMut(&mut FetchState, &[u8]) -> Result<(), StagingError>,
    ) -> wasmtime::Result<StagingResult<()>> {
        let mut buf = Vec::with_capacity(data.len().min(CHUNK));
        let mut at = 0;
        while at < data.len() {
            let end = (at + CHUNK).min(data.len());
            buf.clear();
            buf.extend_from_slice(&data.as_le_slice(&*store)[at..end]);
            if let Err(e) = sink(store.data_mut(), &buf) {
                return Ok(Err(e.into()));
            }
            at = end;
        }
        Ok(Ok(()))
    }

    fn level(l: host::LogLevel) -> LogLevel {
        match l {
            host::LogLevel::Debug => LogLevel::Debug,
            host::LogLevel::Info => LogLevel::Info,
            host::LogLevel::Warn => LogLevel::Warn,
        }
    }

    pub(super) fn add(linker: &mut Linker<FetchState>) -> wasmtime::Result<()> {
        let mut h = linker.instance("attune:fetcher/host@0.1.0")?;
        h.func_wrap("log", |mut store: Cx<'_>, (l, message): (host::LogLevel, WasmStr)| {
            let text = message.to_str(&store)?;
            // At most the cap (and a note) is copied out of the guest.
            let kept = crate::untrusted::cap(&text, LOG_MESSAGE_MAX);
            drop(text);
            store.data_mut().on_log(level(l), &kept);
            Ok(())
        })?;
        h.func_wrap("input-mode", |store: Cx<'_>, (p,): (WasmStr,)| {
            let text = p.to_str(&store)?;
            if text.len() > PATH_MAX {
                return Ok((Err(format!("a path of {} bytes (the most is {PATH_MAX})", text.len())),));
            }
            let text = text.into_owned();
            Ok((store.data().input_mode(&text),))
        })?;

        let mut st = linker.instance("attune:fetcher/staging@0.1.0")?;
        st.func_wrap("create-dir", |mut store: Cx<'_>, (p,): (WasmStr,)| {
            let r = path(&mut store, &p)?.and_then(|p| store.data_mut().staging.create_dir(&p));
            Ok((r.map_err(types::StagingError::from),))
        })?;
        st.func_wrap("create-file", |mut store: Cx<'_>, (p, executable): (WasmStr, bool)| {
            let r = match path(&mut store, &p)?.and_then(|p| store.data_mut().staging.create_file(&p, executable)) {
                Ok(file) => super::push(&mut store.data_mut().table, file),
                Err(e) => Err(e.into()),
            };
            Ok((r,))
        })?;
        st.func_wrap("write-file", |mut store: Cx<'_>, (p, executable, data): (WasmStr, bool, WasmList<u8>)| {
            let p = match path(&mut store, &p)? {
                Ok(p) => p,
                Err(e) => return Ok((Err(e.into()),)),
            };
            // What `StagingWriter::write_file` does, with the data in chunks.
            let mut file = match store.data_mut().staging.create_file(&p, executable) {
                Ok(f) => f,
                Err(e) => return Ok((Err(e.into()),)),
            };
            let written = chunks(&mut store, &data, |s, b| s.staging.write(&mut file, b))?;
            let _ = store.data_mut().staging.close(&mut file);
            Ok((written,))
        })?;
        st.func_wrap("create-symlink", |mut store: Cx<'_>, (p, target): (WasmStr, WasmStr)| {
            two_paths(&mut store, &p, &target, StagingWriter::create_symlink)
        })?;
        st.func_wrap("link-file", |mut store: Cx<'_>, (p, existing): (WasmStr, WasmStr)| {
            two_paths(&mut store, &p, &existing, StagingWriter::link_file)
        })?;
        st.func_wrap("[method]file.write", |mut store: Cx<'_>, (file, data): (Resource<StagedFile>, WasmList<u8>)| {
            let r = chunks(&mut store, &data, |s, b| {
                let f = s.table.get_mut(&file).map_err(|e| StagingError::Io(e.to_string()))?;
                s.staging.write(f, b)
            })?;
            Ok((r,))
        })?;

        let mut b = linker.instance("attune:fetcher/blobs@0.1.0")?;
        b.func_wrap("[method]blob.append", |mut store: Cx<'_>, (blob, data): (Resource<Blob>, WasmList<u8>)| {
            let r = chunks(&mut store, &data, |s, bytes| {
                let b = s.table.get_mut(&blob).map_err(|e| StagingError::Io(e.to_string()))?;
                b.append(bytes, &mut s.staging)
            })?;
            Ok((r,))
        })?;
        Ok(())
    }
}

/// `describe()`, its answer lifted with caps; an answer over a cap is
/// refused naming the field.
pub async fn describe(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
) -> wasmtime::Result<Result<PluginInfo, AnswerError>> {
    let func = instance.get_typed_func::<(), (answer::FetcherInfo,)>(&mut *store, "describe")?;
    let (info,) = func.call_async(&mut *store, ()).await?;
    Ok(info.into_host())
}

/// `fetch()`, its answer lifted with caps: an over-cap result is refused,
/// an error message cut.
pub async fn fetch(
    store: &mut wasmtime::Store<FetchState>,
    instance: &wasmtime::component::Instance,
    request: &super::FetchRequest,
) -> wasmtime::Result<Result<Result<super::FetchResult, super::FetchError>, AnswerError>> {
    let req = types::FetchRequest {
        source: request.source.clone(),
        input: request.input.as_ref().filter(|p| p.is_dir()).map(|_| super::INPUT_GUEST_PATH.to_string()),
        input_file: request.input_file.clone(),
        reference: request.reference.clone(),
        options: request.options.clone(),
    };
    type Answer = Result<answer::FetchResult, answer::FetchError>;
    let func = instance.get_typed_func::<(types::FetchRequest,), (Answer,)>(&mut *store, "fetch")?;
    let (r,) = func.call_async(&mut *store, (req,)).await?;
    Ok(match r {
        Ok(r) => r.into_host().map(Ok),
        Err(e) => Ok(Err(e.into_host())),
    })
}

/// The exports' answers as this WIT version shapes them, lifted through
/// [`Text`] and [`List`] so nothing past a cap is copied out of the guest,
/// and converted to host types here and nowhere else.
mod answer {
    use wasmtime::component::{ComponentType, Lift};

    use super::super::answers::{self as caps, AnswerError};
    use super::super::capped::{List, Text};
    use super::super::{Capability as HostCapability, FetchError as HostError, FetchResult as HostResult};
    use super::super::{LimitRequest, PluginInfo};
    use super::types;

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
        LargerLimits(types::LimitRequest),
    }

    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub struct FetchResult {
        #[component(name = "resolved-source")]
        resolved_source: Text<{ caps::RESOLVED_SOURCE_MAX }>,
        #[component(name = "resolved-commit")]
        resolved_commit: Option<Text<64>>,
        #[component(name = "metadata")]
        metadata: List<
            (Text<{ caps::METADATA_KEY_MAX }>, Text<{ caps::METADATA_VALUE_MAX }>),
            { caps::METADATA_ENTRIES_MAX },
        >,
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
        pub fn into_host(self) -> Result<PluginInfo, AnswerError> {
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
                wit_version: super::VERSION.to_string(),
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
}

impl From<StagingError> for types::StagingError {
    fn from(e: StagingError) -> Self {
        let m = e.to_string();
        match e {
            StagingError::InvalidPath(_) => Self::InvalidPath(m),
            StagingError::AlreadyExists(..) => Self::AlreadyExists(m),
            StagingError::NotADirectory(..) => Self::NotADirectory(m),
            StagingError::SymlinkEscapes(..) => Self::SymlinkEscapes(m),
            StagingError::BadLink(..) => Self::BadLink(m),
            StagingError::TooManyBytes(n) => Self::TooManyBytes(n),
            StagingError::TooManyFiles(n) => Self::TooManyFiles(n),
            StagingError::TooManyOpenFiles(n) => Self::TooManyOpenFiles(n),
            StagingError::Closed => Self::Closed,
            StagingError::Io(_) => Self::Io(m),
        }
    }
}

impl types::Host for FetchState {}

impl staging::Host for FetchState {
    fn create_dir(&mut self, path: String) -> Result<(), types::StagingError> {
        Ok(self.staging.create_dir(&path)?)
    }
    fn create_file(&mut self, path: String, executable: bool) -> Result<Resource<StagedFile>, types::StagingError> {
        let file = self.staging.create_file(&path, executable)?;
        push(&mut self.table, file)
    }
    fn write_file(&mut self, path: String, executable: bool, data: Vec<u8>) -> Result<(), types::StagingError> {
        Ok(self.staging.write_file(&path, executable, &data)?)
    }
    fn create_symlink(&mut self, path: String, target: String) -> Result<(), types::StagingError> {
        Ok(self.staging.create_symlink(&path, &target)?)
    }
    fn link_file(&mut self, path: String, existing: String) -> Result<(), types::StagingError> {
        Ok(self.staging.link_file(&path, &existing)?)
    }
}

fn push(table: &mut ResourceTable, file: StagedFile) -> Result<Resource<StagedFile>, types::StagingError> {
    table.push(file).map_err(|e| types::StagingError::Io(format!("resource table: {e}")))
}

impl staging::HostFile for FetchState {
    fn write(&mut self, file: Resource<StagedFile>, data: Vec<u8>) -> Result<(), types::StagingError> {
        let f = self.table.get_mut(&file).map_err(|e| types::StagingError::Io(e.to_string()))?;
        Ok(self.staging.write(f, &data)?)
    }
    fn finish(&mut self, file: Resource<StagedFile>) -> Result<(), types::StagingError> {
        let f = self.table.get_mut(&file).map_err(|e| types::StagingError::Io(e.to_string()))?;
        Ok(self.staging.close(f)?)
    }
    fn drop(&mut self, file: Resource<StagedFile>) -> wasmtime::Result<()> {
        let mut f = self.table.delete(file)?;
        let _ = self.staging.close(&mut f);
        Ok(())
    }
}

fn io(e: impl std::fmt::Display) -> types::StagingError {
    types::StagingError::Io(e.to_string())
}

impl blobs::Host for FetchState {
    fn input_file(&mut self) -> Option<Resource<Blob>> {
        let blob = Blob::input(self.input_file.clone()?).ok()?;
        self.table.push(blob).ok()
    }
    fn create_scratch(&mut self) -> Result<Resource<Blob>, types::StagingError> {
        let blob = self.new_scratch()?;
        self.table.push(blob).map_err(io)
    }
}

impl blobs::HostBlob for FetchState {
    fn size(&mut self, blob: Resource<Blob>) -> u64 {
        self.table.get(&blob).map(|b| b.size()).unwrap_or(0)
    }
    fn read(&mut self, blob: Resource<Blob>, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        self.table.get(&blob).map_err(|e| e.to_string())?.read(offset, len)
    }
    fn append(&mut self, blob: Resource<Blob>, data: Vec<u8>) -> Result<(), types::StagingError> {
        let b = self.table.get_mut(&blob).map_err(io)?;
        Ok(b.append(&data, &mut self.staging)?)
    }
    fn sha256(&mut self, blob: Resource<Blob>) -> String {
        match self.table.get_mut(&blob) {
            Ok(b) => b.sha256().unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
    fn drop(&mut self, blob: Resource<Blob>) -> wasmtime::Result<()> {
        self.table.delete(blob)?;
        Ok(())
    }
}

impl host::Host for FetchState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let level = match level {
            host::LogLevel::Debug => LogLevel::Debug,
            host::LogLevel::Info => LogLevel::Info,
            host::LogLevel::Warn => LogLevel::Warn,
        };
        self.on_log(level, &message);
    }
    fn progress(&mut self, done: u64, total: Option<u64>) {
        self.on_progress(done, total);
    }
    fn input_mode(&mut self, path: String) -> Result<u32, String> {
        FetchState::input_mode(self, &path)
    }
}
