#!/usr/bin/env bash
# Plugin cache (get_data / set_data) of one perfpipe node against Redis, and the node's memory
# per cached 1 KB item, in one command:
#
#   benches/plugin-cache-vs-redis.sh [driver flags, e.g. --runs 5 --skip-rss --perf DIR]
#
# Builds perfpipe and the driver (benches/plugin_cache_load.rs) in the bench profile, then runs
# the driver, which starts the node, a local redis-server (--save '' --appendonly no, loopback,
# free port) and redis-benchmark itself. Without redis-server/redis-benchmark on PATH (Debian:
# apt-get install redis-server redis-tools) the Redis comparison is skipped. Everything runs on
# this machine: driver, node, redis-benchmark and redis-server share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
for program in redis-server redis-benchmark; do
    command -v "$program" >/dev/null || echo "note: $program not on PATH, no Redis comparison" >&2
done
cargo build --release --bin perfpipe
exec cargo bench --bench plugin_cache_load -- "$@"
