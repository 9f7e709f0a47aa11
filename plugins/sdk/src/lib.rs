//! The guest side of attune's fetcher contract.
//!
//! A source fetcher is a wasm32-wasip2 component implementing the
//! `attune:fetcher` world in `wit/fetcher.wit`. This crate owns the generated
//! bindings so a plugin author writes only the fetch logic: implement
//! [`Fetcher`], call [`export_fetcher!`], and write the pack with [`Staging`].
//! Optional exports (`list-versions`) have defaults in [`Fetcher`], so a
//! plugin implements only what it offers.
//!
//! ```ignore
//! use attune_plugin_sdk::{Fetcher, FetchRequest, FetchResult, FetchError, FetcherInfo};
//! struct Mine;
//! impl Fetcher for Mine {
//!     fn describe() -> FetcherInfo { /* … */ }
//!     fn fetch(req: FetchRequest) -> Result<FetchResult, FetchError> {
//!         attune_plugin_sdk::Staging::write_file("pack.yaml", false, b"…")?;
//!         Ok(FetchResult::new(req.source))
//!     }
//! }
//! attune_plugin_sdk::export_fetcher!(Mine);
//! ```

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "fetcher",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "attune_plugin_sdk::bindings",
    });
}

use std::io;

#[cfg(feature = "archive")]
pub mod archive;
#[cfg(feature = "http")]
pub mod http;
pub mod keys;

pub use bindings::attune::fetcher::blobs;
/// Hashes computed by the host at native speed (new in WIT 0.3.0): a
/// [`digests::Hasher`] is fed with `update` and read (and reset) with
/// `finish`. Hashing in wasm is three times slower or worse.
pub use bindings::attune::fetcher::digests;
pub use bindings::attune::fetcher::host::{self, LogLevel};
pub use bindings::attune::fetcher::staging;
pub use bindings::attune::fetcher::types::{
    Capability, FetchError, FetchRequest, FetchResult, FetcherInfo, LimitRequest, StagingError, VersionInfo,
};

/// The WIT package version this SDK was built against.
pub const WIT_VERSION: &str = "0.3.0";

/// What a fetcher implements. `describe` and `fetch` are required; the
/// rest have defaults that answer "not offered".
pub trait Fetcher {
    /// Static facts about this fetcher (the WIT `describe`).
    fn describe() -> FetcherInfo;
    /// Fetches one pack into staging (the WIT `fetch`).
    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError>;
    /// The versions `source` offers, each with the exact source that
    /// fetches it (the WIT `list-versions`). The default, `Ok(None)`, says
    /// this fetcher lists no versions; attune then installs sources as
    /// written and `attune upgrade` finds nothing newer through it.
    fn list_versions(source: String) -> Result<Option<Vec<VersionInfo>>, FetchError> {
        let _ = source;
        Ok(None)
    }
}

/// Exports a [`Fetcher`] as the component's `attune:fetcher` world.
#[macro_export]
macro_rules! export_fetcher {
    ($ty:ident) => {
        impl $crate::bindings::Guest for $ty {
            fn describe() -> $crate::FetcherInfo {
                <$ty as $crate::Fetcher>::describe()
            }
            fn fetch(request: $crate::FetchRequest) -> Result<$crate::FetchResult, $crate::FetchError> {
                <$ty as $crate::Fetcher>::fetch(request)
            }
            fn list_versions(
                source: String,
            ) -> Result<Option<Vec<$crate::VersionInfo>>, $crate::FetchError> {
                <$ty as $crate::Fetcher>::list_versions(source)
            }
        }
        $crate::bindings::export_bindings!($ty with_types_in $crate::bindings);
    };
}

impl FetchResult {
    /// A result that only names where the pack came from.
    pub fn new(resolved_source: impl Into<String>) -> Self {
        FetchResult { resolved_source: resolved_source.into(), resolved_commit: None, metadata: Vec::new() }
    }
}

impl From<StagingError> for FetchError {
    fn from(e: StagingError) -> Self {
        FetchError::Staging(e)
    }
}

impl StagingError {
    /// A sentence for the user (the generated `Display` is only `Debug`).
    pub fn message(&self) -> String {
        match self {
            StagingError::InvalidPath(m)
            | StagingError::AlreadyExists(m)
            | StagingError::NotADirectory(m)
            | StagingError::SymlinkEscapes(m)
            | StagingError::BadLink(m)
            | StagingError::Io(m) => m.clone(),
            StagingError::TooManyBytes(n) => format!("the pack exceeds the byte limit of {n} bytes"),
            StagingError::TooManyFiles(n) => format!("the pack exceeds the file limit of {n} files"),
            StagingError::TooManyOpenFiles(n) => format!("more than {n} files open at once"),
            StagingError::Closed => "write to a finished file".to_string(),
        }
    }
}

impl FetchError {
    /// An `other` error from anything displayable, e.g. an `io::Error` with context.
    pub fn other(e: impl std::fmt::Display) -> Self {
        FetchError::Other(e.to_string())
    }
}

/// Writes the pack through the host's staging interface.
pub struct Staging;

impl Staging {
    pub fn create_dir(path: &str) -> Result<(), StagingError> {
        staging::create_dir(path)
    }
    pub fn write_file(path: &str, executable: bool, data: &[u8]) -> Result<(), StagingError> {
        staging::write_file(path, executable, data)
    }
    pub fn create_symlink(path: &str, target: &str) -> Result<(), StagingError> {
        staging::create_symlink(path, target)
    }
    pub fn link_file(path: &str, existing: &str) -> Result<(), StagingError> {
        staging::link_file(path, existing)
    }
    /// Creates `path` with the contents of `input_path` (relative to the
    /// read-only input folder), copied by the host without passing through
    /// this component; the mode follows the input file's executable bit.
    /// Returns the size counted for it (the host may finish the copy later).
    pub fn copy_input_file(path: &str, input_path: &str) -> Result<u64, StagingError> {
        staging::copy_input_file(path, input_path)
    }
    /// Opens a file as an [`io::Write`] that sends large chunks to the host.
    pub fn create_file(path: &str, executable: bool) -> Result<FileWriter, StagingError> {
        Ok(FileWriter { file: Some(staging::create_file(path, executable)?), buf: Vec::with_capacity(CHUNK) })
    }
}

/// Host calls cost a copy each; fewer, larger ones are faster.
const CHUNK: usize = 256 * 1024;

/// A staged file as [`io::Write`]; call [`FileWriter::finish`] at the end.
///
/// Staging errors surface as `io::Error`s wrapping the [`StagingError`], so
/// `io::copy` works; [`staging_error`] gets them back.
pub struct FileWriter {
    file: Option<staging::File>,
    buf: Vec<u8>,
}

impl FileWriter {
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file.as_ref().ok_or_else(|| to_io(StagingError::Closed))?;
        file.write(&self.buf).map_err(to_io)?;
        self.buf.clear();
        Ok(())
    }

    /// Flushes and closes the file.
    pub fn finish(mut self) -> Result<(), StagingError> {
        self.flush_buf().map_err(|e| staging_error(&e))?;
        match self.file.take() {
            Some(f) => f.finish(),
            None => Err(StagingError::Closed),
        }
    }
}

impl io::Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() >= CHUNK && self.buf.is_empty() {
            let file = self.file.as_ref().ok_or_else(|| to_io(StagingError::Closed))?;
            file.write(data).map_err(to_io)?;
            return Ok(data.len());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

fn to_io(e: StagingError) -> io::Error {
    io::Error::other(StagingIoError(e))
}

#[derive(Debug)]
struct StagingIoError(StagingError);
impl std::fmt::Display for StagingIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message())
    }
}
impl std::error::Error for StagingIoError {}

/// The staging error inside an `io::Error` from [`FileWriter`], or `Io` for any other.
pub fn staging_error(e: &io::Error) -> StagingError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<StagingIoError>()) {
        Some(StagingIoError(s)) => s.clone(),
        None => StagingError::Io(e.to_string()),
    }
}

/// Logging and progress, shown by the host.
pub mod log {
    use super::{LogLevel, host};
    pub fn debug(message: &str) {
        host::log(LogLevel::Debug, message)
    }
    pub fn info(message: &str) {
        host::log(LogLevel::Info, message)
    }
    pub fn warn(message: &str) {
        host::log(LogLevel::Warn, message)
    }
    pub fn progress(done: u64, total: Option<u64>) {
        host::progress(done, total)
    }
}
