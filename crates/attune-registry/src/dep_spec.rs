//! One pack dependency as `pack.yaml` or an index writes it, in either
//! dialect:
//!
//! * Attune: `ref@1.2.3` (exactly that version), `ref@^1.2` (a semver range)
//!   or `ref` (any version);
//! * StackStorm: `ref`, `ref=1.2.3` (exactly that version), or a repository
//!   URL with an optional `=version` (`https://github.com/org/stackstorm-x.git=v1.0.0`).
//!
//! A URL names a repository, not a pack ref: the ref is only known once the
//! repository's `pack.yaml` is read, so resolution cannot use it (see
//! `docs/registry.md`, "Dependencies").

use semver::{Version, VersionReq};

use super::is_ref;

/// What a dependency string asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// A pack ref and the versions it accepts.
    Pack { pack_ref: String, req: VersionReq },
    /// A repository URL (StackStorm), with the version or git ref after `=`.
    Url { url: String, version: Option<String> },
}

/// Reads one dependency string; the error says why it cannot be read.
pub fn parse(text: &str) -> Result<Declared, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty dependency".into());
    }
    if looks_like_url(t) {
        // `=` after the last `/` separates the version; one inside the path is part of it.
        let tail = t.rfind('/').map_or(0, |i| i + 1);
        return Ok(match t[tail..].rfind('=') {
            Some(i) => Declared::Url { url: t[..tail + i].to_owned(), version: Some(t[tail + i + 1..].to_owned()) },
            None => Declared::Url { url: t.to_owned(), version: None },
        });
    }
    let (r, req) = if let Some((r, v)) = t.split_once('@') {
        (r, requirement(v, true)?)
    } else if let Some((r, v)) = t.split_once('=') {
        (r, requirement(v, false)?)
    } else {
        (t, VersionReq::STAR)
    };
    if !is_ref(r) {
        return Err(format!("{r:?} is not a pack ref (1-64 of a-z, 0-9, _ and -)"));
    }
    Ok(Declared::Pack { pack_ref: r.to_owned(), req })
}

/// The versions a URL dependency's `=version` accepts: exactly that version
/// (`1.2.3` or `v1.2.3`), or any when it names a branch or commit (an index
/// lists versions, not commits) or nothing.
pub fn url_version_req(version: Option<&str>) -> VersionReq {
    version.and_then(|v| requirement(v, false).ok()).unwrap_or(VersionReq::STAR)
}

/// A repository URL reduced to what identifies the repository, so that
/// `https://github.com/Org/x.git`, `git+https://github.com/org/x/` and
/// `git@github.com:org/x.git` compare equal: no scheme, user, `.git` or
/// trailing `/`, lowercase.
pub fn repo_key(url: &str) -> String {
    let u = url.trim().strip_prefix("git+").unwrap_or(url.trim());
    let rest = match u.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        // scp-style `git@host:org/repo`
        None => u.replacen(':', "/", 1),
    };
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            format!("{}/{path}", authority.rsplit_once('@').map_or(authority, |(_, host)| host))
        }
        None => rest,
    };
    let rest = rest.trim_end_matches('/');
    rest.strip_suffix(".git").unwrap_or(rest).to_lowercase()
}

/// A StackStorm dependency names a repository when it has a scheme, a path
/// or an scp-style `git@host:`.
fn looks_like_url(t: &str) -> bool {
    t.contains("://") || t.contains('/') || t.starts_with("git@")
}

/// `1.2.3` (or StackStorm's `v1.2.3`) is exactly that version; after `@`
/// anything else is a semver range; after `=` a partial version (`1.2`)
/// means that release line.
fn requirement(v: &str, range_allowed: bool) -> Result<VersionReq, String> {
    let v = v.trim();
    let bare = v.strip_prefix('v').unwrap_or(v);
    if let Ok(exact) = Version::parse(bare) {
        return Ok(VersionReq::parse(&format!("={exact}")).expect("an exact version is a valid range"));
    }
    if range_allowed {
        return VersionReq::parse(v).map_err(|e| format!("{v:?} is neither a version nor a range ({e})"));
    }
    VersionReq::parse(&format!("={bare}"))
        .map_err(|_| format!("{v:?} is not a version (a branch or commit cannot be resolved from an index)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(text: &str) -> (String, String) {
        match parse(text).unwrap() {
            Declared::Pack { pack_ref, req } => (pack_ref, req.to_string()),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn both_dialects() {
        assert_eq!(pack("core"), ("core".into(), "*".into()));
        assert_eq!(pack("core@1.2.3"), ("core".into(), "=1.2.3".into()));
        assert_eq!(pack("core@^1.2"), ("core".into(), "^1.2".into()));
        assert_eq!(pack("core=1.2.3"), ("core".into(), "=1.2.3".into()));
        assert_eq!(pack("core=v1.2.3"), ("core".into(), "=1.2.3".into()));
        assert_eq!(pack("core=1.2"), ("core".into(), "=1.2".into()));
        assert!(parse("core=master").unwrap_err().contains("branch or commit"));
        assert!(parse("Core").unwrap_err().contains("not a pack ref"));
        assert!(parse("core@^x").is_err());
    }

    #[test]
    fn repository_keys() {
        let k = repo_key("https://github.com/StackStorm-Exchange/stackstorm-aws");
        assert_eq!(k, "github.com/stackstorm-exchange/stackstorm-aws");
        for same in [
            "https://github.com/stackstorm-exchange/stackstorm-aws.git",
            "git+https://github.com/StackStorm-Exchange/stackstorm-aws/",
            "git@github.com:StackStorm-Exchange/stackstorm-aws.git",
            "http://user@github.com/StackStorm-Exchange/stackstorm-aws",
        ] {
            assert_eq!(repo_key(same), k, "{same}");
        }
        assert_eq!(url_version_req(Some("v1.0.0")).to_string(), "=1.0.0");
        assert_eq!(url_version_req(Some("master")), VersionReq::STAR);
        assert_eq!(url_version_req(None), VersionReq::STAR);
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("https://github.com/org/stackstorm-x.git=v1.0.0").unwrap(),
            Declared::Url { url: "https://github.com/org/stackstorm-x.git".into(), version: Some("v1.0.0".into()) }
        );
        assert_eq!(
            parse("git@github.com:org/x.git").unwrap(),
            Declared::Url { url: "git@github.com:org/x.git".into(), version: None }
        );
    }
}
