#!/usr/bin/env bash
# The write-ahead log's cost: the end-to-end load driver (benches/load_driver.rs) against one
# node with the log off and with wal.sync_interval = 10ms, alternating, RUNS times each, in one
# command:
#
#   benches/wal-cost.sh [RUNS] [driver flags]     # default 3 runs, --hosts 2000 --rounds 4
#
# Prints each run's phase lines, then the medians per setting for the figures of
# docs/performance.md (accepted points/s and written points/s per phase).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--hosts 2000 --rounds 4)
. benches/support/load-driver-copies.sh
for run in $(seq "$runs"); do
    for wal in off 10ms; do
        echo "== run $run, wal $wal"
        "$out/load_driver" --bench --binary "$out/perfpipe" "${flags[@]}" --wal "$wal" | tee "$out/$wal-$run.txt" |
            grep -E "^  (phase|create|update|total) " || true
    done
done
python3 - "$out" "$runs" <<'PY'
import re, statistics, sys, pathlib
out, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def figures(text):
    # The driver's table: phase results points accept_s write_s results/s accepted_p/s written_p/s ...
    found = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) > 7 and cells[0] in ("create", "update", "total") and cells[1].isdigit():
            found[cells[0]] = (float(cells[6]), float(cells[7]))
    return found
table = {}
for wal in ("off", "10ms"):
    for run in range(1, runs + 1):
        for phase, (accepted, written) in figures((out / f"{wal}-{run}.txt").read_text()).items():
            table.setdefault((wal, phase), []).append((accepted, written))
for phase in ("create", "update", "total"):
    med = {}
    for wal in ("off", "10ms"):
        rows = table.get((wal, phase), [])
        if rows:
            med[wal] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
            print(f"{phase:6} wal {wal:4}: median accepted {med[wal][0]:>12,.0f} points/s, written {med[wal][1]:>10,.0f} points/s ({len(rows)} runs)")
    if len(med) == 2:
        print(f"{phase:6} with the log / without: accepted {med['10ms'][0] / med['off'][0]:.3f}, written {med['10ms'][1] / med['off'][1]:.3f}")
PY
