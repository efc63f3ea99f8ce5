#!/usr/bin/env bash
# Render speed of graphite-web (Debian's 1.1.8 under gunicorn) and, given its binary, a perfpipe
# node, over the same whisper tree: a dashboard of 20 targets asked as one
# /render?target=…×20&format=json&from=-7d request, N times against each, alternating, then
# the medians and their ratio.
#
#   benches/render-vs-graphite-web.sh [--perfpipe target/release/perfpipe] [--runs 20]
#                                     [--workers 2] [--plain] [--keep]
#
# The tree: 20 series h01..h20.svc.load of 7 days of 1-minute points (retention 60s:8d),
# written with graphite's whisper module under Debian's /usr/bin/python3. graphite-web runs
# through tests/graphite_web/launch.py (gunicorn, --workers sync workers, dummy cache, no
# carbonlink); perfpipe serves the same tree (backends = ["whisper"], whisper.dir = the tree).
# --plain asks the 20 series as they are instead of the mixed dashboard (functions). Both
# servers run on this machine, on 127.0.0.1, with their files in a temp dir (--keep keeps
# it). Needs graphite-web, gunicorn and python3-whisper (scripts/test installs them) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

perfpipe=""
runs=20
workers=2
plain=0
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --perfpipe) perfpipe=$(realpath "$2"); shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --plain) plain=1; shift ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
    esac
done
for program in curl /usr/bin/python3; do
    command -v "$program" >/dev/null || { echo "$program is missing" >&2; exit 1; }
done

work=$(mktemp -d /tmp/perfpipe-render-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        # Each server runs in a process group of its own (setsid): stop the group.
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then echo "files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

tree="$work/whisper"
echo "== writing 20 series × 7 days of minutes under $tree"
/usr/bin/python3 - "$tree" <<'PY'
import math, os, sys, time
import whisper
tree = sys.argv[1]
now = int(time.time())
end = now - now % 60
archives = [whisper.parseRetentionDef("60s:8d")]
for h in range(1, 21):
    path = os.path.join(tree, "h%02d" % h, "svc", "load.wsp")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    whisper.create(path, archives, xFilesFactor=0.5, aggregationMethod="average")
    points = []
    for i in range(7 * 1440):
        if (i * 7 + h) % 997 == 0:
            continue  # a gap now and then
        t = end - i * 60
        points.append((t, round(50 + 40 * math.sin(i / 90.0 + h) + (i * h) % 7, 3)))
    whisper.update_many(path, points)
PY

# The dashboard: 20 targets, one per series.
targets=()
for h in $(seq -w 1 20); do
    s="h$h.svc.load"
    if [ "$plain" = 1 ]; then
        targets+=("$s")
        continue
    fi
    case $((10#$h % 10)) in
        1) targets+=("$s") ;;
        2) targets+=("movingAverage($s,'1h')") ;;
        3) targets+=("summarize($s,'1h','max')") ;;
        4) targets+=("scale(offset($s,-50),0.5)") ;;
        5) targets+=("aliasByNode($s,0)") ;;
        6) targets+=("keepLastValue($s,5)") ;;
        7) targets+=("nonNegativeDerivative($s)") ;;
        8) targets+=("asPercent($s,100)") ;;
        9) targets+=("timeShift($s,'1d')") ;;
        0) targets+=("sumSeries(h0*.svc.load)") ;;
    esac
done
query=$(/usr/bin/python3 -c '
import sys, urllib.parse
print(urllib.parse.urlencode([("target", t) for t in sys.argv[2:]] + [("format", "json"), ("from", "-7d"), ("now", sys.argv[1])]))
' "$(date +%s)" "${targets[@]}")

wait_for_address() { # LOGFILE PATTERN PID: prints host:port once PATTERN appears in LOGFILE
    local log=$1 pattern=$2 pid=$3
    for _ in $(seq 1 600); do
        if address=$(grep -o -m1 "$pattern[^ ]*" "$log" 2>/dev/null); then
            echo "${address#"$pattern"}"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "no address in $log:" >&2
    cat "$log" >&2
    return 1
}

wait_render() { # BASE_URL LOGFILE
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1/render?target=none.such&format=json" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    echo "$1 does not answer /render:" >&2
    cat "$2" >&2
    return 1
}

echo "== starting graphite-web ($workers gunicorn workers)"
mkdir -p "$work/graphite-web"
setsid /usr/bin/python3 tests/graphite_web/launch.py "$tree" "$work/graphite-web" --workers "$workers" \
    >"$work/graphite-web.log" 2>&1 &
pids+=($!)
disown
graphite="http://$(wait_for_address "$work/graphite-web.log" "Listening at: http://" "${pids[-1]}")"
wait_render "$graphite" "$work/graphite-web.log"
echo "   $graphite"

names=(graphite-web)
urls=("$graphite")
if [ -n "$perfpipe" ]; then
    echo "== starting perfpipe ($perfpipe)"
    cat >"$work/perfpipe.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$work/perfpipe-data"
backends = ["whisper"]

[whisper]
dir = "$tree"
retentions = "60s:8d"
TOML
    # The tree was written by graphite's whisper module: perfpipe adopts it (catalogue only).
    "$perfpipe" adopt --whisper "$tree" --config "$work/perfpipe.toml"
    NO_COLOR=1 RUST_LOG=info setsid "$perfpipe" serve --config "$work/perfpipe.toml" >"$work/perfpipe.log" 2>&1 &
    pids+=($!)
    disown
    node="http://$(wait_for_address "$work/perfpipe.log" "address=" "${pids[-1]}")"
    wait_render "$node" "$work/perfpipe.log"
    echo "   $node"
    names+=(perfpipe)
    urls+=("$node")
fi

echo "== dashboard: ${#targets[@]} targets, from=-7d, $runs runs each, alternating"
for url in "${urls[@]}"; do
    for _ in 1 2 3 4; do # warm up every worker
        curl -s -o /dev/null "$url/render?$query"
    done
done
times="$work/times"
: >"$times"
for run in $(seq 1 "$runs"); do
    for i in "${!urls[@]}"; do
        out=$(curl -s -o "$work/answer-$i.json" -w '%{http_code} %{time_total} %{size_download}' \
            "${urls[$i]}/render?$query")
        read -r code seconds bytes <<<"$out"
        if [ "$code" != 200 ]; then
            echo "${names[$i]}: HTTP $code on run $run:" >&2
            head -c 2000 "$work/answer-$i.json" >&2
            exit 1
        fi
        echo "${names[$i]} $seconds $bytes" >>"$times"
    done
done

/usr/bin/python3 - "$times" "$work" "${#urls[@]}" <<'PY'
import json, statistics, sys
times, work, servers = sys.argv[1], sys.argv[2], int(sys.argv[3])
by = {}
for line in open(times):
    name, seconds, size = line.split()
    by.setdefault(name, []).append((float(seconds), int(size)))
print("%-14s %6s %10s %10s %10s %12s" % ("server", "runs", "median ms", "min ms", "max ms", "bytes"))
for name, rows in by.items():
    s = [r[0] * 1000 for r in rows]
    print("%-14s %6d %10.1f %10.1f %10.1f %12d" % (name, len(s), statistics.median(s), min(s), max(s), rows[-1][1]))
for i in range(servers):
    answer = json.load(open("%s/answer-%d.json" % (work, i)))
    points = sum(len(s["datapoints"]) for s in answer)
    print("answer %d: %d series, %d points" % (i, len(answer), points))
if servers == 2:
    # Same files, same `now`: the answers must agree (names, timestamps, values to 1e-9).
    a, b = (json.load(open("%s/answer-%d.json" % (work, i))) for i in (0, 1))
    differ = 0
    for sa, sb in zip(a, b):
        if sa["target"] != sb["target"] or len(sa["datapoints"]) != len(sb["datapoints"]):
            differ += 1
            continue
        for (va, ta), (vb, tb) in zip(sa["datapoints"], sb["datapoints"]):
            same = ta == tb and ((va is None and vb is None) or (
                va is not None and vb is not None and abs(va - vb) <= 1e-9 * max(abs(va), abs(vb), 1e-3)))
            if not same:
                differ += 1
                break
    print("answers agree: %s (%d of %d series differ)" % ("yes" if differ == 0 and len(a) == len(b) else "NO", differ, len(a)))
if "perfpipe" in by:
    g = statistics.median(r[0] for r in by["graphite-web"])
    p = statistics.median(r[0] for r in by["perfpipe"])
    print("median ratio graphite-web / perfpipe: %.1fx" % (g / p))
PY
