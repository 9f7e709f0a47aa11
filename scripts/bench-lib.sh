# Shared by the benchmark scripts: timing helpers. Source it; set $runs first.

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
