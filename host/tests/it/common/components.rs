//! Hostile fetchers of shapes the SDK cannot build.
//!
//! A Rust fetcher has one memory and a well-behaved `describe()`. An
//! attacker's component need not: these are written as core WebAssembly
//! text against the real `wit/` world and turned into components with
//! `wit-component`, so the host is tested against several memories, many
//! tables, and `describe()` answers that loop or are huge. Some are built
//! against each WIT version served, so every version is held to the same
//! limits.

use std::path::{Path, PathBuf};

/// Where each piece of a component's fixed data sits in its first page.
const NAME_AT: u32 = 1024;
const VERSION_AT: u32 = 1100;
const SUMMARY_AT: u32 = 1200;
const SCHEMES_AT: u32 = 1400;
const INFO_AT: u32 = 2048;
const RESULT_AT: u32 = 3072;
const MESSAGE_AT: u32 = 1500;

/// Which `attune:fetcher` a component is built against.
#[derive(Debug, Clone, Copy)]
pub enum Wit {
    /// `wit/`, the current version.
    Current,
    /// `wit/frozen/0.2.0`.
    V0_2_0,
    /// `wit/frozen/0.1.0`.
    V0_1_0,
}

impl Wit {
    pub const ALL: [Wit; 3] = [Wit::Current, Wit::V0_2_0, Wit::V0_1_0];

    fn dir_and_version(self) -> (&'static str, &'static str) {
        match self {
            Wit::Current => ("../wit", "0.3.0"),
            Wit::V0_2_0 => ("../wit/frozen/0.2.0", "0.2.0"),
            Wit::V0_1_0 => ("../wit/frozen/0.1.0", "0.1.0"),
        }
    }
}

/// A fetcher component whose `describe()` and `fetch()` run the given core
/// wasm instructions. `extra` adds module fields (memories, tables).
/// The helpers `$info` (a valid `fetcher-info` named `name`) and `$fail`
/// (`err(other("failed"))`) return what the exports must.
pub fn component(name: &str, extra: &str, describe: &str, fetch: &str) -> Vec<u8> {
    component_for(Wit::Current, name, extra, describe, fetch)
}

/// [`component`], built against `wit`.
pub fn component_for(wit: Wit, name: &str, extra: &str, describe: &str, fetch: &str) -> Vec<u8> {
    component_importing(wit, name, "", extra, describe, fetch)
}

/// [`component_for`] with more `imports` (module fields that must come
/// before every other definition).
pub fn component_importing(wit: Wit, name: &str, imports: &str, extra: &str, describe: &str, fetch: &str) -> Vec<u8> {
    let (wit_dir, version) = wit.dir_and_version();
    // 0.2.0 added `list-versions` (it answers `$fail` too: the same layout).
    let list_versions = match wit {
        Wit::Current | Wit::V0_2_0 => r#"(func (export "list-versions") (param i32 i32) (result i32) (call $fail))"#,
        Wit::V0_1_0 => "",
    };
    let name_len = name.len();
    let name: String = name.bytes().map(|b| format!("\\{b:02x}")).collect();
    let core = format!(
        r#"(module
  (import "attune:fetcher/host@{version}" "progress" (func $progress (param i64 i32 i64)))
  {imports}
  (memory $mem (export "memory") 1)
  (global $bump (mut i32) (i32.const 8192))
  {extra}
  (data (i32.const {NAME_AT}) "{name}")
  (data (i32.const {VERSION_AT}) "1.0.0")
  (data (i32.const {SUMMARY_AT}) "test component")
  (data (i32.const {MESSAGE_AT}) "failed")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
    (global.set $bump (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $info (result i32)
    (i32.store (i32.const {SCHEMES_AT}) (i32.const {NAME_AT}))
    (i32.store (i32.const {schemes_len_at}) (i32.const {name_len}))
    (i32.store (i32.const {INFO_AT}) (i32.const {NAME_AT}))
    (i32.store (i32.const {i4}) (i32.const {name_len}))
    (i32.store (i32.const {i8}) (i32.const {VERSION_AT}))
    (i32.store (i32.const {i12}) (i32.const 5))
    (i32.store (i32.const {i16}) (i32.const {SUMMARY_AT}))
    (i32.store (i32.const {i20}) (i32.const 14))
    (i32.store (i32.const {i24}) (i32.const {SCHEMES_AT}))
    (i32.store (i32.const {i28}) (i32.const 1))
    (i32.store (i32.const {i32_}) (i32.const 0))
    (i32.store (i32.const {i36}) (i32.const 0))
    (i32.const {INFO_AT}))
  (func $fail (result i32)
    (i32.store8 (i32.const {RESULT_AT}) (i32.const 1))
    (i32.store8 (i32.const {r4}) (i32.const 6))
    (i32.store (i32.const {r8}) (i32.const {MESSAGE_AT}))
    (i32.store (i32.const {r12}) (i32.const 6))
    (i32.const {RESULT_AT}))
  (func (export "describe") (result i32) {describe})
  (func (export "fetch") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) {fetch})
  {list_versions}
)"#,
        schemes_len_at = SCHEMES_AT + 4,
        i4 = INFO_AT + 4,
        i8 = INFO_AT + 8,
        i12 = INFO_AT + 12,
        i16 = INFO_AT + 16,
        i20 = INFO_AT + 20,
        i24 = INFO_AT + 24,
        i28 = INFO_AT + 28,
        i32_ = INFO_AT + 32,
        i36 = INFO_AT + 36,
        r4 = RESULT_AT + 4,
        r8 = RESULT_AT + 8,
        r12 = RESULT_AT + 12,
    );
    let mut module = wat::parse_str(&core).unwrap_or_else(|e| panic!("{e}\n{core}"));
    let mut resolve = wit_parser::Resolve::default();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join(wit_dir);
    let (pkg, _) = resolve.push_dir(&wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("fetcher")).unwrap();
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap()
}

/// `component` written to `dir/name.wasm`.
pub fn write(dir: &Path, name: &str, wasm: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

/// Touches one byte in every page of `memory` from `from` for `pages` pages,
/// so the pages are really resident, not just reserved.
pub fn touch(memory: &str, from_page: u32, pages: u32) -> String {
    format!(
        "(local.set $i (i32.const {start}))
         (block $done (loop $l
           (br_if $done (i32.ge_u (local.get $i) (i32.const {end})))
           (i32.store8 {memory} (local.get $i) (i32.const 1))
           (local.set $i (i32.add (local.get $i) (i32.const 4096)))
           (br $l)))",
        start = from_page * 65536,
        end = (from_page + pages) * 65536,
    )
}

/// Several memories, each grown by `pages` (and touched) in turn: within a
/// per-memory limit, far past a total one.
pub fn many_memories(wit: Wit, memories: u32, pages: u32) -> Vec<u8> {
    let extra: String = (1..memories).map(|i| format!("(memory $m{i} 1)\n")).collect();
    let mut fetch = String::from("(local $i i32)\n");
    for i in 0..memories {
        let m = if i == 0 { "$mem".to_string() } else { format!("$m{i}") };
        fetch.push_str(&format!(
            "(if (i32.eq (memory.grow {m} (i32.const {pages})) (i32.const -1)) (then unreachable))\n{}\n",
            touch(&m, 1, pages)
        ));
    }
    fetch.push_str("(call $fail)");
    component_for(wit, "manymem", &extra, "(call $info)", &fetch)
}

/// Many tables, each grown by `elements` null references.
pub fn many_tables(tables: u32, elements: u32) -> Vec<u8> {
    let extra: String = (0..tables).map(|i| format!("(table $t{i} 1 funcref)\n")).collect();
    let mut fetch = String::new();
    for i in 0..tables {
        fetch.push_str(&format!(
            "(if (i32.eq (table.grow $t{i} (ref.null func) (i32.const {elements})) (i32.const -1)) (then unreachable))\n"
        ));
    }
    fetch.push_str("(call $fail)");
    component("manytables", &extra, "(call $info)", &fetch)
}

/// A `describe()` that never returns.
pub fn describe_loops() -> Vec<u8> {
    component("slowdescribe", "", "(loop $l (br $l)) unreachable", "(call $fail)")
}

/// A `describe()` whose summary is `pages` pages of memory long.
pub fn describe_huge_summary(wit: Wit, pages: u32) -> Vec<u8> {
    let describe = format!(
        "(local $i i32)
         (drop (memory.grow $mem (i32.const {pages})))
         {}
         (drop (call $info))
         (i32.store (i32.const {at}) (i32.const 65536))
         (i32.store (i32.const {len_at}) (i32.const {len}))
         (i32.const {INFO_AT})",
        touch("$mem", 1, pages),
        at = INFO_AT + 16,
        len_at = INFO_AT + 20,
        len = pages * 65536,
    );
    component_for(wit, "hugedescribe", "", &describe, "(call $fail)")
}

/// A `describe()` whose name carries terminal escape sequences.
pub fn describe_escapes() -> Vec<u8> {
    component("esc\x1b]0;pwned\x07\x1b[2Jx", "", "(call $info)", "(call $fail)")
}
