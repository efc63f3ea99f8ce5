#!/usr/bin/env bash
# Compares the RRD backend end to end with the reference tools on the same workload:
#   (a) perfpipe's RrdBackend (examples/rrd-load.rs), all of a series' points in one write call,
#       with its default number of write threads ("perfpipe") and with one ("perfpipe-1t");
#   (b) `rrdtool update FILE t:v t:v ...`, one process per file with all its values;
#   (c) rrdcached: one BATCH of `UPDATE FILE t:v ...` lines over its unix socket, then FLUSHALL
#       and a FLUSH per file, which each answer once that file is written.
# Every method starts from copies of the same pre-created files (rrdtool create, Opsview's
# layout, last update T0-1) and writes the same points (FILES series x POINTS points, 300 s
# apart). The files the methods produce are checked to read back identically with rrdtool fetch.
#
# What is timed, for each method, ends when the data is in the files (none of them fsyncs):
#   perfpipe:  from the moment all batches are in the process's memory (built before the clock
#              starts) until the last write() call returned. Includes formatting the values as
#              librrd's `T:V` text (write() does that); the time formatting alone takes is printed
#              ("format") so it can be weighed. Process start is not included; the whole
#              process's wall-clock time is printed too ("process").
#   rrdcached: from the moment the update text is in the client's memory (formatted before the
#              clock starts: the client's formatting is excluded, as perfpipe's batch building
#              is) until the last FLUSH answered: sending, rrdcached's parsing, queueing and its
#              write threads' librrd calls. The daemon is started before the clock.
#   rrdtool:   the whole `xargs rrdtool update` run, process starts included (that is the point
#              of that method).
#
# Usage: backends/rrd/benches/vs-rrdtool.sh [FILES [POINTS [RUNS]]]   (default 500 288 5)
#        RRD_LOAD=path/to/rrd-load to use an already built example instead of building it;
#        RRD_THREADS=n for perfpipe's write threads (default: its default, cores up to 4).
# Needs: rrdtool, rrdcached, python3, cargo; builds the example with --release into
# $CARGO_TARGET_DIR (default: the workspace's target/).
set -euo pipefail

FILES=${1:-500}
POINTS=${2:-288}
RUNS=${3:-5}
T0=1700002800

for tool in rrdtool rrdcached python3 cargo; do
    command -v "$tool" >/dev/null || { echo "vs-rrdtool.sh: $tool is needed and not on PATH" >&2; exit 1; }
done

if [[ -n ${RRD_LOAD:-} ]]; then
    rrd_load=$RRD_LOAD   # an already built examples/rrd-load
else
    crate_dir=$(cd "$(dirname "$0")/.." && pwd)
    cargo build --quiet --release -p perfpipe-rrd --features rrd --example rrd-load \
        --manifest-path "$crate_dir/Cargo.toml"
    target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps \
        --manifest-path "$crate_dir/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}
    rrd_load="$target_dir/release/examples/rrd-load"
fi

work=$(mktemp -d /tmp/rrd-vs.XXXXXX)
daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Template files and the update lines: "bench/svc/m<i>/value.rrd T:V T:V ...".
python3 - "$work" "$FILES" "$POINTS" "$T0" <<'PY'
import os, sys
work, files, points, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(os.path.join(work, "updates.txt"), "w") as out:
    for i in range(files):
        values = " ".join(f"{t0 + 300 * j}:{((7 * i + j) % 100) + 0.5!r}" for j in range(points))
        out.write(f"bench/svc/m{i}/value.rrd {values}\n")
PY
mkdir -p "$work/template"
for ((i = 0; i < FILES; i++)); do
    mkdir -p "$work/template/bench/svc/m$i"
    rrdtool create "$work/template/bench/svc/m$i/value.rrd" --start $((T0 - 1)) --step 300 \
        DS:value:GAUGE:600:U:U RRA:AVERAGE:0.5:1:600 RRA:AVERAGE:0.5:6:700 \
        RRA:AVERAGE:0.5:24:775 RRA:AVERAGE:0.5:288:797
done

now() { date +%s%N; }
results="$work/results.txt"

run_perfpipe() {
    local dir=$1 name=$2 threads=$3
    local start; start=$(now)
    local out; out=$("$rrd_load" "$dir" "$FILES" "$POINTS" "$POINTS" $threads)
    local process=$(( $(now) - start ))
    # "written N ns NS format_ns F threads T"
    set -- $out
    [[ $1 == written && $2 == $((FILES * POINTS)) ]] || { echo "rrd-load: unexpected output: $out" >&2; exit 1; }
    { echo "$name $4"; echo "$name-process $process"; echo "$name-format $6"; } >>"$results"
}

run_rrdtool() {
    local dir=$1
    local start; start=$(now)
    (cd "$dir" && xargs -L1 rrdtool update <"$work/updates.txt")
    echo "rrdtool $(( $(now) - start ))" >>"$results"
}

run_rrdcached() {
    local dir=$1 sock="$work/rrdcached.sock"
    rm -f "$sock" "$work/rrdcached.pid"
    rrdcached -g -l "unix:$sock" -b "$dir" -B -p "$work/rrdcached.pid" -w 3600 -f 7200 \
        >"$work/rrdcached.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
    [[ -S $sock ]] || { echo "rrdcached did not start:" >&2; cat "$work/rrdcached.log" >&2; exit 1; }
    python3 - "$sock" "$work/updates.txt" "$results" <<'PY'
import socket, sys, time
sock_path, updates, results = sys.argv[1:4]
lines = open(updates).read().splitlines()
files = [line.split(" ", 1)[0] for line in lines]
payload = "BATCH\n" + "".join(f"UPDATE {line}\n" for line in lines) + ".\n"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
reader = s.makefile("r")
start = time.monotonic_ns()
s.sendall(payload.encode())
go = reader.readline()
assert go.startswith("0 "), go
status = reader.readline()
errors = int(status.split()[0])
if errors:
    sys.exit("rrdcached BATCH errors: " + "".join(reader.readline() for _ in range(errors)))
s.sendall(b"FLUSHALL\n")
reader.readline()
# FLUSH answers once the file's pending values are written.
s.sendall("".join(f"FLUSH {f}\n" for f in files).encode())
for f in files:
    answer = reader.readline()
    assert answer.split()[0] in ("0",), (f, answer)
elapsed = time.monotonic_ns() - start
open(results, "a").write(f"rrdcached {elapsed}\n")
PY
    kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=
}

check_same() {
    local run=$1 last=$((T0 + 300 * (POINTS - 1)))
    for i in 0 $((FILES / 2)) $((FILES - 1)); do
        local ref=""
        for method in perfpipe perfpipe-1t rrdtool rrdcached; do
            local f="$run/$method/bench/svc/m$i/value.rrd"
            local got; got=$(rrdtool fetch "$f" AVERAGE -s $((T0 - 300)) -e "$last")
            [[ $(rrdtool lastupdate "$f" | tail -1 | cut -d: -f1) == "$last" ]] ||
                { echo "$method: $f last update is not $last" >&2; exit 1; }
            if [[ -z $ref ]]; then ref=$got
            elif [[ $got != "$ref" ]]; then echo "$method: $f differs from perfpipe's" >&2; exit 1; fi
        done
    done
}

for ((r = 1; r <= RUNS; r++)); do
    run="$work/run$r"
    mkdir -p "$run"
    for method in perfpipe perfpipe-1t rrdtool rrdcached; do cp -r "$work/template" "$run/$method"; done
    sync
    run_perfpipe "$run/perfpipe" perfpipe "${RRD_THREADS:-}"
    run_perfpipe "$run/perfpipe-1t" perfpipe-1t 1
    run_rrdtool "$run/rrdtool"
    run_rrdcached "$run/rrdcached"
    check_same "$run"
    rm -rf "$run"
done

echo "workload: $FILES files x $POINTS points = $((FILES * POINTS)) points, $RUNS runs, data in the files at the end of each run"
echo "perfpipe, rrdcached: points (or their text) in memory -> data in the files; -process: whole rrd-load process; -format: formatting alone (inside perfpipe's figure)"
python3 - "$results" "$((FILES * POINTS))" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    method, ns = line.split()
    runs.setdefault(method, []).append(int(ns) / 1e9)
points = int(sys.argv[2])
for method in ("perfpipe", "perfpipe-1t", "rrdcached", "rrdtool",
               "perfpipe-process", "perfpipe-format", "perfpipe-1t-process"):
    seconds = statistics.median(runs[method])
    all_runs = " ".join(f"{s:.3f}" for s in runs[method])
    print(f"{method:19} median {seconds:.3f} s  {points / seconds:>10.0f} points/s   (runs: {all_runs} s)")
PY
