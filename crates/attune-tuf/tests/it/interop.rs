//! Both directions against another implementation, python-tuf: our client
//! reads a repository python-tuf's Metadata API made (with a delegation), and
//! python-tuf's client reads one our publisher made. Skipped, saying so, where
//! `python3 -c 'import tuf'` fails (CI runs `pip install tuf` first).

use std::path::PathBuf;
use std::process::Command;

use attune_tuf::{Anchor, Client, Clock, Limits, Repository};

use crate::fixture::{Fixture, INDEX_V1, TARGET};
use crate::server::{Http, Server};

/// Whether python-tuf is here; without it the test is skipped with a note,
/// except under `CI` (where `.ci/run` installs it), where it fails.
fn python_tuf() -> bool {
    let ok = Command::new("python3").args(["-c", "import tuf"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "python-tuf is not installed (pip install tuf)");
        eprintln!("note: python-tuf is not installed (pip install tuf); skipping this test");
    }
    ok
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)
}

#[tokio::test]
async fn python_tuf_repository_verifies() {
    if !python_tuf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = Command::new("python3").arg(script("python_tuf_repo.py")).arg(&repo).output().unwrap();
    assert!(out.status.success(), "python-tuf: {}", String::from_utf8_lossy(&out.stderr));
    let pin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server = Server::start(repo.clone()).await;
    let client = |name: &str| {
        Client::new(Http::default(), Repository::under(&server.base), dir.path().join(name), Limits::default())
    };

    let top = client("trust-top").init(&Anchor::RootSha256(pin.clone()), "index.json", &Clock::system()).await.unwrap();
    assert_eq!(top.bytes, fs_err::read(repo.join("targets/index.json")).unwrap());
    assert_eq!(top.facts.target_role, "targets");

    // v1/index.json is signed by the delegated role "packs" (sha256 and sha512 listed).
    let delegated =
        client("trust-packs").init(&Anchor::RootSha256(pin), "v1/index.json", &Clock::system()).await.unwrap();
    assert_eq!(delegated.bytes, fs_err::read(repo.join("targets/v1/index.json")).unwrap());
    assert_eq!(delegated.facts.target_role, "packs");
    assert_eq!(delegated.facts.key_ids.len(), 1);
}

#[tokio::test]
async fn python_tuf_client_reads_our_repository() {
    if !python_tuf() {
        return;
    }
    let fx = Fixture::new().await;
    let out_file = fx.tmp.path().join("downloaded");
    let (base, root, out) = (fx.server.base.clone(), fx.meta("1.root.json"), out_file.clone());
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script("python_tuf_client.py")).arg(base).arg(root).arg(TARGET).arg(out).output()
    });
    let output = run.await.unwrap().unwrap();
    assert!(output.status.success(), "python-tuf refused our repository: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(fs_err::read(out_file).unwrap(), INDEX_V1);
}
