# Shared by the benchmark scripts: timing helpers. Source it; set $runs first.

now() { date +%s.%N; }
# best wall time of $runs runs of "$@", output discarded. If a function
# `bench_setup` exists it runs, untimed, before each run (so one run's dirty
# pages are not the next one's writeback).
best_of() {
    local best="" t0 t1 dt
    for ((r = 0; r < runs; r++)); do
        if declare -F bench_setup >/dev/null; then bench_setup; fi
        t0=$(now)
        "$@" > /dev/null
        t1=$(now)
        dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
        if [[ -z $best ]] || awk -v a="$dt" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$dt; fi
    done
    echo "$best"
}
