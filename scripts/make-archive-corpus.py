#!/usr/bin/env python3
"""Writes the archive fetcher's test corpus: good and hostile pack archives.

usage: scripts/make-archive-corpus.py OUT_DIR

Every archive holds the same small, valid pack (pack.yaml, an executable
actions/run.sh, actions/run.yaml, a symlink actions/alias.sh -> run.sh and an
empty folder empty/); each reject case adds one attack (usually a single
hostile entry) or is broken as a whole. OUT_DIR/cases.json lists them for
host/tests/it/archive.rs:

    {"file": "reject-dotdot.tgz", "expect": "ok" | "reject", "rule": "dotdot",
     "mention": "../evil",            # stderr must contain this (or its
                                      # Rust-debug-escaped form)
     "any_of": ["truncated", ...],    # optional: stderr has at least one
     "slow": true,                    # optional: the test times it
     "outside": ["/tmp/..."],         # optional: must not exist afterwards
     # ok cases only: what the installed pack must look like
     "tree": [...], "modes": {"path": "0755"}, "noexec": [...],
     "symlinks": {"path": "target"}, "same_content": [["link", "target"]]}

Output is deterministic (fixed mtimes, owners and gzip headers), so a change
to the corpus is a change to this script. Only the standard library is used.
The two slow cases are big: bomb.tgz is ~2 MiB holding 2 GiB of zeros (made
as a stream, never in memory) and many.tar is ~150 MiB of 300,000 entries.
"""

import gzip
import io
import json
import os
import stat
import sys
import tarfile
import warnings
import zipfile

MTIME = 1_700_000_000
ZIP_TIME = (2023, 11, 14, 22, 13, 20)
PACK = "corpus-1.0.0"
PACK_YAML = b"---\nname: corpus\nversion: 1.0.0\n"
RUN_SH = b"#!/bin/sh\necho hello\n"
RUN_YAML = b"name: run\nentry_point: run.sh\nrunner_type: local-shell-script\n"
# Where an escaping entry would land if an extractor followed it; the test
# checks it never appears. Unusual enough not to exist by accident.
TMP_EVIL = "/tmp/attune-corpus-evil"

# An entry: (kind, path, mode, payload). payload is the content of a "file",
# the target of a "symlink" or "hardlink", and None otherwise.
DIR, FILE, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO = "dir", "file", "symlink", "hardlink", "char", "block", "fifo"


def pack(prefix=""):
    """The valid pack, under `prefix` ("" or "folder/")."""
    return [
        (DIR, prefix + "actions", 0o755, None),
        (FILE, prefix + "pack.yaml", 0o644, PACK_YAML),
        (FILE, prefix + "actions/run.sh", 0o755, RUN_SH),
        (FILE, prefix + "actions/run.yaml", 0o644, RUN_YAML),
        (SYMLINK, prefix + "actions/alias.sh", 0o777, "run.sh"),
        (DIR, prefix + "empty", 0o755, None),
    ]


def without_manifest(entries):
    return [e for e in entries if not e[1].endswith("pack.yaml")]


# What the installed pack looks like when everything went right.
TREE = ["actions", "actions/alias.sh", "actions/run.sh", "actions/run.yaml", "empty", "pack.yaml"]
OK_CHECKS = {
    "modes": {"actions/run.sh": "0755"},
    "noexec": ["pack.yaml", "actions/run.yaml"],
    "symlinks": {"actions/alias.sh": "run.sh"},
}


# --- writers -----------------------------------------------------------------


def tar_info(kind, path, mode, payload):
    info = tarfile.TarInfo(path)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    data = None
    if kind == DIR:
        info.type = tarfile.DIRTYPE
    elif kind == FILE:
        info.type = tarfile.REGTYPE
        info.size = len(payload)
        data = io.BytesIO(payload)
    elif kind == SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = payload
    elif kind == HARDLINK:
        info.type = tarfile.LNKTYPE
        info.linkname = payload
    elif kind in (CHAR, BLOCK):
        info.type = tarfile.CHRTYPE if kind == CHAR else tarfile.BLKTYPE
        info.devmajor, info.devminor = (5, 0) if kind == CHAR else (8, 0)
    elif kind == FIFO:
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(kind)
    return info, data


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8") as t:
        for entry in entries:
            t.addfile(*tar_info(*entry))
    return out.getvalue()


def gzip_bytes(data, level=9):
    out = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of volatile fields.
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0, compresslevel=level) as g:
        g.write(data)
    return out.getvalue()


def zip_bytes(entries):
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of one case
        with zipfile.ZipFile(out, "w") as z:
            for kind, path, mode, payload in entries:
                if kind == DIR:
                    info = zipfile.ZipInfo(path + "/", ZIP_TIME)
                    info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10  # 0x10: MS-DOS directory
                    data = b""
                elif kind == FILE:
                    info = zipfile.ZipInfo(path, ZIP_TIME)
                    info.external_attr = (stat.S_IFREG | mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    data = payload
                elif kind == SYMLINK:
                    info = zipfile.ZipInfo(path, ZIP_TIME)
                    info.external_attr = (stat.S_IFLNK | mode) << 16
                    data = payload.encode()
                elif kind == FIFO:
                    info = zipfile.ZipInfo(path, ZIP_TIME)
                    info.external_attr = (stat.S_IFIFO | mode) << 16
                    data = b""
                else:
                    raise ValueError(f"{kind} cannot be written to a zip")
                info.create_system = 3  # Unix: external_attr holds st_mode
                z.writestr(info, data)
    return out.getvalue()


WRITERS = {
    "tar": tar_bytes,
    "tgz": lambda entries: gzip_bytes(tar_bytes(entries)),
    "zip": zip_bytes,
}


# --- the corpus ----------------------------------------------------------------


class Corpus:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.cases = []

    def write(self, file, data, **case):
        with open(os.path.join(self.out_dir, file), "wb") as f:
            f.write(data)
        self.add(file, **case)

    def add(self, file, expect, rule, mention, **extra):
        assert not any(c["file"] == file for c in self.cases), file
        self.cases.append({"file": file, "expect": expect, "rule": rule, "mention": mention, **extra})

    def ok(self, file, data, rule, tree=TREE, **checks):
        merged = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in OK_CHECKS.items()}
        for k, v in checks.items():
            if isinstance(v, dict):
                merged.setdefault(k, {}).update(v)
            else:
                merged.setdefault(k, []).extend(v)
        self.write(file, data, expect="ok", rule=rule, mention="", tree=sorted(tree), **merged)

    def hostile(self, rule, entries, mention, formats=("tar", "tgz", "zip"), **extra):
        """One reject case per format: the valid pack plus `entries`."""
        for ext in formats:
            data = WRITERS[ext](pack() + entries)
            self.write(f"reject-{rule}.{ext}", data, expect="reject", rule=rule, mention=mention, **extra)

    def reject(self, file, data, rule, mention, **extra):
        self.write(file, data, expect="reject", rule=rule, mention=mention, **extra)


def ok_cases(c):
    root = pack()
    for ext in ("tar", "tgz", "zip"):
        c.ok(f"ok-root.{ext}", WRITERS[ext](root), "pack-at-root")

    # What `tar czf x.tgz -C dir .` makes: a `./` entry, `./` prefixes, `/` after
    # folders, and hard link targets with the prefix too.
    dotted = [(DIR, "./", 0o755, None)]
    for kind, path, mode, payload in root:
        dotted.append((kind, "./" + path + ("/" if kind == DIR else ""), mode, payload))
    dotted.append((HARDLINK, "./actions/copy.sh", 0o755, "./actions/run.sh"))
    same = {"same_content": [["actions/copy.sh", "actions/run.sh"]]}
    for ext in ("tar", "tgz"):
        c.ok(f"ok-dot-prefix.{ext}", WRITERS[ext](dotted), "dot-slash-prefixes", TREE + ["actions/copy.sh"], **same)

    wrapped = [(DIR, PACK, 0o755, None)] + pack(PACK + "/")
    for ext in ("tar", "tgz", "zip"):
        c.ok(f"ok-wrapper-folder.{ext}", WRITERS[ext](wrapped), "one-top-level-folder")

    # Many zip tools write no entries for folders that hold files.
    implicit = [e for e in root if e[1] != "actions"]
    c.ok("ok-no-folder-entries.zip", zip_bytes(implicit), "implicit-parent-folders")
    c.ok("ok-no-folder-entries.tar", tar_bytes(implicit), "implicit-parent-folders")

    tool = [(DIR, "bin", 0o755, None), (FILE, "bin/tool", 0o700, b"#!/bin/sh\n")]
    for ext in ("tar", "tgz", "zip"):
        c.ok(f"ok-exec-bit.{ext}", WRITERS[ext](root + tool), "exec-bit-kept", TREE + ["bin", "bin/tool"],
             exec=["bin/tool"])

    suid = [(FILE, "actions/suid.sh", 0o7755, RUN_SH)]
    for ext in ("tar", "tgz", "zip"):
        c.ok(f"ok-setuid-stripped.{ext}", WRITERS[ext](root + suid), "setuid-setgid-sticky-stripped",
             TREE + ["actions/suid.sh"], modes={"actions/suid.sh": "0755"})

    link = [(HARDLINK, "actions/copy.sh", 0o755, "actions/run.sh")]
    for ext in ("tar", "tgz"):
        c.ok(f"ok-hardlink.{ext}", WRITERS[ext](root + link), "hardlink-to-earlier-file",
             TREE + ["actions/copy.sh"], **same)

    # The format comes from the bytes, not the name.
    c.ok("ok-tgz-named.zip", gzip_bytes(tar_bytes(root)), "format-from-bytes")
    c.ok("ok-zip-named.tar", zip_bytes(root), "format-from-bytes")
    c.ok("ok-tar-named.tgz", tar_bytes(root), "format-from-bytes")

    # GNU tar's format (long names as `L` entries) as well as PAX and ustar.
    deep = "actions/" + "d" * 120 + "/" + "f" * 200 + ".yaml"
    long_names = [(DIR, deep.rsplit("/", 1)[0], 0o755, None), (FILE, deep, 0o644, b"x: 1\n")]
    for fmt, name in ((tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax")):
        c.ok(f"ok-long-names-{name}.tar", tar_bytes(root + long_names, fmt), "long-names",
             TREE + [deep.rsplit("/", 1)[0], deep])
    c.ok("ok-ustar.tar", tar_bytes(root, tarfile.USTAR_FORMAT), "ustar-format")

    # tar.xz only where this Python was built with lzma.
    try:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:xz", format=tarfile.PAX_FORMAT) as t:
            for entry in root:
                t.addfile(*tar_info(*entry))
        c.ok("ok-root.tar.xz", out.getvalue(), "pack-at-root")
    except tarfile.CompressionError:
        print("note: no lzma module in this Python; ok-root.tar.xz is left out", file=sys.stderr)


def path_cases(c):
    c.hostile("dotdot", [(FILE, "../evil", 0o644, b"evil\n")], "../evil")
    c.hostile("dotdot-nested", [(FILE, "a/../../evil", 0o644, b"evil\n")], "a/../../evil")
    c.hostile("absolute", [(FILE, TMP_EVIL, 0o644, b"evil\n")], TMP_EVIL, outside=[TMP_EVIL])
    c.hostile("backslash", [(FILE, "a\\evil", 0o644, b"evil\n")], "a\\evil")
    c.hostile("drive-letter", [(FILE, "C:/evil", 0o644, b"evil\n")], "C:/evil")
    c.hostile("drive-relative", [(FILE, "c:evil", 0o644, b"evil\n")], "c:evil")
    # NUL cannot be in a tar name (it ends the field); zip readers stop at it too.
    c.hostile("newline", [(FILE, "a\nb", 0o644, b"x")], "a\nb")
    c.hostile("control-char", [(FILE, "a\x01b", 0o644, b"x")], "a\x01b")
    c.hostile("component-256-bytes", [(FILE, "x" * 256, 0o644, b"x")], "x" * 256)
    # In a folder, the folder entry is the hostile one.
    c.hostile("dotdot-folder", [(DIR, "../evil-dir", 0o755, None)], "../evil-dir")


def link_cases(c):
    c.hostile("symlink-absolute", [(SYMLINK, "actions/passwd", 0o777, "/etc/passwd")], "actions/passwd")
    c.hostile("symlink-climbs-out", [(SYMLINK, "actions/up", 0o777, "../../etc")], "actions/up")
    c.hostile("write-through-symlink",
              [(SYMLINK, "lnk", 0o777, "actions"), (FILE, "lnk/x", 0o644, b"x")], "lnk/x")
    c.hostile("write-through-symlink-out",
              [(SYMLINK, "tmp-link", 0o777, "/tmp"), (FILE, "tmp-link/" + os.path.basename(TMP_EVIL), 0o644, b"x")],
              "tmp-link", outside=[TMP_EVIL])
    # On a case-insensitive filesystem `lnk/x` would be written through `LNK`.
    c.hostile("write-through-symlink-by-case",
              [(SYMLINK, "LNK", 0o777, "actions"), (FILE, "lnk/x", 0o644, b"x")], "lnk")
    # Each target stays inside when read as text, but `x/y/root` is the pack
    # root, so `x/y/root/..` is the folder above it: `x/out` escapes through
    # another symlink, whichever of the two comes first.
    chain = [(DIR, "x", 0o755, None), (DIR, "x/y", 0o755, None),
             (SYMLINK, "x/y/root", 0o777, "../.."), (SYMLINK, "x/out", 0o777, "y/root/..")]
    c.hostile("symlink-escapes-through-symlink", chain, "x/out")
    c.hostile("symlink-escapes-through-later-symlink", chain[:2] + chain[3:] + chain[2:3], "x/out")

    tar_only = ("tar", "tgz")
    c.hostile("hardlink-outside", [(HARDLINK, "actions/hard-passwd", 0o644, "../../etc/passwd")],
              "actions/hard-passwd", formats=tar_only)
    c.hostile("hardlink-absolute", [(HARDLINK, "actions/hard-abs", 0o644, "/etc/passwd")],
              "actions/hard-abs", formats=tar_only)
    c.hostile("hardlink-to-symlink", [(HARDLINK, "actions/hard-alias", 0o644, "actions/alias.sh")],
              "actions/hard-alias", formats=tar_only)
    c.hostile("hardlink-to-folder", [(HARDLINK, "actions/hard-dir", 0o644, "actions")],
              "actions/hard-dir", formats=tar_only)
    c.hostile("hardlink-to-later-file",
              [(HARDLINK, "actions/hard-later", 0o644, "actions/later.txt"),
               (FILE, "actions/later.txt", 0o644, b"later\n")],
              "actions/hard-later", formats=tar_only)
    c.hostile("hardlink-to-missing", [(HARDLINK, "actions/hard-missing", 0o644, "actions/missing.txt")],
              "actions/hard-missing", formats=tar_only)


def header_cases(c):
    """Tar extension headers that say something else than the plain header."""
    # A PAX `path` record replaces the ustar name, which looks harmless.
    smuggled, _ = tar_info(FILE, "benign.txt", 0o644, b"")
    smuggled.pax_headers = {"path": "../pax-evil"}
    # A PAX `linkpath` record replaces the symlink target `run.sh`.
    link, _ = tar_info(SYMLINK, "actions/benign-link", 0o777, "run.sh")
    link.pax_headers = {"linkpath": "/etc/passwd"}
    # A GNU long name (an `L` entry before the header) that climbs out.
    long_evil = "../" + "evil" * 30
    for ext in ("tar", "tgz"):
        wrap = gzip_bytes if ext == "tgz" else bytes
        c.reject(f"reject-pax-path-dotdot.{ext}", wrap(pack_and(header(smuggled))), "pax-path-override", "../pax-evil")
        c.reject(f"reject-pax-linkpath-absolute.{ext}", wrap(pack_and(header(link))), "pax-linkpath-override",
                 "actions/benign-link", any_of=["/etc/passwd"])
        c.reject(f"reject-gnu-longname-dotdot.{ext}",
                 wrap(tar_bytes(pack() + [(FILE, long_evil, 0o644, b"x")], tarfile.GNU_FORMAT)),
                 "gnu-longname-dotdot", long_evil)


def pack_and(raw):
    """A tar of the pack followed by `raw` header bytes, as written."""
    body = tar_stream(pack()) + raw
    return body + end_of_archive(len(body))


def special_cases(c):
    c.hostile("char-device", [(CHAR, "actions/tty", 0o666, None)], "actions/tty", formats=("tar", "tgz"))
    c.hostile("block-device", [(BLOCK, "actions/sda", 0o660, None)], "actions/sda", formats=("tar", "tgz"))
    # A zip can carry a FIFO's st_mode in external_attr, so readers must check it.
    c.hostile("fifo", [(FIFO, "actions/pipe", 0o644, None)], "actions/pipe")


def tree_cases(c):
    twice = [(FILE, "actions/run.yaml", 0o644, b"name: again\n")]
    c.hostile("same-path-twice", twice, "actions/run.yaml", formats=("tar", "tgz"))
    # A zip's central directory can list a name twice; zip readers keep one
    # of the two (which one differs between tools), so the error may only be
    # able to name the archive.
    c.reject("reject-same-path-twice.zip", zip_bytes(pack() + twice), "same-path-twice", "reject-same-path-twice.zip",
             any_of=["actions/run.yaml", "duplicate", "twice", "same name"])
    c.hostile("case-collision",
              [(FILE, "README.md", 0o644, b"upper\n"), (FILE, "readme.md", 0o644, b"lower\n")], "readme.md")
    c.hostile("file-then-folder", [(DIR, "pack.yaml", 0o755, None)], "pack.yaml", any_of=["twice"])

    two = [(DIR, PACK, 0o755, None)] + pack(PACK + "/") + [(DIR, "corpus-2.0.0", 0o755, None)] + pack("corpus-2.0.0/")
    none = without_manifest(pack())
    stray = [(DIR, PACK, 0o755, None)] + pack(PACK + "/") + [(FILE, "README.md", 0o644, b"hi\n")]
    nested = [(DIR, "a", 0o755, None), (DIR, "a/" + PACK, 0o755, None)] + pack("a/" + PACK + "/")
    for ext in ("tar", "tgz", "zip"):
        w = WRITERS[ext]
        c.reject(f"reject-two-top-level-folders.{ext}", w(two), "two-top-level-folders", "pack.yaml")
        c.reject(f"reject-no-manifest.{ext}", w(none), "no-pack-yaml", "pack.yaml")
        c.reject(f"reject-wrapper-and-stray-file.{ext}", w(stray), "wrapper-folder-plus-root-file", "pack.yaml")
    c.reject("reject-wrapper-two-deep.tgz", gzip_bytes(tar_bytes(nested)), "pack-two-folders-deep", "pack.yaml")


def broken_cases(c):
    good_tar = tar_bytes(pack())
    good_tgz = gzip_bytes(good_tar)
    good_zip = zip_bytes(pack())

    c.reject("reject-empty-file.tgz", b"", "zero-byte-file", "reject-empty-file.tgz", any_of=["empty", "0 bytes"])
    c.reject("reject-empty-tar.tar", tar_bytes([]), "tar-with-no-entries", "reject-empty-tar.tar",
             any_of=["no entries", "empty", "not a supported archive"])
    c.reject("reject-empty-tar.tgz", gzip_bytes(tar_bytes([])), "tar-with-no-entries", "reject-empty-tar.tgz",
             any_of=["no entries", "empty"])
    c.reject("reject-empty.zip", zip_bytes([]), "zip-with-no-entries", "reject-empty.zip",
             any_of=["no entries", "empty"])

    c.reject("reject-truncated.tgz", good_tgz[: len(good_tgz) * 6 // 10], "truncated-gzip", "reject-truncated.tgz",
             any_of=["truncated", "incomplete", "unexpected end", "EOF"])
    mid_content = good_tar.index(PACK_YAML) + len(PACK_YAML) // 2
    c.reject("reject-truncated.tar", good_tar[:mid_content], "truncated-tar-mid-entry", "reject-truncated.tar",
             any_of=["truncated", "incomplete", "unexpected end", "EOF", "entire block"])
    # Cut cleanly after the third entry: every header is whole, but the pack
    # is missing files and the archive its end-of-archive blocks.
    cut = len(tar_stream(pack()[:3]))
    assert good_tar.startswith(tar_stream(pack()[:3]))
    c.reject("reject-truncated-at-entry.tar", good_tar[:cut], "truncated-tar-at-entry-boundary",
             "reject-truncated-at-entry.tar", any_of=["truncated", "incomplete", "end-of-archive", "end of archive"])

    flipped = bytearray(good_tgz)
    mid = len(flipped) // 2
    for i in range(mid - 4, mid + 4):
        flipped[i] ^= 0xFF
    c.reject("reject-corrupt-deflate.tgz", bytes(flipped), "corrupt-gzip", "reject-corrupt-deflate.tgz",
             any_of=["corrupt", "invalid", "checksum", "truncated"])

    # Stored (level 0) deflate: one content byte changed decodes fine, and only
    # the gzip trailer's CRC-32 can tell. run.sh's "hello" becomes "jello".
    stored = bytearray(gzip_bytes(good_tar, level=0))
    at = stored.index(b"echo hello")
    stored[at + 5] = ord("j")
    c.reject("reject-gzip-crc.tgz", bytes(stored), "gzip-crc-mismatch", "reject-gzip-crc.tgz",
             any_of=["crc", "CRC", "checksum", "corrupt"])

    # The central directory starts at the offset in the end record's bytes 16..20.
    eocd = good_zip.rindex(b"PK\x05\x06")
    cd = int.from_bytes(good_zip[eocd + 16 : eocd + 20], "little")
    broken = bytearray(good_zip)
    broken[cd : cd + 24] = bytes((i * 37 + 11) & 0xFF for i in range(24))
    c.reject("reject-corrupt-central-directory.zip", bytes(broken), "zip-corrupt-central-directory",
             "reject-corrupt-central-directory.zip", any_of=["central directory", "corrupt", "invalid", "readable"])

    state, garbage = 12345, bytearray(b"GARBAGE!")
    while len(garbage) < 4096:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        garbage.append(state >> 16 & 0xFF)
    c.reject("reject-garbage.tar.gz", bytes(garbage), "garbage-bytes", "reject-garbage.tar.gz",
             any_of=["not a supported archive", "unsupported", "not an archive", "unknown format"])


def bomb(c):
    """A single tar entry of 2 GiB of zeros, streamed through gzip in 1 MiB chunks."""
    size = 2 << 30
    chunk = bytes(1 << 20)
    info, _ = tar_info(FILE, "actions/zeros.bin", 0o644, b"")
    info.size = size
    path = os.path.join(c.out_dir, "bomb.tgz")
    head = tar_stream(pack()) + header(info)
    with open(path, "wb") as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(head)
        for _ in range(size // len(chunk)):
            g.write(chunk)
        g.write(end_of_archive(len(head) + size))
    c.add("bomb.tgz", "reject", "gzip-bomb", "byte limit", slow=True)


def many(c):
    """300,000 empty files: three times the default file limit."""
    path = os.path.join(c.out_dir, "many.tar")
    written = 0
    with open(path, "wb") as f:
        head = tar_stream(pack()) + header(tar_info(DIR, "d", 0o755, None)[0])
        f.write(head)
        written += len(head)
        info, _ = tar_info(FILE, "d/f000000", 0o644, b"")
        for i in range(300_000):
            info.name = f"d/f{i:06d}"
            block = header(info)
            f.write(block)
            written += len(block)
        f.write(end_of_archive(written))
    c.add("many.tar", "reject", "too-many-files", "file limit", slow=True)


def header(info):
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_stream(entries):
    """Tar entries without the end-of-archive blocks, to append to."""
    out = bytearray()
    for entry in entries:
        info, data = tar_info(*entry)
        out += header(info)
        if data is not None:
            payload = data.read()
            out += payload + bytes(-len(payload) % tarfile.BLOCKSIZE)
    return bytes(out)


def end_of_archive(written):
    """Two zero blocks, then zeros up to a whole record, as tarfile ends one."""
    total = written + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + (-total % tarfile.RECORDSIZE))


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__.split("\n\n")[1])
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    c = Corpus(out_dir)
    ok_cases(c)
    path_cases(c)
    link_cases(c)
    header_cases(c)
    special_cases(c)
    tree_cases(c)
    broken_cases(c)
    bomb(c)
    many(c)
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(c.cases, f, indent=1, ensure_ascii=True)
        f.write("\n")
    ok = sum(1 for case in c.cases if case["expect"] == "ok")
    print(f"{len(c.cases)} cases ({ok} ok, {len(c.cases) - ok} reject) in {out_dir}")


if __name__ == "__main__":
    main()
