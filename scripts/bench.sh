#!/usr/bin/env bash
# Benchmarks attune against the native tools on the same input, every
# comparison side by side in one run, and prints one markdown table (the
# README's "Benchmarks" section shows the latest). Rows:
#
#   checksum  `attune pack checksum DIR`           vs `find | sort | xargs sha256sum`
#   local     `attune install DIR`                 vs `cp -a`, and `cp -a && sync`; and vs what
#             attune must do, copy and hash every byte: `cp -a && xargs -P sha256sum`,
#             and the floor, crates/attune-core/examples/copy_floor.rs (every core, no
#             sandbox; built here with cargo)
#   archive   `attune install pack.tar.gz`         vs `tar xzf`, and `tar xzf && sync`
#   http      `attune install http://…/pack.tgz`   vs `curl -o && tar xzf` (loopback server)
#   git       `attune install git+http://…`        vs `git clone --depth 1` (loopback git http-backend,
#             a packed repository)
#   install   `attune install` of a tiny pack with N packs installed vs with none
#   info      `attune info` of that pack, the same way
#   list      `attune list` with N packs installed (vs none)
#
# attune also checksums, fsyncs and records what it installs, hence the
# `&& sync` rows. Times are the best of --runs, warm page cache and warm
# compiled-plugin cache; each run writes into a fresh folder.
#
# usage: scripts/bench.sh [--dir DIR] [--only ROWS] [--runs N] [--attune PATH]
#                         [--size-mb N] [--files N] [--packs N[,N...]]
#   --dir      where inputs are generated and everything runs: a tmpfs or a
#              disk, your choice (default: a fresh folder under $TMPDIR,
#              removed at the end). Inputs generated there are kept and
#              reused by later runs with the same parameters.
#   --only     comma-separated rows to run (default: all)
#   --runs     timed runs of each command; the best is reported (default 3;
#              the install, info and list rows, a few ms each, take at least 30)
#   --attune   the binary (default: target/release/attune)
#   --size-mb, --files   the generated tree of the file rows (defaults:
#              checksum and local 1024 MiB / 20000 files; archive and http
#              200 MiB / 5000; git 100 MiB / 5000)
#   --packs    packs installed for the install, info and list rows; several
#              (2000,10000) give rows for each (default 10000)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
attune="$repo/target/release/attune"
runs=3
dir=""
only="checksum,local,archive,http,git,install,info,list"
size_mb=""
files=""
packs="10000"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --attune) attune=$2; shift 2 ;;
        --size-mb) size_mb=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --packs) packs=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for row in ${only//,/ }; do
    case "$row" in
        checksum|local|archive|http|git|install|info|list) ;;
        *) echo "--only: unknown row $row (rows: checksum,local,archive,http,git,install,info,list)" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

[[ -x $attune ]] || { echo "attune binary not found at $attune (build with cargo build --release, or pass --attune)" >&2; exit 1; }
attune=$(cd "$(dirname "$attune")" && pwd)/$(basename "$attune")
command -v python3 >/dev/null || { echo "python3 is needed to generate the inputs" >&2; exit 1; }
if wants http; then command -v curl >/dev/null || { echo "curl is needed for the http row" >&2; exit 1; }; fi
if wants local; then command -v cargo >/dev/null || { echo "cargo is needed to build the local row's copy_floor" >&2; exit 1; }; fi
if wants git; then command -v git >/dev/null || { echo "git is needed for the git row" >&2; exit 1; }; fi

# Everything lives under $dir: inputs/ (kept), runs/ and state (removed).
if [[ -z $dir ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/attune-bench.XXXXXX")
    remove_dir=1
else
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    remove_dir=0
fi
inputs="$dir/inputs"
work="$dir/work.$$"
mkdir -p "$inputs" "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
    if [[ $remove_dir == 1 ]]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

log() { echo "$*" >&2; }

if wants local; then
    log "building copy_floor ..."
    cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p attune-core --example copy_floor
    floor="$repo/target/release/examples/copy_floor"
fi

# --- timing -----------------------------------------------------------------

# Best wall time in seconds of $runs runs of "${@:2}", output discarded; $1
# runs untimed before each run (`:` for nothing), so one run's leftovers or
# dirty pages are not the next one's cost.
best_of() {
    local setup=$1 best="" t0 t1 dt r
    shift
    for ((r = 0; r < runs; r++)); do
        "$setup"
        t0=$EPOCHREALTIME
        "$@" > /dev/null
        t1=$EPOCHREALTIME
        dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
        if [[ -z $best ]] || awk -v a="$dt" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$dt; fi
    done
    echo "$best"
}

runs_dir="$work/runs"
fresh() { mktemp -d -p "$runs_dir"; }
reset() { rm -rf "$runs_dir"; mkdir -p "$runs_dir"; sync; }

# --- the table --------------------------------------------------------------

table=()
# add_row WORK NATIVE ATTUNE_S NATIVE_S UNIT: UNIT s or ms; NATIVE_S may be "".
add_row() {
    table+=("$(awk -v w="$1" -v n="$2" -v a="$3" -v b="$4" -v u="$5" 'BEGIN {
        f = (u == "ms") ? 1000 : 1
        fmt = (u == "ms") ? "%.0f ms" : "%.2f s"
        at = sprintf(fmt, a * f)
        if (b == "") { printf "| %s | %s | %s | — | — |", w, n, at; exit }
        printf "| %s | %s | %s | %s | %.2f× |", w, n, at, sprintf(fmt, b * f), a / b
    }')")
}

# --- inputs -----------------------------------------------------------------

# A generated tree of $1 MiB in $2 files with a pack.yaml, made once per
# parameters. Prints its path.
tree_input() {
    local t="$inputs/tree-$1mb-$2"
    if [[ ! -f $t.done ]]; then
        log "generating $2 files, $1 MiB in $t ..."
        rm -rf "$t"
        python3 "$repo/scripts/make-tree.py" "$t" "$1" "$2"
        printf -- '---\nname: bench_pack\nversion: 1.0.0\n' > "$t/pack.yaml"
        touch "$t.done"
    fi
    echo "$t"
}

warm() { find "$1" -type f -print0 | xargs -0 cat > /dev/null; }
size_of() { du -sm --apparent-size "$1" | cut -f1; }

attune_in() { # attune_in STATE_DIR ARGS...: attune on its own packs folder and database
    local d=$1
    shift
    "$attune" --packs-dir "$d/packs" --database-url "sqlite://$d/attune.db" --cache-dir "$work/cache" "$@"
}

# --- file rows ----------------------------------------------------------------

bench_checksum() {
    local mb=${size_mb:-1024} n=${files:-20000} tree
    tree=$(tree_input "$mb" "$n")
    pipeline() { find "$tree" -type f | LC_ALL=C sort | xargs -d '\n' sha256sum; }
    log "checksum: warming ..."
    warm "$tree"
    "$attune" pack checksum "$tree" > /dev/null
    local a p
    a=$(best_of : "$attune" pack checksum "$tree")
    p=$(best_of : pipeline)
    add_row "checksum, $(size_of "$tree") MiB / $n files" '`find \| sort \| xargs sha256sum`' "$a" "$p" s
}

bench_local() {
    local mb=${size_mb:-1024} n=${files:-20000} tree
    tree=$(tree_input "$mb" "$n")
    install_tree() { attune_in "$(fresh)" install --limit-bytes 64GiB --limit-files 10000000 "$tree"; }
    copy() { cp -a "$tree" "$(fresh)/copy"; }
    copy_sync() { copy && sync; }
    copy_hash() {
        local d
        d=$(fresh)/copy
        cp -a "$tree" "$d" && find "$d" -type f -print0 | xargs -0 -P "$(nproc)" -n 500 sha256sum
    }
    copy_floor() { "$floor" "$tree" "$(fresh)/copy"; }
    log "local: warming ..."
    warm "$tree"
    reset; install_tree > /dev/null
    local a c s h f w
    a=$(best_of reset install_tree)
    c=$(best_of reset copy)
    s=$(best_of reset copy_sync)
    h=$(best_of reset copy_hash)
    f=$(best_of reset copy_floor)
    reset
    w="local folder, $(size_of "$tree") MiB / $n files"
    add_row "$w" '`cp -a`' "$a" "$c" s
    add_row "$w" '`cp -a && sync`' "$a" "$s" s
    add_row "$w" '`cp -a`, then `xargs -P sha256sum` of the copy' "$a" "$h" s
    add_row "$w" 'copy + SHA-256 on every core, no sandbox (`copy_floor`)' "$a" "$f" s
}

# The .tar.gz of the archive and http rows, in a folder a server can serve.
tgz_input() {
    local mb=${size_mb:-200} n=${files:-5000}
    local www="$inputs/www-$mb-$n"
    if [[ ! -f $www.done ]]; then
        local tree
        tree=$(tree_input "$mb" "$n")
        log "packing $tree ..."
        rm -rf "$www"
        mkdir -p "$www"
        tar czf "$www/pack.tgz" -C "$tree" .
        touch "$www.done"
    fi
    echo "$www"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_archive() {
    local www tgz
    www=$(tgz_input)
    tgz="$www/pack.tgz"
    install_tgz() { attune_in "$(fresh)" install "$tgz"; }
    tar_x() { tar xzf "$tgz" -C "$(fresh)"; }
    tar_x_sync() { tar_x && sync; }
    cat "$tgz" > /dev/null
    reset; install_tgz > /dev/null
    local a t s w
    a=$(best_of reset install_tgz)
    t=$(best_of reset tar_x)
    s=$(best_of reset tar_x_sync)
    reset
    w="\`.tar.gz\`, $(size_of "$tgz") MiB / ${files:-5000} files"
    add_row "$w" '`tar xzf`' "$a" "$t" s
    add_row "$w" '`tar xzf && sync`' "$a" "$s" s
}

bench_http() {
    local www port url
    www=$(tgz_input)
    port=$(free_port)
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$www" > /dev/null 2>&1 &
    pids+=($!)
    url="http://127.0.0.1:$port/pack.tgz"
    for _ in $(seq 50); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
    install_url() { attune_in "$(fresh)" install "$url"; }
    curl_tar() { local d; d=$(fresh); curl -sf -o "$d/pack.tgz" "$url" && tar xzf "$d/pack.tgz" -C "$d"; }
    reset; install_url > /dev/null
    local a c
    a=$(best_of reset install_url)
    c=$(best_of reset curl_tar)
    reset
    add_row "same over http (loopback)" '`curl -o && tar xzf`' "$a" "$c" s
}

bench_git() {
    local mb=${size_mb:-100} n=${files:-5000}
    local root="$inputs/git-packed-$mb-$n"
    if [[ ! -f $root.done ]]; then
        local src="$work/git-src"
        log "generating a repository of $n files, $mb MiB ..."
        rm -rf "$root" "$src"
        cp -a "$(tree_input "$mb" "$n")" "$src"
        git -C "$src" init -q -b main .
        git -C "$src" add -A
        git -C "$src" -c user.name=bench -c user.email=bench@example.com commit -q -m bench
        mkdir -p "$root"
        git clone -q --bare "$src" "$root/repo.git"
        # Packed, as a served repository is: with loose objects the server's
        # delta search takes most of either side's time.
        git -C "$root/repo.git" repack -adq
        rm -rf "$src"
        touch "$root.done"
    fi
    local port url
    port=$(free_port)
    python3 "$repo/scripts/git-http-server.py" "$root" "$port" &
    pids+=($!)
    url="http://127.0.0.1:$port/repo.git"
    for _ in $(seq 50); do git ls-remote -q "$url" > /dev/null 2>&1 && break; sleep 0.1; done
    install_git() { attune_in "$(fresh)" install --limit-memory 1GiB "git+$url"; }
    git_clone() { git clone -q --depth 1 "$url" "$(fresh)/clone"; }
    reset; install_git > /dev/null
    local a g
    a=$(best_of reset install_git)
    g=$(best_of reset git_clone)
    reset
    add_row "git, $mb MiB / $n files (loopback \`git http-backend\`)" '`git clone --depth 1`' "$a" "$g" s
}

# --- scale rows: a tiny pack with N packs installed ---------------------------

# N tiny packs (a pack.yaml and a few small files each, so each stored
# manifest has some entries), made once: inputs/tiny-v1/bench_NNNNN.
tiny_input() {
    local want=$1 t="$inputs/tiny-v1" have=0
    [[ -f $t/.count ]] && have=$(cat "$t/.count")
    if ((have < want)); then
        log "generating $want tiny packs in $t ..."
        python3 - "$t" "$have" "$want" <<'EOF'
import os, sys
root, have, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(have, want):
    d = os.path.join(root, f"bench_{i:05}")
    os.makedirs(os.path.join(d, "actions"), exist_ok=True)
    with open(os.path.join(d, "pack.yaml"), "w") as f:
        f.write(f"---\nname: bench_{i:05}\nversion: 1.0.0\ndescription: generated by scripts/bench.sh\n")
    for j in range(8):
        with open(os.path.join(d, "actions", f"action_{j}.yaml"), "w") as f:
            f.write(f"name: action_{j}\nentry_point: action_{j}.py\n" + "# padding\n" * (j * 4))
with open(os.path.join(root, ".count"), "w") as f:
    f.write(str(want))
EOF
    fi
    echo "$t"
}

# Installs tiny packs [from, to) into state dir $1, many per command.
seed() {
    local s=$1 from=$2 to=$3 tiny=$4 i batch=()
    for ((i = from; i < to; i++)); do
        batch+=("$tiny/$(printf 'bench_%05d' "$i")")
        if ((${#batch[@]} == 250 || i == to - 1)); then
            attune_in "$s" install "${batch[@]}" > /dev/null 2> "$work/seed.log" ||
                { log "installing the tiny packs failed:"; tail -5 "$work/seed.log" >&2; exit 1; }
            batch=()
        fi
    done
}

bench_scale() {
    local levels=() max=0 n
    IFS=, read -r -a levels <<< "$packs"
    for n in "${levels[@]}"; do ((n > max)) && max=$n; done
    local tiny probe="$work/probe"
    tiny=$(tiny_input "$max")
    mkdir -p "$probe/actions"
    printf -- '---\nname: bench_probe\nversion: 1.0.0\n' > "$probe/pack.yaml"
    echo "name: probe" > "$probe/actions/probe.yaml"

    # Two state dirs side by side: `$s` gains packs level by level, `$s0`
    # holds the probe alone. Each level measures both right after each
    # other, so a machine that drifts over the minutes seeding takes moves
    # both numbers of a row alike.
    local s="$work/scale" s0="$work/scale0"
    rm -rf "$s" "$s0"
    mkdir -p "$s" "$s0"
    attune_in "$s" install "$probe" > /dev/null 2>&1
    attune_in "$s0" install "$probe" > /dev/null 2>&1
    # Each command runs in state dir `$at`: `in_dir DIR best_of …` sets it.
    local at
    un_probe() { attune_in "$at" uninstall bench_probe > /dev/null 2>&1 || true; }
    install_probe() { attune_in "$at" install "$probe"; }
    info_probe() { attune_in "$at" info bench_probe; }
    list_all() { attune_in "$at" list; }
    in_dir() { at=$1; shift; "$@"; }
    # A few ms each: the best of many runs.
    local installed=0 runs=$((runs < 30 ? 30 : runs))
    for n in $(printf '%s\n' "${levels[@]}" | sort -n); do
        log "installing packs $installed..$n (the probe stays) ..."
        local t0=$EPOCHREALTIME
        seed "$s" "$installed" "$n" "$tiny"
        log "  $((n - installed)) installs took $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
        installed=$n
        if wants install; then
            local i0 i
            i0=$(in_dir "$s0" best_of un_probe install_probe)
            i=$(in_dir "$s" best_of un_probe install_probe)
            add_row "\`attune install\` of a tiny pack with $n packs installed" "same with none installed" "$i" "$i0" ms
        fi
        if wants info; then
            local f0 f
            f0=$(in_dir "$s0" best_of : info_probe)
            f=$(in_dir "$s" best_of : info_probe)
            add_row "\`attune info\` of a tiny pack with $n packs installed" "same with none installed" "$f" "$f0" ms
        fi
        if wants list; then
            local l0 l
            l0=$(in_dir "$s0" best_of : list_all)
            l=$(in_dir "$s" best_of : list_all)
            add_row "\`attune list\` with $n packs installed" "same with none installed" "$l" "$l0" ms
        fi
    done
    rm -rf "$s" "$s0"
}

# --- run ----------------------------------------------------------------------

wants checksum && bench_checksum
wants local && bench_local
wants archive && bench_archive
wants http && bench_http
wants git && bench_git
if wants install || wants info || wants list; then bench_scale; fi

echo
scale_note=""
if wants install || wants info || wants list; then scale_note=" (at least 30 for install, info, list)"; fi
echo "$(nproc) cores, $(date -u +%Y-%m-%d), $(stat -f -c %T "$dir") at $dir, best of $runs runs$scale_note, $("$attune" --version 2>/dev/null || echo attune)"
echo
echo "| work | compared with | attune | compared | attune / compared |"
echo "|---|---|---|---|---|"
printf '%s\n' "${table[@]}"
