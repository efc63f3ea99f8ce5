#!/usr/bin/env bash
# Two perfpipe binaries side by side under the end-to-end load driver (benches/load_driver.rs):
# PAIRS pairs back to back, the order alternating (A first, then B first, …) so that drift in
# the machine falls on both sides, every run with the same end time so that all post the same
# rounds. For a change that cannot be switched by a flag (an allocator setting, a build option):
#
#   benches/compare-binaries.sh A B [PAIRS] [driver flags]   # default 4 pairs, backfill with rollups
#
# Prints each run's update line, then the node CPU per posted point of the update phase per
# run, the ratio B / A per pair, of the medians, and the median of the pairwise ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
binary_a=$(realpath "$1")
binary_b=$(realpath "$2")
pairs=${3:-4}
shift 3 || shift $#
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--hosts 2000 --services 10 --metrics 3 --rounds 36
    --round-step 300 --create-through-first-hour --rollups)
cargo bench --bench load_driver --no-run >/dev/null 2>&1
out=$(mktemp -d)
driver=$(ls -t target/release/deps/load_driver-* | grep -v '\.d$' | head -1)
cp "$driver" "$out/load_driver"
[[ " ${flags[*]} " == *" --end "* ]] || flags+=(--end "$(date +%s)")
for pair in $(seq "$pairs"); do
    order="a b"
    [ $((pair % 2)) = 0 ] && order="b a"
    for side in $order; do
        binary=$binary_a
        [ "$side" = b ] && binary=$binary_b
        echo "== pair $pair, $side ($binary)"
        "$out/load_driver" --bench --binary "$binary" "${flags[@]}" |
            tee "$out/$side-$pair.txt" | grep -E "^  update " || true
    done
done
python3 benches/support/cpu_per_point.py "$out" "$pairs" a b
