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
python3 - "$out" "$pairs" <<'PY'
import statistics, sys, pathlib
out, pairs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def cpu_per_point(path):
    # The driver's table: phase results points accept_s write_s results/s accepted_p/s
    # written_p/s 503s node_cpu drv_cpu; node_cpu ends in "s".
    for line in path.read_text().splitlines():
        cells = line.split()
        if len(cells) > 9 and cells[0] == "update" and cells[1].isdigit():
            return float(cells[9].rstrip("s")) / int(cells[2]) * 1e6
    raise SystemExit(f"{path}: no update line (the run failed; its output is there)")
runs = {mode: [cpu_per_point(out / f"{mode}-{p}.txt") for p in range(1, pairs + 1)]
        for mode in ("without", "with")}
for p in range(pairs):
    print(f"pair {p + 1}: without {runs['without'][p]:.1f} us, with {runs['with'][p]:.1f} us a point: "
          f"{runs['with'][p] / runs['without'][p]:.3f}")
medians = {mode: statistics.median(values) for mode, values in runs.items()}
pairwise = statistics.median(w / wo for w, wo in zip(runs["with"], runs["without"]))
print(f"median node CPU per posted point: without {medians['without']:.1f} us, with {medians['with']:.1f} us")
print(f"with / without: {medians['with'] / medians['without']:.3f} (ratio of medians), "
      f"{pairwise:.3f} (median of the {pairs} pairwise ratios)")
PY
