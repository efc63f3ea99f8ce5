//! Catalogue upserts per second: flushes of 1,000 series (the enqueuer's unit of work) into a
//! catalogue of 10,000 series on disk, in WAL mode, as a node does per flush.
//!
//! Run: `cargo bench -p perfpipe-sqlite --bench upsert`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe_backend::{DataSourceType, SeriesKey};
use perfpipe_sqlite::{Catalogue, SeriesUpdate};

const SERIES: usize = 10_000;
const PER_FLUSH: usize = 1_000;

fn bench_upserts(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("perfpipe-catalogue-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut catalogue = Catalogue::open(&dir.join("catalogue.sqlite")).unwrap();
    let updates: Vec<SeriesUpdate> = (0..SERIES)
        .map(|i| SeriesUpdate {
            key: SeriesKey {
                host: format!("host-{:04}", i / 20),
                service: format!("service-{}", i % 20 / 4),
                metric: format!("metric-{}", i % 4),
            },
            uom: "ms".into(),
            ds_type: DataSourceType::Gauge,
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_300,
            last_value: i as f64,
            warn: None,
            crit: None,
        })
        .collect();
    catalogue.record(&updates).unwrap();

    let mut group = c.benchmark_group("catalogue");
    group.throughput(Throughput::Elements(PER_FLUSH as u64));
    let mut round = 0usize;
    group.bench_function("upsert_flush_of_1000", |b| {
        b.iter(|| {
            let start = (round * PER_FLUSH) % SERIES;
            round += 1;
            catalogue
                .record(&updates[start..start + PER_FLUSH])
                .unwrap();
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_upserts);
criterion_main!(benches);
