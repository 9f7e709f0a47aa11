//! Fuzzes the staging writer with sequences of fetcher calls (folders, files,
//! symlinks, copies) over a small alphabet of names that includes `..`, `.`,
//! case twins and names that exist outside the pack. When the writer accepts
//! the whole sequence, nothing may lie or point outside the staging folder,
//! and the tree must checksum.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use attune::staging::{StagingWriter, WriteLimits};
use libfuzzer_sys::fuzz_target;

/// Names a fuzzed path is built from; `out` also exists beside the pack.
const NAMES: &[&str] = &["a", "b", "A", "out", "..", ".", "", "pack.yaml", "c d", "a\\b", "/", "x:"];

#[derive(Debug, Arbitrary)]
struct P(Vec<u8>);

impl P {
    fn text(&self) -> String {
        self.0.iter().take(6).map(|b| NAMES[*b as usize % NAMES.len()]).collect::<Vec<_>>().join("/")
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Dir(P),
    File(P, bool, u8),
    Symlink(P, P),
    Link(P, P),
}

fn inside(root: &Path, p: &Path) {
    if let Ok(real) = std::fs::canonicalize(p) {
        assert!(real.starts_with(root), "{} resolves to {}, outside {}", p.display(), real.display(), root.display());
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let outer = tempfile::tempdir().unwrap();
    // Things an escaping path could land on.
    for n in ["out", "a", "b", "A"] {
        std::fs::create_dir(outer.path().join(n)).unwrap();
    }
    let root = outer.path().join("stage");
    std::fs::create_dir(&root).unwrap();
    let root = std::fs::canonicalize(&root).unwrap();
    let mut w = StagingWriter::new(&root, WriteLimits { max_bytes: 4096, max_files: 64, max_open_files: 4 }).unwrap();
    for op in ops.iter().take(32) {
        let _ = match op {
            Op::Dir(p) => w.create_dir(&p.text()),
            Op::File(p, x, n) => w.write_file(&p.text(), *x, &vec![b'x'; *n as usize]),
            Op::Symlink(p, t) => w.create_symlink(&p.text(), &t.text()),
            Op::Link(p, e) => w.link_file(&p.text(), &e.text()),
        };
    }
    let ok = w.finish().is_ok();
    // Nothing was written outside, accepted or not.
    for n in ["out", "a", "b", "A"] {
        assert_eq!(std::fs::read_dir(outer.path().join(n)).unwrap().count(), 0, "something was written into ../{n}");
    }
    if !ok {
        return;
    }
    for e in walkdir::WalkDir::new(&root).min_depth(1) {
        let e = e.unwrap();
        inside(&root, e.path());
    }
    attune::checksum::tree(&root).expect("an accepted staging tree checksums");
});
