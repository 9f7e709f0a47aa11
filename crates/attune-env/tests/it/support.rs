//! Real parts for the tests: uv and npm as installed, tiny wheels built with
//! `uv build`, an sdist whose `setup.py` leaves a marker, and a simple index
//! served by Python's `http.server` on 127.0.0.1.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use attune_env::{EnvEvent, Npm, Uv};

/// uv, or `None` after a note (the test is skipped); under `CI`, where
/// `.ci/run` installs it, a missing uv fails the test instead.
pub async fn uv() -> Option<Uv> {
    match Uv::discover(None).await {
        Ok(uv) => Some(uv),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "uv is required under CI: {e}");
            eprintln!("note: {e}; skipping this test");
            None
        }
    }
}

/// npm, likewise.
pub async fn npm() -> Option<Npm> {
    match Npm::discover(None).await {
        Ok(npm) => Some(npm),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "npm is required under CI: {e}");
            eprintln!("note: {e}; skipping this test");
            None
        }
    }
}

/// The interpreter the host would have checked: `ATTUNE_PYTHON` or `python3` on `PATH`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ATTUNE_PYTHON") {
        return p.into();
    }
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path).map(|d| d.join("python3")).find(|p| p.is_file()).expect("python3 on PATH")
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `{name}-{version}-py3-none-any.whl` into `out`: a pure-Python
/// package whose `VALUE` is its name and with a `{name}-cli` console script.
pub fn wheel(uv: &Uv, work: &Path, out: &Path, name: &str, version: &str, deps: &[&str]) -> PathBuf {
    let project = work.join(format!("{name}-{version}-src"));
    std::fs::create_dir_all(project.join("src").join(name)).unwrap();
    let deps: Vec<String> = deps.iter().map(|d| format!("{d:?}")).collect();
    std::fs::write(
        project.join("pyproject.toml"),
        format!(
            "[project]\nname = \"{name}\"\nversion = \"{version}\"\ndependencies = [{}]\n\
             [project.scripts]\n{name}-cli = \"{name}:main\"\n\
             [build-system]\nrequires = [\"uv_build>=0.7\"]\nbuild-backend = \"uv_build\"\n",
            deps.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("src").join(name).join("__init__.py"),
        format!("VALUE = {name:?}\nVERSION = {version:?}\n\ndef main():\n    print('{name} ' + VERSION)\n"),
    )
    .unwrap();
    sh(Command::new(&uv.program)
        .args(["build", "--quiet", "--no-config", "--offline", "--wheel", "--out-dir"])
        .arg(out)
        .arg(&project)
        .env("UV_CACHE_DIR", work.join("build-cache")));
    out.join(format!("{name}-{version}-py3-none-any.whl"))
}

/// An sdist (no wheel) built by an in-tree PEP 517 backend that needs
/// nothing from an index, so uv can really build it offline: its
/// `build_wheel` runs `setup.py`, which writes `marker`. The marker appears
/// exactly when build code of the package runs.
pub fn sdist_with_marker(work: &Path, out: &Path, name: &str, marker: &Path) -> PathBuf {
    let root = work.join(format!("{name}-1.0.0"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("setup.py"),
        format!("open({:?}, 'a').write('setup.py ran\\n')\n", marker.display().to_string()),
    )
    .unwrap();
    std::fs::write(
        root.join("pyproject.toml"),
        format!("[project]\nname = {name:?}\nversion = \"1.0.0\"\n[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n"),
    )
    .unwrap();
    std::fs::write(root.join("backend.py"), BACKEND.replace("NAME", name)).unwrap();
    std::fs::write(root.join("PKG-INFO"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")).unwrap();
    let file = out.join(format!("{name}-1.0.0.tar.gz"));
    sh(Command::new("tar").arg("czf").arg(&file).arg("-C").arg(work).arg(format!("{name}-1.0.0")));
    file
}

const BACKEND: &str = r#"import base64, hashlib, os, runpy, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    runpy.run_path("setup.py")
    name = "NAME-1.0.0-py3-none-any.whl"
    files = {
        "NAME/__init__.py": b"VALUE = 'NAME'\n",
        "NAME-1.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: NAME\nVersion: 1.0.0\n",
        "NAME-1.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append("NAME-1.0.0.dist-info/RECORD,,")
        z.writestr("NAME-1.0.0.dist-info/RECORD", "\n".join(record) + "\n")
    return name
"#;

/// A pack folder with `pack.yaml` and these requirement lines.
pub fn pack(dir: &Path, name: &str, version: &str, requirements: &str) -> PathBuf {
    let p = dir.join(format!("{name}-{version}-src"));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("pack.yaml"), format!("ref: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(p.join("requirements.txt"), requirements).unwrap();
    p
}

/// Python's `http.server` serving `root` on 127.0.0.1; stopped when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        Server::start_logging(root, None)
    }

    /// With its request log (one line per request) written to `log`.
    pub fn start_logging(root: &Path, log: Option<&Path>) -> Server {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let mut child = Command::new(python())
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("python3 -m http.server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line.split("port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok());
        Server { child, port: port.unwrap_or_else(|| panic!("no port in {line:?}")) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simple index (`/simple/{name}/{files}`) of these distribution files,
/// each project page listing its files with their sha256 as real indexes
/// do (uv needs them to resolve with hashes from its cache alone).
pub fn simple_index(root: &Path, files: &[PathBuf]) {
    use sha2::{Digest, Sha256};
    let mut pages: std::collections::BTreeMap<PathBuf, String> = Default::default();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy();
        let project = name.split('-').next().unwrap().replace('_', "-").to_lowercase();
        let dir = root.join("simple").join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(f, dir.join(&*name)).unwrap();
        let digest = Sha256::digest(std::fs::read(f).unwrap());
        pages.entry(dir).or_default().push_str(&format!("<a href=\"{name}#sha256={digest:x}\">{name}</a>\n"));
    }
    for (dir, links) in pages {
        std::fs::write(dir.join("index.html"), format!("<html><body>\n{links}</body></html>\n")).unwrap();
    }
}

/// Collects events for assertions.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<EnvEvent>>);

impl Events {
    pub fn sink(&self) -> impl Fn(EnvEvent) + Send + Sync + '_ {
        |e| self.0.lock().unwrap().push(e)
    }

    pub fn take(&self) -> Vec<EnvEvent> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Every file under `site-packages` (byte code left out: importing writes
/// it) with its SHA-256, as `path sha256` lines.
pub fn listing(env: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let site = attune_env::verify::site_packages(env).unwrap();
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

/// `{env}/bin/python -c code`, run from outside the env; its stdout.
pub fn run_python(env: &Path, code: &str) -> String {
    sh(Command::new(env.join("bin/python")).args(["-c", code]).current_dir("/"))
}
