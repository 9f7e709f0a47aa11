//! An example third-party fetcher: packs stored as OCI artifacts.
//!
//! `oci://registry.example.com/team/packs:1.2.0` (or `@sha256:<digest>`)
//! names a manifest in an OCI distribution registry; its first tar layer is
//! the pack. The manifest (when named by digest) and the layer are verified
//! against their digests, and the layer is unpacked with the SDK's archive
//! rules. When the registry answers 401 it says how to authenticate: basic
//! auth with the credentials in the URL (`oci://user:token@host/…`), or a
//! bearer token from the realm it names (which must be granted too).
//! Loopback registries are spoken to over plain http, others over https.
//!
//! It also lists versions: the repository's semver tags
//! (`/v2/<repo>/tags/list`), so `attune install oci://host/repo@^1.2` picks
//! the highest matching tag and `attune upgrade` finds newer ones.

use std::io::Read;

use attune_plugin_sdk::digests::{Algorithm, Hasher};
use attune_plugin_sdk::{
    Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, VersionInfo, archive, blobs, http, log,
};

struct Oci;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
                              application/vnd.docker.distribution.manifest.v2+json";
/// A manifest is small; anything bigger is not one.
const MAX_MANIFEST: u64 = 4 << 20;
/// A tag list this large is not one a pack repository has.
const MAX_TAG_LIST: u64 = 4 << 20;

/// Where an artifact lives.
struct Reference {
    base: String,
    repo: String,
    /// A tag, or `sha256:<hex>`.
    reference: String,
    credentials: Option<(String, String)>,
}

fn parse(source: &str) -> Result<Reference, FetchError> {
    let bad = |why: &str| {
        FetchError::InvalidSource(format!(
            "{}: {why}; write oci://host/repo:tag or oci://host/repo@sha256:<hex>",
            http::redact(source)
        ))
    };
    let rest = source.strip_prefix("oci://").ok_or_else(|| bad("not an oci:// source"))?;
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((u.to_string(), p.to_string())), host)
        }
        None => (None, authority),
    };
    let (repo, reference) = match path.split_once('@') {
        Some((repo, digest)) => (repo, digest.to_string()),
        None => match path.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
            Some((repo, tag)) => (repo, tag.to_string()),
            None => (path, "latest".to_string()),
        },
    };
    if repo.is_empty() || host.is_empty() {
        return Err(bad("no registry or repository"));
    }
    let hostname = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    let loopback = hostname == "localhost" || hostname.starts_with("127.") || hostname == "::1";
    let scheme = if loopback { "http" } else { "https" };
    Ok(Reference { base: format!("{scheme}://{host}"), repo: repo.to_string(), reference, credentials })
}

/// Authorization learned from a 401, reused for every later request.
#[derive(Default)]
struct Auth {
    header: Option<String>,
}

impl Auth {
    fn headers(&self, accept: &str) -> Vec<(String, String)> {
        let mut h = vec![("accept".to_string(), accept.to_string())];
        if let Some(a) = &self.header {
            h.push(("authorization".to_string(), a.clone()));
        }
        h
    }

    /// GETs `url`, answering one authentication challenge if there is one.
    fn get(&mut self, r: &Reference, url: &str, accept: &str) -> Result<http::Response, FetchError> {
        let first = http::send(url, &self.headers(accept), None)?;
        if first.status != 401 || self.header.is_some() {
            return ok(first);
        }
        let challenge = first.header("www-authenticate").unwrap_or_default().to_string();
        self.header = Some(self.answer(r, &challenge, url)?);
        ok(http::send(url, &self.headers(accept), None)?)
    }

    fn answer(&self, r: &Reference, challenge: &str, url: &str) -> Result<String, FetchError> {
        let (kind, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let basic = r.credentials.as_ref().map(|(u, p)| http::basic_authorization(u, p));
        if kind.eq_ignore_ascii_case("basic") {
            return basic.ok_or_else(|| {
                FetchError::Denied(format!(
                    "{url}: the registry wants credentials; put them in the source (oci://user:token@host/…)"
                ))
            });
        }
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(FetchError::Denied(format!("{url}: unsupported authentication {kind:?}")));
        }
        let param = |name: &str| {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k.eq_ignore_ascii_case(name)).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm =
            param("realm").ok_or_else(|| FetchError::Denied(format!("{url}: a bearer challenge without a realm")))?;
        let mut token_url = url::Url::parse(&realm)
            .map_err(|e| FetchError::Denied(format!("{url}: bad token realm {realm:?}: {e}")))?;
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(s) = param("service") {
                q.append_pair("service", &s);
            }
            q.append_pair("scope", &param("scope").unwrap_or_else(|| format!("repository:{}:pull", r.repo)));
        }
        let mut headers = Vec::new();
        if let Some(b) = basic {
            headers.push(("authorization".to_string(), b));
        }
        let mut body = Vec::new();
        http::request(token_url.as_str(), &headers, None)?
            .read_to_end(&mut body)
            .map_err(|e| FetchError::Network(format!("{realm}: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| FetchError::InvalidContent(format!("{realm}: the token answer is not JSON: {e}")))?;
        let token = json["token"]
            .as_str()
            .or(json["access_token"].as_str())
            .ok_or_else(|| FetchError::InvalidContent(format!("{realm}: the token answer has no token")))?;
        Ok(format!("Bearer {token}"))
    }
}

fn ok(r: http::Response) -> Result<http::Response, FetchError> {
    match r.status {
        200..=299 => Ok(r),
        401 | 403 => Err(FetchError::Denied(format!("GET {}: the registry refused access (HTTP {})", r.url, r.status))),
        404 => Err(FetchError::NotFound(format!("GET {}: no such manifest or blob (HTTP 404)", r.url))),
        s => Err(FetchError::Network(format!("GET {}: the registry answered HTTP {s}", r.url))),
    }
}

/// Whether a tag is a semver version (`1.2.3`, `1.2.3-rc.1`, `1.2.3+build`;
/// not `v1.2.3` or `latest`): `MAJOR.MINOR.PATCH` without leading zeros,
/// then dot-separated identifiers of `0-9 A-Z a-z -`.
fn is_semver(tag: &str) -> bool {
    let ids = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let (rest, build) = match tag.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (tag, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0')))
        && pre.is_none_or(ids)
        && build.is_none_or(ids)
}

fn hex_digest(d: &str) -> Result<&str, FetchError> {
    d.strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| FetchError::InvalidContent(format!("unsupported digest {d:?} (only sha256 is)")))
}

impl Fetcher for Oci {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "oci".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Installs packs stored as OCI artifacts in a registry".into(),
            schemes: vec!["oci".into()],
            capabilities: vec![Capability::OutboundHost("{source-host}".into())],
        }
    }

    /// The repository's semver tags, each as the source that fetches it
    /// (the source as given, with the tag).
    fn list_versions(source: String) -> Result<Option<Vec<VersionInfo>>, FetchError> {
        let r = parse(&source)?;
        if r.reference != "latest" || source.ends_with(":latest") {
            return Err(FetchError::InvalidSource(format!(
                "{}: name the repository without a tag or digest to list its versions",
                http::redact(&source)
            )));
        }
        let mut auth = Auth::default();
        let url = format!("{}/v2/{}/tags/list", r.base, r.repo);
        let mut body = Vec::new();
        auth.get(&r, &url, "application/json")?
            .take(MAX_TAG_LIST + 1)
            .read_to_end(&mut body)
            .map_err(|e| FetchError::Network(format!("{url}: {e}")))?;
        if body.len() as u64 > MAX_TAG_LIST {
            return Err(FetchError::InvalidContent(format!("{url}: larger than {MAX_TAG_LIST} bytes")));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| FetchError::InvalidContent(format!("{url}: not a JSON tag list: {e}")))?;
        // A repository without tags answers `"tags": null`.
        let tags = json["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
        let versions = tags
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| is_semver(t))
            .map(|t| VersionInfo { version: t.to_string(), source: format!("{source}:{t}") })
            .collect();
        Ok(Some(versions))
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let r = parse(&request.source)?;
        let mut auth = Auth::default();
        let manifest_url = format!("{}/v2/{}/manifests/{}", r.base, r.repo, r.reference);
        let mut manifest = Vec::new();
        auth.get(&r, &manifest_url, MANIFEST_TYPES)?
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut manifest)
            .map_err(|e| FetchError::Network(format!("{manifest_url}: {e}")))?;
        if manifest.len() as u64 > MAX_MANIFEST {
            return Err(FetchError::InvalidContent(format!("{manifest_url}: larger than {MAX_MANIFEST} bytes")));
        }
        // Hashed by the host, at native speed (WIT 0.3.0 `digests`).
        let sha256 = Hasher::new(Algorithm::Sha256);
        sha256.update(&manifest);
        let manifest_digest = format!("sha256:{}", hex::encode(sha256.finish().map_err(FetchError::Other)?));
        if r.reference.starts_with("sha256:") && r.reference != manifest_digest {
            return Err(FetchError::InvalidContent(format!(
                "{manifest_url}: the manifest's digest is {manifest_digest}, not the one asked for"
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(&manifest)
            .map_err(|e| FetchError::InvalidContent(format!("{manifest_url}: not a JSON manifest: {e}")))?;
        let layer = json["layers"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["mediaType"].as_str().is_some_and(|t| t.contains("tar"))))
            .ok_or_else(|| FetchError::InvalidContent(format!("{manifest_url}: the manifest has no tar layer")))?;
        let digest = layer["digest"].as_str().unwrap_or_default().to_string();
        let want = hex_digest(&digest)?.to_ascii_lowercase();

        let blob_url = format!("{}/v2/{}/blobs/{digest}", r.base, r.repo);
        let mut body = auth.get(&r, &blob_url, "*/*")?;
        let total = body.content_length();
        let spool = blobs::create_scratch()?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = body.read(&mut chunk).map_err(|e| FetchError::Network(format!("{blob_url}: {e}")))?;
            if n == 0 {
                break;
            }
            spool.append(&chunk[..n])?;
            done += n as u64;
            log::progress(done, total);
        }
        let got = spool.sha256();
        if got != want {
            return Err(FetchError::InvalidContent(format!(
                "{blob_url}: the layer's content hashes to sha256:{got}, not {digest}; nothing was extracted"
            )));
        }
        let (format, _) = archive::extract_blob(&spool, "layer")?;
        let mut result = FetchResult::new(http::redact(&request.source));
        result.metadata = vec![
            ("manifest-digest".into(), manifest_digest),
            ("layer-digest".into(), digest),
            ("layer-format".into(), format.name().into()),
        ];
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_semver_tags_are_versions() {
        for t in ["1.2.3", "0.0.1", "10.20.30", "1.0.0-rc.1", "1.0.0+build.5", "1.0.0-alpha-1+x"] {
            assert!(super::is_semver(t), "{t}");
        }
        for t in ["latest", "v1.2.3", "1.2", "01.2.3", "1.2.3-", "1.2.3-a..b", "1.2.3+", "main", ""] {
            assert!(!super::is_semver(t), "{t}");
        }
    }
}

mod hex {
    pub fn encode(b: impl AsRef<[u8]>) -> String {
        b.as_ref().iter().map(|x| format!("{x:02x}")).collect()
    }
}

attune_plugin_sdk::export_fetcher!(Oci);
