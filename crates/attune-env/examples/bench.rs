//! The environment build benchmark, in one run: a pack with ten
//! wheel requirements from a loopback simple index, built by attune-env, by
//! bare `uv venv` + `uv pip install`, and by `python -m venv` + `pip
//! install -r`, each with a cold and a warm cache; plus attune-env's reuse of
//! an identical environment. Prints a table with ratios.
//!
//! `cargo run -p attune-env --example bench [-- REPS]` (default 3 repetitions,
//! the median shown; the rows take turns, so load from elsewhere falls on all
//! alike). Needs uv, python3 with venv and pip; builds its wheels locally and
//! serves them with `python3 -m http.server` on 127.0.0.1, each project page
//! listing its files with their sha256 as PEP 503 indexes do.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use attune_env::{LinkMode, PythonRequest, PythonSources, Uv, build_python};

const PACKAGES: usize = 10;

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn python() -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH");
    std::env::split_paths(&path).map(|d| d.join("python3")).find(|p| p.is_file()).expect("python3 on PATH")
}

/// Ten pure-Python wheels, `pkg0`…`pkg9`, each `pkgN` depending on `pkgN+1`
/// for the first half (so there is something to resolve), in `index/simple/`.
fn wheels(uv: &Uv, work: &Path, index: &Path) {
    for i in 0..PACKAGES {
        let name = format!("pkg{i}");
        let project = work.join(format!("src-{name}"));
        std::fs::create_dir_all(project.join("src").join(&name)).unwrap();
        let dep = if i < PACKAGES / 2 { format!("\"pkg{}>=1\"", i + 1) } else { String::new() };
        std::fs::write(
            project.join("pyproject.toml"),
            format!(
                "[project]\nname = \"{name}\"\nversion = \"1.0.0\"\ndependencies = [{dep}]\n\
                 [build-system]\nrequires = [\"uv_build>=0.7\"]\nbuild-backend = \"uv_build\"\n"
            ),
        )
        .unwrap();
        // Some bulk, so installing is not free: 40 modules of 4 KiB.
        for m in 0..40 {
            std::fs::write(project.join("src").join(&name).join(format!("m{m}.py")), "x = 1\n".repeat(700)).unwrap();
        }
        std::fs::write(project.join("src").join(&name).join("__init__.py"), "VALUE = 1\n").unwrap();
        let out = index.join("simple").join(&name);
        std::fs::create_dir_all(&out).unwrap();
        sh(Command::new(&uv.program)
            .args(["build", "--quiet", "--no-config", "--offline", "--wheel", "--out-dir"])
            .arg(&out)
            .arg(&project)
            .env("UV_CACHE_DIR", work.join("build-cache")));
        // The project page, with each file's sha256 as real indexes give it
        // (without, `--generate-hashes` downloads every file to hash it).
        let mut page = String::from("<html><body>\n");
        for f in std::fs::read_dir(&out).unwrap() {
            let f = f.unwrap().file_name().to_string_lossy().into_owned();
            if f.ends_with(".whl") {
                let digest = sha2::Sha256::digest(std::fs::read(out.join(&f)).unwrap());
                page.push_str(&format!("<a href=\"{f}#sha256={digest:x}\">{f}</a>\n"));
            }
        }
        std::fs::write(out.join("index.html"), page + "</body></html>\n").unwrap();
    }
}

struct Server(Child, u16);

impl Server {
    fn start(root: &Path) -> Server {
        let mut child = Command::new(python())
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("http.server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).unwrap();
        let port = line.split("port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok());
        Server(child, port.expect("a port"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let uv = Uv::discover(None).await.expect("uv (pip install uv)");
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    wheels(&uv, w, &w.join("index"));
    let server = Server::start(&w.join("index"));
    let index = format!("http://127.0.0.1:{}/simple/", server.1);
    let pack = w.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    let reqs: String = (0..PACKAGES).map(|i| format!("pkg{i}\n")).collect();
    std::fs::write(pack.join("requirements.txt"), &reqs).unwrap();
    let py = python();
    let mut n = 0;
    let mut fresh = |what: &str| {
        n += 1;
        w.join(format!("{what}-{n}"))
    };

    let attune = |cache: PathBuf, mode: LinkMode| {
        let mut r =
            PythonRequest::new(&pack, &py, PythonSources { index_url: Some(index.clone()), find_links: vec![] });
        r.cache_dir = Some(cache);
        r.link_mode = mode;
        r
    };
    // Bare uv: `uv venv` + `uv pip install -r` (uv's defaults: no hashes, its link mode).
    let bare_uv = |cache: &Path, dest: &Path| {
        let start = Instant::now();
        sh(Command::new(&uv.program)
            .args(["venv", "--quiet", "--no-config", "--python"])
            .arg(&py)
            .arg(dest)
            .env("UV_CACHE_DIR", cache));
        sh(Command::new(&uv.program)
            .args(["pip", "install", "--quiet", "--no-config", "--python"])
            .arg(dest.join("bin/python"))
            .args(["--index-url", &index, "-r"])
            .arg(pack.join("requirements.txt"))
            .env("UV_CACHE_DIR", cache));
        start.elapsed()
    };
    let venv_pip = |cache: &Path, dest: &Path| {
        let start = Instant::now();
        sh(Command::new(&py).args(["-m", "venv"]).arg(dest));
        sh(Command::new(dest.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--cache-dir"])
            .arg(cache)
            .args(["--index-url", &index, "-r"])
            .arg(pack.join("requirements.txt")));
        start.elapsed()
    };

    // Warm caches are filled once; cold ones are new each time.
    let attune_warm = fresh("attune-warm-cache");
    let reuse_source = fresh("attune-env");
    build_python(&uv, &attune(attune_warm.clone(), LinkMode::Copy), &reuse_source, &|_| {}).await.unwrap();
    let uv_warm = fresh("uv-warm-cache");
    bare_uv(&uv_warm, &fresh("uv-env"));
    let pip_warm = fresh("pip-warm-cache");
    venv_pip(&pip_warm, &fresh("pip-env"));

    // Round robin, so load from elsewhere on the machine falls on every row alike.
    const LABELS: [&str; 8] = [
        "attune-env, cold cache",
        "attune-env, warm cache (copy)",
        "attune-env, warm cache (hardlink)",
        "attune-env, warm cache, reuse of an identical env",
        "uv venv + uv pip install, cold cache",
        "uv venv + uv pip install, warm cache",
        "python -m venv + pip install -r, cold cache",
        "python -m venv + pip install -r, warm cache",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); LABELS.len()];
    for _ in 0..reps {
        for (i, sample) in samples.iter_mut().enumerate() {
            let d = match i {
                0..=3 => {
                    let mut req = match i {
                        0 => attune(fresh("attune-cache"), LinkMode::Copy),
                        2 => attune(attune_warm.clone(), LinkMode::Hardlink),
                        _ => attune(attune_warm.clone(), LinkMode::Copy),
                    };
                    if i == 3 {
                        req.reuse_from = vec![reuse_source.clone()];
                    }
                    let dest = fresh("attune-env");
                    let start = Instant::now();
                    let env = build_python(&uv, &req, &dest, &|_| {}).await.unwrap();
                    let d = start.elapsed();
                    assert_eq!(env.reused_from.is_some(), i == 3);
                    d
                }
                4 => bare_uv(&fresh("uv-cache"), &fresh("uv-env")),
                5 => bare_uv(&uv_warm, &fresh("uv-env")),
                6 => venv_pip(&fresh("pip-cache"), &fresh("pip-env")),
                _ => venv_pip(&pip_warm, &fresh("pip-env")),
            };
            sample.push(d);
        }
    }
    let rows: Vec<(&str, Duration)> = LABELS.iter().copied().zip(samples.into_iter().map(median)).collect();

    let get = |label: &str| rows.iter().find(|(l, _)| *l == label).map(|(_, d)| d.as_secs_f64()).expect("measured");
    println!("\n{PACKAGES} wheel requirements from a loopback index; median of {reps}; {}\n", uv.version);
    println!("| build | time | vs bare uv (same cache state) | venv + pip (same cache state) / this |");
    println!("|---|---:|---:|---:|");
    for (label, d) in &rows {
        let s = d.as_secs_f64();
        let (uv_ref, pip_ref) = if label.contains("cold") {
            (get("uv venv + uv pip install, cold cache"), get("python -m venv + pip install -r, cold cache"))
        } else {
            (get("uv venv + uv pip install, warm cache"), get("python -m venv + pip install -r, warm cache"))
        };
        println!("| {label} | {:.0} ms | {:.2}x | {:.1}x |", s * 1000.0, s / uv_ref, pip_ref / s);
    }
}
