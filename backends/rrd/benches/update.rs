//! Points per second through [`RrdBackend::write`] with batching: 200 series, 1, 10 or 100
//! points per series per call. Each iteration writes into fresh copies of pre-created files,
//! so the cost measured is the updates (librrd open, lock, write, close per series per call),
//! not file creation.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use perfpipe_backend::{Backend, DataSourceType, Point, SeriesBatch, SeriesKey};
use perfpipe_rrd::{RrdBackend, RrdConfig};

const SERIES: usize = 200;
const T0: i64 = 1_700_002_800;

fn keys() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|i| SeriesKey {
            host: "bench".into(),
            service: "svc".into(),
            metric: format!("m{i}").into(),
        })
        .collect()
}

/// The batches of one call: `per_call` points per series, starting at point `first`.
fn batches(keys: &[SeriesKey], first: usize, per_call: usize) -> Vec<SeriesBatch> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| SeriesBatch {
            levels: Vec::new(),
            key: key.clone(),
            uom: Default::default(),
            ds_type: DataSourceType::Gauge,
            points: (first..first + per_call)
                .map(|j| Point {
                    timestamp: T0 + 300 * j as i64,
                    value: ((7 * i + j) % 100) as f64 + 0.5,
                })
                .collect(),
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create bench dir");
    for entry in std::fs::read_dir(from).expect("read bench template") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy bench file");
        }
    }
}

fn update(c: &mut Criterion) {
    let keys = keys();
    let work = tempfile::tempdir().expect("temp dir");
    // Template: every series' file created by one point at T0.
    let template = work.path().join("template");
    let mut backend = RrdBackend::new(&template, RrdConfig::default()).expect("config");
    let report = backend.write(&batches(&keys, 0, 1)).expect("create");
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let mut group = c.benchmark_group("rrd_update_200_series");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(15));
    for per_call in [1usize, 10, 100] {
        let calls = 100 / per_call;
        let all: Vec<Vec<SeriesBatch>> = (0..calls)
            .map(|call| batches(&keys, 1 + call * per_call, per_call))
            .collect();
        group.throughput(Throughput::Elements((SERIES * 100) as u64));
        group.bench_function(
            BenchmarkId::new("points_per_series_per_call", per_call),
            |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for iteration in 0..iterations {
                        let dir = work.path().join(format!("run-{per_call}-{iteration}"));
                        copy_dir(&template, &dir);
                        let mut backend =
                            RrdBackend::new(&dir, RrdConfig::default()).expect("config");
                        let started = Instant::now();
                        for batches in &all {
                            let report = backend.write(batches).expect("write");
                            assert_eq!(report.written, (SERIES * per_call) as u64);
                        }
                        total += started.elapsed();
                        std::fs::remove_dir_all(&dir).expect("remove run dir");
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
