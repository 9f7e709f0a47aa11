#!/usr/bin/env bash
# Benchmarks the git fetcher: `attune install git+http://…/repo.git` against
# `git clone --depth 1` of the same repository from the same loopback server
# (`git http-backend` behind scripts/git-http-server.py). Prints times and
# the ratio.
#
# usage: scripts/bench-git.sh [--size-mb N] [--files N] [--attune PATH] [--runs N]
#   defaults: 100 MiB, 5000 files, target/release/attune, 3 runs (best is reported)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=100
files=5000
attune="$repo_root/target/release/attune"
runs=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-mb) size_mb=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --attune) attune=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $attune ]] || { echo "attune binary not found at $attune (build with cargo build --release, or pass --attune)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/attune-bench-git.XXXXXX")
server_pid=""
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "generating a repository of $files files, $size_mb MiB ..."
python3 "$repo_root/scripts/make-tree.py" "$work/src" "$size_mb" "$files"
printf -- '---\nname: bench_pack\nversion: 1.0.0\n' > "$work/src/pack.yaml"
git -C "$work/src" init -q -b main .
git -C "$work/src" add -A
git -C "$work/src" -c user.name=bench -c user.email=bench@example.com commit -q -m bench
mkdir -p "$work/root"
git clone -q --bare "$work/src" "$work/root/repo.git"
rm -rf "$work/src"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$repo_root/scripts/git-http-server.py" "$work/root" "$port" &
server_pid=$!
url="http://127.0.0.1:$port/repo.git"
for _ in $(seq 50); do git ls-remote -q "$url" >/dev/null 2>&1 && break; sleep 0.1; done

source "$repo_root/scripts/bench-lib.sh"
runs_dir="$work/runs"
fresh() { mktemp -d -p "$runs_dir"; }
attune_install() {
    local d; d=$(fresh)
    "$attune" --packs-dir "$d/packs" --database-url "sqlite://$d/attune.db" --cache-dir "$work/cache" \
        install --limit-memory 1GiB "git+$url"
}
git_clone() { local d; d=$(fresh); git clone -q --depth 1 "$url" "$d/clone"; }
reset() { rm -rf "$runs_dir"; mkdir -p "$runs_dir"; sync; }
bench_setup() { reset; }

reset; attune_install > /dev/null   # compiles and caches the fetcher once
t_a=$(best_of attune_install)
t_g=$(best_of git_clone)
reset
awk -v a="$t_a" -v g="$t_g" -v size="$size_mb" -v n="$files" 'BEGIN {
    printf "git: %d files, %d MiB, from a loopback git http-backend (best of runs)\n", n, size
    printf "attune install git+http://…:   %7.3f s\n", a
    printf "git clone --depth 1:           %7.3f s   ratio %.2fx\n", g, a / g
}'
