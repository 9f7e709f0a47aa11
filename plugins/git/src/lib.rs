//! The `git` fetcher: installs a pack from a git repository over smart HTTP.
//!
//! It speaks the protocol with gix (v2, falling back to what the server
//! offers) and fetches only the wanted commit at depth 1 where the server
//! allows. The pack is read as it arrives: each object is inflated and
//! hashed (SHA-1 by the host's `digests`, at native speed), and the
//! commit's files written through staging, while the rest
//! downloads; deltas are resolved afterwards with gix-pack (allocations
//! capped, every object re-hashed). Executable bits and symlinks are kept,
//! submodules reported.
//! Every request goes through wasi:http, so the host's allowlist applies.

mod transport;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use attune_plugin_sdk::digests::{Algorithm, Hasher};
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
            // The input is a pack from the host's artifact cache (`--offline`).
            capabilities: vec![Capability::OutboundHost("{source-host}".into()), Capability::ReadInput],
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        let url = request.source.strip_prefix("git+").unwrap_or(&request.source).to_string();
        let shown = http::redact(&url);
        if let Some(pack) = blobs::input_file() {
            return from_cached_pack(&request, &shown, &pack);
        }
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
        let mut early = Early::new(want);
        let objects = {
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
            // Spooled to host scratch: growing a Vec while receiving would
            // briefly need twice the pack's size in memory. Each part is
            // walked as it arrives (see `Walk`), so inflating and hashing
            // overlap the download.
            let spool = blobs::create_scratch()?;
            let mut walk = Walk::new(&shown, &mut early);
            loop {
                let part = walk.receive_buffer();
                let n = reader.read(part).map_err(|e| fail("receiving the pack failed", &e))?;
                if n == 0 {
                    break;
                }
                spool.append(&part[..n])?;
                walk.received(n)?;
                log::progress(spool.size(), None);
            }
            let (index, deltas) = walk.finish()?;
            // Asked for, the host's own SHA-256 of the download is on record,
            // and the host keeps this pack in its artifact cache for
            // `--offline` installs of the commit.
            let _ = spool.sha256();
            let pack = read_pack(&spool, &shown, |e| fail("reading the spooled pack", &e), |_| Ok(()))?;
            Objects::from_pack(pack, index, deltas, &shown, &mut early)?
        };
        let mut metadata = vec![
            ("ref".to_string(), resolved_name),
            ("protocol".to_string(), format!("{version:?}")),
            ("pack-bytes".to_string(), objects.pack_len.to_string()),
        ];
        write_commit(&objects, want, &early, &shown, &mut metadata)?;
        Ok(FetchResult { resolved_source: shown, resolved_commit: Some(want.to_string()), metadata })
    }
}

/// `--offline`: commit `request.reference` from a pack the host kept in its
/// artifact cache when it was fetched (the input file), read as a download is.
fn from_cached_pack(request: &FetchRequest, shown: &str, input: &blobs::Blob) -> Result<FetchResult, FetchError> {
    let want = request
        .reference
        .as_deref()
        .and_then(|r| ObjectId::from_hex(r.as_bytes()).ok())
        .ok_or_else(|| FetchError::InvalidSource(format!("{shown}: a cached pack is read for a full commit id")))?;
    let mut early = Early::new(want);
    let mut walk = Walk::new(shown, &mut early);
    let pack =
        read_pack(input, shown, |e| bad(shown, format!("reading the cached pack: {e}")), |part| walk.feed(part))?;
    let (index, deltas) = walk.finish()?;
    let objects = Objects::from_pack(pack, index, deltas, shown, &mut early)?;
    let mut metadata = vec![("pack-bytes".to_string(), objects.pack_len.to_string())];
    write_commit(&objects, want, &early, shown, &mut metadata)?;
    Ok(FetchResult { resolved_source: shown.to_string(), resolved_commit: Some(want.to_string()), metadata })
}

/// The whole pack in `blob`, in one allocation of its size (or an error
/// saying to raise the memory limit); each part read also goes to `each`.
fn read_pack(
    blob: &blobs::Blob,
    shown: &str,
    read_error: impl Fn(String) -> FetchError,
    mut each: impl FnMut(&[u8]) -> Result<(), FetchError>,
) -> Result<Vec<u8>, FetchError> {
    let size = usize::try_from(blob.size()).unwrap_or(usize::MAX);
    let mut pack = Vec::new();
    pack.try_reserve_exact(size).map_err(|_| {
        bad(shown, format!("the pack is {size} bytes, more than fits the memory limit; raise it with --limit-memory"))
    })?;
    while pack.len() < size {
        let part = blob.read(pack.len() as u64, 16 << 20).map_err(&read_error)?;
        if part.is_empty() {
            break;
        }
        each(&part)?;
        pack.extend_from_slice(&part);
    }
    Ok(pack)
}

/// The server's pack does not decode: `e` says where and how.
fn corrupt_pack(shown: &str, e: &dyn std::fmt::Display) -> FetchError {
    bad(shown, format!("the server sent a corrupt pack: {e}"))
}

/// Writes the tree of commit `want` (what `early` has not written yet);
/// submodules are named in a warning and in `metadata`.
fn write_commit(
    objects: &Objects,
    want: ObjectId,
    early: &Early,
    shown: &str,
    metadata: &mut Vec<(String, String)>,
) -> Result<(), FetchError> {
    let commit = objects.peel_to_commit(want)?;
    let tree = gix_object::CommitRefIter::from_bytes(&commit, HashKind::Sha1)
        .tree_id()
        .map_err(|e| bad(shown, format!("commit {want} is corrupt: {e}")))?;
    let mut submodules = Vec::new();
    objects.write_tree(tree, "", &mut submodules, &early.written)?;
    if !submodules.is_empty() {
        log::warn(&format!(
            "{shown}: submodules are not fetched; these paths are left empty: {}",
            submodules.join(", ")
        ));
        metadata.push(("submodules".to_string(), submodules.join(",")));
    }
    Ok(())
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
    /// The pack's objects: `index` and `deltas` from [`Walk`], which saw
    /// every entry; the deltas are resolved here, now that their bases are
    /// known, and `early` writes what it can of them.
    fn from_pack(
        pack: Vec<u8>,
        index: HashMap<ObjectId, u64>,
        deltas: Vec<u64>,
        shown: &str,
        early: &mut Early,
    ) -> Result<Objects, FetchError> {
        let corrupt = |e: &dyn std::fmt::Display| corrupt_pack(shown, e);
        let pack_len = pack.len();
        // The trailer (a SHA-1 of the whole pack) is not checked: every
        // object was hashed by `Walk` and is only found by that hash, so a
        // changed byte of any object that is used cannot go unnoticed, and
        // hashing the pack twice would double the fetch's hashing.
        let file = gix_pack::data::File::from_data(pack, "fetched.pack".into(), HashKind::Sha1)
            .map_err(|e| corrupt(&chain(&e)))?
            .with_alloc_limit_bytes(Some(MAX_OBJECT_BYTES));
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
                        let id = object_id(kind, &buf).map_err(|e| corrupt(&e))?;
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

/// The first pass over a pack, made while it downloads: every entry's
/// header is read and its data inflated as its bytes arrive. A whole object
/// (not a delta) is hashed as soon as it is inflated, indexed by that hash,
/// and handed to [`Early`]; a delta is only inflated to find where the next
/// entry starts, and its offset kept for [`Objects::from_pack`]. Ids come
/// from hashing what was decoded, never from the server's word.
struct Walk<'a> {
    shown: &'a str,
    early: &'a mut Early,
    /// Bytes from pack offset `base` on: those before `pos` are walked,
    /// those before `end` received, the rest room for the next read.
    buf: Vec<u8>,
    base: u64,
    pos: usize,
    end: usize,
    /// Entries the pack header announced that are not finished yet; `None`
    /// until the header is read.
    left: Option<u32>,
    entry: Option<Inflating>,
    /// Raw deflate: each entry's zlib header and trailer are read here, and
    /// its Adler-32 is not computed (the object's SHA-1 covers every byte;
    /// a delta is checked when it is applied).
    inflate: zlib_rs::Inflate,
    /// Where a whole object is inflated; a delta's output goes to `sink`.
    object: Vec<u8>,
    sink: Vec<u8>,
    index: HashMap<ObjectId, u64>,
    deltas: Vec<u64>,
}

/// The entry [`Walk`] is inflating.
struct Inflating {
    offset: u64,
    /// `None` for a delta.
    kind: Option<Kind>,
    size: usize,
    written: usize,
    stage: Stage,
}

/// Where [`Walk`] is in an entry's zlib stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The two header bytes.
    Header,
    Deflate,
    /// The four bytes of Adler-32 after the data, skipped.
    Trailer,
}

/// The longest entry header: a type and 64-bit size, then a ref-delta's base id.
const MAX_ENTRY_HEADER: usize = 10 + 20;
/// What [`Walk::receive_buffer`] offers per read.
const RECEIVE_BYTES: usize = 1 << 20;

impl<'a> Walk<'a> {
    fn new(shown: &'a str, early: &'a mut Early) -> Self {
        Walk {
            shown,
            early,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            end: 0,
            left: None,
            entry: None,
            inflate: zlib_rs::Inflate::new(false, 15),
            object: Vec::new(),
            sink: vec![0; 64 << 10],
            index: HashMap::new(),
            deltas: Vec::new(),
        }
    }

    fn corrupt(&self, e: &dyn std::fmt::Display) -> FetchError {
        corrupt_pack(self.shown, e)
    }

    /// Room for the next read; [`Walk::received`] says how much of it was filled.
    fn receive_buffer(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < RECEIVE_BYTES / 4 {
            // Walked bytes make room before the buffer grows.
            if self.pos * 2 >= self.end {
                self.buf.copy_within(self.pos..self.end, 0);
                self.base += self.pos as u64;
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.end < RECEIVE_BYTES / 4 {
                self.buf.resize(self.buf.len() + RECEIVE_BYTES, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    fn received(&mut self, n: usize) -> Result<(), FetchError> {
        self.end += n;
        self.walk(false)
    }

    /// [`Walk::received`] for bytes read elsewhere.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), FetchError> {
        while !data.is_empty() {
            let room = self.receive_buffer();
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            self.received(n)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// The pack ended: every entry must be done. The index of the whole
    /// objects and the offsets of the deltas.
    fn finish(mut self) -> Result<(HashMap<ObjectId, u64>, Vec<u64>), FetchError> {
        self.walk(true)?;
        match self.left {
            Some(0) => Ok((self.index, self.deltas)),
            Some(n) => Err(self.corrupt(&format!("it ends {n} objects early"))),
            None => Err(self.corrupt(&format!("{} bytes is too short for a pack", self.end))),
        }
    }

    /// Walks what was received; `eof`: nothing more will come.
    fn walk(&mut self, eof: bool) -> Result<(), FetchError> {
        loop {
            let left = match self.left {
                Some(left) => left,
                None => {
                    let Some(head) = self.buf[..self.end].get(self.pos..self.pos + 12) else { return Ok(()) };
                    if &head[..4] != b"PACK" || !matches!(head[7], 2 | 3) || head[4..7] != [0, 0, 0] {
                        return Err(self.corrupt(&"it does not start with a version 2 or 3 pack header"));
                    }
                    let count = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
                    self.pos += 12;
                    self.left = Some(count);
                    // The count is the server's word: only a little is reserved on it.
                    self.index.reserve(count.min(1 << 12) as usize);
                    count
                }
            };
            if left == 0 {
                return Ok(());
            }
            if self.entry.is_none() && !self.start_entry(eof)? {
                return Ok(());
            }
            if !self.inflate_entry(eof)? {
                return Ok(());
            }
        }
    }

    /// Reads the next entry's header; `false` if more bytes are needed.
    fn start_entry(&mut self, eof: bool) -> Result<bool, FetchError> {
        let rest = &self.buf[self.pos..self.end];
        if rest.is_empty() || (rest.len() < MAX_ENTRY_HEADER && !eof) {
            return Ok(false);
        }
        let offset = self.base + self.pos as u64;
        let entry = gix_pack::data::Entry::from_bytes(rest, offset, HashKind::Sha1)
            .map_err(|e| self.corrupt(&format!("the entry at offset {offset}: {}", chain(&e))))?;
        let size = usize::try_from(entry.decompressed_size).unwrap_or(usize::MAX);
        if size > MAX_OBJECT_BYTES {
            return Err(self.corrupt(&format!("an object claims {size} bytes, over the {MAX_OBJECT_BYTES}-byte limit")));
        }
        let kind = entry.header.as_kind();
        if kind.is_some() {
            self.object.clear();
            self.object.resize(size, 0);
        }
        self.pos += entry.header_size();
        self.inflate.reset(false);
        self.entry = Some(Inflating { offset, kind, size, written: 0, stage: Stage::Header });
        Ok(true)
    }

    /// Inflates the current entry as far as the bytes received allow;
    /// `true` once it is done.
    fn inflate_entry(&mut self, eof: bool) -> Result<bool, FetchError> {
        let Some(e) = self.entry.as_mut() else { return Ok(true) };
        let offset = e.offset;
        let short = || format!("the entry at offset {offset} is cut short");
        if e.stage == Stage::Header {
            let Some(&[cmf, flg]) = self.buf[..self.end].get(self.pos..self.pos + 2) else {
                return if eof { Err(self.corrupt(&short())) } else { Ok(false) };
            };
            // Deflate, a window of at most 32 KiB, no preset dictionary.
            if cmf & 0x0f != 8 || cmf >> 4 > 7 || flg & 0x20 != 0 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                return Err(self.corrupt(&format!("the entry at offset {offset} is not a zlib stream")));
            }
            self.pos += 2;
            e.stage = Stage::Deflate;
        }
        while e.stage == Stage::Deflate {
            let input = &self.buf[self.pos..self.end];
            let out = match e.kind {
                Some(_) => &mut self.object[e.written..],
                None => &mut self.sink[..],
            };
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(input, out, zlib_rs::InflateFlush::NoFlush)
                .map_err(|err| corrupt_pack(self.shown, &format!("the entry at offset {offset}: {}", err.as_str())))?;
            let used = (self.inflate.total_in() - in_before) as usize;
            let wrote = (self.inflate.total_out() - out_before) as usize;
            self.pos += used;
            e.written += wrote;
            if e.written > e.size {
                let size = e.size;
                return Err(self.corrupt(&format!("the entry at offset {offset} inflates past its {size} bytes")));
            }
            if status == zlib_rs::Status::StreamEnd {
                e.stage = Stage::Trailer;
            } else if used == 0 && wrote == 0 {
                // No progress: either the input ran out, or the output is
                // full and the stream still has more to give.
                if self.pos < self.end || eof {
                    return Err(self.corrupt(&format!("the entry at offset {offset} is cut short or too long")));
                }
                return Ok(false);
            }
        }
        if self.end - self.pos < 4 {
            return if eof { Err(self.corrupt(&short())) } else { Ok(false) };
        }
        self.pos += 4;
        let e = self.entry.take().expect("inflating an entry");
        if e.written != e.size {
            return Err(self.corrupt(&format!(
                "the entry at offset {} inflates to {} bytes, not {}",
                e.offset, e.written, e.size
            )));
        }
        match e.kind {
            Some(kind) => {
                let id = object_id(kind, &self.object).map_err(|err| self.corrupt(&err))?;
                self.index.insert(id, e.offset);
                self.early.seen(id, kind, &self.object)?;
            }
            None => self.deltas.push(e.offset),
        }
        if let Some(left) = self.left.as_mut() {
            *left -= 1;
        }
        Ok(true)
    }
}

/// The id of an object: the SHA-1 (with collision detection, as git) of
/// its header and bytes, hashed by the host. In wasm this hashing was a
/// third of the fetch; the host does it at native speed, reading the bytes
/// in place.
fn object_id(kind: Kind, data: &[u8]) -> Result<ObjectId, String> {
    thread_local! {
        static SHA1: Hasher = Hasher::new(Algorithm::Sha1);
    }
    SHA1.with(|h| {
        h.update(&gix_object::encode::loose_header(kind, data.len() as u64));
        h.update(data);
        let digest = h.finish()?;
        ObjectId::try_from(digest.as_slice()).map_err(|e| e.to_string())
    })
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
