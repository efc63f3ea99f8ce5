#!/bin/sh
# Compares this crate's update_many with graphite's whisper.update_many (Debian python3-whisper,
# /usr/bin/python3) on the same workload: 1,000 files with whisper's default archives
# (60s:1d,5m:30d,1h:3y), each pass writing 1, 10 or 100 points per file, "now" advancing so every
# call writes new intervals. Prints the median points/s of 7 passes for both and the ratio.
#
# Usage: backends/whisper/benches/vs-python.sh   (from anywhere; CARGO_TARGET_DIR is honoured,
# default the workspace's target/; WORKSPACE_DIR names the Cargo workspace to build in, default the
# repository root two levels above this crate)
set -eu
crate_dir=$(cd "$(dirname "$0")/.." && pwd)
: "${WORKSPACE_DIR:=$crate_dir/../..}"
: "${CARGO_TARGET_DIR:=$WORKSPACE_DIR/target}"
export CARGO_TARGET_DIR

/usr/bin/python3 -c 'import whisper' 2>/dev/null || {
  echo "vs-python.sh: /usr/bin/python3 cannot import whisper (apt-get install python3-whisper)" >&2
  exit 1
}

rust_out=$(cd "$WORKSPACE_DIR" && WHISPER_BENCH_PLAIN=1 cargo bench -q -p perfpipe-whisper --bench update)

python_out=$(/usr/bin/python3 - <<'PY'
import os, shutil, tempfile, time
import whisper

FILES, START, PASSES = 1000, 1700000040, 7
archives = [whisper.parseRetentionDef(d) for d in "60s:1d,5m:30d,1h:3y".split(",")]
for batch in (1, 10, 100):
    directory = tempfile.mkdtemp()
    paths = [os.path.join(directory, "series-%d.wsp" % i) for i in range(FILES)]
    for path in paths:
        whisper.create(path, archives, 0.5, "average", sparse=True)
    rates = []
    for pass_number in range(PASSES):
        now = START + (pass_number + 1) * batch * 60
        points = [(now - (batch - 1 - i) * 60, float(i + pass_number)) for i in range(batch)]
        started = time.perf_counter()
        for path in paths:
            whisper.update_many(path, points, now=now)
        rates.append(FILES * batch / (time.perf_counter() - started))
    rates.sort()
    print("python %d %.0f" % (batch, rates[len(rates) // 2]))
    shutil.rmtree(directory)
PY
)

printf '%-16s %16s %16s %8s\n' "points/call" "python points/s" "rust points/s" "ratio"
for batch in 1 10 100; do
  python_rate=$(printf '%s\n' "$python_out" | awk -v b="$batch" '$1 == "python" && $2 == b { print $3 }')
  rust_rate=$(printf '%s\n' "$rust_out" | awk -v b="$batch" '$1 == "rust" && $2 == b { print $3 }')
  ratio=$(awk -v r="$rust_rate" -v p="$python_rate" 'BEGIN { printf "%.1f", r / p }')
  printf '%-16s %16s %16s %7sx\n' "$batch" "$python_rate" "$rust_rate" "$ratio"
done
