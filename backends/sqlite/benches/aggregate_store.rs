//! Aggregate store writes: the closure of one hour for 30,000 aggregate groups (one shard's
//! share of 60,000 series rolled up with avg, max and min: 90,000 values), one row each, into a
//! store that already holds a day of them (720,000 rows, larger than SQLite's default page
//! cache), as the
//! enqueuer writes them in one flush, the values that aged out deleted as the node does it; and
//! the read of one series over its retention, as a graph asks for it.
//!
//! Run: `cargo bench -p perfpipe-sqlite --bench aggregate_store`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe_backend::SeriesKey;
use perfpipe_sqlite::aggregates::{AggregateMethod, AggregateRow, AggregateStore, AggregateWrite};

/// Groups, each of three methods.
const GROUPS: usize = 30_000;
const HOUR: i64 = 3_600;
const START: i64 = 1_700_000_000 / HOUR * HOUR;
/// 26 hours kept (25, the default, and the hour being closed), as the node asks for hours.
const KEEP: i64 = 26 * HOUR;

fn groups() -> Vec<SeriesKey> {
    (0..GROUPS)
        .map(|i| SeriesKey {
            host: format!("host-{:05}", i / 15).into(),
            service: format!("service-{}/H", i % 5).into(),
            metric: format!("m{}", i / 5 % 3).into(),
        })
        .collect()
}

/// The bench's stores are new: there is no earlier layout to convert.
fn nothing_to_convert(_: &str) -> Option<(String, AggregateMethod)> {
    None
}

fn write_hour(store: &mut AggregateStore, groups: &[SeriesKey], hour: i64) {
    let rows: Vec<[AggregateRow; 1]> = (0..groups.len())
        .map(|i| {
            let value = i as f64 + hour as f64;
            [AggregateRow {
                timestamp: START + hour * HOUR,
                values: [Some(value), Some(value + 1.0), Some(value - 1.0)],
            }]
        })
        .collect();
    let writes: Vec<AggregateWrite<'_>> = groups
        .iter()
        .zip(&rows)
        .map(|(group, rows)| AggregateWrite {
            group,
            rows,
            keep_seconds: KEEP,
        })
        .collect();
    // Written as the hour closes, an hour after its stamp.
    store.write(&writes, START + (hour + 1) * HOUR).unwrap();
}

fn bench_hour_closures(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aggregates.sqlite");
    let groups = groups();
    {
        let mut filling = AggregateStore::new(&path, nothing_to_convert);
        for hour in 0..24 {
            write_hour(&mut filling, &groups, hour);
        }
    }
    // A fresh connection, as a node after a restart: its ids are read from the store once.
    let mut store = AggregateStore::new(&path, nothing_to_convert);
    let mut hour = 24;
    let mut group = c.benchmark_group("aggregate_store");
    group.throughput(Throughput::Elements(3 * GROUPS as u64));
    group.sample_size(10);
    group.bench_function("hour_closure_of_90000_series", |b| {
        b.iter(|| {
            write_hour(&mut store, &groups, hour);
            hour += 1;
        })
    });
    // A graph of one series over its retention: the reads walk the table's distinct times.
    let mut reader = AggregateStore::new(&path, nothing_to_convert);
    let mut next = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_26_hours_of_one_series", |b| {
        b.iter(|| {
            let aggregate = &groups[next % GROUPS];
            next += 7_919;
            let until = START + (hour + 1) * HOUR;
            let values = reader
                .read(aggregate, AggregateMethod::Max, until - KEEP, until)
                .unwrap()
                .unwrap();
            assert!(values.len() >= 24, "{} values", values.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_hour_closures);
criterion_main!(benches);
