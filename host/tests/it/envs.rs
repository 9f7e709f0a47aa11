//! Pack runtime environments through the real binary: tiny wheels built with
//! `uv build` and served as a simple index on 127.0.0.1; a pack requiring
//! them gets `{envs_dir}/{ref}-{version}/` that imports them; an sdist-only
//! requirement is refused without running its `setup.py`; upgrade and
//! rollback switch the environment link; verify, doctor, uninstall; lock,
//! then `sync --locked --offline` on a fresh host with the index stopped
//! gives byte-identical `site-packages`; node with a local tarball whose
//! install script must not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Env, Out, have, query, runs};

/// uv (and python3) for the Python environment tests; see [`have`].
fn uv_here() -> bool {
    have("uv", runs("uv"), "pip install uv")
}

/// npm for the node environment test.
fn npm_here() -> bool {
    have("npm", runs("npm"), "apt-get install npm")
}

/// Runs a command, panicking with its output if it fails.
fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `{name}-{version}-py3-none-any.whl` in `out`: a pure-Python package
/// whose `VERSION` is its version.
fn wheel(work: &Path, out: &Path, name: &str, version: &str, deps: &[&str]) -> PathBuf {
    let project = work.join(format!("{name}-{version}-src"));
    std::fs::create_dir_all(project.join("src").join(name)).unwrap();
    let deps: Vec<String> = deps.iter().map(|d| format!("{d:?}")).collect();
    std::fs::write(
        project.join("pyproject.toml"),
        format!(
            "[project]\nname = \"{name}\"\nversion = \"{version}\"\ndependencies = [{}]\n\
             [build-system]\nrequires = [\"uv_build>=0.7\"]\nbuild-backend = \"uv_build\"\n",
            deps.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(project.join("src").join(name).join("__init__.py"), format!("VERSION = {version:?}\n")).unwrap();
    sh(Command::new("uv")
        .args(["build", "--quiet", "--no-config", "--offline", "--wheel", "--out-dir"])
        .arg(out)
        .arg(&project)
        .env("UV_CACHE_DIR", work.join("build-cache")));
    out.join(format!("{name}-{version}-py3-none-any.whl"))
}

/// An sdist whose build (an in-tree backend) runs `setup.py`, which writes `marker`.
fn sdist_with_marker(work: &Path, out: &Path, name: &str, marker: &Path) -> PathBuf {
    let root = work.join(format!("{name}-1.0.0"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(root.join("setup.py"), format!("open({:?}, 'a').write('ran')\n", marker.display().to_string()))
        .unwrap();
    std::fs::write(
        root.join("pyproject.toml"),
        format!(
            "[project]\nname = {name:?}\nversion = \"1.0.0\"\n[build-system]\nrequires = []\n\
             build-backend = \"backend\"\nbackend-path = [\".\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("backend.py"),
        "import runpy\ndef build_wheel(d, c=None, m=None):\n    runpy.run_path('setup.py')\n    raise SystemExit(1)\n",
    )
    .unwrap();
    std::fs::write(root.join("PKG-INFO"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")).unwrap();
    let file = out.join(format!("{name}-1.0.0.tar.gz"));
    sh(Command::new("tar").arg("czf").arg(&file).arg("-C").arg(work).arg(format!("{name}-1.0.0")));
    file
}

/// A PEP 503 simple index of `files` (each listed with its sha256, as real
/// indexes do) served by Python's `http.server` on 127.0.0.1, which sends
/// the content types uv wants; stopped when dropped.
struct Index {
    child: std::process::Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Index {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn index(files: &[PathBuf]) -> Index {
    use sha2::{Digest, Sha256};
    use std::io::BufRead as _;
    let root = tempfile::tempdir().unwrap();
    let mut pages: std::collections::BTreeMap<PathBuf, String> = Default::default();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let project = name.split('-').next().unwrap().replace('_', "-").to_lowercase();
        let dir = root.path().join("simple").join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(f, dir.join(&name)).unwrap();
        let digest = Sha256::digest(std::fs::read(f).unwrap());
        pages.entry(dir).or_default().push_str(&format!("<a href=\"{name}#sha256={digest:x}\">{name}</a>\n"));
    }
    for (dir, links) in pages {
        std::fs::write(dir.join("index.html"), format!("<html><body>\n{links}</body></html>\n")).unwrap();
    }
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port = line.split("port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok());
    Index { child, port: port.unwrap_or_else(|| panic!("no port in {line:?}")), _root: root }
}

/// A config file naming the index (and nothing else to resolve from).
fn config(env: &Env, server: &Index) -> PathBuf {
    let p = env.tmp.path().join("config.toml");
    std::fs::write(&p, format!("python_index_url = {:?}\n", server.url("/simple/"))).unwrap();
    p
}

/// A pack folder `{name}-{version}` with these requirement lines.
fn pack(env: &Env, name: &str, version: &str, requirements: &str) -> PathBuf {
    let dir = env.make_pack(name, version);
    std::fs::write(dir.join("requirements.txt"), requirements).unwrap();
    dir
}

fn run(env: &Env, config: &Path, args: &[&str]) -> Out {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    env.run(&all)
}

fn envs(env: &Env) -> PathBuf {
    env.tmp.path().join("packs-envs")
}

fn python(env_dir: &Path, code: &str) -> String {
    sh(Command::new(env_dir.join("bin/python")).args(["-c", code]).current_dir("/")).trim().to_owned()
}

/// Every file under site-packages (byte code left out) with its SHA-256.
fn site_packages(env_dir: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let lib = env_dir.join("lib");
    let py = std::fs::read_dir(&lib).unwrap().next().unwrap().unwrap().path();
    let site = py.join("site-packages");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&site).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&site).unwrap().display().to_string();
        if rel.contains("__pycache__") || !e.file_type().is_file() {
            continue;
        }
        out.push(format!("{rel} {:x}", Sha256::digest(std::fs::read(e.path()).unwrap())));
    }
    out
}

struct Wheels {
    _work: tempfile::TempDir,
    files: Vec<PathBuf>,
}

/// alpha 1.0.0 (needs beta), alpha 2.0.0, beta 1.0.0.
fn wheels() -> Wheels {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("dist");
    let files = vec![
        wheel(work.path(), &out, "alpha", "1.0.0", &["beta>=1"]),
        wheel(work.path(), &out, "alpha", "2.0.0", &[]),
        wheel(work.path(), &out, "beta", "1.0.0", &[]),
    ];
    Wheels { _work: work, files }
}

#[test]
fn a_pack_with_requirements_gets_its_own_environment_verified_and_removed_with_it() {
    if !uv_here() {
        return;
    }
    let w = wheels();
    let server = index(&w.files);
    let env = Env::new();
    let cfg = config(&env, &server);
    let src = pack(&env, "pyp", "1.0.0", "alpha==1.0.0\n");

    let out = run(&env, &cfg, &["install", src.to_str().unwrap()]).success();
    let dir = envs(&env).join("pyp-1.0.0");
    assert!(out.stdout.contains(&format!("  env       {}", dir.display())), "{}", out.stdout);
    assert!(out.stdout.contains("2 packages"), "{}", out.stdout);
    assert_eq!(python(&dir, "import alpha, beta; print(alpha.VERSION, beta.VERSION)"), "1.0.0 1.0.0");
    // The active link, as for the pack itself.
    assert_eq!(std::fs::read_link(envs(&env).join("pyp")).unwrap(), PathBuf::from("pyp-1.0.0"));

    // Recorded with the installation, with hashes; shown by info.
    let info = run(&env, &cfg, &["info", "pyp"]).success();
    assert!(info.stdout.contains("environment  python cpython"), "{}", info.stdout);
    assert!(info.stdout.contains("  alpha 1.0.0 (sha256:"), "{}", info.stdout);
    let json = run(&env, &cfg, &["--json", "install", "--force", src.to_str().unwrap()]).success().json();
    let reqs = &json["environment"]["python"]["lock"]["requirements"];
    assert_eq!(reqs.as_array().unwrap().len(), 2, "{json}");
    assert!(reqs[0]["hashes"][0].as_str().unwrap().starts_with("sha256:"));

    run(&env, &cfg, &["verify"]).success();
    // A changed file of a distribution is tampering, named.
    let init = site_packages_dir(&dir).join("alpha/__init__.py");
    std::fs::write(&init, "VERSION = 'evil'\n").unwrap();
    let out = run(&env, &cfg, &["verify"]).failure();
    assert!(out.stdout.contains("TAMPERED  pyp 1.0.0") && out.stdout.contains("environment:"), "{}", out.stdout);
    assert!(out.stdout.contains("alpha/__init__.py"), "{}", out.stdout);

    run(&env, &cfg, &["uninstall", "pyp"]).success();
    assert!(!dir.exists() && std::fs::symlink_metadata(envs(&env).join("pyp")).is_err());
    run(&env, &cfg, &["doctor"]).success();
}

fn site_packages_dir(env_dir: &Path) -> PathBuf {
    let py = std::fs::read_dir(env_dir.join("lib")).unwrap().next().unwrap().unwrap().path();
    py.join("site-packages")
}

#[test]
fn an_sdist_only_requirement_is_refused_and_its_setup_py_never_runs() {
    if !uv_here() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("setup-py-ran");
    let sdist = sdist_with_marker(work.path(), &work.path().join("dist"), "gamma", &marker);
    let server = index(&[sdist]);
    let env = Env::new();
    let cfg = config(&env, &server);
    let src = pack(&env, "sdisty", "1.0.0", "gamma==1.0.0\n");

    let out = run(&env, &cfg, &["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("sdisty: its environment was not built"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-source-builds"), "{}", out.stderr);
    assert!(!marker.exists(), "setup.py ran");
    assert!(!env.packs().join("sdisty-1.0.0").exists());
    assert!(!envs(&env).join("sdisty-1.0.0").exists());
    assert!(query(&env, "SELECT id FROM installations WHERE status IN ('installed', 'pending')").is_empty());

    // An unsatisfiable requirement: the same, nothing installed.
    let src = pack(&env, "unsat", "1.0.0", "nosuchthing==9.9\n");
    let out = run(&env, &cfg, &["install", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("unsat: its environment was not built"), "{}", out.stderr);
    assert!(!env.packs().join("unsat-1.0.0").exists() && !envs(&env).join("unsat-1.0.0").exists());

    // --no-env installs the pack alone.
    let out = run(&env, &cfg, &["install", "--no-env", src.to_str().unwrap()]).success();
    assert!(!out.stdout.contains("  env "), "{}", out.stdout);
    assert!(!envs(&env).join("unsat-1.0.0").exists());
    run(&env, &cfg, &["doctor"]).success();
}

#[test]
fn upgrade_and_rollback_switch_the_environment_with_the_pack() {
    if !uv_here() {
        return;
    }
    let w = wheels();
    let server = index(&w.files);
    let env = Env::new();
    let cfg = config(&env, &server);
    let v1 = pack(&env, "upy", "1.0.0", "alpha==1.0.0\n");
    let v2 = pack(&env, "upy", "2.0.0", "alpha==2.0.0\n");
    run(&env, &cfg, &["install", v1.to_str().unwrap()]).success();
    let active = envs(&env).join("upy");
    assert_eq!(python(&active, "import alpha; print(alpha.VERSION)"), "1.0.0");

    run(&env, &cfg, &["upgrade", "upy", "--from", v2.to_str().unwrap()]).success();
    assert_eq!(std::fs::read_link(&active).unwrap(), PathBuf::from("upy-2.0.0"));
    assert_eq!(python(&active, "import alpha; print(alpha.VERSION)"), "2.0.0");

    run(&env, &cfg, &["rollback", "upy"]).success();
    assert_eq!(std::fs::read_link(&active).unwrap(), PathBuf::from("upy-1.0.0"));
    assert_eq!(python(&active, "import alpha; print(alpha.VERSION)"), "1.0.0");
    run(&env, &cfg, &["activate", "upy@2.0.0"]).success();
    assert_eq!(std::fs::read_link(&active).unwrap(), PathBuf::from("upy-2.0.0"));

    // Another version with the same lock: linked from the one built, not installed again.
    let v3 = pack(&env, "upy", "2.0.1", "alpha==2.0.0\n");
    let out = run(&env, &cfg, &["install", v3.to_str().unwrap()]).success();
    assert!(out.stdout.contains("python environment linked from"), "{}", out.stdout);
    assert_eq!(python(&envs(&env).join("upy-2.0.1"), "import alpha; print(alpha.VERSION)"), "2.0.0");
    let out = run(&env, &cfg, &["install", "--force", "--rebuild-env", v3.to_str().unwrap()]).success();
    assert!(!out.stdout.contains("linked from"), "{}", out.stdout);
    run(&env, &cfg, &["verify"]).success();
}

#[test]
fn a_requirements_file_cannot_name_another_index_or_file() {
    if !uv_here() {
        return;
    }
    let env = Env::new();
    for (name, line) in [
        ("evilidx", "--index-url http://evil.example/simple/\nalpha\n"),
        ("evilurl", "alpha @ https://evil.example/alpha.whl\n"),
        ("evilpath", "../../etc/passwd\n"),
        ("evilinc", "-r /etc/passwd\n"),
    ] {
        let src = pack(&env, name, "1.0.0", line);
        let out = env.run(&["install", src.to_str().unwrap()]).failure();
        assert!(out.stderr.contains(&format!("{name}: its environment was not built")), "{}", out.stderr);
        assert!(out.stderr.contains("requirements.txt"), "{}", out.stderr);
        assert!(!env.packs().join(format!("{name}-1.0.0")).exists());
    }
    assert!(query(&env, "SELECT id FROM installations WHERE status = 'installed'").is_empty());
}

#[test]
fn doctor_rebuilds_a_missing_environment_and_removes_an_orphan_one() {
    if !uv_here() {
        return;
    }
    let w = wheels();
    let server = index(&w.files);
    let env = Env::new();
    let cfg = config(&env, &server);
    let src = pack(&env, "docpy", "1.0.0", "alpha==1.0.0\n");
    run(&env, &cfg, &["install", src.to_str().unwrap()]).success();
    let dir = envs(&env).join("docpy-1.0.0");
    let before = site_packages(&dir);

    std::fs::remove_dir_all(&dir).unwrap();
    let orphan = envs(&env).join("ghost-1.0.0");
    std::fs::create_dir_all(&orphan).unwrap();
    let out = run(&env, &cfg, &["doctor"]).failure();
    assert!(out.stdout.contains("docpy@1.0.0: its environment") && out.stdout.contains("is missing"), "{}", out.stdout);
    assert!(out.stdout.contains("ghost-1.0.0: an environment no installed version accounts for"), "{}", out.stdout);

    let out = run(&env, &cfg, &["doctor", "--repair"]).success();
    assert!(out.stdout.contains("built again from its recorded lock"), "{}", out.stdout);
    assert_eq!(site_packages(&dir), before);
    assert!(!orphan.exists());
    run(&env, &cfg, &["doctor"]).success();
    run(&env, &cfg, &["verify"]).success();
}

#[test]
fn lock_then_sync_locked_offline_on_a_fresh_host_gives_identical_environments_with_the_index_stopped() {
    if !uv_here() {
        return;
    }
    let w = wheels();
    let server = index(&w.files);
    let first = Env::new();
    let cfg = config(&first, &server);
    let src = pack(&first, "locky", "1.0.0", "alpha>=1,<2\n");
    run(&first, &cfg, &["install", src.to_str().unwrap()]).success();
    let lockfile = first.tmp.path().join("attune.lock");
    run(&first, &cfg, &["lock", "--output", lockfile.to_str().unwrap()]).success();
    let text = std::fs::read_to_string(&lockfile).unwrap();
    assert!(text.contains("[pack.environment.python.lock") && text.contains("sha256:"), "{text}");
    drop(server);

    // Another host: its own packs and database, uv's cache of the first
    // (as a shared cache or a warmed image would be), no index at all.
    let second = Env::new();
    let o = second
        .cmd()
        .env("HOME", first.tmp.path())
        .args(["--json", "--config", cfg.to_str().unwrap(), "sync", "--locked", "--offline", "--file"])
        .arg(&lockfile)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // The build's steps are JSON events, from the lock (nothing resolved).
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stderr).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps: Vec<&str> = events.iter().filter(|e| e["event"] == "env").map(|e| e["step"].as_str().unwrap()).collect();
    assert!(steps.contains(&"installed") && !steps.contains(&"resolving"), "{events:?}");
    let a = site_packages(&envs(&first).join("locky-1.0.0"));
    let b = site_packages(&envs(&second).join("locky-1.0.0"));
    assert!(!a.is_empty());
    assert_eq!(a, b);

    // With an empty cache, offline names what is missing and installs nothing.
    let third = Env::new();
    let out = run(&third, &cfg, &["sync", "--locked", "--offline", "--file", lockfile.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("offline") && out.stderr.contains("alpha"), "{}", out.stderr);
    assert!(!third.packs().join("locky-1.0.0").exists() && !envs(&third).join("locky-1.0.0").exists());
}

#[test]
fn a_missing_uv_is_a_clear_error_and_installs_nothing() {
    let env = Env::new();
    let src = pack(&env, "nouv", "1.0.0", "alpha==1.0.0\n");
    let out = env.run_with(&[("ATTUNE_UV", "/nonexistent/uv")], &["install", src.to_str().unwrap()]).failure();
    let stderr = &out.stderr;
    assert!(stderr.contains("nouv: its environment was not built") && stderr.contains("pip install uv"), "{stderr}");
    assert!(!env.packs().join("nouv-1.0.0").exists());
}

#[test]
fn a_node_pack_gets_its_locked_modules_and_no_install_script_runs() {
    if !npm_here() {
        return;
    }
    let env = Env::new();
    let marker = env.tmp.path().join("install-script-ran");
    let dep = env.tmp.path().join("dep");
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
    let src = env.make_pack("nodey", "1.0.0");
    let npm = |args: &[&str], dir: &Path| {
        sh(Command::new("npm")
            .args(args)
            .current_dir(dir)
            .env("npm_config_update_notifier", "false")
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false"))
    };
    npm(&["pack", "--silent", "--pack-destination", src.to_str().unwrap()], &dep);
    std::fs::write(
        src.join("package.json"),
        r#"{"name":"nodey","version":"1.0.0","scripts":{"install":"touch pack-script-ran"},"dependencies":{"dep":"file:dep-1.0.0.tgz"}}"#,
    )
    .unwrap();
    npm(&["install", "--offline", "--package-lock-only", "--ignore-scripts"], &src);

    let out = env.run(&["install", src.to_str().unwrap()]).success();
    assert!(out.stdout.contains("node, 1 package"), "{}", out.stdout);
    let modules = envs(&env).join("nodey-1.0.0/node/node_modules/dep");
    assert_eq!(std::fs::read_to_string(modules.join("index.js")).unwrap(), "module.exports = 42;\n");
    assert!(!marker.exists(), "the dependency's install script ran");
    assert!(!envs(&env).join("nodey-1.0.0/node/pack-script-ran").exists());

    // Without a lockfile: refused unless --allow-unlocked.
    let unlocked = env.make_pack("nolock", "1.0.0");
    std::fs::write(unlocked.join("package.json"), r#"{"name":"nolock","version":"1.0.0"}"#).unwrap();
    let out = env.run(&["install", unlocked.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains("nolock: its environment was not built") && out.stderr.contains("lock"),
        "{}",
        out.stderr
    );
    assert!(!env.packs().join("nolock-1.0.0").exists());
}

#[test]
fn no_env_and_rebuild_env_together_are_refused_before_anything_runs() {
    let env = Env::new();
    let src = env.make_pack("either", "1.0.0");
    let out = env.run(&["install", "--no-env", "--rebuild-env", src.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("--no-env and --rebuild-env contradict"), "{}", out.stderr);
    assert!(!env.packs().join("either-1.0.0").exists());
}
