# Sourced by the load-driver scripts (wal-cost.sh, rollup-cost.sh): builds perfpipe and the
# load driver, then copies both into a new temporary directory `$out` (as `$out/perfpipe` and
# `$out/load_driver`), so that the sources can change while the runs go on.
cargo build --release --bin perfpipe >/dev/null
cargo bench --bench load_driver --no-run >/dev/null 2>&1
out=$(mktemp -d)
cp target/release/perfpipe "$out/perfpipe"
driver=$(ls -t target/release/deps/load_driver-* | grep -v '\.d$' | head -1)
cp "$driver" "$out/load_driver"
