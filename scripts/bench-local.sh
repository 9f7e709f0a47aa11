#!/usr/bin/env bash
# Benchmarks `attune install DIR` (the sandboxed local fetcher, checksum,
# fsync and atomic rename) against `cp -a DIR` on the same warm tree, and
# against `cp -a && sync`, the fair comparison since attune makes the pack
# durable before it is visible.
#
# usage: scripts/bench-local.sh [--size-mb N] [--files N] [--attune PATH] [--runs N] [--dir DIR]
#   defaults: 1024 MiB, 20000 files, target/release/attune, 3 runs (best is reported)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=1024
files=20000
attune="$repo/target/release/attune"
runs=3
dir=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-mb) size_mb=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --attune) attune=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $attune ]] || { echo "attune binary not found at $attune (build with cargo build --release, or pass --attune)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/attune-bench-local.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=${dir:-$work/tree}
if [[ ! -f $tree/pack.yaml ]]; then
    echo "generating $files files, $size_mb MiB in $tree ..."
    python3 "$repo/scripts/make-tree.py" "$tree" "$size_mb" "$files"
    printf -- '---\nname: bench_pack\nversion: 1.0.0\n' > "$tree/pack.yaml"
fi

source "$repo/scripts/bench-lib.sh"
runs_dir="$work/runs"
# Each run installs into a fresh packs dir and database; the compiled-plugin
# cache is shared, as on a real machine after the first install.
attune_install() {
    local d; d=$(mktemp -d -p "$runs_dir")
    "$attune" --packs-dir "$d/packs" --database-url "sqlite://$d/attune.db" --cache-dir "$work/cache" \
        install --limit-bytes 64GiB --limit-files 10000000 "$tree"
}
copy() { cp -a "$tree" "$(mktemp -d -p "$runs_dir")/copy"; }
copy_sync() { copy && sync; }
reset() { rm -rf "$runs_dir"; mkdir -p "$runs_dir"; sync; }
bench_setup() { reset; }

echo "warming the page cache and the plugin cache ..."
find "$tree" -type f -print0 | xargs -0 cat > /dev/null
reset; attune_install > /dev/null

reset; t_attune=$(best_of attune_install)
reset; t_cp=$(best_of copy)
reset; t_cps=$(best_of copy_sync)
reset
mib=$(du -sm --apparent-size "$tree" | cut -f1)
awk -v a="$t_attune" -v c="$t_cp" -v s="$t_cps" -v mib="$mib" -v n="$files" 'BEGIN {
    printf "tree: %d files, %d MiB (best of runs, warm cache)\n", n, mib
    printf "attune install:  %7.3f s  (%6.0f MiB/s)\n", a, mib / a
    printf "cp -a:           %7.3f s  (%6.0f MiB/s)   ratio attune/cp:       %.2fx\n", c, mib / c, a / c
    printf "cp -a && sync:   %7.3f s  (%6.0f MiB/s)   ratio attune/cp+sync:  %.2fx\n", s, mib / s, a / s
}'
