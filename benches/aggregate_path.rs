//! Criterion bench of a shard's aggregate path at an hour's close, apart from the raw points:
//! `emit_hour_close_30000_series`: `Rollups::add_into` of the point that closes the hour for
//! 30,000 series rolled up with avg, max and min (one shard's half of the issue-3 load), which
//! emits 90,000 aggregate values; `store_write_90000_aggregates`: `WithAggregateStore::write`
//! of those values as the enqueuer hands them over (a batch per aggregate series, the three
//! methods of a group side by side) into a store that knows the groups already, a new hour at
//! each iteration: the wrapper's naming and grouping and the store's rows.
//!
//! Run: `cargo bench --bench aggregate_path` (figures in docs/performance.md, "Aggregate values
//! named inline, and the first day once more").

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use perfpipe::aggregate_store::{group_of, WithAggregateStore};
use perfpipe::rollup::{AggregatePoint, RollupRule, RollupRules, Rollups};
use perfpipe_backend::{Backend, SeriesBatch, SeriesKey};
use perfpipe_sqlite::aggregates::AggregateStore;

const SERIES: usize = 30_000;
/// 2026-12-01 10:00 UTC.
const HOUR: i64 = 1_796_119_200;

fn rules() -> Arc<RollupRules> {
    let rule: RollupRule = serde_json::from_value(serde_json::json!({
        "match": "*",
        "methods": ["avg", "max", "min"],
        "timezone": "UTC",
    }))
    .expect("a rule");
    Arc::new(RollupRules::new(vec![rule]).expect("rules"))
}

fn names(n: usize) -> (String, String, String) {
    (
        format!("host{:05}", n / 30),
        format!("service{:02}", (n / 3) % 10),
        format!("metric{}", n % 3),
    )
}

/// Rollups holding one point of the hour from `HOUR` for each series.
fn fed_rollups() -> Rollups {
    let mut rollups = Rollups::new(rules());
    for n in 0..SERIES {
        let (host, service, metric) = names(n);
        rollups.add(&host, &service, &metric, &[(HOUR + 30, n as f64)]);
    }
    rollups
}

/// The point that closes the hour for each series, added to `rollups`: the aggregate values
/// emitted, three a series.
fn close_hour(rollups: &mut Rollups) -> Vec<AggregatePoint> {
    let mut out = Vec::new();
    for n in 0..SERIES {
        let (host, service, metric) = names(n);
        rollups.add_into(&host, &service, &metric, &[(HOUR + 3_630, 1.0)], &mut out);
    }
    out
}

/// What the enqueuer makes of one series' aggregate values: a batch per aggregate series.
fn batches_of(points: &[AggregatePoint], stamp: i64) -> Vec<SeriesBatch> {
    points
        .iter()
        .map(|point| {
            let key = SeriesKey::new(
                point.host.clone(),
                point.service.clone(),
                point.metric.clone(),
            );
            SeriesBatch::new(key, "ms", &[(stamp, point.value)])
        })
        .collect()
}

fn aggregate_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate_path");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("emit_hour_close_30000_series", |b| {
        b.iter_batched(
            fed_rollups,
            |mut rollups| {
                let out = close_hour(&mut rollups);
                assert_eq!(out.len(), 3 * SERIES);
                out
            },
            BatchSize::PerIteration,
        )
    });

    let emitted = close_hour(&mut fed_rollups());
    let dir = tempfile::tempdir().expect("a temp dir");
    let whisper = perfpipe_whisper::WhisperBackend::new(perfpipe_whisper::WhisperConfig::new(
        dir.path().join("whisper"),
    ))
    .expect("a whisper backend");
    let mut store = WithAggregateStore::new(
        Box::new(whisper),
        AggregateStore::new(&dir.path().join("aggregates.sqlite"), group_of),
        rules(),
        true,
    );
    let mut hour = HOUR;
    // The groups made before the measured writes.
    store
        .write(&batches_of(&emitted, hour))
        .expect("the first write");
    group.throughput(Throughput::Elements(emitted.len() as u64));
    group.bench_function("store_write_90000_aggregates", |b| {
        b.iter_batched(
            || {
                hour += 3_600;
                batches_of(&emitted, hour)
            },
            |batches| store.write(&batches).expect("written"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, aggregate_path);
criterion_main!(benches);
