//! Python environments built by real uv from wheels made in the test,
//! served from a find-links folder or a loopback simple index.

use std::path::{Path, PathBuf};

use attune_env::{
    EnvEvent, PythonError, PythonRequest, PythonSources, Runtime, build_python, lock::LockError, verify_python,
};

use crate::support::{self, Events, Server};

/// A find-links folder with alpha 1.0.0 (needs beta) and beta 1.0.0 (and 2.0.0).
fn find_links(uv: &attune_env::Uv, t: &Path) -> PathBuf {
    let links = t.join("links");
    std::fs::create_dir_all(&links).unwrap();
    support::wheel(uv, t, &links, "alpha", "1.0.0", &["beta<2"]);
    support::wheel(uv, t, &links, "beta", "1.0.0", &[]);
    support::wheel(uv, t, &links, "beta", "2.0.0", &[]);
    links
}

fn request(pack: &Path, t: &Path, sources: PythonSources) -> PythonRequest {
    let mut req = PythonRequest::new(pack, support::python(), sources);
    req.cache_dir = Some(t.join("uv-cache"));
    req
}

fn local(links: &Path) -> PythonSources {
    PythonSources { index_url: None, find_links: vec![links.display().to_string()] }
}

#[tokio::test]
async fn a_pack_requiring_wheels_imports_them_after_the_env_is_renamed_to_its_final_path() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha  # the one we need\n");
    std::fs::create_dir_all(t.path().join("envs/.staging")).unwrap();
    let staged = t.path().join("envs/.staging/env");
    let events = Events::default();

    let env = build_python(&uv, &request(&pack, t.path(), local(&links)), &staged, &events.sink()).await.unwrap();

    let pins: Vec<(&str, &str)> = env.lock.requirements.iter().map(|r| (r.name.as_str(), r.version.as_str())).collect();
    assert_eq!(pins, [("alpha", "1.0.0"), ("beta", "1.0.0")], "beta<2 is honoured");
    assert!(env.lock.requirements.iter().all(|r| r.hashes.len() == 1 && r.hashes[0].starts_with("sha256:")));
    assert!(!env.built_from_source && env.reused_from.is_none());
    assert_eq!(
        events.take(),
        [
            EnvEvent::Resolving { runtime: Runtime::Python },
            EnvEvent::Resolved { runtime: Runtime::Python, packages: 2, from_lock: false },
            EnvEvent::Installing { runtime: Runtime::Python, packages: 2 },
            EnvEvent::Installed { runtime: Runtime::Python, packages: 2 },
        ]
    );

    // Published the way the host publishes a pack: one rename.
    let final_path = t.path().join("envs/jira-1.0.0");
    std::fs::rename(&staged, &final_path).unwrap();
    assert_eq!(
        support::run_python(&final_path, "import alpha, beta; print(alpha.VALUE, beta.VERSION)"),
        "alpha 1.0.0\n"
    );
    let cli = support::sh(std::process::Command::new(final_path.join("bin/alpha-cli")).current_dir("/"));
    assert_eq!(cli, "alpha 1.0.0\n", "the entry point launcher finds the moved interpreter");
    // Nothing in the environment still names the staging folder.
    for e in walkdir::WalkDir::new(&final_path) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            let staged_name = staged.display().to_string();
            assert!(
                !bytes.windows(staged_name.len()).any(|w| w == staged_name.as_bytes()),
                "{} names the staging path",
                e.path().display()
            );
        }
    }
    assert_eq!(verify_python(&final_path, &env.lock).unwrap(), []);
    // No scratch folder is left beside it.
    let left: Vec<_> = std::fs::read_dir(t.path().join("envs/.staging")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_loopback_index_build_rebuilds_identically_from_its_lock_offline_with_the_server_stopped() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let files: Vec<PathBuf> = std::fs::read_dir(&links).unwrap().map(|e| e.unwrap().path()).collect();
    support::simple_index(&t.path().join("www"), &files);
    let server = Server::start(&t.path().join("www"));
    let index = PythonSources { index_url: Some(server.url("simple/")), find_links: vec![] };
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let first = t.path().join("first");

    let built = build_python(&uv, &request(&pack, t.path(), index.clone()), &first, &|_| {}).await.unwrap();
    let recorded = serde_json::to_string(&built.lock).unwrap();
    let before = support::listing(&first);
    assert!(before.iter().any(|l| l.starts_with("alpha/__init__.py ")), "{before:?}");

    // Wipe, stop the index, rebuild from what was recorded.
    std::fs::remove_dir_all(&first).unwrap();
    server.stop();
    let mut req = request(&pack, t.path(), index.clone());
    req.locked = Some(serde_json::from_str(&recorded).unwrap());
    req.offline = true;
    let events = Events::default();
    let again = build_python(&uv, &req, &first, &events.sink()).await.unwrap();
    assert_eq!(support::listing(&first), before);
    assert_eq!(again.lock, built.lock);
    assert!(!events.take().contains(&EnvEvent::Resolving { runtime: Runtime::Python }), "a lock is not resolved again");
    assert_eq!(support::run_python(&first, "import alpha; print(alpha.VALUE)"), "alpha\n");

    // Without the lock, offline resolves from uv's cache alone.
    let mut unlocked = req.clone();
    unlocked.locked = None;
    let resolved = build_python(&uv, &unlocked, &t.path().join("unlocked"), &|_| {}).await.unwrap();
    assert_eq!(resolved.lock, built.lock);
    assert_eq!(support::listing(&t.path().join("unlocked")), before);

    // With an empty cache, offline names what is missing and leaves nothing.
    let mut cold = req.clone();
    cold.cache_dir = Some(t.path().join("empty-cache"));
    let second = t.path().join("second");
    let err = build_python(&uv, &cold, &second, &|_| {}).await.unwrap_err();
    match &err {
        PythonError::OfflineMissing { missing } => {
            assert!(missing.iter().any(|m| m.starts_with("alpha") || m.starts_with("beta")), "{err}")
        }
        other => panic!("expected OfflineMissing, got {other:?}"),
    }
    assert!(!second.exists());
}

#[tokio::test]
async fn a_distribution_whose_bytes_changed_since_the_lock_is_refused() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let first =
        build_python(&uv, &request(&pack, t.path(), local(&links)), &t.path().join("first"), &|_| {}).await.unwrap();

    // Same name and version, other bytes: what a compromised index would serve.
    let other = t.path().join("other");
    std::fs::create_dir_all(other.join("x")).unwrap();
    support::wheel(&uv, &other.join("x"), &other, "beta", "1.0.0", &["alpha<0"]);
    std::fs::copy(other.join("beta-1.0.0-py3-none-any.whl"), links.join("beta-1.0.0-py3-none-any.whl")).unwrap();
    let mut req = request(&pack, t.path(), local(&links));
    req.locked = Some(first.lock);
    req.cache_dir = Some(t.path().join("fresh-cache"));
    let dest = t.path().join("second");

    let err = build_python(&uv, &req, &dest, &|_| {}).await.unwrap_err();

    assert!(matches!(&err, PythonError::HashMismatch { packages } if packages == &["beta==1.0.0"]), "{err:?}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn an_sdist_only_requirement_is_refused_and_its_setup_py_never_runs() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let marker = t.path().join("setup-py-ran");
    support::sdist_with_marker(t.path(), &links, "gamma", &marker);
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\ngamma\n");
    let dest = t.path().join("env");

    let err = build_python(&uv, &request(&pack, t.path(), local(&links)), &dest, &|_| {}).await.unwrap_err();

    assert!(matches!(&err, PythonError::SourceBuildRefused { packages } if packages == &["gamma"]), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("gamma has no wheel") && msg.contains("--allow-source-builds"), "{msg}");
    assert!(!marker.exists(), "setup.py ran");
    assert!(!dest.exists(), "a refused build leaves no environment");
}

#[tokio::test]
async fn allowed_source_builds_run_the_build_backend_and_say_so() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let marker = t.path().join("setup-py-ran");
    support::sdist_with_marker(t.path(), &links, "gamma", &marker);
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\ngamma\n");
    let mut req = request(&pack, t.path(), local(&links));
    req.allow_source_builds = true;
    let env = t.path().join("env");

    let built = build_python(&uv, &req, &env, &|_| {}).await.unwrap();

    assert!(built.built_from_source && built.lock.needs_source_builds);
    assert!(marker.exists(), "the backend was allowed and ran");
    assert_eq!(support::run_python(&env, "import gamma; print(gamma.VALUE)"), "gamma\n");

    // Its lock, replayed without the flag, is refused before anything is built.
    std::fs::remove_file(&marker).unwrap();
    let mut again = request(&pack, t.path(), local(&links));
    again.locked = Some(built.lock);
    let err = build_python(&uv, &again, &t.path().join("env2"), &|_| {}).await.unwrap_err();
    assert!(matches!(err, PythonError::LockNeedsSourceBuilds), "{err:?}");
    assert!(err.to_string().contains("--allow-source-builds"), "{err}");
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_file_changed_in_one_env_does_not_reach_the_next_build_through_uvs_cache() {
    // uv's default on ext4 hard-links from its cache; an action writing into
    // its own site-packages would then change the cache and every later env.
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let req = request(&pack, t.path(), local(&links));
    let first = t.path().join("first");
    build_python(&uv, &req, &first, &|_| {}).await.unwrap();
    let site = attune_env::verify::site_packages(&first).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(site.join("alpha/__init__.py"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"VALUE = 'tampered'\n"))
        .unwrap();

    let second = t.path().join("second");
    build_python(&uv, &req, &second, &|_| {}).await.unwrap();
    assert_eq!(support::run_python(&second, "import alpha; print(alpha.VALUE)"), "alpha\n");
}

#[tokio::test]
async fn an_unsatisfiable_requirement_installs_nothing() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha>=2\n");
    let dest = t.path().join("envs/jira-1.0.0");
    std::fs::create_dir_all(t.path().join("envs")).unwrap();

    let err = build_python(&uv, &request(&pack, t.path(), local(&links)), &dest, &|_| {}).await.unwrap_err();

    assert!(matches!(err, PythonError::Unsatisfiable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("requirements.txt") && msg.contains("alpha>=2") && msg.contains("nothing was installed"),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(t.path().join("envs")).unwrap().count(), 0, "no env and no scratch left");
}

#[tokio::test]
async fn requirements_naming_another_index_are_refused_before_uv_runs() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n--extra-index-url http://127.0.0.1:9/simple\n");
    let dest = t.path().join("env");
    let err = build_python(&uv, &request(&pack, t.path(), PythonSources::default()), &dest, &|_| {}).await.unwrap_err();
    assert!(matches!(err, PythonError::Lock(LockError::Refused { line: 2, .. })), "{err:?}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_lock_for_another_python_is_refused() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let mut req = request(&pack, t.path(), PythonSources::default());
    req.locked = Some(attune_env::PythonLock {
        python: attune_env::PythonTarget {
            implementation: "cpython".into(),
            version: "2.7.18".into(),
            platform: "linux-x86_64".into(),
        },
        requirements: vec![],
        needs_source_builds: false,
    });
    let err = build_python(&uv, &req, &t.path().join("env"), &|_| {}).await.unwrap_err();
    assert!(matches!(err, PythonError::LockedForOtherPython { .. }), "{err:?}");
}

#[tokio::test]
async fn tests_requirements_are_included_only_when_asked() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let pack = support::pack(t.path(), "jira", "1.0.0", "beta==1.0.0\n");
    std::fs::write(pack.join("requirements-tests.txt"), "alpha\n").unwrap();
    let mut req = request(&pack, t.path(), local(&links));
    let plain = build_python(&uv, &req, &t.path().join("plain"), &|_| {}).await.unwrap();
    assert_eq!(plain.lock.requirements.len(), 1);
    req.with_tests = true;
    let tests = build_python(&uv, &req, &t.path().join("tests"), &|_| {}).await.unwrap();
    assert_eq!(tests.lock.requirements.len(), 2);
}

#[tokio::test]
async fn an_identical_lock_is_reused_by_hard_links_and_a_tampered_one_is_not() {
    use std::os::unix::fs::MetadataExt;
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    let v1 = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let v2 = support::pack(t.path(), "jira", "1.1.0", "alpha\n");
    let env1 = t.path().join("jira-1.0.0");
    let first = build_python(&uv, &request(&v1, t.path(), local(&links)), &env1, &|_| {}).await.unwrap();

    let mut req = request(&v2, t.path(), local(&links));
    req.reuse_from = vec![t.path().join("no-such-env"), env1.clone()];
    let env2 = t.path().join("jira-1.1.0");
    let events = Events::default();
    let second = build_python(&uv, &req, &env2, &events.sink()).await.unwrap();
    assert_eq!(second.reused_from.as_deref(), Some(env1.as_path()));
    assert_eq!(second.lock, first.lock);
    assert!(events.take().contains(&EnvEvent::Reused { runtime: Runtime::Python, from: env1.clone() }));
    let site1 = attune_env::verify::site_packages(&env1).unwrap();
    let site2 = attune_env::verify::site_packages(&env2).unwrap();
    let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(site1.join("alpha/__init__.py")), ino(site2.join("alpha/__init__.py")));
    assert_eq!(support::run_python(&env2, "import alpha; print(alpha.VALUE)"), "alpha\n");
    assert_eq!(verify_python(&env2, &second.lock).unwrap(), []);

    // A changed source is not copied: the next version is installed afresh.
    std::fs::write(site1.join("beta/__init__.py"), "VALUE = 'tampered'\n").unwrap();
    let env3 = t.path().join("jira-1.2.0");
    let third = build_python(&uv, &req, &env3, &|_| {}).await.unwrap();
    assert_eq!(third.reused_from, None);
    assert_eq!(support::run_python(&env3, "import beta; print(beta.VALUE)"), "beta\n");
}

#[tokio::test]
async fn a_hung_interpreter_is_stopped_at_the_time_limit() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let hung = t.path().join("python3");
    std::fs::write(&hung, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&hung, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\n");
    let mut req = PythonRequest::new(&pack, &hung, PythonSources::default());
    req.timeout = std::time::Duration::from_secs(1);
    // The interpreter is asked first; uv is never reached.
    let uv = attune_env::Uv { program: t.path().join("no-uv"), version: "none".into() };
    let dest = t.path().join("env");

    let started = std::time::Instant::now();
    let err = build_python(&uv, &req, &dest, &|_| {}).await.unwrap_err();

    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(matches!(&err, PythonError::Interpreter { why, .. } if why.contains("did not finish within 1s")), "{err}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn uv_config_files_and_their_indexes_are_ignored() {
    let Some(uv) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    let links = find_links(&uv, t.path());
    // A decoy index, the only one that has `delta`, named by uv config files
    // where uv would find them: above the folder it runs in.
    let decoy_files = t.path().join("decoy-src");
    std::fs::create_dir_all(&decoy_files).unwrap();
    let delta = support::wheel(&uv, &decoy_files, &decoy_files, "delta", "1.0.0", &[]);
    support::simple_index(&t.path().join("decoy"), &[delta]);
    let log = t.path().join("decoy.log");
    let decoy = Server::start_logging(&t.path().join("decoy"), Some(&log));
    let envs = t.path().join("envs");
    std::fs::create_dir_all(&envs).unwrap();
    let index = format!("extra-index-url = [\"{}\"]\n", decoy.url("simple/"));
    std::fs::write(envs.join("uv.toml"), format!("[pip]\n{index}")).unwrap();
    std::fs::write(
        envs.join("pyproject.toml"),
        format!("[project]\nname = \"x\"\nversion = \"0\"\n[tool.uv.pip]\n{index}"),
    )
    .unwrap();
    let pack = support::pack(t.path(), "jira", "1.0.0", "alpha\ndelta\n");

    // The operator's index (with --no-index config indexes are moot anyway).
    let files: Vec<PathBuf> = std::fs::read_dir(&links).unwrap().map(|e| e.unwrap().path()).collect();
    support::simple_index(&t.path().join("www"), &files);
    let server = Server::start(&t.path().join("www"));
    let sources = PythonSources { index_url: Some(server.url("simple/")), find_links: vec![] };

    let err =
        build_python(&uv, &request(&pack, t.path(), sources), &envs.join("jira-1.0.0"), &|_| {}).await.unwrap_err();

    assert!(matches!(err, PythonError::Unsatisfiable { .. }), "{err:?}");
    decoy.stop();
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(!requests.contains("GET"), "the decoy index was asked: {requests}");
}
