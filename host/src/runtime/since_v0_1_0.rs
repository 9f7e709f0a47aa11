//! Bindings for `attune:fetcher@0.1.0`.
//!
//! One module per WIT version (the Zed extension-host pattern): `bindgen!`
//! runs here over that version's WIT, and the generated types are converted
//! to the host's own types here and nowhere else. A new WIT version gets a
//! sibling module; the rest of the host never sees generated types.

use wasmtime::component::{Resource, ResourceTable};

use super::{Capability, FetchState, LogLevel, PluginInfo};
use crate::staging::{StagedFile, StagingError};

wasmtime::component::bindgen!({
    path: "../wit",
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
    Fetcher::add_to_linker::<FetchState, wasmtime::component::HasSelf<FetchState>>(linker, |s| s)
}

pub async fn describe(store: &mut wasmtime::Store<FetchState>, instance: &Fetcher) -> wasmtime::Result<PluginInfo> {
    let info = instance.call_describe(store).await?;
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        summary: info.summary,
        schemes: info.schemes,
        capabilities: info
            .capabilities
            .into_iter()
            .map(|c| match c {
                types::Capability::ReadInput => Capability::ReadInput,
                types::Capability::OutboundHost(h) => Capability::OutboundHost(h),
                types::Capability::LargerLimits(r) => Capability::LargerLimits(super::LimitRequest {
                    memory_bytes: r.memory_bytes,
                    time_seconds: r.time_seconds,
                    max_bytes: r.max_bytes,
                    max_files: r.max_files,
                }),
            })
            .collect(),
        wit_version: VERSION.to_string(),
    })
}

pub async fn fetch(
    store: &mut wasmtime::Store<FetchState>,
    instance: &Fetcher,
    request: &super::FetchRequest,
) -> wasmtime::Result<Result<super::FetchResult, super::FetchError>> {
    let req = types::FetchRequest {
        source: request.source.clone(),
        input: request.input.as_ref().filter(|p| p.is_dir()).map(|_| super::INPUT_GUEST_PATH.to_string()),
        input_file: request.input_file.clone(),
        reference: request.reference.clone(),
        options: request.options.clone(),
    };
    Ok(match instance.call_fetch(store, &req).await? {
        Ok(r) => Ok(super::FetchResult {
            resolved_source: r.resolved_source,
            resolved_commit: r.resolved_commit,
            metadata: r.metadata,
        }),
        Err(e) => Err(match e {
            types::FetchError::InvalidSource(m) => super::FetchError::InvalidSource(m),
            types::FetchError::NotFound(m) => super::FetchError::NotFound(m),
            types::FetchError::Denied(m) => super::FetchError::Denied(m),
            types::FetchError::Network(m) => super::FetchError::Network(m),
            types::FetchError::InvalidContent(m) => super::FetchError::InvalidContent(m),
            types::FetchError::Staging(s) => super::FetchError::Staging(staging_message(&s)),
            types::FetchError::Other(m) => super::FetchError::Other(m),
        }),
    })
}

fn staging_message(e: &types::StagingError) -> String {
    use types::StagingError as S;
    match e {
        S::InvalidPath(m)
        | S::AlreadyExists(m)
        | S::NotADirectory(m)
        | S::SymlinkEscapes(m)
        | S::BadLink(m)
        | S::Io(m) => m.clone(),
        S::TooManyBytes(n) => format!("byte limit of {n} reached"),
        S::TooManyFiles(n) => format!("file limit of {n} reached"),
        S::TooManyOpenFiles(n) => format!("more than {n} files open"),
        S::Closed => "write to a finished file".into(),
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
        self.on_log(level, message);
    }
    fn progress(&mut self, done: u64, total: Option<u64>) {
        self.on_progress(done, total);
    }
    fn input_mode(&mut self, path: String) -> Result<u32, String> {
        FetchState::input_mode(self, &path)
    }
}
