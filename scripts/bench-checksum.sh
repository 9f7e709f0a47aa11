#!/usr/bin/env bash
# Benchmarks `attune pack checksum DIR` against `find DIR -type f | sort | xargs sha256sum`
# on the same warm, generated tree (see docs/checksum.md).
#
# usage: scripts/bench-checksum.sh [--size-mb N] [--files N] [--attune PATH] [--runs N] [--dir DIR] [--keep]
#   --size-mb  total file bytes in MiB (default 1024)
#   --files    number of files (default 20000)
#   --attune   attune binary (default target/release/attune)
#   --runs     timed runs of each command; the best is reported (default 3)
#   --dir      generate the tree here instead of a fresh temp dir (reused if it
#              holds a tree generated with the same parameters)
#   --keep     do not delete the generated tree
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=1024
files=20000
attune="$repo/target/release/attune"
runs=3
dir=""
keep=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-mb) size_mb=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --attune) attune=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; keep=1; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -x $attune ]] || { echo "attune binary not found at $attune (build with cargo build --release, or pass --attune)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to generate the tree" >&2; exit 1; }

if [[ -z $dir ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/attune-bench.XXXXXX")
fi
cleanup() { if [[ $keep == 0 ]]; then rm -rf "$dir"; fi; }
trap cleanup EXIT

stamp="$dir/.bench-params"
params="size_mb=$size_mb files=$files v1"
tree="$dir/tree"
if [[ -f $stamp && $(cat "$stamp") == "$params" ]]; then
    echo "reusing tree in $tree"
else
    echo "generating $files files, $size_mb MiB in $tree ..."
    rm -rf "$tree" "$stamp"
    # Deterministic (seeded): log-uniform sizes from a few bytes to several MiB,
    # scaled to the total; contents are slices of a seeded random pool; files
    # spread over nested dirs; 1 in 10 executable; a few symlinks.
    python3 - "$tree" "$size_mb" "$files" <<'PY'
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
PY
    echo "$params" > "$stamp"
fi

now() { date +%s.%N; }
# best wall time of $runs runs of "$@", output discarded
best_of() {
    local best="" t0 t1 dt
    for ((r = 0; r < runs; r++)); do
        t0=$(now)
        "$@" > /dev/null
        t1=$(now)
        dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
        if [[ -z $best ]] || awk -v a="$dt" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$dt; fi
    done
    echo "$best"
}
pipeline() { find "$tree" -type f | LC_ALL=C sort | xargs -d '\n' sha256sum; }

echo "warming the page cache ..."
find "$tree" -type f -print0 | xargs -0 cat > /dev/null
"$attune" pack checksum "$tree"

t_attune=$(best_of "$attune" pack checksum "$tree")
t_pipe=$(best_of pipeline)
mib=$(du -sm --apparent-size "$tree" | cut -f1)
awk -v a="$t_attune" -v p="$t_pipe" -v mib="$mib" -v n="$files" -v cpus="$(nproc)" 'BEGIN {
    printf "tree: %d files, %d MiB, %d CPUs (best of runs, warm cache)\n", n, mib, cpus
    printf "attune pack checksum:          %7.3f s  (%6.0f MiB/s)\n", a, mib / a
    printf "find | sort | xargs sha256sum: %7.3f s  (%6.0f MiB/s)\n", p, mib / p
    printf "speedup: %.2fx\n", p / a
}'
