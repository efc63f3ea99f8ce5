//! Aggregate store writes: the closure of one hour for 90,000 aggregate series (one shard's
//! share of 60,000 series rolled up with avg, max and min), one value each, into a store that
//! already holds a day of them (2.2 M rows, larger than SQLite's default page cache), as the
//! enqueuer writes them in one flush, the values that aged out deleted as the node does it; and
//! the read of one series over its retention, as a graph asks for it.
//!
//! Run: `cargo bench -p perfpipe-sqlite --bench aggregate_store`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe_backend::{Point, SeriesKey};
use perfpipe_sqlite::aggregates::{AggregateStore, AggregateWrite};

const SERIES: usize = 90_000;
const HOUR: i64 = 3_600;
const START: i64 = 1_700_000_000 / HOUR * HOUR;
/// 26 hours kept (25, the default, and the hour being closed), as the node asks for hours.
const KEEP: i64 = 26 * HOUR;

fn keys() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|i| SeriesKey {
            host: format!("host-{:05}", i / 45).into(),
            service: format!("service-{}/H/{}", i / 3 % 5, ["avg", "max", "min"][i % 3]).into(),
            metric: format!("m{}", i / 15 % 3).into(),
        })
        .collect()
}

fn write_hour(store: &mut AggregateStore, keys: &[SeriesKey], hour: i64) {
    let points: Vec<[Point; 1]> = (0..keys.len())
        .map(|i| {
            [Point {
                timestamp: START + hour * HOUR,
                value: i as f64 + hour as f64,
            }]
        })
        .collect();
    let writes: Vec<AggregateWrite<'_>> = keys
        .iter()
        .zip(&points)
        .map(|(key, points)| AggregateWrite {
            key,
            points,
            keep_seconds: KEEP,
        })
        .collect();
    // Written as the hour closes, an hour after its stamp.
    store.write(&writes, START + (hour + 1) * HOUR).unwrap();
}

fn bench_hour_closures(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aggregates.sqlite");
    let keys = keys();
    {
        let mut filling = AggregateStore::new(&path);
        for hour in 0..24 {
            write_hour(&mut filling, &keys, hour);
        }
    }
    // A fresh connection, as a node after a restart: its ids are read from the store once.
    let mut store = AggregateStore::new(&path);
    let mut hour = 24;
    let mut group = c.benchmark_group("aggregate_store");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.sample_size(10);
    group.bench_function("hour_closure_of_90000_series", |b| {
        b.iter(|| {
            write_hour(&mut store, &keys, hour);
            hour += 1;
        })
    });
    // A graph of one series over its retention: the reads walk the table's distinct times.
    let mut reader = AggregateStore::new(&path);
    let mut next = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_26_hours_of_one_series", |b| {
        b.iter(|| {
            let key = &keys[next % SERIES];
            next += 7_919;
            let until = START + (hour + 1) * HOUR;
            let values = reader.read(key, until - KEEP, until).unwrap().unwrap();
            assert!(values.len() >= 24, "{} values", values.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_hour_closures);
criterion_main!(benches);
