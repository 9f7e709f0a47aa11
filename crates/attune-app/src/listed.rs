//! Versions a source lists through its plugin: `attune install
//! oci://host/repo@^1.2`, and `upgrade` / `outdated` for what was installed so.
//!
//! Indexes are one place versions come from; a plugin that answers
//! `list-versions` is another (an OCI repository's tags, an S3 prefix). Here
//! a range is turned into one exact source before the install pipeline
//! runs, so the pipeline installs a source as it always does and never
//! learns that a list was asked for, nor which fetcher gave it.

use semver::{Version, VersionReq};

use crate::Error;
use crate::context::Context;
use crate::install::InstallRequest;
use crate::runtime::VersionInfo;

/// `SOURCE@RANGE` split, when the part after the last `@` is a semver range
/// (`^1.2`, `>=1, <2`, `1.4.0`) and the part before it a URL (`scheme://…`).
/// A digest (`@sha256:…`) or credentials (`user@host`) are not ranges.
pub fn split_range(source: &str) -> Option<(&str, VersionReq)> {
    let (base, range) = source.rsplit_once('@')?;
    let (_, rest) = base.split_once("://")?;
    if rest.is_empty() || range.contains('/') || range.contains(':') {
        return None;
    }
    Some((base, VersionReq::parse(range).ok()?))
}

/// What `source`'s plugin lists: `None` when no added plugin takes the
/// source or the plugin lists no versions.
pub async fn versions(
    ctx: &Context,
    source: &str,
    plugin: Option<&str>,
    req: &InstallRequest,
) -> Result<Option<(String, Vec<VersionInfo>)>, Error> {
    let Some(row) = crate::plugins::for_source(ctx, source, plugin).await? else { return Ok(None) };
    let name = row.name.clone();
    let spec = crate::plugins::added_spec(ctx, row, source).await?;
    let options = crate::sources::SourceOptions {
        allow_hosts: req.allow_hosts.clone(),
        allow_insecure_http: req.allow_insecure_http,
        untrusted_caller: req.untrusted_caller,
        ..Default::default()
    };
    let resolved = crate::sources::resolve(spec, ctx.runtime.clone(), &options).await?;
    let limits = resolved.limits(&req.limits);
    Ok(resolved.list_versions(&limits).await?.map(|v| (name, v)))
}

/// The highest listed version `req` accepts (pre-releases only when the
/// range names one, as for indexes).
pub fn highest<'a>(listed: &'a [VersionInfo], req: &VersionReq) -> Option<(Version, &'a VersionInfo)> {
    listed
        .iter()
        .filter_map(|v| Some((Version::parse(&v.version).ok()?, v)))
        .filter(|(v, _)| req.matches(v))
        .max_by(|a, b| a.0.cmp(&b.0))
}

/// `req` with its `SOURCE@RANGE` replaced by the exact source of the
/// highest version the source's plugin lists in the range; unchanged when
/// the source is not a range through an added plugin.
pub async fn pick(ctx: &Context, req: InstallRequest) -> Result<InstallRequest, Error> {
    if req.plugin_file.is_some() || req.opened_input.is_some() {
        return Ok(req);
    }
    let Some((base, range)) = split_range(&req.source) else { return Ok(req) };
    let Some((plugin, listed)) = versions(ctx, base, req.plugin.as_deref(), &req).await? else {
        return match crate::plugins::for_source(ctx, base, req.plugin.as_deref()).await? {
            // A plugin takes the source but lists nothing: say so, rather
            // than hand it a source with a range it never promised to read.
            Some(row) => Err(Error::Usage(format!(
                "{}: plugin {} lists no versions, so a range cannot be resolved through it; \
                 name one version as the plugin expects it",
                crate::sources::redact_url(&req.source),
                row.name
            ))),
            None => Ok(req),
        };
    };
    let Some((_, chosen)) = highest(&listed, &range) else {
        let mut all: Vec<Version> = listed.iter().filter_map(|v| Version::parse(&v.version).ok()).collect();
        all.sort();
        let all: Vec<String> = all.iter().map(Version::to_string).collect();
        return Err(Error::Usage(format!(
            "{}: plugin {plugin} lists no version matching {range} (it lists: {})",
            crate::sources::redact_url(base),
            if all.is_empty() { "none".to_string() } else { all.join(", ") }
        )));
    };
    let source = chosen.source.clone();
    Ok(InstallRequest { source, listed_from: Some(base.to_string()), ..req })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_what_follows_the_last_at_of_a_url() {
        let (base, r) = split_range("oci://127.0.0.1:5000/team/pack@^1.2").unwrap();
        assert_eq!(base, "oci://127.0.0.1:5000/team/pack");
        assert_eq!(r, VersionReq::parse("^1.2").unwrap());
        assert!(split_range("oci://h/repo@sha256:0123").is_none());
        assert!(split_range("oci://user:pw@host/repo").is_none());
        assert!(split_range("oci://user@host/repo:1.0.0").is_none());
        assert!(split_range("mypack@^1").is_none());
        assert_eq!(split_range("oci://user:pw@host/repo@>=1, <2").unwrap().0, "oci://user:pw@host/repo");
    }

    #[test]
    fn the_highest_match_wins() {
        let v = |version: &str| VersionInfo { version: version.into(), source: format!("s:{version}") };
        let listed = [v("1.2.0"), v("1.10.1"), v("2.0.0"), v("1.11.0-rc.1")];
        let (version, info) = highest(&listed, &VersionReq::parse("^1.2").unwrap()).unwrap();
        assert_eq!((version.to_string(), info.source.as_str()), ("1.10.1".into(), "s:1.10.1"));
        assert!(highest(&listed, &VersionReq::parse("^3").unwrap()).is_none());
    }
}
