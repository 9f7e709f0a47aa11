//! A hostile fetcher against the sandbox, through the real binary.
//!
//! `plugins/hostile` is a test-only component whose source string picks an
//! attack. Each one must end in a clear error and exit 1 (the host process
//! survives), with nothing written outside staging, nothing installed and
//! no database row left claiming otherwise.

use std::path::Path;

use crate::common::{Env, Out, hostile_wasm, listing, query};

fn attack(env: &Env, name: &str) -> Out {
    env.run(&[
        "install",
        &format!("hostile:{name}"),
        "--plugin-file",
        hostile_wasm().to_str().unwrap(),
        "--limit-time",
        "3s",
        "--limit-memory",
        "64MiB",
        "--limit-bytes",
        "8MiB",
        "--limit-files",
        "500",
    ])
}

/// Nothing installed, nothing left in staging, no installed row.
#[track_caller]
fn assert_clean(env: &Env) {
    let visible: Vec<String> = listing(&env.packs()).into_iter().filter(|p| !p.starts_with(".attune")).collect();
    assert!(visible.is_empty(), "pack folder appeared: {visible:?}");
    assert_eq!(listing(&env.packs().join(".attune/staging")), Vec::<String>::new(), "staging left behind");
    assert!(query(env, "SELECT id FROM installations WHERE status != 'failed'").is_empty());
}

#[track_caller]
fn refused(name: &str, expect: &[&str]) -> Out {
    let env = Env::new();
    // Built on first use; the build is not the attack's time.
    crate::common::hostile_wasm();
    let t = std::time::Instant::now();
    let out = attack(&env, name).failure();
    for e in expect {
        assert!(out.stderr.contains(e), "{name}: expected {e:?} in:\n{}", out.stderr);
    }
    assert!(t.elapsed().as_secs() < 30, "{name} took {:?}", t.elapsed());
    assert_clean(&env);
    out
}

#[test]
fn the_harness_can_install_when_the_fetcher_behaves() {
    let env = Env::new();
    attack(&env, "benign").success();
    assert!(env.packs().join("hostile-1.0.0/pack.yaml").is_file());
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    refused("loop", &["fetcher `hostile` ran out of time", "limit of 3s", "--limit-time"]);
}

#[test]
fn a_guest_parked_in_a_host_call_is_stopped_by_the_time_limit() {
    refused("sleep", &["ran out of time", "limit of 3s"]);
}

#[test]
fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    refused("alloc", &["hit its memory limit of 64 MiB", "--limit-memory"]);
}

#[test]
fn writing_too_many_bytes_is_stopped() {
    refused("bytes", &["larger than the byte limit of 8388608 bytes", "--limit-bytes"]);
}

#[test]
fn creating_too_many_files_is_stopped() {
    refused("files", &["more than the file limit of 500 entries", "--limit-files"]);
}

#[test]
fn dotdot_paths_are_refused() {
    refused("dotdot", &["\"../escape.txt\"", "`..` components are not allowed"]);
    refused("dotdot-nested", &["`..` components are not allowed"]);
    assert!(!Path::new("/tmp/escape.txt").exists());
}

#[test]
fn absolute_paths_are_refused() {
    refused("absolute", &["absolute paths are not allowed"]);
    assert!(!Path::new("/tmp/attune-hostile-absolute.txt").exists());
}

#[test]
fn symlinks_out_of_the_pack_are_refused() {
    refused("symlink-out", &["symlink target \"../../../../etc\" leaves the pack"]);
    refused("symlink-absolute", &["symlink target \"/etc/passwd\" leaves the pack"]);
}

#[test]
fn writing_through_a_symlink_is_refused() {
    refused("through-symlink", &["\"inside/x.txt\": a parent (\"inside\") is a file or symlink"]);
}

#[test]
fn the_host_filesystem_is_not_visible() {
    let out = refused("read-passwd", &["/etc/passwd:"]);
    assert!(!out.stderr.contains("root:x:0"), "{}", out.stderr);
    refused("write-tmp", &["/tmp/attune-hostile-write.txt:"]);
    assert!(!Path::new("/tmp/attune-hostile-write.txt").exists());
}

#[test]
fn the_read_only_input_cannot_be_escaped() {
    let env = Env::new();
    let input = env.make_pack("input", "1.0.0");
    let out =
        env.run(&["install", input.to_str().unwrap(), "--plugin-file", hostile_wasm().to_str().unwrap()]).failure();
    // The source names a folder, so the hostile fetcher gets it read-only; its attack is keyed by
    // the source, which here is a path, so it reports an unknown attack: try the escape explicitly.
    assert!(out.stderr.contains("unknown attack"), "{}", out.stderr);

    let out =
        env.run(&["install", "hostile:escape-input", "--plugin-file", hostile_wasm().to_str().unwrap()]).failure();
    assert!(out.stderr.contains("every path outside the input was refused"), "{}", out.stderr);
    assert_clean(&env);
}

#[test]
fn host_side_copies_stay_inside_the_input_and_within_the_limits() {
    let env = Env::new();
    let run = |dir: &Path| {
        let wasm = hostile_wasm();
        env.run(&["install", dir.to_str().unwrap(), "--plugin-file", wasm.to_str().unwrap(), "--limit-bytes", "8MiB"])
    };
    let folder = |name: &str| {
        let d = env.tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };
    // `..` and absolute paths break the path rules: refused, and the
    // refusal fails the install although the fetcher ignored it.
    let out = run(&folder("copy-dotdot")).failure();
    assert!(out.stderr.contains("wrote outside the rules: invalid path"), "{}", out.stderr);
    // A symlink in the input is not followed, wherever it leads.
    let d = folder("copy-symlink-out");
    std::os::unix::fs::symlink("/etc/passwd", d.join("out")).unwrap();
    let out = run(&d).failure();
    assert!(out.stderr.contains("copying a symlink was refused"), "{}", out.stderr);
    assert!(!out.stderr.contains("root:x:0"), "{}", out.stderr);
    // Copied bytes count against the byte limit as written ones do.
    let d = folder("copy-bytes");
    std::fs::write(d.join("big"), vec![7u8; 1 << 20]).unwrap();
    let out = run(&d).failure();
    assert!(out.stderr.contains("byte limit of 8388608"), "{}", out.stderr);
    assert_clean(&env);
}

#[test]
fn a_version_list_is_checked_and_cannot_write() {
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap()]).success();
    for (attack, expect) in [
        ("versions-not-semver", "its list-versions() answer was refused: `versions[1].version` is \"latest\""),
        ("versions-many", "its list-versions() answer was refused: `versions` has 5000 entries, over the cap of 4096"),
        ("versions-write", "list-versions() tried to write to staging; listing versions may not write"),
        ("versions-elsewhere", "names the source \"/etc\", which is not a hostile:// source"),
    ] {
        let out = env.run(&["install", &format!("hostile://{attack}@^1")]).failure();
        assert!(out.stderr.contains(expect), "{attack}: {}", out.stderr);
    }
    assert_clean(&env);
}

#[test]
fn no_network_at_all() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    refused(&format!("network:{port}"), &[&format!("127.0.0.1:{port}")]);
    assert!(listener.accept().is_err(), "the fetcher reached a socket it was not granted");
}

#[test]
fn ignoring_an_error_and_claiming_success_still_fails() {
    refused("ignore-errors", &["wrote outside the rules", "`..` components are not allowed"]);
}

#[test]
fn a_panic_is_a_clear_error() {
    refused("panic", &["fetcher `hostile` crashed", "hostile fetcher panicked on purpose"]);
}

#[test]
fn a_traps_cause_comes_before_its_backtrace() {
    let out = refused("panic", &[]);
    let first = out.stderr.lines().next().unwrap_or_default();
    assert_eq!(first, "error: fetcher `hostile` crashed: wasm trap: wasm `unreachable` instruction executed");
    let (cause, stderr, trace) = (
        out.stderr.find("crashed").unwrap(),
        out.stderr.find("fetcher stderr | ").unwrap(),
        out.stderr.find("where it stopped (wasm backtrace):").unwrap(),
    );
    assert!(cause < stderr && stderr < trace, "{}", out.stderr);
    assert!(out.stderr.lines().count() < 20, "{}", out.stderr);
}

#[test]
fn a_stderr_flood_is_bounded() {
    let out = refused("stderr-flood", &["flooded stderr"]);
    assert!(out.stderr.len() < 64 * 1024, "{} bytes of stderr", out.stderr.len());
}

// ---------------------------------------------------------------------------
// Containment: what a plugin can make the host hold, record or print.
//
// Each attack must fail with a clear error, record nothing, print no raw
// control bytes, and keep the attune process's peak RSS under the fetch's
// memory limit plus the fixed overhead the README states.

use crate::common::components;

/// The fetch's memory limit in these tests.
const LIMIT: u64 = 64 << 20;
/// What the host itself may add on top of the fetch's memory limit: the
/// process (wasmtime, compiled code, sqlx; ~30 MiB measured for a benign
/// fetch), the handle cap's worth of wasi:http header maps (1024 × 32 KiB)
/// and one 1 MiB copy chunk. The README states this bound.
const OVERHEAD: u64 = 64 << 20;

/// Control bytes a terminal would act on: none may reach it raw.
#[track_caller]
fn assert_no_raw_controls(what: &str, text: &str) {
    let bad: Vec<char> =
        text.chars().filter(|c| (c.is_control() && *c != '\n') || ('\u{80}'..='\u{9f}').contains(c)).collect();
    assert!(bad.is_empty(), "{what}: raw control characters {bad:?} in:\n{text}");
}

/// Runs an attack with the memory limit of [`LIMIT`] and checks everything
/// every contained attack must hold; returns the output for specifics.
#[track_caller]
fn contained(env: &Env, args: &[&str], expect: &[&str]) -> Out {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--limit-time", "20s", "--limit-memory", "64MiB", "--limit-bytes", "8MiB"]);
    let t = std::time::Instant::now();
    let (out, peak) = env.run_peak(&all);
    assert!(!out.ok, "{args:?} succeeded:\n{}", out.stdout);
    for e in expect {
        assert!(out.stderr.contains(e), "{args:?}: expected {e:?} in:\n{}", out.stderr);
    }
    eprintln!("{args:?}: peak RSS {} MiB", peak >> 20);
    assert!(
        peak < LIMIT + OVERHEAD,
        "{args:?}: peak RSS {} MiB, over the limit ({} MiB) + overhead ({} MiB)",
        peak >> 20,
        LIMIT >> 20,
        OVERHEAD >> 20
    );
    assert!(t.elapsed().as_secs() < 60, "{args:?} took {:?}", t.elapsed());
    assert_no_raw_controls("stderr", &out.stderr);
    assert_no_raw_controls("stdout", &out.stdout);
    assert_clean(env);
    out
}

fn hostile_args(attack: &str) -> Vec<String> {
    vec!["install".into(), format!("hostile:{attack}"), "--plugin-file".into(), hostile_wasm().display().to_string()]
}

fn contained_attack(attack: &str, expect: &[&str]) -> Out {
    let env = Env::new();
    let args = hostile_args(attack);
    contained(&env, &args.iter().map(String::as_str).collect::<Vec<_>>(), expect)
}

fn wasm_file(env: &Env, name: &str, wasm: &[u8]) -> String {
    components::write(env.tmp.path(), name, wasm).display().to_string()
}

#[test]
fn the_benign_fetch_stays_under_the_stated_overhead() {
    let env = Env::new();
    let mut args = hostile_args("benign");
    args.extend(["--limit-memory".into(), "64MiB".into()]);
    let (out, peak) = env.run_peak(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.ok, "{}", out.stderr);
    eprintln!("benign install: peak RSS {} MiB", peak >> 20);
    assert!(peak < OVERHEAD, "a benign install alone peaks at {} MiB", peak >> 20);
}

#[test]
fn several_memories_count_against_one_memory_limit() {
    // Whatever WIT version the plugin speaks.
    for wit in components::Wit::ALL {
        let env = Env::new();
        // Eight memories of 50 MiB: each under 64 MiB, 400 MiB together.
        let wasm = wasm_file(&env, "manymem", &components::many_memories(wit, 8, 800));
        contained(&env, &["install", "x:y", "--plugin-file", &wasm], &["hit its memory limit of 64 MiB"]);
    }
}

#[test]
fn many_tables_count_against_the_memory_limit() {
    let env = Env::new();
    // 64 tables of a million entries each.
    let wasm = wasm_file(&env, "manytables", &components::many_tables(64, 1_000_000));
    contained(&env, &["install", "x:y", "--plugin-file", &wasm], &["hit its memory limit of 64 MiB"]);
}

#[test]
fn resource_handles_are_capped() {
    contained_attack("handles", &["more than 1024 resource handles"]);
}

#[test]
fn hashers_count_as_resource_handles() {
    contained_attack("hashers", &["more than 1024 resource handles"]);
}

#[test]
fn a_hash_of_bytes_outside_the_guests_memory_traps() {
    // `hasher.update` with a list that runs past the end of memory: the
    // host reads the list in place, so the bounds are all that stand
    // between a guest and the host's memory.
    let env = Env::new();
    let imports = r#"(import "attune:fetcher/digests@0.3.0" "[constructor]hasher" (func $hasher (param i32) (result i32)))
  (import "attune:fetcher/digests@0.3.0" "[method]hasher.update" (func $update (param i32 i32 i32)))"#;
    let fetch = "(call $update (call $hasher (i32.const 0)) (i32.const 65000) (i32.const 1000)) (call $fail)";
    let wasm =
        components::component_importing(components::Wit::Current, "outofbounds", imports, "", "(call $info)", fetch);
    let wasm = wasm_file(&env, "outofbounds", &wasm);
    contained(
        &env,
        &["install", "x:y", "--plugin-file", &wasm],
        &["crashed", "list pointer/length out of bounds of memory"],
    );
}

#[test]
fn a_wasi_stream_write_as_large_as_memory_is_refused_before_it_is_copied() {
    contained_attack("stderr-huge", &["crashed", "a write of 41943040 bytes is more than check-write permitted"]);
    contained_attack("stderr-huge-blocking", &["crashed", "Buffer too large for blocking-write-and-flush"]);
}

#[test]
fn wasi_random_cannot_make_the_host_allocate_much() {
    contained_attack("random-huge", &["crashed", "exceeds limit 65536"]);
}

#[test]
fn http_header_maps_are_capped_by_the_handle_cap() {
    // Only a plugin granted a host has wasi:http at all: add it with one.
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap(), "--allow-host", "127.0.0.1"]).success();
    contained(&env, &["install", "hostile:http-fields", "--plugin", "hostile"], &["more than 1024 resource handles"]);
}

#[test]
fn wasi_http_is_not_linked_for_a_plugin_granted_no_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    contained_attack(&format!("fetch-url:http://127.0.0.1:{port}/x"), &["wasi:http, which is not linked"]);
    assert!(listener.accept().is_err(), "the fetcher reached a socket it was not granted");
}

#[test]
fn huge_log_lines_are_capped_when_they_arrive() {
    let out = contained_attack("log-huge", &["logged huge lines", "more bytes cut"]);
    assert!(out.stderr.len() < 64 * 1024, "{} bytes of stderr", out.stderr.len());
}

#[test]
fn a_log_storm_is_rate_limited_and_the_drops_are_counted() {
    let out = contained_attack("log-storm", &["logged a storm", "log messages from the fetcher were dropped"]);
    let lines = out.stderr.lines().filter(|l| l.contains("storm line")).count();
    assert!(lines <= 400, "{lines} log lines shown");
    // Each line once (not once by the display and again by the log).
    assert_eq!(out.stderr.matches("storm line 0\n").count(), 1, "{}", out.stderr);
}

#[test]
fn escape_sequences_reach_no_terminal_raw() {
    for attack in ["escapes", "escapes-panic"] {
        let out = contained_attack(attack, &["\\x1b]0;pwned\\x07"]);
        assert!(!out.stderr.contains("\nattune: installed ok"), "{}", out.stderr);
    }
    // The same through --json, where the text is a JSON string.
    let env = Env::new();
    let mut args = hostile_args("escapes");
    args.push("--json".into());
    let out = contained(&env, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.stdout.contains("\\\\x1b]0;pwned"), "{}", out.stdout);
}

#[test]
fn a_path_argument_as_large_as_memory_is_refused_without_a_copy() {
    contained_attack("huge-path", &["invalid path <41943040 bytes>: longer than the 4096 bytes a path may have"]);
}

#[test]
fn a_write_as_large_as_memory_is_taken_in_chunks() {
    contained_attack("huge-write", &["larger than the byte limit of 8388608 bytes"]);
}

#[test]
fn huge_metadata_is_refused_naming_the_field_and_cap() {
    contained_attack(
        "metadata-huge",
        &["its fetch() answer was refused: `metadata note`", "over the cap of 1024 bytes"],
    );
    contained_attack("metadata-many", &["`metadata` has 100000 entries, over the cap of 64"]);
}

#[test]
fn a_resolved_commit_that_is_a_path_is_refused() {
    contained_attack(
        "commit-path",
        &["`resolved-commit` is \"../../../../etc/passwd\"", "40 or 64 hexadecimal digits"],
    );
}

#[test]
fn describe_runs_under_fixed_limits_and_says_so() {
    let env = Env::new();
    let wasm = wasm_file(&env, "slowdescribe", &components::describe_loops());
    let out = contained(&env, &["install", "x:y", "--plugin-file", &wasm], &["describe() ran longer than 10s"]);
    assert!(!out.stderr.contains("--limit-time"), "{}", out.stderr);
    let out = env.run(&["plugin", "add", &wasm]).failure();
    assert!(out.stderr.contains("no flag raises"), "{}", out.stderr);
}

#[test]
fn a_huge_describe_answer_is_refused_without_a_copy() {
    // Whatever WIT version the plugin speaks.
    for wit in components::Wit::ALL {
        let env = Env::new();
        let wasm = wasm_file(&env, "hugedescribe", &components::describe_huge_summary(wit, 900));
        let (out, peak) = env.run_peak(&["plugin", "add", &wasm]);
        assert!(!out.ok);
        assert!(
            out.stderr
                .contains("its describe() answer was refused: `summary` is 58982400 bytes long, over the cap of 256"),
            "{wit:?}: {}",
            out.stderr
        );
        assert!(peak < LIMIT + OVERHEAD, "{wit:?}: peak RSS {} MiB", peak >> 20);
        assert!(query(&env, "SELECT name FROM plugins").is_empty());
    }
}

#[test]
fn a_describe_answer_with_escape_sequences_is_refused_and_shown_escaped() {
    let env = Env::new();
    let wasm = wasm_file(&env, "escdescribe", &components::describe_escapes());
    let out = env.run(&["plugin", "add", &wasm, "--yes"]).failure();
    assert!(out.stderr.contains("`name` is \"esc\\\\x1b]0;pwned"), "{}", out.stderr);
    assert_no_raw_controls("stderr", &out.stderr);
    assert!(query(&env, "SELECT name FROM plugins").is_empty());
}

#[test]
fn an_install_records_the_identity_fixed_at_plugin_add() {
    let env = Env::new();
    env.run(&["plugin", "add", hostile_wasm().to_str().unwrap(), "--yes"]).success();
    // A describe() that answers otherwise now than at add: simulated by
    // changing what was recorded (a real chameleon answers at random).
    query(&env, "UPDATE plugins SET version = '0.0.1-added'");
    let out = env.run(&["install", "hostile:benign", "--plugin", "hostile"]).failure();
    assert!(
        out.stderr.contains("its version is now 0.1.0, but it was 0.0.1-added when the plugin was added"),
        "{}",
        out.stderr
    );
    assert_clean(&env);
    // Back as recorded, it installs, and the record carries the added identity.
    query(&env, "UPDATE plugins SET version = '0.1.0'");
    env.run(&["install", "hostile:benign", "--plugin", "hostile"]).success();
    let rows =
        query(&env, "SELECT fetcher_name || ' ' || fetcher_version FROM installations WHERE status = 'installed'");
    assert_eq!(rows, vec![vec!["hostile 0.1.0".to_string()]]);
}
