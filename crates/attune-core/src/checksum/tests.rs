//! Tests on real files in temp dirs. Golden digests are cross-checked by the
//! Python reference implementation in `docs/checksum.md` (see `python_reference_agrees`).

use super::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;
use tempfile::TempDir;

pub(super) const DOC: &str = include_str!("../../../../docs/checksum.md");

/// Runs the Python reference in docs/checksum.md that starts at byte
/// `start` (up to its closing fence) on `dir` and returns what it prints;
/// `None` when python3 is not installed.
pub(super) fn doc_python(start: usize, dir: &Path) -> Option<String> {
    let len = DOC[start..].find("```").unwrap();
    let script_dir = TempDir::new().unwrap();
    let script = script_dir.path().join("reference.py");
    fs::write(&script, &DOC[start..start + len]).unwrap();
    let out = match Command::new("python3").arg(&script).arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("python3 not installed; skipping the reference cross-check");
            return None;
        }
        Err(e) => panic!("python3: {e}"),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
}
const NESTED_JSON: &str = include_str!("../../../../host/tests/golden/checksum/nested.json");

// Golden vectors, also listed in docs/checksum.md.
const GOLDEN_EMPTY: &str = "sha256-tree-v1:15e02ff236b5cde5565dfd90dfece45d74267334d95ffc96cceeb4c771108aa4";
const GOLDEN_ONE_FILE: &str = "sha256-tree-v1:9d06e6d47cf4dcad4642d4075409c5ee4bf644b147b2ae44cab4250adc990a8c";
const GOLDEN_NESTED: &str = "sha256-tree-v1:0a5f9da239580875d24f8dd310b3ddbf019a6e715e7e83e9040ce22c7cec2bcf";
/// `printf 'hello\n' | sha256sum`
const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

/// One node of a test tree: files carry (content, mode).
enum Node {
    Dir(&'static str),
    File(&'static str, &'static str, u32),
    Link(&'static str, &'static str),
}

fn build(root: &Path, nodes: &[Node]) {
    for n in nodes {
        match *n {
            Node::Dir(p) => fs::create_dir_all(root.join(p)).unwrap(),
            Node::File(p, content, mode) => {
                let full = root.join(p);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(&full, content).unwrap();
                fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
            }
            Node::Link(p, target) => {
                let full = root.join(p);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                symlink(target, full).unwrap();
            }
        }
    }
}

fn tmp_tree(nodes: &[Node]) -> TempDir {
    let dir = TempDir::new().unwrap();
    build(dir.path(), nodes);
    dir
}

/// The golden "nested" tree (docs/checksum.md, vector 3).
fn nested_nodes() -> Vec<Node> {
    vec![
        Node::File("pack.yaml", "name: demo\nversion: 1.0.0\n", 0o644),
        Node::File("README.md", "# demo\n", 0o644),
        Node::File("actions/run.sh", "#!/bin/sh\necho hi\n", 0o755),
        Node::Dir("empty"),
        Node::File("lib/util/data.txt", "data\n", 0o600),
        Node::File("lib-notes.txt", "", 0o644),
        Node::Link("latest", "actions/run.sh"),
    ]
}

fn digest(dir: &TempDir) -> String {
    tree(dir.path()).unwrap().digest.to_string()
}

#[test]
fn golden_empty_dir() {
    let dir = tmp_tree(&[]);
    let m = tree(dir.path()).unwrap();
    assert_eq!(m.digest.to_string(), GOLDEN_EMPTY);
    assert!(m.entries.is_empty());
}

#[test]
fn golden_one_file() {
    let dir = tmp_tree(&[Node::File("hello.txt", "hello\n", 0o644)]);
    assert_eq!(digest(&dir), GOLDEN_ONE_FILE);
}

#[test]
fn golden_nested() {
    let dir = tmp_tree(&nested_nodes());
    let m = tree(dir.path()).unwrap();
    assert_eq!(m.digest.to_string(), GOLDEN_NESTED);
    // Sorted by full-path bytes: `lib-notes.txt` ('-' = 0x2d) before `lib/` ('/' = 0x2f).
    let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "actions",
            "actions/run.sh",
            "empty",
            "latest",
            "lib",
            "lib-notes.txt",
            "lib/util",
            "lib/util/data.txt",
            "pack.yaml",
        ]
    );
    assert_eq!(m.file_count(), 5);
    assert_eq!(m.total_bytes(), 26 + 7 + 18 + 5);
}

#[test]
fn golden_manifest_json() {
    let dir = tmp_tree(&nested_nodes());
    let m = tree(dir.path()).unwrap();
    let json = serde_json::to_string_pretty(&m).unwrap();
    assert_eq!(json.trim(), NESTED_JSON.trim());
}

#[test]
fn deserialized_manifest_recomputes_same_digest() {
    let dir = tmp_tree(&nested_nodes());
    let m = tree(dir.path()).unwrap();
    let back: TreeManifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.recompute_digest().unwrap(), m.digest);
    back.validate().unwrap();

    let mut tampered = back.clone();
    tampered.entries[2].sha256 = Some(HELLO_SHA256.to_owned());
    assert!(matches!(tampered.validate(), Err(ChecksumError::ManifestMismatch { .. })));
}

#[test]
fn malformed_manifest_entries_are_rejected() {
    let dir = tmp_tree(&nested_nodes());
    let m = tree(dir.path()).unwrap();
    let mut unsorted = m.clone();
    unsorted.entries.swap(0, 1);
    let mut dotdot = m.clone();
    dotdot.entries[0].path = "../README.md".into();
    let mut no_hash = m.clone();
    no_hash.entries[0].sha256 = None;
    let mut upper = m.clone();
    upper.entries[0].sha256 = Some(upper.entries[0].sha256.take().unwrap().to_uppercase());
    for bad in [unsorted, dotdot, no_hash, upper] {
        let err = bad.recompute_digest().unwrap_err();
        assert!(matches!(err, ChecksumError::InvalidEntry { .. }), "{err}");
    }
}

#[test]
fn python_reference_agrees() {
    // The reference implementation lives in the doc, so the doc cannot drift.
    let start = DOC.find("```python\n").expect("python block in docs/checksum.md") + 10;

    let trees = [tmp_tree(&[]), tmp_tree(&[Node::File("hello.txt", "hello\n", 0o644)]), tmp_tree(&nested_nodes())];
    for (dir, golden) in trees.iter().zip([GOLDEN_EMPTY, GOLDEN_ONE_FILE, GOLDEN_NESTED]) {
        let Some(printed) = doc_python(start, dir.path()) else { return };
        assert_eq!(printed, golden);
    }
}

#[test]
fn creation_order_does_not_matter() {
    let forward = tmp_tree(&nested_nodes());
    let mut reversed_nodes = nested_nodes();
    reversed_nodes.reverse();
    let reversed = tmp_tree(&reversed_nodes);
    let (a, b) = (tree(forward.path()).unwrap(), tree(reversed.path()).unwrap());
    assert_eq!(a, b);
}

#[test]
fn exec_bit_flip_changes_digest() {
    let dir = tmp_tree(&nested_nodes());
    let before = tree(dir.path()).unwrap();
    // Any of the 0o111 bits makes a file executable.
    let yaml = dir.path().join("pack.yaml");
    fs::set_permissions(&yaml, fs::Permissions::from_mode(0o610)).unwrap();
    let after = tree(dir.path()).unwrap();
    assert_ne!(before.digest, after.digest);
    assert_eq!(
        diff(&before, &after),
        [Change::KindChanged { path: "pack.yaml".into(), from: EntryKind::File, to: EntryKind::Executable }]
    );
}

#[test]
fn symlink_retarget_changes_digest() {
    let dir = tmp_tree(&nested_nodes());
    let before = tree(dir.path()).unwrap();
    let link = dir.path().join("latest");
    fs::remove_file(&link).unwrap();
    symlink("pack.yaml", &link).unwrap();
    let after = tree(dir.path()).unwrap();
    assert_ne!(before.digest, after.digest);
    let changes = diff(&before, &after);
    assert_eq!(
        changes,
        [Change::Retargeted { path: "latest".into(), from: "actions/run.sh".into(), to: "pack.yaml".into() }]
    );
    assert_eq!(changes[0].to_string(), "retargeted: latest (actions/run.sh -> pack.yaml)");
}

#[test]
fn empty_dir_counts() {
    let without = tmp_tree(&[Node::File("a", "x", 0o644)]);
    let with = tmp_tree(&[Node::File("a", "x", 0o644), Node::Dir("e")]);
    let (a, b) = (tree(without.path()).unwrap(), tree(with.path()).unwrap());
    assert_ne!(a.digest, b.digest);
    assert_eq!(diff(&a, &b), [Change::Added { path: "e".into(), kind: EntryKind::Dir }]);
}

#[test]
fn single_file_equals_sha256sum() {
    let dir = tmp_tree(&[Node::File("hello.txt", "hello\n", 0o644)]);
    let p = dir.path().join("hello.txt");
    let sum = file(&p).unwrap();
    assert_eq!(sum.to_string(), format!("sha256:{HELLO_SHA256}"));
    assert_eq!(sum.kind(), ChecksumKind::Sha256);

    // And against the real tool, on a file larger than one read buffer.
    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..(BUF_SIZE * 3 + 17) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&big, &data).unwrap();
    let out = Command::new("sha256sum").arg(&big).output().unwrap();
    let expected = String::from_utf8(out.stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap();
    assert_eq!(file(&big).unwrap().to_hex(), expected);
}

#[test]
fn path_dispatches_on_file_type() {
    let dir = tmp_tree(&[Node::File("hello.txt", "hello\n", 0o644)]);
    match path(&dir.path().join("hello.txt")).unwrap() {
        Computed::File { checksum, size } => {
            assert_eq!(checksum.to_hex(), HELLO_SHA256);
            assert_eq!(size, 6);
        }
        other => panic!("expected a file checksum, got {other:?}"),
    }
    let computed = path(dir.path()).unwrap();
    assert!(matches!(computed, Computed::Tree(_)));
    assert_eq!(computed.checksum().to_string(), GOLDEN_ONE_FILE);
    assert!(matches!(tree(&dir.path().join("hello.txt")), Err(ChecksumError::NotADirectory { .. })));
}

#[test]
fn diff_names_each_kind_of_change() {
    let dir = tmp_tree(&nested_nodes());
    let before = tree(dir.path()).unwrap();
    let root = dir.path();
    fs::write(root.join("pack.yaml"), "name: demo\nversion: 2.0.0\n").unwrap();
    fs::remove_file(root.join("README.md")).unwrap();
    fs::write(root.join("NEW"), "new").unwrap();
    fs::remove_dir(root.join("empty")).unwrap();
    symlink("pack.yaml", root.join("empty")).unwrap();
    fs::remove_file(root.join("latest")).unwrap();
    symlink("lib", root.join("latest")).unwrap();
    let after = tree(root).unwrap();

    let shown: Vec<String> = diff(&before, &after).iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        [
            "added: NEW (file)",
            "removed: README.md (file)",
            "kind changed: empty (dir -> symlink)",
            "retargeted: latest (actions/run.sh -> lib)",
            "modified: pack.yaml",
        ]
    );
    assert!(diff(&after, &after).is_empty());
}

#[test]
fn exec_and_content_change_reports_both() {
    let dir = tmp_tree(&[Node::File("run", "v1", 0o644)]);
    let before = tree(dir.path()).unwrap();
    fs::write(dir.path().join("run"), "v2").unwrap();
    fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    let after = tree(dir.path()).unwrap();
    let shown: Vec<String> = diff(&before, &after).iter().map(|c| c.to_string()).collect();
    assert_eq!(shown, ["kind changed: run (file -> executable)", "modified: run"]);
}

#[test]
fn fifo_is_rejected_with_its_path() {
    let dir = tmp_tree(&[Node::File("ok", "x", 0o644)]);
    let fifo = dir.path().join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let err = tree(dir.path()).unwrap_err();
    assert!(matches!(err, ChecksumError::UnsupportedFileType { kind: "FIFO", .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: unsupported file type: FIFO (packs may contain only files, directories and symlinks)",
            fifo.display()
        )
    );
    // Checksumming the FIFO itself must fail too, not block opening it.
    assert!(matches!(path(&fifo), Err(ChecksumError::UnsupportedFileType { .. })));
}

#[test]
fn socket_is_rejected() {
    let dir = tmp_tree(&[]);
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let err = tree(dir.path()).unwrap_err();
    assert!(matches!(err, ChecksumError::UnsupportedFileType { kind: "socket", .. }));
}

#[test]
fn non_utf8_name_is_rejected_with_its_path() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tmp_tree(&[Node::Dir("sub")]);
    let bad = dir.path().join("sub").join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    if fs::write(&bad, "x").is_err() {
        eprintln!("filesystem refuses non-UTF-8 names; skipping");
        return;
    }
    let err = tree(dir.path()).unwrap_err();
    assert!(matches!(err, ChecksumError::NonUtf8Path { .. }));
    assert!(err.to_string().starts_with(&bad.display().to_string()));
}

#[test]
fn symlinks_are_recorded_not_followed_except_the_root() {
    let dir = tmp_tree(&[
        Node::File("real/inner.txt", "in", 0o644),
        Node::Link("real/alias", "."),
        Node::Link("real/dangling", "/nonexistent/target"),
    ]);
    let real = dir.path().join("real");
    let m = tree(&real).unwrap();
    let kinds: Vec<(&str, EntryKind)> = m.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        [("alias", EntryKind::Symlink), ("dangling", EntryKind::Symlink), ("inner.txt", EntryKind::File),]
    );
    let root_link = dir.path().join("root-link");
    symlink(&real, &root_link).unwrap();
    assert_eq!(tree(&root_link).unwrap(), m);
}

#[test]
fn progress_reports_every_byte() {
    let dir = tmp_tree(&nested_nodes());
    let big: Vec<u8> = vec![7; BUF_SIZE * 2 + 1];
    fs::write(dir.path().join("big"), &big).unwrap();
    let seen = std::sync::atomic::AtomicU64::new(0);
    let m = tree_with_progress(dir.path(), &|n| {
        seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen.into_inner(), m.total_bytes());
    assert_eq!(m.total_bytes(), 56 + big.len() as u64);
}

#[test]
fn checksum_parses_and_prints() {
    let tree_sum: Checksum = GOLDEN_NESTED.parse().unwrap();
    assert_eq!(tree_sum.to_string(), GOLDEN_NESTED);
    assert_eq!(tree_sum.algorithm(), Some(Algorithm::TreeV1));
    let file_sum: Checksum = format!("sha256:{HELLO_SHA256}").parse().unwrap();
    assert_eq!(file_sum.algorithm(), None);
    // Same bytes, different kind: never equal.
    let same_bytes: Checksum = format!("sha256-tree-v1:{HELLO_SHA256}").parse().unwrap();
    assert_ne!(file_sum, same_bytes);
    // Uppercase input is accepted; output is always lowercase.
    let upper: Checksum = format!("sha256:{}", HELLO_SHA256.to_uppercase()).parse().unwrap();
    assert_eq!(upper, file_sum);
    assert_eq!(serde_json::to_string(&file_sum).unwrap(), format!("\"sha256:{HELLO_SHA256}\""));

    for (input, reason) in [
        (HELLO_SHA256.to_string(), "expected `<algorithm>:<hex>`"),
        (format!("md5:{HELLO_SHA256}"), "unknown algorithm `md5`"),
        ("sha256:abcd".to_string(), "digest must be 64 hex digits, got 4"),
        (format!("sha256:{}", "g".repeat(64)), "digest is not hex"),
    ] {
        let err = input.parse::<Checksum>().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ChecksumError::InvalidChecksum { .. }));
        assert!(msg.starts_with(&format!("{input}: invalid checksum: ")), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }
    assert_eq!("sha256-tree-v1".parse::<Algorithm>().unwrap(), Algorithm::TreeV1);
    assert!("attune-pack-file-v1".parse::<Algorithm>().is_err());
}

/// Properties over generated entry lists (proptest): the digest is a function
/// of the set of entries, not of the order they were found in.
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One entry at `path`, of a kind chosen by `k`, with content chosen by `seed`.
    fn entry(path: String, k: u8, seed: u8) -> Entry {
        let hex = hex::encode([seed; 32]);
        match k % 4 {
            0 => Entry { path, kind: EntryKind::Dir, size: 0, sha256: None, target: None },
            1 => Entry { path, kind: EntryKind::File, size: seed as u64, sha256: Some(hex), target: None },
            2 => Entry { path, kind: EntryKind::Executable, size: seed as u64, sha256: Some(hex), target: None },
            _ => Entry { path, kind: EntryKind::Symlink, size: 0, sha256: None, target: Some(format!("t{seed}")) },
        }
    }

    /// Unique valid paths (1–3 components of a small alphabet, so prefixes and
    /// siblings are common), each with a kind and content.
    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        let path = prop::collection::vec("[a-c._-]{1,3}", 1..4)
            .prop_filter("no . or .. components", |c| c.iter().all(|s| s != "." && s != ".."))
            .prop_map(|c| c.join("/"));
        prop::collection::btree_map(path, (any::<u8>(), any::<u8>()), 0..24)
            .prop_map(|m| m.into_iter().map(|(p, (k, s))| entry(p, k, s)).collect())
    }

    proptest! {
        #[test]
        fn permutation_of_entries_gives_same_digest(
            (sorted, shuffled) in entries().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle()))
        ) {
            let a = TreeManifest::from_entries(Algorithm::TreeV1, sorted).unwrap();
            let b = TreeManifest::from_entries(Algorithm::TreeV1, shuffled).unwrap();
            prop_assert_eq!(a.digest, b.digest);
            prop_assert_eq!(&a.entries, &b.entries);
            prop_assert!(b.validate().is_ok());
        }

        #[test]
        fn dropping_or_changing_an_entry_changes_the_digest(e in entries(), i in any::<prop::sample::Index>()) {
            prop_assume!(!e.is_empty());
            let whole = TreeManifest::from_entries(Algorithm::TreeV1, e.clone()).unwrap();
            let i = i.index(e.len());
            let mut fewer = e.clone();
            fewer.remove(i);
            let fewer = TreeManifest::from_entries(Algorithm::TreeV1, fewer).unwrap();
            prop_assert_ne!(whole.digest, fewer.digest);
            let mut renamed = e;
            renamed[i].path.push('z');
            if let Ok(renamed) = TreeManifest::from_entries(Algorithm::TreeV1, renamed) {
                prop_assert_ne!(whole.digest, renamed.digest);
            }
        }
    }
}

#[test]
fn a_stored_checksum_is_rechecked_with_its_own_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pack.yaml"), "name: a\n").unwrap();
    let now = tree(dir.path()).unwrap();
    let stored = now.digest.to_string();
    assert_eq!(Algorithm::of_stored(&stored), now.algorithm);
    assert_eq!(tree_as(dir.path(), Algorithm::of_stored(&stored)).unwrap(), now);
    // Text that names no tree algorithm (a file's sha256) falls back to the current one.
    assert_eq!(Algorithm::of_stored("sha256:00"), Algorithm::CURRENT);
}
