//! Caps and shape rules for everything a fetcher answers.
//!
//! A fetcher's `describe()` answer is stored at `plugin add` and its
//! `fetch-result` is recorded with every installation, so both are the
//! audit trail's raw material: a hostile plugin must not be able to make a
//! record huge, put escape sequences in it, or record a "commit" that is a
//! path. Every field has a fixed cap, and the fields that are identifiers
//! have a shape; an answer that breaks one is refused whole, naming the
//! field and the rule. Free text (error messages, log lines) is not refused
//! but cut to its cap and escaped where it is shown.

use thiserror::Error;

use super::{Capability, FetchError, FetchResult, PluginInfo};
use crate::untrusted;

/// `describe().name`: a ref-like name (the rule `attune plugin add` states).
pub const NAME_MAX: usize = 64;
pub const VERSION_MAX: usize = 64;
pub const SUMMARY_MAX: usize = 256;
pub const SCHEMES_MAX: usize = 16;
pub const SCHEME_MAX: usize = 32;
pub const CAPABILITIES_MAX: usize = 32;
/// An outbound-host pattern: a DNS name (253) plus `*.`, a port and brackets.
pub const HOST_PATTERN_MAX: usize = 270;
pub const RESOLVED_SOURCE_MAX: usize = 4096;
pub const METADATA_ENTRIES_MAX: usize = 64;
pub const METADATA_KEY_MAX: usize = 64;
pub const METADATA_VALUE_MAX: usize = 1024;
pub const METADATA_TOTAL_MAX: usize = 16 * 1024;
/// Entries one `list-versions` answer may hold.
pub const VERSIONS_MAX: usize = 4096;
/// A fetcher's error message, as shown (longer ones are cut).
pub const ERROR_MESSAGE_MAX: usize = 4096;
/// One log line, as kept and shown (longer ones are cut).
pub const LOG_MESSAGE_MAX: usize = 2048;

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    #[error("`{field}` is {len} bytes long, over the cap of {cap} bytes")]
    TooLong { field: String, len: usize, cap: usize },
    #[error("`{field}` has {count} entries, over the cap of {cap}")]
    TooMany { field: &'static str, count: usize, cap: usize },
    #[error("`{field}` is {value:?}, which {rule}")]
    Invalid { field: String, value: String, rule: &'static str },
}

fn too_long(field: impl Into<String>, s: &str, cap: usize) -> Result<(), AnswerError> {
    if s.len() > cap { Err(AnswerError::TooLong { field: field.into(), len: s.len(), cap }) } else { Ok(()) }
}

fn too_many(field: &'static str, count: usize, cap: usize) -> Result<(), AnswerError> {
    if count > cap { Err(AnswerError::TooMany { field, count, cap }) } else { Ok(()) }
}

fn invalid(field: impl Into<String>, value: &str, rule: &'static str) -> AnswerError {
    // The value is shown in the error: escaped, and never more than a line.
    AnswerError::Invalid { field: field.into(), value: untrusted::cap(&untrusted::escape(value), 80), rule }
}

fn printable(field: impl Into<String>, s: &str) -> Result<(), AnswerError> {
    match s.chars().any(untrusted::is_unsafe) {
        true => Err(invalid(field, s, "contains control characters or escape sequences")),
        false => Ok(()),
    }
}

/// `describe()`: every field capped, identifiers shaped, text printable.
pub fn check_info(info: &PluginInfo) -> Result<(), AnswerError> {
    too_long("name", &info.name, NAME_MAX)?;
    if crate::manifest::validate_ref(&info.name).is_err() {
        return Err(invalid("name", &info.name, "must be 1-64 of a-z, 0-9, '_', '-'"));
    }
    too_long("version", &info.version, VERSION_MAX)?;
    if semver::Version::parse(&info.version).is_err() {
        return Err(invalid("version", &info.version, "is not a semantic version (1.2.3)"));
    }
    too_long("summary", &info.summary, SUMMARY_MAX)?;
    printable("summary", &info.summary)?;
    too_many("schemes", info.schemes.len(), SCHEMES_MAX)?;
    for (i, scheme) in info.schemes.iter().enumerate() {
        let field = format!("schemes[{i}]");
        too_long(field.as_str(), scheme, SCHEME_MAX)?;
        if !is_scheme(scheme) {
            return Err(invalid(field, scheme, "is not a lower-case URL scheme (a-z, then a-z, 0-9, '+', '-', '.')"));
        }
    }
    too_many("capabilities", info.capabilities.len(), CAPABILITIES_MAX)?;
    for (i, cap) in info.capabilities.iter().enumerate() {
        if let Capability::OutboundHost(pattern) = cap {
            let field = format!("capabilities[{i}]");
            too_long(field.as_str(), pattern, HOST_PATTERN_MAX)?;
            if !is_host_pattern(pattern) {
                return Err(invalid(
                    field,
                    pattern,
                    "is not a host pattern (example.com, *.example.com, {source-host})",
                ));
            }
        }
    }
    Ok(())
}

/// `fetch-result`: capped and shaped, the commit id lower-cased.
pub fn check_result(mut r: FetchResult) -> Result<FetchResult, AnswerError> {
    too_long("resolved-source", &r.resolved_source, RESOLVED_SOURCE_MAX)?;
    printable("resolved-source", &r.resolved_source)?;
    if let Some(c) = &r.resolved_commit {
        if !is_commit_id(c) {
            return Err(invalid("resolved-commit", c, "is not a commit id (40 or 64 hexadecimal digits)"));
        }
        r.resolved_commit = Some(c.to_ascii_lowercase());
    }
    too_many("metadata", r.metadata.len(), METADATA_ENTRIES_MAX)?;
    let mut total = 0;
    for (k, v) in &r.metadata {
        too_long("metadata key", k, METADATA_KEY_MAX)?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)) {
            return Err(invalid("metadata key", k, "must be 1-64 of a-z, 0-9, '-', '_', '.'"));
        }
        too_long(format!("metadata {k}"), v, METADATA_VALUE_MAX)?;
        printable(format!("metadata {k}"), v)?;
        total += k.len() + v.len();
    }
    if total > METADATA_TOTAL_MAX {
        return Err(AnswerError::TooLong { field: "metadata".into(), len: total, cap: METADATA_TOTAL_MAX });
    }
    Ok(r)
}

/// `list-versions`: every version semver, every source printable and capped.
pub fn check_versions(v: &[super::VersionInfo]) -> Result<(), AnswerError> {
    too_many("versions", v.len(), VERSIONS_MAX)?;
    for (i, e) in v.iter().enumerate() {
        if semver::Version::parse(&e.version).is_err() {
            return Err(invalid(format!("versions[{i}].version"), &e.version, "is not a semver version"));
        }
        too_long(format!("versions[{i}].source"), &e.source, RESOLVED_SOURCE_MAX)?;
        printable(format!("versions[{i}].source"), &e.source)?;
        if e.source.is_empty() {
            return Err(invalid(format!("versions[{i}].source"), &e.source, "is empty"));
        }
    }
    Ok(())
}

/// A fetcher's error, its message cut to [`ERROR_MESSAGE_MAX`] and escaped,
/// so it can be shown and stored as it is.
pub fn tame_error(e: FetchError) -> FetchError {
    let t = |m: String| untrusted::escape(&untrusted::cap(&m, ERROR_MESSAGE_MAX)).into_owned();
    match e {
        FetchError::InvalidSource(m) => FetchError::InvalidSource(t(m)),
        FetchError::NotFound(m) => FetchError::NotFound(t(m)),
        FetchError::Denied(m) => FetchError::Denied(t(m)),
        FetchError::Network(m) => FetchError::Network(t(m)),
        FetchError::InvalidContent(m) => FetchError::InvalidContent(t(m)),
        FetchError::Staging(m) => FetchError::Staging(t(m)),
        FetchError::Other(m) => FetchError::Other(t(m)),
    }
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

fn is_host_pattern(p: &str) -> bool {
    !p.is_empty()
        && (p == super::grants::SOURCE_HOST || p.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_*:[]".contains(&c)))
}

/// 40 (SHA-1) or 64 (SHA-256) hexadecimal digits.
pub fn is_commit_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "s3".into(),
            version: "1.0.0".into(),
            summary: "Fetches packs from S3".into(),
            schemes: vec!["s3".into()],
            capabilities: vec![Capability::OutboundHost("*.amazonaws.com".into())],
            wit_version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_plain_describe_answer_passes() {
        check_info(&info()).unwrap();
    }

    #[test]
    fn every_describe_field_is_capped_and_named() {
        let mut i = info();
        i.summary = "x".repeat(64 << 20);
        assert_eq!(
            check_info(&i).unwrap_err().to_string(),
            "`summary` is 67108864 bytes long, over the cap of 256 bytes"
        );
        let mut i = info();
        i.schemes = (0..1000).map(|n| format!("s{n}")).collect();
        assert_eq!(check_info(&i).unwrap_err().to_string(), "`schemes` has 1000 entries, over the cap of 16");
        let mut i = info();
        i.schemes = vec!["HTTPS".into()];
        assert!(check_info(&i).unwrap_err().to_string().contains("`schemes[0]` is \"HTTPS\""));
        let mut i = info();
        i.summary = "ok\x1b]0;pwned\x07".into();
        let e = check_info(&i).unwrap_err().to_string();
        assert!(e.contains("control characters") && !e.contains('\x1b'), "{e}");
        let mut i = info();
        i.version = "6.6.6\n".into();
        assert!(check_info(&i).unwrap_err().to_string().contains("`version`"));
    }

    #[test]
    fn a_resolved_commit_must_look_like_one() {
        let r = |c: &str| FetchResult { resolved_commit: Some(c.into()), ..Default::default() };
        let e = check_result(r("../../../../etc/passwd")).unwrap_err().to_string();
        assert!(e.contains("`resolved-commit`") && e.contains("40 or 64 hexadecimal digits"), "{e}");
        assert_eq!(check_result(r(&"A".repeat(40))).unwrap().resolved_commit.unwrap(), "a".repeat(40));
        check_result(r(&"0".repeat(64))).unwrap();
        check_result(r(&"0".repeat(41))).unwrap_err();
    }

    #[test]
    fn metadata_is_capped_by_entry_size_count_and_total() {
        let m = |entries: Vec<(String, String)>| FetchResult { metadata: entries, ..Default::default() };
        check_result(m(vec![("etag".into(), "\"abc\"".into())])).unwrap();
        let e = check_result(m(vec![("etag".into(), "x".repeat(100 << 20))])).unwrap_err().to_string();
        assert_eq!(e, "`metadata etag` is 104857600 bytes long, over the cap of 1024 bytes");
        let many = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_result(m(many)).unwrap_err().to_string().contains("65 entries"));
        let big = (0..20).map(|i| (format!("k{i}"), "v".repeat(1000))).collect();
        assert!(check_result(m(big)).unwrap_err().to_string().starts_with("`metadata` is"));
        assert!(check_result(m(vec![("Bad Key".into(), "v".into())])).is_err());
    }

    #[test]
    fn error_messages_are_cut_and_escaped_not_refused() {
        let e = tame_error(FetchError::Other(format!("\x1b[2J{}", "y".repeat(10_000))));
        let FetchError::Other(m) = e else { unreachable!() };
        assert!(m.starts_with("\\x1b[2J") && m.len() < ERROR_MESSAGE_MAX + 64, "{}", m.len());
    }
}
