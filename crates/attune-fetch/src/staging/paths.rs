//! The path rules every staged path must pass.
//!
//! Paths come from a fetcher, so from an archive, a server or a hostile plugin:
//! each is checked as plain text before it touches the filesystem, and the
//! checks are shared with everything that needs the same rules.

use thiserror::Error;

pub const MAX_COMPONENT_BYTES: usize = 255;
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("{path:?}: empty path")]
    Empty { path: String },
    #[error("{path:?}: absolute paths are not allowed; entries must be relative to the pack root")]
    Absolute { path: String },
    #[error("{path:?}: `..` components are not allowed")]
    ParentDir { path: String },
    #[error("{path:?}: empty or `.` components are not allowed (write the normalized path)")]
    NotNormalized { path: String },
    #[error("{path:?}: backslashes are not allowed; use `/` as the separator")]
    Backslash { path: String },
    #[error("{path:?}: drive prefixes are not allowed")]
    Drive { path: String },
    #[error("{path:?}: NUL and control characters are not allowed")]
    ControlChar { path: String },
    #[error("{path:?}: component longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong { path: String },
    #[error("<{len} bytes>: longer than the {MAX_PATH_BYTES} bytes a path may have")]
    TooLong { len: usize },
}

/// Checks a relative, `/`-separated pack path and returns its components.
pub fn check(path: &str) -> Result<Vec<&str>, PathError> {
    let p = || path.to_string();
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong { len: path.len() });
    }
    if path.is_empty() {
        return Err(PathError::Empty { path: p() });
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(PathError::ControlChar { path: p() });
    }
    if path.contains('\\') {
        return Err(PathError::Backslash { path: p() });
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute { path: p() });
    }
    if has_drive_prefix(path) {
        return Err(PathError::Drive { path: p() });
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            ".." => return Err(PathError::ParentDir { path: p() }),
            "" | "." => return Err(PathError::NotNormalized { path: p() }),
            c if c.len() > MAX_COMPONENT_BYTES => return Err(PathError::ComponentTooLong { path: p() }),
            _ => {}
        }
    }
    Ok(parts)
}

/// Where a symlink at `link` pointing to `target` lands, as pack-relative
/// components, or `None` when it leaves the pack. Purely lexical: the target
/// may not exist yet, and the host never follows links while staging.
pub fn resolve_link_target(link: &[&str], target: &str) -> Option<Vec<String>> {
    if target.is_empty()
        || target.starts_with('/')
        || target.contains('\\')
        || target.chars().any(|c| c.is_control())
        || has_drive_prefix(target)
    {
        return None;
    }
    let mut at: Vec<String> = link[..link.len().saturating_sub(1)].iter().map(|s| s.to_string()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            p => at.push(p.to_string()),
        }
    }
    // Where it lands must be a path `check` allows, so no drive prefix even
    // when the target only reaches one through `.` (`./C:x`).
    if at.first().is_some_and(|first| has_drive_prefix(first)) {
        return None;
    }
    Some(at)
}

/// `C:…`: a drive on Windows.
fn has_drive_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// The key two paths collide under on a case-insensitive filesystem.
pub fn case_key(path: &str) -> String {
    path.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(check("actions/run.sh").unwrap(), vec!["actions", "run.sh"]);
        assert!(check("pack.yaml").is_ok());
        assert!(check(".hidden/..dots/a..b").is_ok());
        assert!(check("ünïcode/файл").is_ok());
    }

    type Case = (&'static str, fn(&PathError) -> bool);

    #[test]
    fn rejects_hostile_paths() {
        let cases: &[Case] = &[
            ("", |e| matches!(e, PathError::Empty { .. })),
            ("../x", |e| matches!(e, PathError::ParentDir { .. })),
            ("a/../../x", |e| matches!(e, PathError::ParentDir { .. })),
            ("a/..", |e| matches!(e, PathError::ParentDir { .. })),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute { .. })),
            ("a\\b", |e| matches!(e, PathError::Backslash { .. })),
            ("C:/x", |e| matches!(e, PathError::Drive { .. })),
            ("c:x", |e| matches!(e, PathError::Drive { .. })),
            ("a\0b", |e| matches!(e, PathError::ControlChar { .. })),
            ("a\nb", |e| matches!(e, PathError::ControlChar { .. })),
            ("a\x7fb", |e| matches!(e, PathError::ControlChar { .. })),
            ("a//b", |e| matches!(e, PathError::NotNormalized { .. })),
            ("a/./b", |e| matches!(e, PathError::NotNormalized { .. })),
            ("a/", |e| matches!(e, PathError::NotNormalized { .. })),
            (".", |e| matches!(e, PathError::NotNormalized { .. })),
        ];
        for (path, ok) in cases {
            let err = check(path).expect_err(path);
            assert!(ok(&err), "{path:?} gave {err:?}");
        }
        let long = "a".repeat(256);
        assert!(matches!(check(&long), Err(PathError::ComponentTooLong { .. })));
        assert!(check(&"a".repeat(255)).is_ok());
        let deep = vec!["abcd"; 1000].join("/");
        assert!(matches!(check(&deep), Err(PathError::TooLong { .. })));
    }

    #[test]
    fn link_targets_must_stay_inside() {
        let link = ["a", "b", "link"];
        assert_eq!(resolve_link_target(&link, "../c").unwrap(), vec!["a", "c"]);
        assert_eq!(resolve_link_target(&link, "../../c").unwrap(), vec!["c"]);
        assert_eq!(resolve_link_target(&link, "../.."), Some(vec![]));
        assert!(resolve_link_target(&link, "../../../c").is_none());
        assert!(resolve_link_target(&link, "/etc/passwd").is_none());
        assert!(resolve_link_target(&["top"], "..").is_none());
        assert!(resolve_link_target(&["top"], "").is_none());
        assert!(resolve_link_target(&["top"], "x/../../y").is_none());
        assert_eq!(resolve_link_target(&["top"], "x/../y").unwrap(), vec!["y"]);
    }

    /// Found by the `paths` fuzz target: `./C:.` was refused only when written
    /// `C:.`, so resolving a resolved target again gave a different answer, and
    /// a link could point at a path no pack may hold.
    #[test]
    fn regression_link_target_reaching_a_drive_prefix() {
        assert_eq!(resolve_link_target(&["a."], ".//C:./."), None);
        assert_eq!(resolve_link_target(&["a."], "C:."), None);
        assert_eq!(resolve_link_target(&["d", "l"], "../x/C:y").unwrap(), vec!["x", "C:y"]);
    }

    /// Properties (proptest) over paths and link targets built from names
    /// that make trouble: `..`, `.`, empty, case twins.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn component() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just(String::new()),
                Just("a".to_string()),
                Just("A".to_string()),
                "[a-z0-9._-]{1,4}",
            ]
        }

        /// A `/`-joined sequence of troublesome components, sometimes absolute.
        fn text() -> impl Strategy<Value = String> {
            (any::<bool>(), prop::collection::vec(component(), 1..8))
                .prop_map(|(abs, c)| format!("{}{}", if abs { "/" } else { "" }, c.join("/")))
        }

        /// Where a walk from the link's folder along `target` ends, or `None`
        /// once it climbs above the pack root: a model that knows nothing of
        /// the host's rules but depth.
        fn model_inside(link: &[&str], target: &str) -> bool {
            let mut depth = link.len() as i64 - 1;
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 {
                    return false;
                }
            }
            true
        }

        proptest! {
            #[test]
            fn accepted_paths_are_normalized_and_inside(path in text()) {
                if let Ok(parts) = check(&path) {
                    prop_assert_eq!(parts.join("/"), path.clone());
                    prop_assert!(parts.iter().all(|p| !matches!(*p, "" | "." | "..")), "{:?}", path);
                    // Checking the accepted path again changes nothing.
                    let joined = parts.join("/");
                    prop_assert_eq!(check(&joined), Ok(parts));
                }
            }

            #[test]
            fn normalizing_a_link_target_twice_is_once(link in text(), target in text()) {
                let Ok(parts) = check(&link) else { return Ok(()) };
                let Some(once) = resolve_link_target(&parts, &target) else { return Ok(()) };
                prop_assume!(!once.is_empty());
                let twice = resolve_link_target(&["link"], &once.join("/"));
                prop_assert_eq!(twice, Some(once));
            }

            #[test]
            fn accepted_link_target_stays_inside_the_pack(link in text(), target in text()) {
                let Ok(parts) = check(&link) else { return Ok(()) };
                match resolve_link_target(&parts, &target) {
                    Some(at) => {
                        prop_assert!(at.iter().all(|p| !matches!(p.as_str(), "" | "." | "..")), "{:?}", at);
                        prop_assert!(model_inside(&parts, &target), "{link:?} -> {target:?} accepted but leaves the pack");
                    }
                    None => prop_assert!(
                        target.is_empty() || target.starts_with('/') || !model_inside(&parts, &target),
                        "{link:?} -> {target:?} refused but stays inside"
                    ),
                }
            }
        }
    }
}
