//! The `http` fetcher: downloads a pack archive over http(s) and unpacks it.
//!
//! The download goes into a host scratch blob (counted against the byte
//! limit), so `expected-sha256` is checked before anything is extracted and
//! zip archives, whose index is at the end, work too. Extraction uses the
//! same SDK code and rules as the `archive` fetcher. The host's outbound
//! policy decides which hosts (and redirect targets) are reachable.

use std::io::Read;

use attune_plugin_sdk::{
    Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, archive, blobs, http, log,
};

struct Http;

const CHUNK: usize = 1 << 20;

impl Fetcher for Http {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Downloads a pack archive over http(s) and unpacks it".into(),
            schemes: vec!["https".into(), "http".into()],
            capabilities: vec![Capability::OutboundHost("{source-host}".into())],
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let mut response = http::get(&request.source)?;
        let total = response.content_length();
        let blob = blobs::create_scratch()?;
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let n = response.read(&mut buf).map_err(|e| {
                FetchError::Network(format!("GET {}: the download broke off after {done} bytes: {e}", response.url))
            })?;
            if n == 0 {
                break;
            }
            blob.append(&buf[..n])?;
            done += n as u64;
            log::progress(done, total);
        }
        if let Some(t) = total
            && t != done
        {
            return Err(FetchError::Network(format!(
                "GET {}: the server promised {t} bytes but sent {done}",
                response.url
            )));
        }
        let sha256 = blob.sha256();
        if let Some((_, want)) = request.options.iter().find(|(k, _)| k == attune_plugin_sdk::keys::EXPECTED_SHA256)
            && !want.eq_ignore_ascii_case(&sha256)
        {
            return Err(FetchError::InvalidContent(format!(
                "{}: checksum mismatch: expected sha256:{want}, got sha256:{sha256}; nothing was extracted",
                response.url
            )));
        }
        // `save-as`: the download is the result (a plugin's .wasm), not an archive.
        if let Some((_, file)) = request.options.iter().find(|(k, _)| k == "save-as") {
            let mut out = attune_plugin_sdk::Staging::create_file(file, false)?;
            let mut offset = 0u64;
            while offset < blob.size() {
                let part = blob.read(offset, 4 << 20).map_err(FetchError::Other)?;
                if part.is_empty() {
                    break;
                }
                std::io::Write::write_all(&mut out, &part)
                    .map_err(|e| FetchError::Staging(attune_plugin_sdk::staging_error(&e)))?;
                offset += part.len() as u64;
            }
            out.finish()?;
            let metadata = vec![
                ("final-url".to_string(), response.url.clone()),
                ("size".to_string(), done.to_string()),
                ("sha256".to_string(), sha256),
            ];
            return Ok(FetchResult { resolved_source: response.url.clone(), resolved_commit: None, metadata });
        }
        let name = response.url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("download").to_string();
        let name = name.split('?').next().unwrap_or("download").to_string();
        let (format, extracted) = archive::extract_blob(&blob, &name)?;
        let mut metadata = vec![
            ("final-url".to_string(), response.url.clone()),
            ("http-status".to_string(), response.status.to_string()),
            ("size".to_string(), done.to_string()),
            (attune_plugin_sdk::keys::ARCHIVE_SHA256.to_string(), sha256),
            ("archive-format".to_string(), format.name().to_string()),
            ("archive-entries".to_string(), extracted.entries.to_string()),
        ];
        for (header, key) in [("etag", "etag"), ("last-modified", "last-modified")] {
            if let Some(v) = response.header(header) {
                metadata.push((key.to_string(), v.to_string()));
            }
        }
        Ok(FetchResult { resolved_source: response.url.clone(), resolved_commit: None, metadata })
    }
}

attune_plugin_sdk::export_fetcher!(Http);
