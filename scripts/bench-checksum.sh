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
    python3 "$repo/scripts/make-tree.py" "$tree" "$size_mb" "$files"
    echo "$params" > "$stamp"
fi

source "$repo/scripts/bench-lib.sh"
pipeline() { find "$tree" -type f | LC_ALL=C sort | xargs -d '\n' sha256sum; }

echo "warming the page cache ..."
find "$tree" -type f -print0 | xargs -0 cat > /dev/null
"$attune" pack checksum "$tree" > /dev/null

t_attune=$(best_of "$attune" pack checksum "$tree")
t_pipe=$(best_of pipeline)
mib=$(du -sm --apparent-size "$tree" | cut -f1)
awk -v a="$t_attune" -v p="$t_pipe" -v mib="$mib" -v n="$files" -v cpus="$(nproc)" 'BEGIN {
    printf "tree: %d files, %d MiB, %d CPUs (best of runs, warm cache)\n", n, mib, cpus
    printf "attune pack checksum:          %7.3f s  (%6.0f MiB/s)\n", a, mib / a
    printf "find | sort | xargs sha256sum: %7.3f s  (%6.0f MiB/s)\n", p, mib / p
    printf "speedup: %.2fx\n", p / a
}'
