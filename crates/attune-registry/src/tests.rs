//! Both index formats read from realistic fixtures (shaped after Attune's
//! index builder output and the StackStorm Exchange v1 index), and resolution.

use super::*;
use crate::checksum::ChecksumKind;

const ATTUNE: &str = include_str!("../../../host/tests/fixtures/registry/attune-index.json");
const EXCHANGE: &str = include_str!("../../../host/tests/fixtures/registry/exchange-index.json");

fn attune() -> Index {
    parse(ATTUNE.as_bytes(), "attune-index.json").unwrap()
}

fn exchange() -> Index {
    parse(EXCHANGE.as_bytes(), "exchange-index.json").unwrap()
}

fn req(s: &str) -> PackRequest {
    PackRequest::parse(s).unwrap()
}

#[test]
fn attune_index_reads_every_good_entry_and_reports_the_rest() {
    let i = attune();
    assert_eq!(i.format, IndexFormat::Attune);
    assert_eq!(i.registry_name.as_deref(), Some("Attune Community Packs"));
    assert_eq!(i.packs.keys().collect::<Vec<_>>(), ["core", "core_utils"]);
    let versions: Vec<String> = i.packs["core_utils"].iter().map(|v| v.version.to_string()).collect();
    assert_eq!(versions, ["1.5.0", "1.4.2"], "highest first");
    assert_eq!(i.skipped.len(), 2, "{:?}", i.skipped);
    assert!(i.skipped[0].starts_with("Bad Ref: "), "{:?}", i.skipped);
    assert!(i.skipped[1].starts_with("loose: version \"1.0\" is not semver"), "{:?}", i.skipped);
}

#[test]
fn attune_checksums_map_by_source_type() {
    let i = attune();
    let v = &i.packs["core_utils"][1];
    assert_eq!(v.version.to_string(), "1.4.2");
    let (git, archive) = (&v.sources[0], &v.sources[1]);
    assert_eq!(git.kind, IndexSourceKind::Git);
    assert_eq!(git.reference.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"));
    // `sha256:` on a git entry is Attune's directory checksum.
    let g = git.checksum.unwrap();
    assert_eq!(g.kind(), ChecksumKind::AttunePackFileV1);
    assert_eq!(g.to_string(), "attune-pack-file-v1:e9837162383488cb9b187ea585ce8963634d7d04f75abeb0c43d5456de0d6b13");
    // On an archive it is the archive's own SHA-256.
    assert_eq!(archive.checksum.unwrap().kind(), ChecksumKind::Sha256);
    assert_eq!(archive.reference, None);
}

#[test]
fn attune_dependencies_runtime_and_extensions() {
    let i = attune();
    let old = &i.packs["core_utils"][1];
    assert_eq!(old.dependencies, vec![Dependency { pack_ref: "core".into(), req: "=1.0.0".parse().unwrap() }]);
    assert_eq!(old.runtime.python.as_deref(), Some(">=3.9"));
    assert_eq!(old.runtime.requires, ["python3", "shell"]);
    assert_eq!(old.tree_checksum, None);

    let new = &i.packs["core_utils"][0];
    // meta.x_attune.dependencies overrides the exact `core@1.0.0` with a range;
    // a bare `http_tools` accepts any version.
    assert_eq!(
        new.dependencies,
        vec![
            Dependency { pack_ref: "core".into(), req: "^1.0".parse().unwrap() },
            Dependency { pack_ref: "http_tools".into(), req: VersionReq::STAR },
        ]
    );
    assert_eq!(new.runtime.nodejs.as_deref(), Some(">=18"));
    assert_eq!(new.tree_checksum.unwrap().kind(), ChecksumKind::Tree(crate::checksum::Algorithm::TreeV1));
}

#[test]
fn attune_unknown_major_version_is_refused() {
    let text = r#"{"registry_name": "x", "registry_url": "x", "version": "2.0", "last_updated": "x", "packs": []}"#;
    let e = parse(text.as_bytes(), "idx").unwrap_err();
    assert!(e.to_string().contains("version \"2.0\" is not supported"), "{e}");
}

#[test]
fn exchange_index_versions_are_git_tags() {
    let i = exchange();
    assert_eq!(i.format, IndexFormat::Exchange);
    assert_eq!(i.packs.keys().collect::<Vec<_>>(), ["aws", "jira", "sensu"], "ref wins over the key and the name");
    let aws = &i.packs["aws"];
    assert_eq!(aws.iter().map(|v| v.version.to_string()).collect::<Vec<_>>(), ["1.2.1", "1.2.0", "1.0.0", "0.6.5"]);
    let s = &aws[1].sources[0];
    assert_eq!(s.kind, IndexSourceKind::Git);
    assert_eq!(s.url, "https://github.com/StackStorm-Exchange/stackstorm-aws");
    assert_eq!(s.reference.as_deref(), Some("v1.2.0"));
    assert_eq!(s.checksum, None);
    assert_eq!(aws[0].runtime.python_versions, ["3"]);
    // No `versions`: the one `version` is the only one.
    assert_eq!(i.packs["jira"].len(), 1);
    // `0.1` (a JSON number, as early indexes wrote) is 0.1.0, as st2 reads it; its tag stays v0.1.
    assert!(i.skipped.is_empty(), "{:?}", i.skipped);
    let sensu = &i.packs["sensu"];
    assert_eq!(sensu[0].version.to_string(), "0.1.0");
    assert_eq!(sensu[0].sources[0].reference.as_deref(), Some("v0.1"));
}

#[test]
fn not_an_index() {
    for (text, want) in
        [("[1]", "not a registry index"), ("{\"packs\": 3}", "not a registry index"), ("nope", "not a JSON index")]
    {
        let e = parse(text.as_bytes(), "x.json").unwrap_err().to_string();
        assert!(e.starts_with("x.json: ") && e.contains(want), "{e}");
    }
}

#[test]
fn specs() {
    assert_eq!(req("core_utils").req, VersionReq::STAR);
    assert_eq!(req("core_utils@latest").req, VersionReq::STAR);
    assert_eq!(req("core_utils@1.4.2").req, "=1.4.2".parse().unwrap(), "a bare version is exact");
    assert_eq!(req("core_utils@^1.4").req, "^1.4".parse().unwrap());
    assert_eq!(req("core_utils@>=1.0, <2").req, ">=1.0, <2".parse().unwrap());
    // StackStorm's `st2 pack install ref=version`: exactly that version.
    assert_eq!(req("core_utils=1.4.2").req, "=1.4.2".parse().unwrap());
    assert_eq!(req("core_utils=1.4.2").pack_ref, "core_utils");
    assert_eq!(req("core_utils@=1.4.2").req, "=1.4.2".parse().unwrap(), "`@` wins over `=`");
    assert!(is_spec("surely_not_a_folder_here=1.0.0"));
    for bad in ["Core", "core@", "core=", "core@nope", "a/b", ""] {
        assert!(PackRequest::parse(bad).is_err(), "{bad}");
    }
    assert!(is_spec("surely_not_a_folder_here@^1"));
    assert!(!is_spec("./pack"));
    assert!(!is_spec("https://example.com/x.tgz"));
    assert!(!is_spec("src"), "an existing path wins (the crate's src folder, from the test's working directory)");
}

#[test]
fn resolution_picks_the_highest_match_across_indexes() {
    let both = vec![("main".to_string(), attune()), ("exchange".to_string(), exchange())];
    let r = resolve(&both, &req("core_utils")).unwrap();
    assert_eq!((r.index.as_str(), r.pack.version.to_string().as_str()), ("main", "1.5.0"));
    let r = resolve(&both, &req("core_utils@~1.4")).unwrap();
    assert_eq!(r.pack.version.to_string(), "1.4.2");
    let r = resolve(&both, &req("aws@^1.0")).unwrap();
    assert_eq!((r.index.as_str(), r.pack.version.to_string().as_str()), ("exchange", "1.2.1"));
    let r = resolve(&both, &req("aws@1.0.0")).unwrap();
    assert_eq!(r.pack.version.to_string(), "1.0.0");
}

#[test]
fn equal_versions_prefer_the_earlier_index() {
    let two = vec![("first".to_string(), exchange()), ("second".to_string(), exchange())];
    assert_eq!(resolve(&two, &req("aws")).unwrap().index, "first");
}

#[test]
fn no_match_names_the_indexes_and_what_there_is() {
    let both = vec![("main".to_string(), attune()), ("exchange".to_string(), exchange())];
    let e = resolve(&both, &req("core_utils@^2")).unwrap_err().to_string();
    assert_eq!(
        e,
        "core_utils@^2: no matching version in indexes main, exchange (available: 1.5.0 in main, 1.4.2 in main)"
    );
    let e = resolve(&both, &req("nothing")).unwrap_err().to_string();
    assert_eq!(
        e,
        "nothing: no matching version in indexes main, exchange (no version of this pack is listed, and no file or folder of that name exists here)"
    );
    let e = resolve(&[], &req("nothing")).unwrap_err().to_string();
    assert!(e.contains("no index is configured"), "{e}");
}

#[test]
fn plans() {
    let both = vec![("main".to_string(), attune()), ("exchange".to_string(), exchange())];
    // Our own tree checksum wins when the index has one.
    let p = resolve(&both, &req("core_utils@1.5.0")).unwrap().plan().unwrap();
    assert_eq!(p.source, "https://packs.example.com/core_utils-1.5.0.tar.gz");
    assert_eq!(p.expected.unwrap().kind(), ChecksumKind::Tree(crate::checksum::Algorithm::TreeV1));
    // Otherwise the archive's bytes, checked before extraction.
    let p = resolve(&both, &req("core_utils@1.4.2")).unwrap().plan().unwrap();
    assert!(p.source.starts_with("https://codeload.github.com/"), "{p:?}");
    assert_eq!((p.reference, p.expected.unwrap().kind()), (None, ChecksumKind::Sha256));
    // A git-only entry: the legacy checksum, the git ref.
    let p = resolve(&both, &req("core")).unwrap().plan().unwrap();
    assert_eq!(p.source, "git+https://github.com/attune-packs/core");
    assert_eq!(p.reference.as_deref(), Some("v1.0.0"));
    assert_eq!(p.expected.unwrap().kind(), ChecksumKind::AttunePackFileV1);
    // Exchange: the tag, nothing to check.
    let p = resolve(&both, &req("aws@1.2.0")).unwrap().plan().unwrap();
    assert_eq!(p.source, "git+https://github.com/StackStorm-Exchange/stackstorm-aws");
    assert_eq!((p.reference.as_deref(), p.expected), (Some("v1.2.0"), None));
}

/// Found by the `index` fuzz target: a dependency named in `meta.x_attune`
/// was taken as a ref unchecked (`"c$re"`), though the solver looks it up and
/// its messages show it like any other ref.
#[test]
fn regression_extension_dependency_ref_is_checked() {
    let index = r#"{"version": "1.0", "packs": [
        {"ref": "a", "version": "1.0.0", "meta": {"x_attune": {"dependencies": {"c$re": "^1"}}}},
        {"ref": "b", "version": "1.0.0", "meta": {"x_attune": {"dependencies": {"core": "^1"}}}}]}"#;
    let i = parse(index.as_bytes(), "fuzz").unwrap();
    assert_eq!(i.packs.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(i.skipped.len(), 1, "{:?}", i.skipped);
    assert!(i.skipped[0].contains("\"c$re\" is not a pack ref"), "{:?}", i.skipped);
}
