//! Criterion bench of a rollup checkpoint's CPU: what a shard does at each save of its rollup
//! state, less the file write and fsync. `binary_150k_series`: `Rollups::write_state` into
//! memory, what shards save since the binary state file; `snapshot_json_drop_150k_series`:
//! what they did before it, `Rollups::snapshot` of every series, `serde_json` of the snapshot,
//! and dropping it. The state: 150,000 series (one shard's half of the issue-3 load of 300,000
//! on 2 shards), each rolled up with avg, max and min in UTC and fed two points. Reports the
//! time per save and the bytes a save writes, in each form.
//!
//! Run: `cargo bench --bench rollup_checkpoint` (figures in docs/performance.md, "Rollups in
//! the steady state"). About a minute: each JSON save takes about a second.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use perfpipe::rollup::{RollupRule, RollupRules, Rollups};

const SERIES: usize = 150_000;

fn state() -> Rollups {
    let rule: RollupRule = serde_json::from_value(serde_json::json!({
        "match": "*",
        "methods": ["avg", "max", "min"],
        "timezone": "UTC",
    }))
    .expect("a rule");
    let mut rollups = Rollups::new(Arc::new(RollupRules::new(vec![rule]).expect("rules")));
    let start = 1_796_000_000;
    for n in 0..SERIES {
        let host = format!("host{:05}", n / 30);
        let service = format!("service{:02}", (n / 3) % 10);
        let metric = format!("metric{}", n % 3);
        rollups.add(
            &host,
            &service,
            &metric,
            &[(start, 1.0), (start + 300, 2.0)],
        );
    }
    rollups
}

fn checkpoint(c: &mut Criterion) {
    let rollups = state();
    let json = serde_json::to_vec(&rollups.snapshot())
        .expect("serializes")
        .len();
    let binary = rollups.write_state(0, Vec::new()).expect("writes").len();
    for (form, bytes) in [("JSON", json), ("binary", binary)] {
        println!(
            "{SERIES} series, {form}: {:.1} MB a save ({:.0} bytes a series)",
            bytes as f64 / 1e6,
            bytes as f64 / SERIES as f64
        );
    }
    let mut group = c.benchmark_group("rollup_checkpoint");
    group.sample_size(10);
    group.bench_function("binary_150k_series", |b| {
        b.iter(|| {
            let bytes = rollups.write_state(0, Vec::new()).expect("writes");
            black_box(bytes.len())
        })
    });
    group.bench_function("snapshot_json_drop_150k_series", |b| {
        b.iter(|| {
            let snapshot = rollups.snapshot();
            let bytes = serde_json::to_vec(black_box(&snapshot)).expect("serializes");
            drop(snapshot);
            black_box(bytes.len())
        })
    });
    group.finish();
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
