#!/usr/bin/env python3
"""Checks that attune's layers only point down.

Two rules, each a CI failure when broken:
  1. Between crates: each crate depends only on the attune crates its layer
     allows (see LAYERS; the same table as each crate's lib.rs `//!`).
  2. Inside a crate: the modules under its root import each other without a
     cycle (a module's submodules count as the module; the root, lib.rs or
     main.rs, which declares and re-exports, does not count).

Run from anywhere: `python3 scripts/check-layers.py`.
"""
import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# crate -> the attune crates it may depend on (directly).
LAYERS = {
    "attune-core": set(),
    "attune-net": set(),
    "attune-tuf": set(),
    "attune-env": set(),
    "attune-registry": {"attune-core"},
    "attune-fetch": {"attune-core", "attune-net"},
    "attune-store": {"attune-core"},
    "attune-app": {"attune-core", "attune-net", "attune-tuf", "attune-env", "attune-registry", "attune-fetch", "attune-store"},
    "attune-api": {"attune-app"},
    "attune": {"attune-app", "attune-api", "attune-net"},
}
DIRS = {name: os.path.join(ROOT, "crates", name) for name in LAYERS if name != "attune"}
DIRS["attune"] = os.path.join(ROOT, "host")


def crate_deps(d):
    with open(os.path.join(d, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    return {k for k in manifest.get("dependencies", {}) if k.startswith("attune")}


def modules(src):
    """Top-level module name -> the text of its files."""
    out = {}
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs"):
            continue
        if entry.endswith(".rs"):
            # In a file at the root, `super::x` is `crate::x`.
            text = re.sub(r"\bsuper::(?!\*)", "crate::", open(path).read())
            out.setdefault(entry[:-3], []).append(text)
        elif os.path.isdir(path):
            for d, _, files in os.walk(path):
                out.setdefault(entry, []).extend(open(os.path.join(d, f)).read() for f in files if f.endswith(".rs"))
    return {k: "\n".join(v) for k, v in out.items()}


def imports(text, names):
    # Comments (doc links included) are not imports.
    text = re.sub(r"//.*", "", text)
    found = set()
    # `crate::a::…`, and each name inside `crate::{a, b::c}`.
    found.update(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"\bcrate::\{([^;]*?)\}\s*;", text, re.S):
        found.update(re.findall(r"(?:^|[,{]\s*)([a-z_][a-z0-9_]*)", group.strip()))
    return {n for n in found if n in names}


def cycle(graph):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main():
    problems = []
    for name, d in DIRS.items():
        extra = crate_deps(d) - LAYERS[name]
        if extra:
            problems.append(f"{name}: depends on {', '.join(sorted(extra))}, which its layer may not import")
        mods = modules(os.path.join(d, "src"))
        graph = {m: imports(text, mods) - {m} for m, text in mods.items()}
        c = cycle(graph)
        if c:
            problems.append(f"{name}: modules import each other in a cycle: {' -> '.join(c)}")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"layers: {len(DIRS)} crates, arrows point down, no module cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
