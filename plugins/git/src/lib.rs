//! The `git` fetcher: installs a pack from a git repository over smart HTTP.
//!
//! It speaks the protocol with gix (v2, falling back to what the server
//! offers), fetches only the wanted commit at depth 1 where the server
//! allows, resolves the pack in memory with gix-pack (allocations capped,
//! every object re-hashed), and writes the commit's tree
//! through staging: executable bits and symlinks kept, submodules reported.
//! Every request goes through wasi:http, so the host's allowlist applies.

mod transport;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use attune_plugin_sdk::{
    Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, Staging, blobs, http, log,
};
use gix_hash::{Kind as HashKind, ObjectId};
use gix_object::Kind;
use gix_pack::data::decode::entry::ResolvedBase;
use gix_protocol::handshake::Ref;

struct Git;

/// The most a pack may decode into one object; hostile packs claim more.
const MAX_OBJECT_BYTES: usize = 512 << 20;
/// Refs shown when the requested one does not exist.
const SHOW_REFS: usize = 8;

impl Fetcher for Git {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "git".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Fetches one commit of a git repository over smart HTTP".into(),
            schemes: vec!["git+https".into(), "git+http".into()],
            capabilities: vec![Capability::OutboundHost("{source-host}".into())],
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let url = request.source.strip_prefix("git+").unwrap_or(&request.source).to_string();
        let shown = http::redact(&url);
        let parsed = gix_url::parse(url.as_str())
            .map_err(|e| FetchError::InvalidSource(format!("{shown}: not a git URL: {e}")))?;
        let mut transport = gix_transport::client::blocking_io::http::Transport::new_http(
            transport::WasiHttp,
            parsed,
            gix_transport::Protocol::V2,
            false,
        );
        let mut progress = gix_utils::progress::Discard;
        let fail = |what: &str, e: &dyn std::fmt::Display| FetchError::Network(format!("{shown}: {what}: {e}"));

        let mut hs = gix_protocol::handshake(
            &mut transport,
            gix_transport::Service::UploadPack,
            |_| Ok(None),
            vec![],
            &mut progress,
        )
        .map_err(|e| fail("the git handshake failed", &chain(&e)))?;
        let refs = match hs.refs.take() {
            Some(r) => r,
            None => gix_protocol::LsRefsCommand::new(None, &hs.capabilities, ("agent", Some(agent())))
                .invoke_blocking(&mut transport, &mut progress, false)
                .map_err(|e| fail("listing refs failed", &chain(&e)))?,
        };
        let (want, resolved_name) = pick(&refs, request.reference.as_deref(), &shown)?;
        log::info(&format!("{shown}: {resolved_name} is {want}"));

        let version = hs.server_protocol_version;
        let features = gix_protocol::Command::Fetch.default_features(version, &hs.capabilities);
        let mut args = gix_protocol::fetch::Arguments::new(version, features, false);
        args.want(want);
        if args.can_use_shallow() {
            args.deepen(1);
        }
        let mut pack = Vec::new();
        {
            let mut reader =
                args.send(&mut transport, true).map_err(|e| fail("the fetch request failed", &chain(&e)))?;
            gix_protocol::fetch::Response::from_line_reader(version, &mut reader, true, false)
                .map_err(|e| fail("the server's fetch answer is malformed", &chain(&e)))?;
            // The pack arrives multiplexed with progress: a handler turns on the demultiplexing.
            reader.set_progress_handler(Some(Box::new(|is_error: bool, text: &[u8]| {
                let text = String::from_utf8_lossy(text);
                if is_error {
                    log::warn(&format!("server: {}", text.trim()));
                } else {
                    log::debug(&format!("server: {}", text.trim()));
                }
                std::ops::ControlFlow::Continue(())
            })));
            // Spooled to host scratch first: growing a Vec while receiving
            // would briefly need twice the pack's size in memory.
            let spool = blobs::create_scratch()?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut chunk).map_err(|e| fail("receiving the pack failed", &e))?;
                if n == 0 {
                    break;
                }
                spool.append(&chunk[..n])?;
                log::progress(spool.size(), None);
            }
            drop(chunk);
            let size = usize::try_from(spool.size()).unwrap_or(usize::MAX);
            pack.try_reserve_exact(size).map_err(|_| {
                bad(
                    &shown,
                    format!("the pack is {size} bytes, more than fits the memory limit; raise it with --limit-memory"),
                )
            })?;
            while pack.len() < size {
                let part = spool.read(pack.len() as u64, 16 << 20).map_err(|e| fail("reading the spooled pack", &e))?;
                if part.is_empty() {
                    break;
                }
                pack.extend_from_slice(&part);
            }
        }

        let mut early = Early::new(want);
        let objects = Objects::from_pack(pack, &shown, &mut early)?;
        let commit = objects.peel_to_commit(want)?;
        let tree = gix_object::CommitRefIter::from_bytes(&commit, HashKind::Sha1)
            .tree_id()
            .map_err(|e| bad(&shown, format!("commit {want} is corrupt: {e}")))?;
        let mut submodules = Vec::new();
        objects.write_tree(tree, "", &mut submodules, &early.written)?;
        if !submodules.is_empty() {
            log::warn(&format!(
                "{shown}: submodules are not fetched; these paths are left empty: {}",
                submodules.join(", ")
            ));
        }

        let mut metadata = vec![
            ("ref".to_string(), resolved_name),
            ("protocol".to_string(), format!("{version:?}")),
            ("pack-bytes".to_string(), objects.pack_len.to_string()),
        ];
        if !submodules.is_empty() {
            metadata.push(("submodules".to_string(), submodules.join(",")));
        }
        Ok(FetchResult { resolved_source: shown, resolved_commit: Some(want.to_string()), metadata })
    }
}

fn agent() -> String {
    format!("attune/{}", env!("CARGO_PKG_VERSION"))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn bad(shown: &str, msg: String) -> FetchError {
    FetchError::InvalidContent(format!("{shown}: {msg}"))
}

fn ref_parts(r: &Ref) -> (String, ObjectId) {
    match r {
        Ref::Peeled { full_ref_name, object, .. } => (full_ref_name.to_string(), *object),
        Ref::Direct { full_ref_name, object } => (full_ref_name.to_string(), *object),
        Ref::Symbolic { full_ref_name, object, .. } => (full_ref_name.to_string(), *object),
        Ref::Unborn { full_ref_name, .. } => (full_ref_name.to_string(), ObjectId::null(HashKind::Sha1)),
    }
}

/// The commit to fetch: the remote HEAD, a branch, a tag (annotated tags
/// peeled), or a full or abbreviated commit id.
fn pick(refs: &[Ref], wanted: Option<&str>, shown: &str) -> Result<(ObjectId, String), FetchError> {
    let all: Vec<(String, ObjectId)> = refs.iter().map(ref_parts).filter(|(_, o)| !o.is_null()).collect();
    let Some(name) = wanted else {
        return all
            .iter()
            .find(|(n, _)| n == "HEAD")
            .map(|(n, o)| (*o, n.clone()))
            .ok_or_else(|| FetchError::NotFound(format!("{shown}: the repository has no HEAD (is it empty?)")));
    };
    for candidate in [name.to_string(), format!("refs/heads/{name}"), format!("refs/tags/{name}")] {
        if let Some((n, o)) = all.iter().find(|(n, _)| *n == candidate) {
            return Ok((*o, n.clone()));
        }
    }
    if name.len() == 40
        && let Ok(id) = ObjectId::from_hex(name.as_bytes())
    {
        return Ok((id, name.to_string()));
    }
    if (4..40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let lower = name.to_ascii_lowercase();
        let mut hits: Vec<&(String, ObjectId)> =
            all.iter().filter(|(_, o)| o.to_string().starts_with(&lower)).collect();
        hits.dedup_by_key(|(_, o)| *o);
        match hits.as_slice() {
            [(n, o)] => return Ok((*o, format!("{name} ({n})"))),
            [] => {
                return Err(FetchError::NotFound(format!(
                    "{shown}: no branch or tag points at a commit starting with {name}; \
                     an abbreviated id must name a branch or tag tip, otherwise pass all 40 characters"
                )));
            }
            _ => return Err(FetchError::NotFound(format!("{shown}: {name} is ambiguous; give more characters"))),
        }
    }
    let mut names: Vec<String> = all
        .iter()
        .map(|(n, _)| n.trim_start_matches("refs/heads/").trim_start_matches("refs/tags/").to_string())
        .filter(|n| n != "HEAD")
        .collect();
    names.sort();
    names.dedup();
    let more = names.len().saturating_sub(SHOW_REFS);
    names.truncate(SHOW_REFS);
    Err(FetchError::NotFound(format!(
        "{shown}: no branch, tag or commit named {name:?}; the repository has: {}{}",
        names.join(", "),
        if more > 0 { format!(" (and {more} more)") } else { String::new() }
    )))
}

/// A received pack, indexed by object id.
struct Objects {
    file: gix_pack::data::File<Vec<u8>>,
    index: HashMap<ObjectId, u64>,
    cache: RefCell<gix_pack::cache::lru::MemoryCappedHashmap>,
    shown: String,
    pack_len: usize,
}

impl Objects {
    /// Indexes `pack`; `early` writes what it can of the wanted tree on the way.
    fn from_pack(pack: Vec<u8>, shown: &str, early: &mut Early) -> Result<Objects, FetchError> {
        let corrupt = |e: &dyn std::fmt::Display| bad(shown, format!("the server sent a corrupt pack: {e}"));
        let pack_len = pack.len();
        if pack_len < 32 {
            return Err(corrupt(&format!("{pack_len} bytes is too short for a pack")));
        }
        // The trailer (a SHA-1 of the whole pack) is not checked: every
        // object is hashed below and only found by that hash, so a changed
        // byte of any object that is used cannot go unnoticed, and hashing
        // the pack twice would double the fetch's hashing.
        let file = gix_pack::data::File::from_data(pack, "fetched.pack".into(), HashKind::Sha1)
            .map_err(|e| corrupt(&chain(&e)))?
            .with_alloc_limit_bytes(Some(MAX_OBJECT_BYTES));
        // Walk the entries: each one's compressed length says where the next
        // starts. A whole object (not a delta) is hashed while it is inflated
        // here; only deltas need a second pass, once their bases are known.
        // Ids come from hashing what we decoded, never from the server's word.
        let mut index = HashMap::with_capacity(file.num_objects() as usize);
        let mut deltas = Vec::new();
        let mut offset = 12u64;
        let mut inflate = gix_zlib::Inflate::default();
        let mut scratch = Vec::new();
        for _ in 0..file.num_objects() {
            let entry = file.entry(offset).map_err(|e| corrupt(&chain(&e)))?;
            let size = usize::try_from(entry.decompressed_size).unwrap_or(usize::MAX);
            if size > MAX_OBJECT_BYTES {
                return Err(corrupt(&format!("an object claims {size} bytes, over the {MAX_OBJECT_BYTES}-byte limit")));
            }
            scratch.resize(size, 0);
            let consumed =
                file.decompress_entry(&entry, &mut inflate, &mut scratch).map_err(|e| corrupt(&chain(&e)))?;
            match entry.header.as_kind() {
                Some(kind) => {
                    let id = gix_object::compute_hash(HashKind::Sha1, kind, &scratch).map_err(|e| corrupt(&e))?;
                    index.insert(id, offset);
                    early.seen(id, kind, &scratch)?;
                }
                None => deltas.push(offset),
            }
            offset = entry.data_offset + consumed as u64;
        }
        drop(scratch);
        let mut objects = Objects {
            file,
            index,
            cache: RefCell::new(gix_pack::cache::lru::MemoryCappedHashmap::new(32 << 20)),
            shown: shown.to_string(),
            pack_len,
        };
        // A ref-delta may name a base that comes later in the pack: retry those.
        let mut pending = deltas;
        let mut buf = Vec::new();
        while !pending.is_empty() {
            let before = pending.len();
            let mut later = Vec::new();
            for offset in pending {
                match objects.decode_at(offset, &mut buf) {
                    Ok(kind) => {
                        let id = gix_object::compute_hash(HashKind::Sha1, kind, &buf).map_err(|e| corrupt(&e))?;
                        objects.index.insert(id, offset);
                        early.seen(id, kind, &buf)?;
                    }
                    Err(_) => later.push(offset),
                }
            }
            if later.len() == before {
                let mut buf = Vec::new();
                let e = objects.decode_at(later[0], &mut buf).err().map(|e| e.to_string()).unwrap_or_default();
                return Err(corrupt(&format!("{} objects cannot be decoded ({e})", later.len())));
            }
            pending = later;
        }
        Ok(objects)
    }

    fn decode_at(&self, offset: u64, out: &mut Vec<u8>) -> Result<Kind, String> {
        let entry = self.file.entry(offset).map_err(|e| chain(&e))?;
        let resolve = |id: &gix_hash::oid, _: &mut Vec<u8>| -> gix_error::Result<Option<ResolvedBase>> {
            match self.index.get(id) {
                Some(off) => Ok(Some(ResolvedBase::InPack(self.file.entry(*off)?))),
                None => Ok(None),
            }
        };
        let mut inflate = gix_zlib::Inflate::default();
        let outcome = self
            .file
            .decode_entry(entry, out, &mut inflate, &resolve, &mut *self.cache.borrow_mut())
            .map_err(|e| chain(&e))?;
        Ok(outcome.kind)
    }

    fn get(&self, id: ObjectId, out: &mut Vec<u8>) -> Result<Kind, FetchError> {
        let offset = self
            .index
            .get(&id)
            .ok_or_else(|| bad(&self.shown, format!("object {id} is missing from the pack the server sent")))?;
        self.decode_at(*offset, out).map_err(|e| bad(&self.shown, format!("object {id}: {e}")))
    }

    /// The commit `id` names, through annotated tags.
    fn peel_to_commit(&self, mut id: ObjectId) -> Result<Vec<u8>, FetchError> {
        let mut buf = Vec::new();
        for _ in 0..16 {
            match self.get(id, &mut buf)? {
                Kind::Commit => return Ok(buf),
                Kind::Tag => {
                    id = gix_object::TagRefIter::from_bytes(&buf, HashKind::Sha1)
                        .target_id()
                        .map_err(|e| bad(&self.shown, format!("tag {id} is corrupt: {e}")))?;
                }
                other => return Err(bad(&self.shown, format!("{id} is a {other}, not a commit"))),
            }
        }
        Err(bad(&self.shown, "too many nested tags".into()))
    }

    /// Writes tree `id` at `prefix`, but not the files in `written` (written
    /// while the pack was read).
    fn write_tree(
        &self,
        id: ObjectId,
        prefix: &str,
        submodules: &mut Vec<String>,
        written: &HashSet<String>,
    ) -> Result<(), FetchError> {
        use gix_object::tree::EntryKind;
        let mut data = Vec::new();
        if self.get(id, &mut data)? != Kind::Tree {
            return Err(bad(&self.shown, format!("{id} is not a tree")));
        }
        let tree = gix_object::TreeRef::from_bytes(&data, HashKind::Sha1)
            .map_err(|e| bad(&self.shown, format!("tree {id} is corrupt: {e}")))?;
        let mut blob = Vec::new();
        for entry in tree.entries {
            let name = std::str::from_utf8(entry.filename)
                .map_err(|_| bad(&self.shown, format!("{prefix}{:?}: file name is not UTF-8", entry.filename)))?;
            let path = format!("{prefix}{name}");
            let oid = entry.oid.to_owned();
            match entry.mode.kind() {
                EntryKind::Tree => {
                    Staging::create_dir(&path)?;
                    self.write_tree(oid, &format!("{path}/"), submodules, written)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable if written.contains(&path) => {}
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    self.get(oid, &mut blob)?;
                    let exec = entry.mode.kind() == EntryKind::BlobExecutable;
                    write_blob(&path, exec, &blob)?;
                }
                EntryKind::Link => {
                    self.get(oid, &mut blob)?;
                    let target = std::str::from_utf8(&blob)
                        .map_err(|_| bad(&self.shown, format!("{path}: symlink target is not UTF-8")))?;
                    Staging::create_symlink(&path, target)?;
                }
                EntryKind::Commit => {
                    Staging::create_dir(&path)?;
                    submodules.push(path);
                }
            }
        }
        Ok(())
    }
}

/// A blob staged at `path`, through the SDK's chunked writer (a blob may be
/// hundreds of MiB; one `write-file` call would lift it whole).
fn write_blob(path: &str, executable: bool, data: &[u8]) -> Result<(), FetchError> {
    let mut f = Staging::create_file(path, executable)?;
    std::io::Write::write_all(&mut f, data).map_err(|e| FetchError::Staging(attune_plugin_sdk::staging_error(&e)))?;
    f.finish()?;
    Ok(())
}

/// Writes the wanted tree's files while the pack is read, from the bytes
/// just inflated and hashed, so most blobs are inflated once, not twice.
///
/// A server sends a commit before its trees and a tree before what it holds
/// (git's traversal order), so by the time a blob arrives its paths are
/// usually known. Nothing depends on that order: what was not written here
/// (an object sent before the tree naming it, symlinks, submodules) is
/// written by [`Objects::write_tree`] afterwards, which walks the whole tree
/// again and skips only the paths in `written`. Every object here was
/// already found by its hash; staging checks every path as always.
struct Early {
    /// The wanted commit, or the tags leading to it.
    wanted: HashSet<ObjectId>,
    /// Trees of the wanted commit, by id: the prefixes they go at.
    trees: HashMap<ObjectId, Vec<String>>,
    /// Blobs of the wanted commit, by id: their paths and executable bits.
    files: HashMap<ObjectId, Vec<(String, bool)>>,
    written: HashSet<String>,
    /// Paths planned so far. A tree named at many paths (a "git bomb": each
    /// level a thousand names for one subtree) multiplies them; past
    /// [`EARLY_MAX_PATHS`] the walk afterwards is left to meet staging's
    /// file limit and say so, rather than this plan growing to fill memory.
    planned: usize,
}

/// The most paths [`Early`] plans ahead.
const EARLY_MAX_PATHS: usize = 1 << 18;

impl Early {
    fn new(want: ObjectId) -> Self {
        Early {
            wanted: HashSet::from([want]),
            trees: HashMap::new(),
            files: HashMap::new(),
            written: HashSet::new(),
            planned: 0,
        }
    }

    /// Object `id` of `kind` was decoded into `data`. An object that does not
    /// parse is left to the walk afterwards, which reports it.
    fn seen(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<(), FetchError> {
        use gix_object::tree::EntryKind;
        match kind {
            Kind::Tag if self.wanted.contains(&id) => {
                if let Ok(target) = gix_object::TagRefIter::from_bytes(data, HashKind::Sha1).target_id() {
                    self.wanted.insert(target);
                }
            }
            Kind::Commit if self.wanted.contains(&id) => {
                if let Ok(tree) = gix_object::CommitRefIter::from_bytes(data, HashKind::Sha1).tree_id() {
                    self.trees.entry(tree).or_default().push(String::new());
                }
            }
            Kind::Tree => {
                let Some(prefixes) = self.trees.remove(&id) else { return Ok(()) };
                let Ok(tree) = gix_object::TreeRef::from_bytes(data, HashKind::Sha1) else { return Ok(()) };
                for entry in &tree.entries {
                    let Ok(name) = std::str::from_utf8(entry.filename) else { continue };
                    let oid = entry.oid.to_owned();
                    for prefix in &prefixes {
                        if self.planned >= EARLY_MAX_PATHS {
                            return Ok(());
                        }
                        self.planned += 1;
                        let path = format!("{prefix}{name}");
                        match entry.mode.kind() {
                            EntryKind::Tree => self.trees.entry(oid).or_default().push(format!("{path}/")),
                            EntryKind::Blob => self.files.entry(oid).or_default().push((path, false)),
                            EntryKind::BlobExecutable => self.files.entry(oid).or_default().push((path, true)),
                            EntryKind::Link | EntryKind::Commit => {}
                        }
                    }
                }
            }
            Kind::Blob => {
                let Some(paths) = self.files.remove(&id) else { return Ok(()) };
                for (path, exec) in paths {
                    write_blob(&path, exec, data)?;
                    self.written.insert(path);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

attune_plugin_sdk::export_fetcher!(Git);
