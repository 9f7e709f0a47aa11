#!/usr/bin/env python3
"""Generates the benchmark tree: make-tree.py ROOT SIZE_MB FILES.

Deterministic (seeded): log-uniform sizes from a few bytes to several MiB,
scaled to the total; contents are slices of a seeded random pool; files
spread over nested dirs; 1 in 10 executable; a few symlinks.
"""
import math, os, random, sys
root, size_mb, nfiles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20240601)
total = size_mb * 1024 * 1024
weights = [math.exp(rng.uniform(math.log(16), math.log(8 << 20))) for _ in range(nfiles)]
scale = total / sum(weights)
sizes = [max(0, int(w * scale)) for w in weights]
sizes[0] += total - sum(sizes)  # exact total
pool = rng.randbytes(64 << 20)
for i, size in enumerate(sizes):
    d = os.path.join(root, f"d{i % 97:02}", f"s{i % 13}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"f{i}.bin")
    with open(p, "wb") as f:
        off = rng.randrange(len(pool))
        left = size
        while left:
            chunk = pool[off:off + left] or pool[:left]
            f.write(chunk)
            left -= len(chunk)
            off = 0
    os.chmod(p, 0o755 if i % 10 == 0 else 0o644)
for i in range(min(50, nfiles)):
    os.symlink(f"../s{(i + 1) % 13}", os.path.join(root, f"d{i % 97:02}", f"link{i}"))
