//! Criterion bench of the last-values cache's minute save ([`perfpipe::lastvalues`]) in real
//! time: a cache of 60,000 series of 500 values (the node's default `maxcount`, reached after
//! 500 checks), one new value recorded per series (a minute of one-minute checks), then a save.
//! `journal` is the save as the node makes it (the changes appended to the journal, a snapshot
//! once the journal is as large); `snapshot` forces a whole snapshot each time, as every save
//! was before the journal (a deletion does the same: here of a host that does not exist).
//! The files are on the disk of the temporary directory, synced as in the node.
//!
//! Run: `cargo bench --bench last_values_save` (numbers in docs/performance.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe::lastvalues::{LastValues, LastValuesRule, LastValuesRules};
use perfpipe_backend::{Point, SeriesKey};

/// The binary's allocator (src/main.rs), so that allocation costs what it costs in the node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERIES: usize = 60_000;
const VALUES: i64 = 500;

fn cache_of(keys: &[SeriesKey]) -> LastValues {
    let cache = LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
    let points: Vec<Point> = (0..VALUES)
        .map(|minute| Point {
            timestamp: minute * 60,
            value: minute as f64,
        })
        .collect();
    for key in keys {
        cache.record(key, &points);
    }
    cache
}

fn save(c: &mut Criterion) {
    let keys: Vec<SeriesKey> = (0..SERIES)
        .map(|n| SeriesKey::new(format!("host{}", n / 30), format!("svc{}", n % 10), "m0"))
        .collect();
    let cache = cache_of(&keys);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last-values");
    cache.save(&path).unwrap();
    let mut minute = VALUES;
    let mut group = c.benchmark_group("last_values_save");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(SERIES as u64));
    for forced_snapshot in [false, true] {
        let name = if forced_snapshot {
            "snapshot"
        } else {
            "journal"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let point = [Point {
                    timestamp: minute * 60,
                    value: minute as f64,
                }];
                minute += 1;
                for key in &keys {
                    black_box(cache.record(key, &point));
                }
                if forced_snapshot {
                    cache.forget("no such host", None);
                }
                cache.save(&path).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, save);
criterion_main!(benches);
