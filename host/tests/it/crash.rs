//! Concurrency and crash safety: several processes, SIGKILL at any moment.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Env, hostile_wasm, listing, query};

/// A pack big enough that installing it takes a moment.
fn big_pack(env: &Env, name: &str) -> std::path::PathBuf {
    let src = env.make_pack(name, "1.0.0");
    for i in 0..400 {
        std::fs::write(src.join(format!("rules/r{i}.yaml")), format!("name: r{i}\n{}", "x".repeat(2000))).unwrap();
    }
    src
}

#[test]
fn two_processes_installing_the_same_pack() {
    let env = Env::new();
    let src = big_pack(&env, "race");
    for _ in 0..3 {
        let spawn = || {
            env.cmd()
                .args(["install", src.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let ok = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "exactly one wins: {outs:?}");
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        assert_eq!(loser.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&loser.stderr).contains("race@1.0.0 is already installed"), "{loser:?}");
        assert_eq!(query(&env, "SELECT status FROM installations WHERE status != 'removed'"), vec![vec!["installed"]]);
        env.run(&["verify"]).success();
        env.run(&["uninstall", "race"]).success();
    }
    // With --force both succeed, one after the other; the history says so.
    let spawn = || env.cmd().args(["install", "--force", src.to_str().unwrap()]).output();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    let live = query(&env, "SELECT status FROM installations WHERE status IN ('installed', 'pending')");
    assert_eq!(live, vec![vec!["installed"]]);
    env.run(&["verify"]).success();
    env.run(&["doctor"]).success();
}

#[test]
fn sigkill_mid_fetch_then_a_normal_run() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["install", "hostile:slow", "--plugin-file", hostile_wasm().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the fetch is writing into staging.
    let staging = env.packs().join(".attune/staging");
    let deadline = Instant::now() + Duration::from_secs(30);
    while listing(&staging).iter().filter(|p| p.contains("/pack/f")).count() < 5 {
        assert!(Instant::now() < deadline, "the slow fetch never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!listing(&staging).is_empty(), "the killed run left its staging behind");

    let out = env.run(&["list"]).success();
    assert!(out.stderr.contains("removed 1 leftover"), "{}", out.stderr);
    assert_eq!(listing(&staging), Vec::<String>::new());
    assert!(!env.packs().join("hostile-1.0.0").exists());

    env.run(&["install", "hostile:benign", "--plugin-file", hostile_wasm().to_str().unwrap()]).success();
    env.run(&["verify"]).success();
    env.run(&["doctor"]).success();
}

/// Kill installs, reinstalls and uninstalls at many moments; after each the
/// next run must find a consistent state: doctor clean, verify clean.
#[test]
fn sigkill_at_any_moment_leaves_old_or_new_state() {
    let env = Env::new();
    let src = big_pack(&env, "crashy");
    // Spread the kills over the time a whole install takes here, and past it.
    let t = Instant::now();
    env.run(&["install", src.to_str().unwrap()]).success();
    let full = t.elapsed();
    env.run(&["uninstall", "crashy"]).success();
    let mut installed_seen = 0;
    for i in 0..18u32 {
        let args: Vec<&str> = match i % 3 {
            0 => vec!["install", src.to_str().unwrap()],
            1 => vec!["install", "--force", src.to_str().unwrap()],
            _ => vec!["uninstall", "crashy"],
        };
        let mut child = env.cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        if i < 12 {
            std::thread::sleep(full * i / 12);
        } else {
            // "After it finished": on a loaded machine a run can take several
            // times the first measurement, so wait for it rather than guess.
            let deadline = Instant::now() + (full * 10).max(Duration::from_secs(30));
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        child.wait().unwrap();

        // The next run repairs what it can and reports the rest.
        env.run(&["doctor", "--repair"]).success();
        env.run(&["doctor"]).success();
        env.run(&["verify"]).success();
        let live = query(&env, "SELECT COUNT(*) FROM installations WHERE status = 'installed'");
        let on_disk = env.packs().join("crashy-1.0.0").exists();
        assert_eq!(live[0][0] == "1", on_disk, "iteration {i}: database and disk disagree");
        installed_seen += on_disk as u32;
        assert!(query(&env, "SELECT id FROM installations WHERE status = 'pending'").is_empty());
    }
    assert!(installed_seen > 0, "no kill ever landed after an install finished; the test proves little");
}
