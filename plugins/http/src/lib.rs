//! The `http` fetcher: downloads a pack archive over http(s) and unpacks it.
//!
//! A tar (plain or compressed) is extracted as it downloads, so the network,
//! the decompression here and the host's writing overlap. Every byte also
//! goes into a host scratch blob (counted against the byte limit, kept by the
//! artifact cache), whose SHA-256 is checked against `expected-sha256` once
//! the download ends; on a mismatch the fetch fails and the host discards
//! what was staged. A zip, whose index is at its end, is downloaded first.
//! Extraction uses the same SDK code and rules as the `archive` fetcher. The
//! host's outbound policy decides which hosts (and redirect targets) are
//! reachable.

use std::io::{BufReader, Read};

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
        let response = http::get(&request.source)?;
        let url = response.url.clone();
        let total = response.content_length();
        let mut download = Download { total, response, blob: blobs::create_scratch()?, done: 0, broke: None };
        let save_as = request.options.iter().find(|(k, _)| k == "save-as").map(|(_, f)| f.clone());
        let name = url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("download");
        let name = name.split('?').next().unwrap_or("download").to_string();

        // A tar is extracted while it downloads; anything else is downloaded first.
        let mut head = Vec::with_capacity(512);
        if save_as.is_none() {
            if (&mut download).take(512).read_to_end(&mut head).is_err() {
                return Err(download.broken());
            }
            // Less than asked: the body ended; if early, that is the error.
            if head.len() < 512 {
                download.complete(&url)?;
            }
        }
        let streamed = match save_as {
            None => match archive::detect(&head, &name)? {
                archive::Format::Zip => None,
                format => {
                    let reader = BufReader::with_capacity(CHUNK, std::io::Cursor::new(head).chain(&mut download));
                    match archive::extract_stream(reader, format, &name) {
                        Ok(extracted) => Some((format, extracted)),
                        // A broken or short download, or the wrong file, rather
                        // than the archive, may be why: the rest of it tells.
                        Err(e) => {
                            download.finish(&request, &url)?;
                            return Err(e);
                        }
                    }
                }
            },
            Some(_) => None,
        };
        // The rest: all of a zip or a plugin file, the padding after a tar.
        let sha256 = download.finish(&request, &url)?;
        let Download { response, blob, done, .. } = download;
        // `save-as`: the download is the result (a plugin's .wasm), not an archive.
        if let Some(file) = &save_as {
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
        let (format, extracted) = match streamed {
            Some(done) => done,
            None => archive::extract_blob(&blob, &name)?,
        };
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

/// The download against `expected-sha256`, if the request names one. What
/// was extracted meanwhile is only staged: the host discards it.
fn check_sha256(request: &FetchRequest, url: &str, sha256: &str) -> Result<(), FetchError> {
    match request.options.iter().find(|(k, _)| k == attune_plugin_sdk::keys::EXPECTED_SHA256) {
        Some((_, want)) if !want.eq_ignore_ascii_case(sha256) => Err(FetchError::InvalidContent(format!(
            "{url}: checksum mismatch: expected sha256:{want}, got sha256:{sha256}; nothing was installed"
        ))),
        _ => Ok(()),
    }
}

/// The response body as it arrives, each byte also appended to the scratch
/// blob, with progress shown.
struct Download {
    response: http::Response,
    blob: blobs::Blob,
    total: Option<u64>,
    done: u64,
    /// Why the download stopped early, if it did: the extractor only sees
    /// an io error, this is the error to report.
    broke: Option<FetchError>,
}

impl Download {
    fn broken(&mut self) -> FetchError {
        self.broke.take().unwrap_or_else(|| {
            FetchError::Network(format!("GET {}: the download broke off after {} bytes", self.response.url, self.done))
        })
    }

    /// Reads the rest of the body, then holds it to its length and to
    /// `expected-sha256`; returns its SHA-256.
    fn finish(&mut self, request: &FetchRequest, url: &str) -> Result<String, FetchError> {
        let _ = std::io::copy(self, &mut std::io::sink());
        self.complete(url)?;
        let sha256 = self.blob.sha256();
        check_sha256(request, url, &sha256)?;
        Ok(sha256)
    }

    /// After reading to the end: whether all of the body came.
    fn complete(&mut self, url: &str) -> Result<(), FetchError> {
        if self.broke.is_some() {
            return Err(self.broken());
        }
        match self.total {
            Some(t) if t != self.done => {
                Err(FetchError::Network(format!("GET {url}: the server promised {t} bytes but sent {}", self.done)))
            }
            _ => Ok(()),
        }
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.response.read(buf).inspect_err(|e| {
            self.broke = Some(FetchError::Network(format!(
                "GET {}: the download broke off after {} bytes: {e}",
                self.response.url, self.done
            )))
        })?;
        if n > 0 {
            // The host's refusal (the byte limit) is the error to report.
            if let Err(e) = self.blob.append(&buf[..n]) {
                let io = std::io::Error::other(e.message());
                self.broke = Some(FetchError::Staging(e));
                return Err(io);
            }
            self.done += n as u64;
            log::progress(self.done, self.total);
        }
        Ok(n)
    }
}

attune_plugin_sdk::export_fetcher!(Http);
