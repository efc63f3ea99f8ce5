#!/usr/bin/env bash
# What rollups (avg, max and min on every series) cost ingestion: the end-to-end load driver
# (benches/load_driver.rs) without and with `--rollups`, PAIRS pairs back to back, the order
# alternating (without first, then with first, …) so that drift in the machine falls on both
# sides, in one command:
#
#   benches/rollup-cost.sh [PAIRS] [driver flags]   # default 6 pairs, real time, 60,000 series
#
# The default flags are the real-time workload of docs/performance.md ("Where the rollups'
# cost sits"): one point per series per flush, 36 rounds 300 s apart, whose update phase closes
# hour periods; every run gets the end time taken at the start (`--end`), so the pairs post
# exactly the same rounds. Prints each run's update line, then the node CPU per posted point of the
# update phase per run, the ratio per pair, the ratio of the medians and the median of the
# pairwise ratios (the target of issue 7 is at most 1.10).
#
# The figures of docs/performance.md use 60 s rounds at the issue's load, e.g. a whole first
# day (every aggregate series made in the update phase):
#
#   benches/rollup-cost.sh 6 --hosts 2000 --rounds 1320 --round-step 60 --clients 16 --rate 1000000
#
# The driver refuses rounds older than 23 hours, so that set (22 hours of rounds ending at its
# start) must finish within the hour: about 4 minutes a pair.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-6}
shift || true
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--hosts 2000 --services 10 --metrics 3 --rounds 36
    --round-step 300 --create-through-first-hour --round-by-round --max-batch-age 500ms)
. benches/support/load-driver-copies.sh
# One end time for every run, so that both runs of a pair (and all pairs) post the same rounds.
[[ " ${flags[*]} " == *" --end "* ]] || flags+=(--end "$(date +%s)")
for pair in $(seq "$pairs"); do
    order="without with"
    [ $((pair % 2)) = 0 ] && order="with without"
    for mode in $order; do
        extra=()
        [ "$mode" = with ] && extra=(--rollups)
        echo "== pair $pair, $mode rollups"
        "$out/load_driver" --bench --binary "$out/perfpipe" "${flags[@]}" "${extra[@]}" |
            tee "$out/$mode-$pair.txt" | grep -E "^  update " || true
    done
done
python3 benches/support/cpu_per_point.py "$out" "$pairs" without with
