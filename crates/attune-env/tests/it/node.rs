//! Node environments with real npm: a local tarball dependency whose
//! install script must not run, and the lockfile rule.

use std::process::Command;

use attune_env::{NodeError, NodeRequest, build_node};

use crate::support::{self, Events};

/// A pack whose package.json depends on `dep` from a tarball inside it;
/// `dep`'s install script writes `marker`.
fn pack_with_tarball(t: &std::path::Path, marker: &std::path::Path, lock: bool) -> std::path::PathBuf {
    let dep = t.join("dep");
    std::fs::create_dir_all(&dep).unwrap();
    std::fs::write(
        dep.join("package.json"),
        format!(
            r#"{{"name":"dep","version":"1.0.0","main":"index.js","scripts":{{"install":"node -e \"require('fs').writeFileSync('{}','ran')\""}}}}"#,
            marker.display()
        ),
    )
    .unwrap();
    std::fs::write(dep.join("index.js"), "module.exports = 42;\n").unwrap();
    let pack = t.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    support::sh(npm_cmd().args(["pack", "--silent", "--pack-destination"]).arg(&pack).current_dir(&dep));
    std::fs::write(pack.join("pack.yaml"), "ref: nodey\nversion: 1.0.0\n").unwrap();
    std::fs::write(
        pack.join("package.json"),
        r#"{"name":"nodey","version":"1.0.0","dependencies":{"dep":"file:dep-1.0.0.tgz"}}"#,
    )
    .unwrap();
    // A pack's .npmrc must not steer npm.
    std::fs::write(pack.join(".npmrc"), "registry=http://127.0.0.1:9/\nignore-scripts=false\n").unwrap();
    if lock {
        support::sh(
            npm_cmd()
                .args(["install", "--offline", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"])
                .current_dir(&pack),
        );
    }
    pack
}

/// npm for the fixtures: no update check or audit, which would leave the machine.
fn npm_cmd() -> Command {
    let mut c = Command::new("npm");
    c.env("npm_config_update_notifier", "false").env("npm_config_audit", "false").env("npm_config_fund", "false");
    c
}

fn snapshot(dir: &std::path::Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

#[tokio::test]
async fn npm_ci_installs_a_local_tarball_without_running_its_install_script() {
    let Some(npm) = support::npm().await else { return };
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("install-script-ran");
    let pack = pack_with_tarball(t.path(), &marker, true);
    let before = snapshot(&pack);
    let env = t.path().join("envs/nodey-1.0.0");
    let events = Events::default();
    let mut req = NodeRequest::new(&pack);
    req.cache_dir = Some(t.path().join("npm-cache"));

    let built = build_node(&npm, &req, &env, &events.sink()).await.unwrap();

    assert_eq!(built.path, env.join("node"));
    assert!(!built.unlocked);
    assert_eq!(built.lock.lockfile, "package-lock.json");
    assert!(built.lock.sha256.starts_with("sha256:"));
    assert_eq!(built.lock.packages.len(), 1);
    assert_eq!(built.lock.packages[0].path, "node_modules/dep");
    assert!(built.lock.packages[0].integrity.as_deref().is_some_and(|i| i.starts_with("sha512-")));
    let out =
        support::sh(Command::new("node").args(["-e", "console.log(require('dep'))"]).current_dir(env.join("node")));
    assert_eq!(out, "42\n");
    assert!(!marker.exists(), "dep's install script ran");
    assert_eq!(snapshot(&pack), before, "the pack folder is untouched");
    assert!(!env.join("node/.npmrc").exists());
    use attune_env::{EnvEvent, Runtime};
    assert_eq!(
        events.take(),
        [
            EnvEvent::Resolved { runtime: Runtime::Node, packages: 1, from_lock: true },
            EnvEvent::Installing { runtime: Runtime::Node, packages: 1 },
            EnvEvent::Installed { runtime: Runtime::Node, packages: 1 },
        ]
    );
}

#[tokio::test]
async fn a_package_json_without_lockfile_is_refused_unless_unlocked_is_allowed() {
    let Some(npm) = support::npm().await else { return };
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("install-script-ran");
    let pack = pack_with_tarball(t.path(), &marker, false);
    std::fs::write(pack.join("package.json"), r#"{"name":"nodey","version":"1.0.0","dependencies":{}}"#).unwrap();
    let env = t.path().join("env");
    let mut req = NodeRequest::new(&pack);
    req.cache_dir = Some(t.path().join("npm-cache"));

    let err = build_node(&npm, &req, &env, &|_| {}).await.unwrap_err();
    assert!(matches!(err, NodeError::Unlocked { .. }), "{err:?}");
    assert!(err.to_string().contains("--allow-unlocked"), "{err}");
    assert!(!env.exists(), "a refused build leaves nothing");

    req.allow_unlocked = true;
    req.offline = true;
    let built = build_node(&npm, &req, &env, &|_| {}).await.unwrap();
    assert!(built.unlocked);
    assert!(built.lock.packages.is_empty());
    assert!(!pack.join("package-lock.json").exists(), "the pack folder gets no lockfile");
}

#[tokio::test]
async fn python_and_node_share_one_env_folder() {
    let (Some(uv), Some(npm)) = (support::uv().await, support::npm().await) else { return };
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("install-script-ran");
    let pack = pack_with_tarball(t.path(), &marker, true);
    let links = t.path().join("links");
    std::fs::create_dir_all(&links).unwrap();
    support::wheel(&uv, t.path(), &links, "alpha", "1.0.0", &[]);
    std::fs::write(pack.join("requirements.txt"), "alpha\n").unwrap();
    let mut py = attune_env::PythonRequest::new(
        &pack,
        support::python(),
        attune_env::PythonSources { index_url: None, find_links: vec![links.display().to_string()] },
    );
    py.cache_dir = Some(t.path().join("uv-cache"));
    let mut node = NodeRequest::new(&pack);
    node.cache_dir = Some(t.path().join("npm-cache"));
    let staged = t.path().join("staged");

    let built = attune_env::build_python(&uv, &py, &staged, &|_| {}).await.unwrap();
    build_node(&npm, &node, &staged, &|_| {}).await.unwrap();
    let env = t.path().join("nodey-1.0.0");
    std::fs::rename(&staged, &env).unwrap();

    assert_eq!(support::run_python(&env, "import alpha; print(alpha.VALUE)"), "alpha\n");
    let out =
        support::sh(Command::new("node").args(["-e", "console.log(require('dep'))"]).current_dir(env.join("node")));
    assert_eq!(out, "42\n");
    assert_eq!(attune_env::verify_python(&env, &built.lock).unwrap(), []);
    assert!(!marker.exists());
}
