#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time, one after another, and
# says what each found. Not part of .ci/run: fuzzing takes long and needs the
# nightly toolchain (`rustup toolchain install nightly`, `cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 600 seconds, every target
#
# Corpora grow in fuzz/corpus/<target> (not committed), seeded from fuzz/seeds/
# and the test fixtures; findings land in fuzz/artifacts/<target>/. Each run
# appends "target seconds execs findings" to fuzz/runs.log. Exit 1 if anything
# was found. Pin a finding as a regression test in the host crate, then fix it.
set -euo pipefail

secs=${1:-600}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
all=(manifest index lockfile source paths staging checksum)
[[ $# -gt 0 ]] && targets=("$@") || targets=("${all[@]}")

# The fuzz build never runs a fetcher: no wasm plugins (see host/build.rs).
export ATTUNE_NO_EMBEDDED_PLUGINS=1
nice -n 19 cargo +nightly fuzz build -a
bin=target/x86_64-unknown-linux-gnu/release

seed() { # target, files...
    local dir=corpus/$1; shift
    mkdir -p "$dir"
    for f in "$@"; do
        if [[ -f $f ]]; then cp "$f" "$dir/seed-$(basename "$f")"; fi
    done
}

found=0
for t in "${targets[@]}"; do
    seed "$t" seeds/"$t"/*
    case $t in
        manifest) seed "$t" ../host/tests/fixtures/manifests/* ../examples/packs/*/pack.yaml ;;
        index) seed "$t" ../host/tests/fixtures/registry/* ;;
        checksum) seed "$t" ../host/tests/golden/checksum/* ;;
    esac
    mkdir -p "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    log=$(mktemp)
    start=$(date +%s)
    case $t in manifest | index | lockfile | checksum) max_len=65536 ;; *) max_len=4096 ;; esac
    set +e
    nice -n 19 "$bin/$t" "corpus/$t" -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" 2>"$log"
    rc=$?
    set -e
    ran=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    after=$(ls "artifacts/$t" | wc -l)
    new=$((after - before))
    if [[ $rc -ne 0 || $new -gt 0 ]]; then
        found=1
        echo "$t: FOUND something (exit $rc, $new new artifact(s) in fuzz/artifacts/$t):"
        grep -m1 -A12 -E "panicked|ERROR: (libFuzzer|AddressSanitizer)" "$log" || tail -20 "$log"
    else
        echo "$t: ${ran}s, ${execs:-?} execs, nothing found"
    fi
    printf '%s %s %s %ss %s execs %s finding(s)\n' "$(date -u +%FT%TZ)" "$t" "$(git -C "$root" rev-parse --short HEAD)" \
        "$ran" "${execs:-?}" "$new" >>runs.log
    rm -f "$log"
done
exit $found
