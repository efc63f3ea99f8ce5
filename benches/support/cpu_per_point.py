"""Reads the load driver's outputs of an A/B series and prints the node CPU per posted point
of the update phase per run, the ratio per pair, the ratio of the medians and the median of the
pairwise ratios. Used by benches/rollup-cost.sh and benches/compare-binaries.sh:

    python3 cpu_per_point.py OUT PAIRS NAME_A NAME_B   # reads OUT/NAME-PAIR.txt
"""
import pathlib
import statistics
import sys

out, pairs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
names = sys.argv[3:5]


def cpu_per_point(path):
    # The driver's table: phase results points accept_s write_s results/s accepted_p/s
    # written_p/s 503s node_cpu drv_cpu; node_cpu ends in "s".
    for line in path.read_text().splitlines():
        cells = line.split()
        if len(cells) > 9 and cells[0] == "update" and cells[1].isdigit():
            return float(cells[9].rstrip("s")) / int(cells[2]) * 1e6
    raise SystemExit(f"{path}: no update line (the run failed; its output is there)")


runs = {name: [cpu_per_point(out / f"{name}-{p}.txt") for p in range(1, pairs + 1)]
        for name in names}
a, b = names
for p in range(pairs):
    print(f"pair {p + 1}: {a} {runs[a][p]:.2f} us, {b} {runs[b][p]:.2f} us a point: "
          f"{runs[b][p] / runs[a][p]:.3f}")
medians = {name: statistics.median(values) for name, values in runs.items()}
pairwise = statistics.median(y / x for y, x in zip(runs[b], runs[a]))
print(f"median node CPU per posted point: {a} {medians[a]:.2f} us, {b} {medians[b]:.2f} us")
print(f"{b} / {a}: {medians[b] / medians[a]:.3f} (ratio of medians), "
      f"{pairwise:.3f} (median of the {pairs} pairwise ratios)")
