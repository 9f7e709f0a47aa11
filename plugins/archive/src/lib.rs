//! The `archive` fetcher: installs a pack from a tar, tar.gz, tar.zst, tar.xz
//! or zip file on this machine.
//!
//! It sees only the archive, as a read-only blob (not the folder around it),
//! extracts with the SDK's shared rules, so every entry passes the host's
//! staging checks, and holds the file to `expected-sha256` (hashed by the
//! host while it extracts): a mismatch installs nothing.

use attune_plugin_sdk::archive;
use attune_plugin_sdk::{Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, blobs};

struct Archive;

impl Fetcher for Archive {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "archive".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Unpacks a pack from a tar, tar.gz, tar.zst, tar.xz or zip file".into(),
            schemes: vec!["file".into()],
            capabilities: vec![Capability::ReadInput],
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let blob = blobs::input_file()
            .ok_or_else(|| FetchError::InvalidSource("the archive fetcher needs an archive file as input".into()))?;
        let name = request.input_file.clone().unwrap_or_else(|| "archive".into());
        // Extracted first: the host hashes the file meanwhile, on another
        // core. A mismatch found after is as good as one found before, since
        // what was extracted is only staged and the host discards it.
        let extracted = archive::extract_blob(&blob, &name);
        let sha256 = blob.sha256();
        if let Some((_, want)) = request.options.iter().find(|(k, _)| k == attune_plugin_sdk::keys::EXPECTED_SHA256)
            && !want.eq_ignore_ascii_case(&sha256)
        {
            return Err(FetchError::InvalidContent(format!(
                "{name}: checksum mismatch: expected sha256:{want}, got sha256:{sha256}; nothing was installed"
            )));
        }
        let (format, extracted) = extracted?;
        let mut result = FetchResult::new(request.source);
        result.metadata = vec![
            ("archive-format".into(), format.name().into()),
            (attune_plugin_sdk::keys::ARCHIVE_SHA256.into(), sha256),
            ("archive-size".into(), blob.size().to_string()),
            ("archive-entries".into(), extracted.entries.to_string()),
        ];
        Ok(result)
    }
}

attune_plugin_sdk::export_fetcher!(Archive);
