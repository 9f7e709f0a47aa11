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
use crate::runtime::{Limits, VersionInfo};

/// What a listing runs under: an install's limits and hosts.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub limits: Limits,
    pub allow_hosts: Vec<String>,
    pub allow_insecure_http: bool,
    pub untrusted_caller: bool,
}

/// One exact source picked from a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The source that fetches the chosen version.
    pub source: String,
    /// The source whose list it was picked from (`SOURCE` of `SOURCE@RANGE`).
    pub listed_from: String,
}

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
    req: &ListOptions,
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
    let Some(listed) = resolved.list_versions(&limits).await? else { return Ok(None) };
    // Every entry must come back to this plugin: a list may not send an
    // install to a local path or to another fetcher with other grants.
    let scheme = |s: &str| s.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    if let Some(other) = listed.iter().find(|v| scheme(&v.source) != scheme(source)) {
        return Err(Error::Usage(format!(
            "plugin {name}: its list-versions() answer was refused: version {} names the source {:?}, \
             which is not a {}:// source (a listed source must come back to the plugin that listed it)",
            crate::untrusted::escape(&other.version),
            crate::untrusted::escape(&crate::sources::redact_url(&other.source)),
            scheme(source).unwrap_or_default()
        )));
    }
    Ok(Some((name, listed)))
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

/// For `SOURCE@RANGE` through an added plugin: the exact source of the
/// highest version the plugin lists in the range. `None` when `source` is
/// not a range through an added plugin (it is then installed as written).
pub async fn pick(
    ctx: &Context,
    source: &str,
    plugin: Option<&str>,
    options: &ListOptions,
) -> Result<Option<Picked>, Error> {
    let Some((base, range)) = split_range(source) else { return Ok(None) };
    let Some((name, listed)) = versions(ctx, base, plugin, options).await? else {
        return match crate::plugins::for_source(ctx, base, plugin).await? {
            // A plugin takes the source but lists nothing: say so, rather
            // than hand it a source with a range it never promised to read.
            Some(row) => Err(Error::Usage(format!(
                "{}: plugin {} lists no versions, so a range cannot be resolved through it; \
                 name one version as the plugin expects it",
                crate::sources::redact_url(source),
                row.name
            ))),
            None => Ok(None),
        };
    };
    let Some((_, chosen)) = highest(&listed, &range) else {
        let mut all: Vec<Version> = listed.iter().filter_map(|v| Version::parse(&v.version).ok()).collect();
        all.sort();
        let all: Vec<String> = all.iter().map(Version::to_string).collect();
        return Err(Error::Usage(format!(
            "{}: plugin {name} lists no version matching {range} (it lists: {})",
            crate::sources::redact_url(base),
            if all.is_empty() { "none".to_string() } else { all.join(", ") }
        )));
    };
    Ok(Some(Picked { source: chosen.source.clone(), listed_from: base.to_string() }))
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
