//! Unit tests: flags, and that attune's reader takes back what is written.
//! The CLI round trip (merge, errors, installs) is in host/tests/publish.rs.

use std::path::Path;

use super::*;

fn write_pack(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("pack.yaml"), yaml).unwrap();
}

#[test]
fn exactly_one_source() {
    let git = |u, r| source_from_flags(u, r, None, None, None);
    assert!(matches!(git(Some("https://g/r.git"), Some("v1")), Ok(PublishedSource::Git { .. })));
    for bad in
        [git(None, Some("v1")), git(Some("https://g/r.git"), None), source_from_flags(None, None, None, None, None)]
    {
        assert!(matches!(bad, Err(PublishError::Sources { .. })), "{bad:?}");
    }
    let both = source_from_flags(Some("u"), Some("r"), Some("a"), Some("sha256:x"), None);
    assert!(both.unwrap_err().to_string().contains("both a git and an archive"));
    let two_sums = source_from_flags(None, None, Some("a"), Some("sha256:x"), Some(Path::new("f")));
    assert!(two_sums.unwrap_err().to_string().contains("not both"));
}

#[test]
fn what_is_written_reads_back_with_ranges_and_the_tree_checksum() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("p");
    write_pack(
        &dir,
        "ref: p\nversion: 1.0.0\ndependencies:\n  python_version: \">=3.9\"\n  packs: [\"core@^1.2\", \"base@2.0.0\", \"any\"]\n",
    );
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let built =
        entry(&dir, &PublishedSource::Git { url: "https://g/p.git".into(), reference: "v1.0.0".into() }).unwrap();
    assert_eq!(built.checksum.kind(), ChecksumKind::AttunePackFileV1);

    // The tree checksum is the folder's without .git.
    std::fs::remove_dir_all(dir.join(".git")).unwrap();
    assert_eq!(built.tree_checksum, Some(checksum::tree(&dir).unwrap().digest));

    let index = Json::Object(vec![
        ("registry_name".into(), Json::String("t".into())),
        ("packs".into(), Json::Array(vec![built.entry.clone()])),
    ]);
    let read = crate::parse(index.to_pretty().as_bytes(), "test").unwrap();
    assert!(read.skipped.is_empty(), "{:?}", read.skipped);
    let v = &read.packs["p"][0];
    assert_eq!(v.tree_checksum, built.tree_checksum);
    assert_eq!(v.sources[0].checksum, Some(built.checksum));
    let deps: Vec<String> = v.dependencies.iter().map(|d| format!("{} {}", d.pack_ref, d.req)).collect();
    assert_eq!(deps, ["any *", "base =2.0.0", "core ^1.2"]);
    assert_eq!(v.runtime.python.as_deref(), Some(">=3.9"));
    assert_eq!(
        built.entry.get("dependencies").unwrap().get("packs").unwrap(),
        &Json::from_serialize(&["any", "base@2.0.0", "core@^1.2"]).unwrap()
    );
}

#[test]
fn a_folder_with_a_symlink_has_no_attune_git_checksum() {
    let d = tempfile::tempdir().unwrap();
    write_pack(d.path(), "name: p\nversion: 1.0.0\n");
    std::os::unix::fs::symlink("pack.yaml", d.path().join("link")).unwrap();
    let err =
        entry(d.path(), &PublishedSource::Git { url: "https://g/p.git".into(), reference: "v1".into() }).unwrap_err();
    assert!(matches!(err, PublishError::Checksum { .. }), "{err}");
    // An archive entry needs no directory checksum.
    let sum = format!("sha256:{}", "a".repeat(64));
    let ok = entry(
        d.path(),
        &PublishedSource::Archive { url: "https://a/p.tgz".into(), checksum: ArchiveChecksum::Given(sum) },
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn meta_fields_attune_types_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let sum = format!("sha256:{}", "a".repeat(64));
    let src = PublishedSource::Archive { url: "https://a/p.tgz".into(), checksum: ArchiveChecksum::Given(sum) };
    for (meta, field) in [("stars: many", "meta.stars"), ("tested_attune_versions: 1.0", "meta.tested_attune_versions")]
    {
        write_pack(d.path(), &format!("name: p\nversion: 1.0.0\nmeta:\n  {meta}\n"));
        let e = entry(d.path(), &src).unwrap_err();
        assert!(matches!(&e, PublishError::Field { field: f, .. } if f == field), "{e}");
    }
    write_pack(d.path(), "name: p\nversion: 1.0.0\nmeta:\n  stars: 3\n  tested_attune_versions: [\"0.3\"]\n");
    assert!(entry(d.path(), &src).is_ok());
}
