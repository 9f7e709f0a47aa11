//! Source strings as the user typed them: shown without their secrets, and
//! told apart (an http(s) URL, a git URL), each rule in one place.

/// The kind of a source, recorded with each installation (the
/// `source_type` column, lockfiles, reports): one enum from the fetch that
/// decides it to the record that keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A folder on this machine.
    Local,
    /// A tar, tar.gz, tar.zst, tar.xz or zip file on this machine.
    Archive,
    /// An archive downloaded over http(s).
    Http,
    /// One commit of a git repository, over smart HTTP.
    Git,
    /// A fetcher component named on the command line (`--plugin-file`) or added.
    Plugin,
}

impl SourceKind {
    /// Archives are often made from a folder, so the pack may sit inside one
    /// top-level folder (`name-1.2.3/`) instead of at the root.
    pub fn allows_wrapper_folder(&self) -> bool {
        matches!(self, SourceKind::Archive | SourceKind::Http)
    }

    /// Whether the source is a single artifact with its own SHA-256
    /// (`--checksum sha256:…`).
    pub fn is_artifact(&self) -> bool {
        matches!(self, SourceKind::Archive | SourceKind::Http)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::Local => "local",
            SourceKind::Archive => "archive",
            SourceKind::Http => "http",
            SourceKind::Git => "git",
            SourceKind::Plugin => "plugin",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<SourceKind, String> {
        [SourceKind::Local, SourceKind::Archive, SourceKind::Http, SourceKind::Git, SourceKind::Plugin]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a source kind (local, archive, http, git, plugin)"))
    }
}

/// Removes credentials from every URL in `s` (a URL, or a message that
/// holds some): in each authority (what follows `://` up to `/`, `?`, `#`
/// or a space) everything up to its **last** `@` goes, so a password
/// holding `@` does not leak its tail; as a URL parser does, extra slashes
/// before an authority are skipped, and the cut repeats until what is left
/// holds no user info. The one redaction function: every source, error and
/// record that may show a URL goes through it.
pub fn redact_url(s: &str) -> String {
    let authority_end = |a: &str| {
        a.find(|c: char| {
            matches!(c, '/' | '?' | '#' | '\\') || c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')')
        })
        .unwrap_or(a.len())
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let mut after = &rest[i + 3..];
        let end = loop {
            let slashes = after.len() - after.trim_start_matches(['/', '\\']).len();
            let end = slashes + authority_end(&after[slashes..]);
            match after[slashes..end].rfind('@') {
                Some(at) => after = &after[slashes + at + 1..],
                None => break end,
            }
        };
        out.push_str(&after[..end]);
        rest = &after[end..];
    }
    out.push_str(rest);
    // A special scheme needs no `//` (`http:u:p@host`): whatever a URL parser
    // still reads user info in is cleaned by that parser.
    if let Ok(mut u) = url::Url::parse(&out)
        && (!u.username().is_empty() || u.password().is_some())
    {
        let (_, _) = (u.set_username(""), u.set_password(None));
        if u.username().is_empty() && u.password().is_none() {
            return u.to_string();
        }
        return "(a URL with credentials, not shown)".to_string();
    }
    out
}

/// Whether `s` is an `http://` or `https://` URL (any case).
pub fn is_http_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// A `git+http(s)://` URL without its `git+` (what git itself is given), or
/// `None` when `s` has no such prefix.
pub fn strip_git_prefix(s: &str) -> Option<&str> {
    let l = s.get(..12).unwrap_or(s).to_ascii_lowercase();
    (l.starts_with("git+https://") || l.starts_with("git+http://")).then(|| &s[4..])
}

/// A git repository URL as the install pipeline takes it: with `git+` (added
/// once, whatever the case of one already there).
pub fn git_source(url: &str) -> String {
    match strip_git_prefix(url) {
        Some(_) => url.to_string(),
        None => format!("git+{url}"),
    }
}

/// Whether `s` names a network source of a built-in fetcher (http(s), or
/// git over http(s)), as opposed to a path or a plugin's scheme.
pub fn is_network_source(s: &str) -> bool {
    is_http_url(s) || strip_git_prefix(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_and_git_prefixes_are_told_apart() {
        assert!(is_http_url("HTTPS://h/x") && is_http_url("http://h") && !is_http_url("git+https://h"));
        assert!(!is_http_url("/srv/http://x") && !is_http_url("htt"));
        assert_eq!(strip_git_prefix("GIT+https://h/r.git"), Some("https://h/r.git"));
        assert_eq!(strip_git_prefix("https://h/r.git"), None);
        assert_eq!(git_source("https://h/r"), "git+https://h/r");
        assert_eq!(git_source("GIT+https://h/r"), "GIT+https://h/r");
        assert!(is_network_source("git+http://h/r") && is_network_source("https://h") && !is_network_source("oci://h"));
    }

    #[test]
    fn credentials_go_up_to_the_last_at_of_the_authority() {
        assert_eq!(redact_url("https://u:p@ss@h.example/x@y.tgz"), "https://h.example/x@y.tgz");
        assert_eq!(redact_url("git+https://tok@h/r.git"), "git+https://h/r.git");
        assert_eq!(redact_url("https://h/p?q=a@b#c@d"), "https://h/p?q=a@b#c@d");
        assert_eq!(redact_url("/srv/packs/a@b"), "/srv/packs/a@b");
        assert_eq!(redact_url("unparseable ht!tp://u:pw@h x"), "unparseable ht!tp://h x");
        assert_eq!(
            redact_url("fetching \"https://a:b@one/x\" then https://c:d@e@two:8443/y failed"),
            "fetching \"https://one/x\" then https://two:8443/y failed"
        );
    }

    /// Found by the `source` fuzz target: for a string that is not a URL the
    /// credentials were cut at the first `@`, so a password holding an `@`
    /// was shown in part (`https://u:p@ss@host:bad/` became `https://ss@host:bad/`).
    #[test]
    fn regression_redact_unparseable_url_with_at_in_password() {
        assert_eq!(redact_url("https://u:p@ss@host:bad/x@y"), "https://host:bad/x@y");
        assert_eq!(redact_url("https://user:se3\0@exampl\0@example.com/"), "https://example.com/");
        assert_eq!(redact_url("https://user:secret@example.com/p"), "https://example.com/p");
        assert_eq!(redact_url("weird://host:bad/a@b"), "weird://host:bad/a@b");
    }

    /// Found by the `source` fuzz target after the fix above: what was left
    /// after cutting the user info could itself parse as a URL with
    /// credentials (`…@//user:pw@e:`), and extra slashes hid an authority.
    #[test]
    fn regression_redact_leaves_no_url_with_credentials() {
        let shown = redact_url("https://user:e3\0%2Eamplt@e:.!@//user:e3\0%2Eamplt@e:");
        let u = url::Url::parse(&shown).unwrap();
        assert!(u.username().is_empty() && u.password().is_none(), "{shown}");
        assert_eq!(redact_url("https:////u:p@host:bad/x"), "https://host:bad/x");
    }

    /// Found by the `source` fuzz target on the merged function: a special
    /// scheme needs no `//`, so `http:.+@8` has user info with no `://` to scan for.
    #[test]
    fn regression_redact_special_scheme_without_slashes() {
        let shown = redact_url("http:.+@8\0\0\0");
        let u = url::Url::parse(&shown).unwrap();
        assert!(u.username().is_empty() && u.password().is_none(), "{shown}");
        assert_eq!(redact_url("https:u:p@host/x"), "https://host/x");
    }

    /// Found by the `source` fuzz target after the fix above: what was left
    /// after one cut could hold another authority with user info.
    #[test]
    fn regression_redact_repeats_until_no_user_info_is_left() {
        assert_eq!(redact_url("https://[::1]:80https:@/[::1]https:@/["), "https:///[");
        assert_eq!(redact_url("https://a:b@//c:d@//e:f@host:bad"), "https://host:bad");
    }
}
