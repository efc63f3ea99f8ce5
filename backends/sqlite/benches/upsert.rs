//! Catalogue upserts per second: flushes of 1,000 series (the enqueuer's unit of work) into a
//! catalogue of 10,000 series on disk, in WAL mode, as a node does per flush; and flushes of
//! 30,000 series (a 5-minute round of one of two shards at the issue-3 load) into a catalogue
//! of 300,000, larger than SQLite's default page cache; and a flush of 90,000 series new to a
//! catalogue of 30,000 (a shard's first closure of an hour with rollups of avg, max and min:
//! a row for each aggregate series), then the next flush of the same series (updates by id).
//!
//! Run: `cargo bench -p perfpipe-sqlite --bench upsert`.

use std::borrow::Cow;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use perfpipe_backend::{DataSourceType, SeriesKey};
use perfpipe_sqlite::{Catalogue, SeriesUpdate};

fn updates(series: usize) -> Vec<SeriesUpdate<'static>> {
    (0..series)
        .map(|i| SeriesUpdate {
            key: Cow::Owned(SeriesKey {
                host: format!("host-{:06}", i / 20).into(),
                service: format!("service-{}", i % 20 / 4).into(),
                metric: format!("metric-{}", i % 4).into(),
            }),
            uom: "ms".into(),
            ds_type: DataSourceType::Gauge,
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_300,
            last_value: i as f64,
            warn: None,
            crit: None,
            may_lag: 0,
        })
        .collect()
}

/// A node's flush comes in hash order, not name order: shuffled (Fisher-Yates, a fixed
/// splitmix64 sequence), so each upsert finds its pages as scattered as in a node.
fn shuffle<T>(items: &mut [T]) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..items.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        items.swap(i, (z ^ (z >> 31)) as usize % (i + 1));
    }
}

/// Flushes of `per_flush` series, in turn over a catalogue of `series` on disk.
fn bench_flushes(c: &mut Criterion, name: &str, series: usize, per_flush: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite")).unwrap();
    let mut updates = updates(series);
    for chunk in updates.chunks(10_000) {
        catalogue.record(chunk).unwrap();
    }
    shuffle(&mut updates);

    let mut group = c.benchmark_group("catalogue");
    group.throughput(Throughput::Elements(per_flush as u64));
    if per_flush >= 10_000 {
        group.sample_size(10);
    }
    let mut round = 0usize;
    group.bench_function(name, |b| {
        b.iter(|| {
            let start = (round * per_flush) % series;
            round += 1;
            catalogue
                .record(&updates[start..start + per_flush])
                .unwrap();
        })
    });
    group.finish();
}

/// A catalogue of 30,000 base series, and for each the three hour aggregates' updates, in a
/// node's (hash-like) order.
fn catalogue_and_new_aggregates() -> (tempfile::TempDir, Catalogue, Vec<SeriesUpdate<'static>>) {
    let dir = tempfile::tempdir().unwrap();
    let mut catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite")).unwrap();
    let base = updates(30_000);
    for chunk in base.chunks(1_000) {
        catalogue.record(chunk).unwrap();
    }
    let mut aggregates: Vec<SeriesUpdate<'static>> = base
        .iter()
        .flat_map(|update| {
            ["avg", "max", "min"].map(|method| {
                let mut aggregate = update.clone();
                let key = aggregate.key.to_mut();
                key.service = format!("{}/H/{method}", key.service).into();
                aggregate
            })
        })
        .collect();
    shuffle(&mut aggregates);
    (dir, catalogue, aggregates)
}

fn bench_new_rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("catalogue");
    group.throughput(Throughput::Elements(90_000));
    group.sample_size(10);
    group.bench_function("insert_flush_of_90000_new_into_30000", |b| {
        b.iter_batched(
            catalogue_and_new_aggregates,
            |(dir, mut catalogue, aggregates)| {
                catalogue.record(&aggregates).unwrap();
                (dir, catalogue)
            },
            BatchSize::PerIteration,
        )
    });
    let (_dir, mut catalogue, aggregates) = catalogue_and_new_aggregates();
    catalogue.record(&aggregates).unwrap();
    group.bench_function("update_flush_of_those_90000", |b| {
        b.iter(|| catalogue.record(&aggregates).unwrap())
    });
    group.finish();
}

fn bench_upserts(c: &mut Criterion) {
    bench_flushes(c, "upsert_flush_of_1000", 10_000, 1_000);
    bench_flushes(c, "upsert_flush_of_30000_into_300000", 300_000, 30_000);
}

criterion_group!(benches, bench_upserts, bench_new_rows);
criterion_main!(benches);
