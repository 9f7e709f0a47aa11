//! The host's imports (`staging`, `blobs`, `host`), defined once for every
//! WIT version served.
//!
//! These interfaces are the same in every version so far (a newer one only
//! adds calls), so each function is defined here under each version's
//! instance name (`attune:fetcher/staging@0.1.0`, `…@0.2.0`), with argument
//! and result types written by hand to the WIT's shape; wasmtime checks them
//! against the component's imports when it is instantiated. One definition
//! means one copy of the hardening: every argument a guest can make large is
//! read in place and capped before it is copied (a path, a log line) or
//! copied one chunk at a time (file data), whatever version the guest speaks.
//! A call added by a version is defined once too ([`add_copy_input_file`],
//! `runtime/digests.rs`), and each version's module adds the ones it has.

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType, WasmList, WasmStr};

use super::answers::LOG_MESSAGE_MAX;
use super::blobs::Blob;
use super::{FetchState, LogLevel};
use crate::staging::{StagedFile, StagingError, StagingWriter};

pub(super) type Cx<'a> = StoreContextMut<'a, FetchState>;
pub(super) type StagingResult<T> = Result<T, WireStagingError>;

/// Longest path the staging rules accept (see the WIT `staging` docs).
const PATH_MAX: usize = crate::staging::paths::MAX_PATH_BYTES;
/// File data is copied out of the guest this much at a time.
const CHUNK: usize = 1 << 20;

/// The WIT `log-level`.
#[derive(ComponentType, Lift, Clone, Copy)]
#[allow(dead_code, reason = "only ever made by lifting a guest's argument")]
#[component(enum)]
#[repr(u8)]
enum WireLogLevel {
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
}

/// The WIT `staging-error`, as the host hands it to a guest.
#[derive(ComponentType, Lower, Debug)]
#[component(variant)]
pub(super) enum WireStagingError {
    #[component(name = "invalid-path")]
    InvalidPath(String),
    #[component(name = "already-exists")]
    AlreadyExists(String),
    #[component(name = "not-a-directory")]
    NotADirectory(String),
    #[component(name = "symlink-escapes")]
    SymlinkEscapes(String),
    #[component(name = "bad-link")]
    BadLink(String),
    #[component(name = "too-many-bytes")]
    TooManyBytes(u64),
    #[component(name = "too-many-files")]
    TooManyFiles(u64),
    #[component(name = "too-many-open-files")]
    TooManyOpenFiles(u32),
    #[component(name = "closed")]
    Closed,
    #[component(name = "io")]
    Io(String),
}

impl From<StagingError> for WireStagingError {
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

fn io(e: impl std::fmt::Display) -> WireStagingError {
    WireStagingError::Io(e.to_string())
}

/// A path argument, refused without a copy when over [`PATH_MAX`].
pub(super) fn path(store: &mut Cx<'_>, s: &WasmStr) -> wasmtime::Result<Result<String, StagingError>> {
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
    Ok((r.map_err(WireStagingError::from),))
}

/// Feeds a byte list to `sink` in owned chunks of at most [`CHUNK`] (file
/// data goes on to another thread as it is).
fn chunks(
    store: &mut Cx<'_>,
    data: &WasmList<u8>,
    mut sink: impl FnMut(&mut FetchState, Vec<u8>) -> Result<(), StagingError>,
) -> wasmtime::Result<StagingResult<()>> {
    let mut at = 0;
    while at < data.len() {
        let end = (at + CHUNK).min(data.len());
        let buf = data.as_le_slice(&*store)[at..end].to_vec();
        if let Err(e) = sink(store.data_mut(), buf) {
            return Ok(Err(e.into()));
        }
        at = end;
    }
    Ok(Ok(()))
}

fn level(l: WireLogLevel) -> LogLevel {
    match l {
        WireLogLevel::Debug => LogLevel::Debug,
        WireLogLevel::Info => LogLevel::Info,
        WireLogLevel::Warn => LogLevel::Warn,
    }
}

fn push<T: Send + 'static>(store: &mut Cx<'_>, value: T) -> StagingResult<Resource<T>> {
    store.data_mut().table.push(value).map_err(|e| io(format!("resource table: {e}")))
}

/// Defines every import of `attune:fetcher@{version}` that all versions share.
pub(super) fn add(linker: &mut Linker<FetchState>, version: &str) -> wasmtime::Result<()> {
    // `types` holds only types; the instance must exist all the same.
    linker.instance(&format!("attune:fetcher/types@{version}"))?;

    let mut h = linker.instance(&format!("attune:fetcher/host@{version}"))?;
    h.func_wrap("log", |mut store: Cx<'_>, (l, message): (WireLogLevel, WasmStr)| {
        let text = message.to_str(&store)?;
        // At most the cap (and a note) is copied out of the guest.
        let kept = crate::untrusted::cap(&text, LOG_MESSAGE_MAX);
        drop(text);
        store.data_mut().on_log(level(l), &kept);
        Ok(())
    })?;
    h.func_wrap("progress", |mut store: Cx<'_>, (done, total): (u64, Option<u64>)| {
        store.data_mut().on_progress(done, total);
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

    let mut st = linker.instance(&format!("attune:fetcher/staging@{version}"))?;
    st.resource("file", ResourceType::host::<StagedFile>(), |mut store, rep| {
        let mut f = store.data_mut().table.delete(Resource::<StagedFile>::new_own(rep))?;
        let _ = store.data_mut().staging.close(&mut f);
        Ok(())
    })?;
    st.func_wrap("create-dir", |mut store: Cx<'_>, (p,): (WasmStr,)| {
        let r = path(&mut store, &p)?.and_then(|p| store.data_mut().staging.create_dir(&p));
        Ok((r.map_err(WireStagingError::from),))
    })?;
    st.func_wrap("create-file", |mut store: Cx<'_>, (p, executable): (WasmStr, bool)| {
        let r = match path(&mut store, &p)?.and_then(|p| store.data_mut().staging.create_file(&p, executable)) {
            Ok(file) => push(&mut store, file),
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
        let written = chunks(&mut store, &data, |s, b| s.staging.write_owned(&mut file, b))?;
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
            s.staging.write_owned(f, b)
        })?;
        Ok((r,))
    })?;
    st.func_wrap("[method]file.finish", |mut store: Cx<'_>, (file,): (Resource<StagedFile>,)| {
        let s = store.data_mut();
        let r = match s.table.get_mut(&file) {
            Ok(f) => s.staging.close(f).map_err(WireStagingError::from),
            Err(e) => Err(io(e)),
        };
        Ok((r,))
    })?;

    let mut b = linker.instance(&format!("attune:fetcher/blobs@{version}"))?;
    b.resource("blob", ResourceType::host::<Blob>(), |mut store, rep| {
        let blob = store.data_mut().table.delete(Resource::<Blob>::new_own(rep))?;
        if let Some((n, sha256)) = blob.finished_scratch() {
            store.data_mut().scratch_sha256.insert(n, sha256);
        }
        Ok(())
    })?;
    b.func_wrap("input-file", |mut store: Cx<'_>, (): ()| {
        let blob = store.data().input_file.clone().and_then(|f| Blob::input(f).ok());
        Ok((blob.and_then(|b| store.data_mut().table.push(b).ok()),))
    })?;
    b.func_wrap("create-scratch", |mut store: Cx<'_>, (): ()| {
        let r = match store.data_mut().new_scratch() {
            Ok(blob) => push(&mut store, blob),
            Err(e) => Err(e.into()),
        };
        Ok((r,))
    })?;
    b.func_wrap("[method]blob.size", |store: Cx<'_>, (blob,): (Resource<Blob>,)| {
        Ok((store.data().table.get(&blob).map(|b| b.size()).unwrap_or(0),))
    })?;
    b.func_wrap("[method]blob.read", |store: Cx<'_>, (blob, offset, len): (Resource<Blob>, u64, u32)| {
        Ok((store.data().table.get(&blob).map_err(|e| e.to_string()).and_then(|b| b.read(offset, len)),))
    })?;
    b.func_wrap("[method]blob.append", |mut store: Cx<'_>, (blob, data): (Resource<Blob>, WasmList<u8>)| {
        let r = chunks(&mut store, &data, |s, bytes| {
            let b = s.table.get_mut(&blob).map_err(|e| StagingError::Io(e.to_string()))?;
            b.append(&bytes, &mut s.staging)
        })?;
        Ok((r,))
    })?;
    b.func_wrap("[method]blob.sha256", |mut store: Cx<'_>, (blob,): (Resource<Blob>,)| {
        let sum = match store.data_mut().table.get_mut(&blob) {
            Ok(b) => b.sha256().unwrap_or_default(),
            Err(_) => String::new(),
        };
        Ok((sum,))
    })?;
    Ok(())
}

/// Defines `staging.copy-input-file`, new in 0.2.0 and in every version since.
pub(super) fn add_copy_input_file(linker: &mut Linker<FetchState>, version: &str) -> wasmtime::Result<()> {
    let mut st = linker.instance(&format!("attune:fetcher/staging@{version}"))?;
    // Both paths capped before they are copied, as every staging path is;
    // the bytes go file to file on the host and never through the guest.
    st.func_wrap("copy-input-file", |mut store: Cx<'_>, (p, from): (WasmStr, WasmStr)| {
        let r = match (path(&mut store, &p)?, path(&mut store, &from)?) {
            (Ok(p), Ok(from)) => store.data_mut().copy_input_file(&p, &from),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        Ok((r.map_err(WireStagingError::from),))
    })?;
    Ok(())
}
