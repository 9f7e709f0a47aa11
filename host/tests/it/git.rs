//! The git fetcher against a real `git http-backend` on loopback, with
//! repositories made by the real `git` CLI.

use crate::common::git_server;

use std::path::{Path, PathBuf};

use crate::common::{Env, listing, query};
use git_server::{GitServer, git};

/// A repository with two commits on `main`, a `dev` branch, a lightweight
/// and an annotated tag, an exec file, a symlink and nested folders.
struct Repo {
    server: GitServer,
    work: PathBuf,
    first: String,
    second: String,
    dev: String,
}

fn repo(env: &Env) -> Repo {
    let work = env.tmp.path().join("work");
    let root = env.tmp.path().join("root");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    git(&work, &["init", "-q", "-b", "main", "."]);
    crate::common::write_pack(&work, "gitpack", "1.0.0");
    std::fs::remove_dir(work.join("empty")).unwrap(); // git does not keep empty folders
    std::fs::create_dir_all(work.join("lib/deep/er")).unwrap();
    std::fs::write(work.join("lib/deep/er/data.txt"), "nested\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "v1.0.0"]);
    git(&work, &["tag", "-a", "v1.0.0-annotated", "-m", "annotated"]);
    std::fs::write(work.join("pack.yaml"), "---\nname: gitpack\nversion: 1.1.0\n").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "-b", "dev", &first]);
    std::fs::write(work.join("pack.yaml"), "---\nname: gitpack\nversion: 2.0.0-dev\n").unwrap();
    git(&work, &["commit", "-q", "-am", "dev"]);
    let dev = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "main"]);
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"]);
    // Let clients ask for any reachable commit, as hosting services do.
    git(&root.join("repo.git"), &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    Repo { server: GitServer::start(&root), work, first, second, dev }
}

fn tree_checksum(env: &Env, path: &Path) -> String {
    env.run(&["pack", "checksum", path.to_str().unwrap(), "--format", "json"]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The tree `git archive` makes of `commit`, unpacked.
fn archive_of(env: &Env, repo: &Repo, commit: &str) -> PathBuf {
    let dir = env.tmp.path().join(format!("archive-{commit}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.with_extension("tar");
    git(&repo.work, &["archive", "--format=tar", "-o", tar.to_str().unwrap(), commit]);
    assert!(std::process::Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&dir).status().unwrap().success());
    dir
}

fn installed_commit(env: &Env) -> (String, String) {
    let info = env.run(&["info", "gitpack", "--json"]).success().json();
    let row = &info["installed"][0];
    (row["version"].as_str().unwrap().to_string(), row["resolved_commit"].as_str().unwrap_or("").to_string())
}

#[test]
fn default_ref_is_the_remote_head_and_matches_git_archive() {
    let env = Env::new();
    let repo = repo(&env);
    let url = format!("git+{}", repo.server.url("repo.git"));
    let out = env.run(&["install", &url]).success();
    assert!(out.stdout.contains("installed gitpack 1.1.0"), "{}", out.stdout);
    assert_eq!(installed_commit(&env), ("1.1.0".into(), repo.second.clone()));
    let installed = env.packs().join("gitpack-1.1.0");
    assert_eq!(tree_checksum(&env, &installed), tree_checksum(&env, &archive_of(&env, &repo, &repo.second)));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(installed.join("actions/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_link(installed.join("actions/alias.sh")).unwrap().to_str(), Some("run.sh"));
    assert_eq!(std::fs::read_to_string(installed.join("lib/deep/er/data.txt")).unwrap(), "nested\n");
    // `attune info` shows the commit.
    let out = env.run(&["info", "gitpack"]).success();
    assert!(out.stdout.contains(&format!("commit       {}", repo.second)), "{}", out.stdout);
    let rows = query(&env, "SELECT source_type, resolved_commit FROM installations");
    assert_eq!(rows, vec![vec!["git".to_string(), repo.second.clone()]]);
}

#[test]
fn branches_tags_and_commits() {
    let env = Env::new();
    let repo = repo(&env);
    let url = repo.server.url("repo.git"); // `…/repo.git` is detected as git
    let cases = [
        ("dev", "2.0.0-dev", repo.dev.clone()),
        ("v1.0.0", "1.0.0", repo.first.clone()),
        ("v1.0.0-annotated", "1.0.0", repo.first.clone()),
        ("main", "1.1.0", repo.second.clone()),
        (repo.first.as_str(), "1.0.0", repo.first.clone()),
        (&repo.dev[..10], "2.0.0-dev", repo.dev.clone()),
    ];
    for (reference, version, commit) in &cases {
        let out = env.run(&["install", "--force", "--ref", reference, &url]);
        let out = out.success();
        assert!(out.stdout.contains(&format!("gitpack {version}")), "{reference}: {}", out.stdout);
        let dir = env.packs().join(format!("gitpack-{version}"));
        assert_eq!(tree_checksum(&env, &dir), tree_checksum(&env, &archive_of(&env, &repo, commit)), "{reference}");
        let rows = query(
            &env,
            &format!(
                "SELECT requested_ref, resolved_commit FROM installations WHERE version = '{version}' AND status = 'installed'"
            ),
        );
        assert_eq!(rows, vec![vec![reference.to_string(), commit.clone()]], "{reference}");
    }
}

#[test]
fn a_missing_ref_lists_some_that_exist() {
    let env = Env::new();
    let repo = repo(&env);
    let out = env.run(&["install", "--ref", "nope", &repo.server.url("repo.git")]).failure();
    assert!(out.stderr.contains("no branch, tag or commit named \"nope\""), "{}", out.stderr);
    assert!(
        out.stderr.contains("dev") && out.stderr.contains("main") && out.stderr.contains("v1.0.0"),
        "{}",
        out.stderr
    );
    assert!(listing(&env.packs()).iter().all(|p| p.starts_with(".attune")));
}

#[test]
fn a_moved_branch_installs_the_new_commit() {
    let env = Env::new();
    let repo = repo(&env);
    let url = repo.server.url("repo.git");
    env.run(&["install", "--ref", "main", &url]).success();
    // Move main on the server without changing the version.
    std::fs::write(repo.work.join("README.md"), "changed\n").unwrap();
    git(&repo.work, &["add", "-A"]);
    git(&repo.work, &["commit", "-q", "-m", "third"]);
    let third = git(&repo.work, &["rev-parse", "HEAD"]);
    git(&repo.work, &["push", "-q", repo.server.root.join("repo.git").to_str().unwrap(), "main"]);
    let out = env.run(&["install", "--ref", "main", &url]).failure();
    assert!(out.stderr.contains("use --force"), "{}", out.stderr);
    env.run(&["install", "--force", "--ref", "main", &url]).success();
    assert_eq!(installed_commit(&env).1, third);
}

#[test]
fn a_garbage_server_is_a_clear_error() {
    let env = Env::new();
    let repo = repo(&env);
    let out = env.run(&["install", &format!("git+{}", repo.server.url("garbage/repo.git"))]).failure();
    assert!(out.stderr.contains("fetcher `git`"), "{}", out.stderr);
    assert!(listing(&env.packs()).iter().all(|p| p.starts_with(".attune")));
    let out = env.run(&["install", &format!("git+{}", repo.server.url("missing.git"))]).failure();
    assert!(out.stderr.contains("missing.git"), "{}", out.stderr);
}

#[test]
fn submodules_are_reported() {
    let env = Env::new();
    let repo = repo(&env);
    let sub = env.tmp.path().join("subrepo");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main", "."]);
    std::fs::write(sub.join("x"), "x").unwrap();
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    git(
        &repo.work,
        &["-c", "protocol.file.allow=always", "submodule", "add", "-q", sub.to_str().unwrap(), "vendor/sub"],
    );
    git(&repo.work, &["commit", "-q", "-m", "with submodule"]);
    git(&repo.work, &["push", "-q", repo.server.root.join("repo.git").to_str().unwrap(), "main"]);
    let out = env.run(&["install", "--ref", "main", &repo.server.url("repo.git")]).success();
    assert!(out.stderr.contains("submodules are not fetched") && out.stderr.contains("vendor/sub"), "{}", out.stderr);
    let info = env.run(&["info", "gitpack", "--json"]).success().json();
    assert_eq!(info["installed"][0]["metadata_json"]["fetcher"]["submodules"], "vendor/sub");
}

#[track_caller]
fn nothing_installed(env: &Env) {
    assert!(listing(&env.packs()).iter().all(|p| p.starts_with(".attune")), "{:?}", listing(&env.packs()));
    assert_eq!(listing(&env.packs().join(".attune/staging")), Vec::<String>::new());
    assert!(query(env, "SELECT id FROM installations WHERE status != 'failed'").is_empty());
}

#[test]
fn a_corrupt_pack_is_refused() {
    let env = Env::new();
    let repo = repo(&env);
    let out = env.run(&["install", &format!("git+{}", repo.server.url("corrupt/repo.git"))]).failure();
    assert!(out.stderr.contains("fetcher `git`"), "{}", out.stderr);
    assert!(out.stderr.contains("corrupt") || out.stderr.contains("pack"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn endless_pkt_lines_stop_at_a_limit() {
    let env = Env::new();
    let repo = repo(&env);
    let t = std::time::Instant::now();
    let url = format!("git+{}", repo.server.url("endless/repo.git"));
    let out = env.run(&["install", "--limit-time", "5s", "--limit-memory", "64MiB", &url]).failure();
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(out.stderr.contains("limit"), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_pack_of_the_wrong_commit_is_refused() {
    let env = Env::new();
    let repo = repo(&env);
    // Asked for `first`, the server sends `dev`'s objects: ids are computed, not trusted.
    *repo.server.swap.lock().unwrap() = Some((repo.first.clone(), repo.dev.clone()));
    let url = format!("git+{}", repo.server.url("swap/repo.git"));
    let out = env.run(&["install", "--ref", &repo.first, &url]).failure();
    assert!(out.stderr.contains(&format!("object {} is missing from the pack", repo.first)), "{}", out.stderr);
    nothing_installed(&env);
}

#[test]
fn a_pack_in_reverse_order_installs_the_same_tree() {
    // Files are written while the pack is read when their tree came first;
    // here none did, so every file is written by the walk afterwards.
    let env = Env::new();
    let repo = repo(&env);
    let url = format!("git+{}", repo.server.url("reversed/repo.git"));
    env.run(&["install", "--ref", &repo.first, &url]).success();
    assert_eq!(installed_commit(&env), ("1.0.0".into(), repo.first.clone()));
    assert_eq!(
        tree_checksum(&env, &env.packs().join("gitpack-1.0.0")),
        tree_checksum(&env, &archive_of(&env, &repo, &repo.first))
    );
    env.run(&["verify", "gitpack"]).success();
}

#[test]
fn a_pack_sent_a_few_bytes_at_a_time_installs_the_same_tree() {
    // The pack is read as it arrives: here every object's header and zlib
    // stream is cut across reads. Two near-copies in one commit make git
    // store one as a delta of the other, so deltas are cut too.
    let env = Env::new();
    let root = env.tmp.path().join("root");
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let text: String = (0..400).map(|i| format!("line {i}: the same words on every line of the file\n")).collect();
    std::fs::write(work.join("pack.yaml"), "---\nname: trickle\nversion: 1.0.0\n").unwrap();
    std::fs::write(work.join("a.txt"), &text).unwrap();
    std::fs::write(work.join("b.txt"), format!("{text}one more line\n")).unwrap();
    std::fs::write(work.join("empty"), "").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "trickle"]);
    git(&root, &["clone", "-q", "--bare", "work", "repo.git"]);
    let bare = root.join("repo.git");
    git(&bare, &["repack", "-adfq"]);
    let packs = std::fs::read_dir(bare.join("objects/pack")).unwrap();
    let idx = packs.map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "idx")).unwrap();
    let verify = git(&bare, &["verify-pack", "-v", idx.to_str().unwrap()]);
    assert!(verify.contains("chain length = 1"), "the fixture has no delta:\n{verify}");
    git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);

    let server = GitServer::start(&root);
    env.run(&["install", &format!("git+{}", server.url("trickle/repo.git"))]).success();
    let installed = env.packs().join("trickle-1.0.0");
    assert_eq!(std::fs::read_to_string(installed.join("b.txt")).unwrap(), format!("{text}one more line\n"));
    assert_eq!(std::fs::read(installed.join("empty")).unwrap(), b"");
    let archive = env.tmp.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let tar = env.tmp.path().join("archive.tar");
    git(&work, &["archive", "--format=tar", "-o", tar.to_str().unwrap(), "HEAD"]);
    assert!(std::process::Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&archive).status().unwrap().success());
    assert_eq!(tree_checksum(&env, &installed), tree_checksum(&env, &archive));
}

#[test]
fn a_git_bomb_stops_at_the_file_limit() {
    // Seven levels of ten names for one subtree: 10^7 paths from 8 objects.
    let env = Env::new();
    let root = env.tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let bare = root.join("repo.git");
    git(&root, &["init", "-q", "--bare", "repo.git"]);
    let blob = git_server::git_with_input(&bare, &["hash-object", "-w", "--stdin"], "boom\n");
    let mut tree = {
        let pack_yaml =
            git_server::git_with_input(&bare, &["hash-object", "-w", "--stdin"], "---\nname: bomb\nversion: 1.0.0\n");
        let files: String = (0..10).map(|i| format!("100644 blob {blob}\tf{i}\n")).collect();
        git_server::git_with_input(&bare, &["mktree"], &format!("{files}100644 blob {pack_yaml}\tpack.yaml\n"))
    };
    for _ in 0..6 {
        let dirs: String = (0..10).map(|i| format!("040000 tree {tree}\td{i}\n")).collect();
        tree = git_server::git_with_input(&bare, &["mktree"], &dirs);
    }
    let commit = git_server::git_with_input(&bare, &["commit-tree", &tree, "-m", "bomb"], "");
    git(&bare, &["update-ref", "refs/heads/main", &commit]);
    git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let server = GitServer::start(&root);
    let t = std::time::Instant::now();
    let out = env.run(&["install", &format!("git+{}", server.url("repo.git"))]).failure();
    assert!(out.stderr.contains("the file limit of 100000 entries"), "{}", out.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(60), "{:?}", t.elapsed());
    nothing_installed(&env);
}

#[test]
fn an_old_protocol_server_works_too() {
    let env = Env::new();
    let repo = repo(&env);
    let url = format!("git+{}", repo.server.url("v0/repo.git"));
    env.run(&["install", "--ref", "v1.0.0-annotated", &url]).success();
    assert_eq!(installed_commit(&env), ("1.0.0".into(), repo.first.clone()));
    let info = env.run(&["info", "gitpack", "--json"]).success().json();
    let protocol = info["installed"][0]["metadata_json"]["fetcher"]["protocol"].as_str().unwrap().to_string();
    assert!(protocol == "V0" || protocol == "V1", "{protocol}");
    assert_eq!(
        tree_checksum(&env, &env.packs().join("gitpack-1.0.0")),
        tree_checksum(&env, &archive_of(&env, &repo, &repo.first))
    );
}
