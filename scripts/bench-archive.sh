#!/usr/bin/env bash
# Benchmarks attune's archive and http fetchers against the native tools on
# the same .tar.gz:
#   archive: `attune install pack.tar.gz`       vs `tar xzf pack.tar.gz`
#   http:    `attune install http://…/pack.tgz` vs `curl -o pack.tgz && tar xzf pack.tgz`
# from a loopback server (python3 -m http.server). Prints times and ratios;
# attune also checksums, fsyncs and records the pack, so `… && sync` columns
# are shown too.
#
# usage: scripts/bench-archive.sh [--size-mb N] [--files N] [--attune PATH] [--runs N]
#   defaults: 200 MiB, 5000 files, target/release/attune, 3 runs (best is reported)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=200
files=5000
attune="$repo/target/release/attune"
runs=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-mb) size_mb=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --attune) attune=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $attune ]] || { echo "attune binary not found at $attune (build with cargo build --release, or pass --attune)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed for the http comparison" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/attune-bench-archive.XXXXXX")
server_pid=""
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "generating $files files, $size_mb MiB ..."
python3 "$repo/scripts/make-tree.py" "$work/tree" "$size_mb" "$files"
printf -- '---\nname: bench_pack\nversion: 1.0.0\n' > "$work/tree/pack.yaml"
mkdir -p "$work/www"
tar czf "$work/www/pack.tgz" -C "$work/tree" .
rm -rf "$work/tree"
tgz="$work/www/pack.tgz"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/pack.tgz" && break; sleep 0.1; done
url="http://127.0.0.1:$port/pack.tgz"

source "$repo/scripts/bench-lib.sh"
runs_dir="$work/runs"
fresh() { mktemp -d -p "$runs_dir"; }
attune_install() {
    local d; d=$(fresh)
    "$attune" --packs-dir "$d/packs" --database-url "sqlite://$d/attune.db" --cache-dir "$work/cache" install "$1"
}
tar_x() { local d; d=$(fresh); tar xzf "$tgz" -C "$d"; }
tar_x_sync() { tar_x && sync; }
curl_tar() { local d; d=$(fresh); curl -sf -o "$d/pack.tgz" "$url" && tar xzf "$d/pack.tgz" -C "$d"; }
curl_tar_sync() { curl_tar && sync; }
reset() { rm -rf "$runs_dir"; mkdir -p "$runs_dir"; sync; }
bench_setup() { reset; }

cat "$tgz" > /dev/null
reset; attune_install "$tgz" > /dev/null   # compiles and caches the fetchers once
reset; t_a=$(best_of attune_install "$tgz")
reset; t_tar=$(best_of tar_x)
reset; t_tars=$(best_of tar_x_sync)
reset; t_h=$(best_of attune_install "$url")
reset; t_curl=$(best_of curl_tar)
reset; t_curls=$(best_of curl_tar_sync)
reset
mib=$(du -m "$tgz" | cut -f1)
awk -v a="$t_a" -v t="$t_tar" -v ts="$t_tars" -v h="$t_h" -v c="$t_curl" -v cs="$t_curls" -v mib="$mib" -v size="$size_mb" -v n="$files" 'BEGIN {
    printf "archive: %d MiB .tar.gz of %d MiB in %d files (best of runs, warm cache)\n", mib, size, n
    printf "attune install FILE.tgz:      %7.3f s\n", a
    printf "tar xzf:                      %7.3f s   ratio %.2fx\n", t, a / t
    printf "tar xzf && sync:              %7.3f s   ratio %.2fx\n", ts, a / ts
    printf "attune install http://…:      %7.3f s\n", h
    printf "curl -o && tar xzf:           %7.3f s   ratio %.2fx\n", c, h / c
    printf "curl -o && tar xzf && sync:   %7.3f s   ratio %.2fx\n", cs, h / cs
}'
