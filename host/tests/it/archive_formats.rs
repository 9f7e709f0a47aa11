//! tar.zst and tar.xz, made by the real `zstd` and `xz` tools, install the
//! same tree as the folder they were made from.

use std::process::Command;

use crate::common::Env;

fn tree_checksum(env: &Env, path: &std::path::Path) -> String {
    env.run(&["pack", "checksum", path.to_str().unwrap(), "--format", "json"]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn zstd_and_xz_archives_install_the_same_tree() {
    for (tool, ext) in [("zstd", "tar.zst"), ("xz", "tar.xz"), ("gzip", "tar.gz")] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("note: {tool} is not installed; skipping .{ext}");
            continue;
        }
        let env = Env::new();
        let src = env.make_pack("fmt", "1.0.0");
        let archive = env.tmp.path().join(format!("fmt.{ext}"));
        let script = format!("tar cf - -C {} . | {tool} -c > {}", src.display(), archive.display());
        assert!(Command::new("sh").arg("-c").arg(&script).status().unwrap().success(), "{script}");
        env.run(&["install", archive.to_str().unwrap()]).success();
        let installed = env.packs().join("fmt-1.0.0");
        assert_eq!(tree_checksum(&env, &installed), tree_checksum(&env, &src), "{ext}");
        let info = env.run(&["info", "fmt", "--json"]).success().json();
        let format = &info["installed"][0]["metadata_json"]["fetcher"]["archive-format"];
        assert_eq!(format, ext, "format detected from the bytes");
    }
}

#[test]
fn bzip2_is_refused_with_a_clear_message() {
    if Command::new("bzip2").arg("--help").output().is_err() {
        return;
    }
    let env = Env::new();
    let src = env.make_pack("bz", "1.0.0");
    let archive = env.tmp.path().join("bz.tar.bz2");
    let script = format!("tar cf - -C {} . | bzip2 -c > {}", src.display(), archive.display());
    assert!(Command::new("sh").arg("-c").arg(&script).status().unwrap().success());
    let out = env.run(&["install", archive.to_str().unwrap()]).failure();
    assert!(out.stderr.contains("bzip2 archives are not supported"), "{}", out.stderr);
}
