//! Verify against a real environment: changed, missing and extra
//! distributions and files are each reported.

use attune_env::{Difference, PythonRequest, PythonSources, build_python, verify_python};

use crate::support;

#[tokio::test]
async fn verify_reports_modified_and_missing_files_and_distributions() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = t.path().join("links");
    std::fs::create_dir_all(&links).unwrap();
    support::wheel(&uv, t.path(), &links, "alpha", "1.0.0", &[]);
    support::wheel(&uv, t.path(), &links, "beta", "1.0.0", &[]);
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\nbeta\n");
    let mut req = PythonRequest::new(
        &pack,
        support::python(),
        PythonSources { index_url: None, find_links: vec![links.display().to_string()] },
    );
    req.cache_dir = Some(t.path().join("uv-cache"));
    let env = t.path().join("env");
    let built = build_python(&uv, &req, &env, &|_| {}).await.unwrap();
    assert_eq!(verify_python(&env, &built.lock).unwrap(), []);
    // Importing writes byte code RECORD does not hash: still clean.
    support::run_python(&env, "import alpha, beta");
    assert_eq!(verify_python(&env, &built.lock).unwrap(), []);

    let site = attune_env::verify::site_packages(&env).unwrap();
    std::fs::write(site.join("alpha/__init__.py"), "VALUE = 'changed'\n").unwrap();
    std::fs::remove_file(env.join("bin/alpha-cli")).unwrap();
    let diffs = verify_python(&env, &built.lock).unwrap();
    assert!(
        diffs.contains(&Difference::FileModified {
            dist: "alpha".into(),
            path: "lib/".to_owned()
                + &site.strip_prefix(env.join("lib")).unwrap().join("alpha/__init__.py").display().to_string()
        }),
        "{diffs:?}"
    );
    assert!(
        diffs.contains(&Difference::FileMissing { dist: "alpha".into(), path: "bin/alpha-cli".into() }),
        "{diffs:?}"
    );
    assert_eq!(diffs.len(), 2, "{diffs:?}");

    // A distribution removed, and one the record does not know.
    let beta_info = site.join("beta-1.0.0.dist-info");
    std::fs::rename(&beta_info, site.join("delta-9.0.dist-info")).unwrap();
    let diffs = verify_python(&env, &built.lock).unwrap();
    assert!(diffs.contains(&Difference::Missing { name: "beta".into(), version: "1.0.0".into() }), "{diffs:?}");
    assert!(diffs.contains(&Difference::Unexpected { name: "delta".into(), version: "9.0".into() }), "{diffs:?}");
    let shown: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    assert!(shown.contains(&"beta 1.0.0: recorded but not installed".to_owned()), "{shown:?}");
}

#[tokio::test]
async fn a_record_pointing_outside_the_environment_is_reported_not_read() {
    let t = tempfile::tempdir().unwrap();
    let env = t.path().join("env");
    let info = env.join("lib/python3.11/site-packages/evil-1.0.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(info.join("RECORD"), "../../../../../../etc/hostname,sha256=AAAA,1\nevil-1.0.dist-info/RECORD,,\n")
        .unwrap();
    let lock = attune_env::PythonLock {
        python: attune_env::PythonTarget {
            implementation: "cpython".into(),
            version: "3.11.7".into(),
            platform: "p".into(),
        },
        requirements: vec![attune_env::LockedRequirement {
            name: "evil".into(),
            version: "1.0".into(),
            hashes: vec![format!("sha256:{}", "0".repeat(64))],
        }],
        needs_source_builds: false,
    };
    let diffs = verify_python(&env, &lock).unwrap();
    assert!(
        matches!(&diffs[..], [Difference::BadRecord { dist, reason }] if dist == "evil" && reason.contains("outside the environment")),
        "{diffs:?}"
    );
}
