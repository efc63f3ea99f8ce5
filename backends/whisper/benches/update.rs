//! Throughput of Whisper writes as perfpipe drives them: `WhisperBackend::write` handed the
//! batches of many series at once (1,000 series, 1, 10 or 100 new points each per call), time
//! advancing between calls so every call writes new intervals and propagates. The backend keeps
//! files open between calls, as it does in a node.
//!
//! `cargo bench --bench update` runs it under criterion (throughput in points/s). With
//! `WHISPER_BENCH_PLAIN=1` it runs the exact workload `vs-python.sh` gives graphite's whisper
//! instead and prints `rust <points per call> <median points/s>` lines.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use perfpipe_backend::{Backend, DataSourceType, Point, SeriesBatch, SeriesKey};
use perfpipe_whisper::{
    parse_retentions, AggregationMethod, Preallocation, WhisperBackend, WhisperConfig, WhisperFile,
    DEFAULT_RETENTIONS,
};

/// Series (files) written per pass.
const FILES: usize = 1_000;
/// Points per series per call.
const BATCH_SIZES: [i64; 3] = [1, 10, 100];
/// The simulated "now" of the first pass.
const START: i64 = 1_700_000_040;
/// Timed passes in plain mode (the median is reported).
const PLAIN_PASSES: usize = 7;

/// The series written: `FILES` of them.
fn series_keys() -> Vec<SeriesKey> {
    (0..FILES)
        .map(|i| SeriesKey {
            host: format!("host-{}", i / 10).into(),
            service: "service".into(),
            metric: format!("metric-{}", i % 10).into(),
        })
        .collect()
}

/// A backend over `dir` whose files exist already, with whisper's default archives (sparse, so
/// setup stays cheap; the bytes are the same as zero-filled), and its clock.
fn backend_with_files(dir: &Path, keys: &[SeriesKey]) -> (WhisperBackend, Arc<AtomicI64>) {
    let archives = parse_retentions(DEFAULT_RETENTIONS).unwrap();
    let now = Arc::new(AtomicI64::new(START));
    let clock = now.clone();
    let backend = WhisperBackend::new(WhisperConfig::new(dir))
        .unwrap()
        .with_clock(move || clock.load(Ordering::Relaxed));
    for key in keys {
        let path = backend.series_path(key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        WhisperFile::create_with(
            &path,
            &archives,
            AggregationMethod::Average,
            0.5,
            Preallocation::Sparse,
        )
        .unwrap();
    }
    (backend, now)
}

/// One pass: every series gets `batch` points ending at the pass's "now" (60 s apart), all in
/// one `write` call.
fn pass(
    backend: &mut WhisperBackend,
    clock: &AtomicI64,
    keys: &[SeriesKey],
    batch: i64,
    pass_number: i64,
) {
    let batches = pass_batches(clock, keys, batch, pass_number);
    write(backend, &batches);
}

fn write(backend: &mut WhisperBackend, batches: &[SeriesBatch]) {
    let report = backend.write(batches).unwrap();
    assert!(report.failed.is_empty());
}

/// The batches of one pass, and the clock set to its "now".
fn pass_batches(
    clock: &AtomicI64,
    keys: &[SeriesKey],
    batch: i64,
    pass_number: i64,
) -> Vec<SeriesBatch> {
    let now = START + (pass_number + 1) * batch * 60;
    clock.store(now, Ordering::Relaxed);
    let points: Vec<Point> = (0..batch)
        .map(|i| Point {
            timestamp: now - (batch - 1 - i) * 60,
            value: (i + pass_number) as f64,
        })
        .collect();
    keys.iter()
        .map(|key| SeriesBatch {
            levels: Vec::new(),
            key: key.clone(),
            uom: Default::default(),
            ds_type: DataSourceType::Gauge,
            points: points.clone(),
        })
        .collect()
}

fn bench_update(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("update_many");
    group.sample_size(10);
    for batch in BATCH_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let keys = series_keys();
        let (mut backend, clock) = backend_with_files(dir.path(), &keys);
        let mut pass_number = 0;
        group.throughput(Throughput::Elements(FILES as u64 * batch as u64));
        group.bench_function(
            BenchmarkId::new(format!("{FILES}_files"), format!("{batch}_points_per_call")),
            |b| {
                b.iter(|| {
                    pass(&mut backend, &clock, &keys, batch, pass_number);
                    pass_number += 1;
                })
            },
        );
    }
    group.finish();
}

/// `WHISPER_BENCH_BATCHES` (comma-separated points per call) and `WHISPER_BENCH_PASSES` narrow or
/// lengthen the plain run, so that a profiler sees mostly the timed writes rather than the setup.
/// `WHISPER_BENCH_CPU=1` reports all points over the time the thread spent on a CPU in all
/// passes instead of the median over elapsed time: on a busy machine that compares two builds
/// more steadily (the scheduler counts in ticks, hence the total; it is not what vs-python.sh
/// reports).
fn plain() {
    let cpu_time = std::env::var_os("WHISPER_BENCH_CPU").is_some();
    let batches: Vec<i64> =
        std::env::var("WHISPER_BENCH_BATCHES").map_or(BATCH_SIZES.to_vec(), |list| {
            list.split(',')
                .map(|batch| batch.trim().parse().unwrap())
                .collect()
        });
    let passes: usize = std::env::var("WHISPER_BENCH_PASSES")
        .map_or(PLAIN_PASSES, |passes| passes.parse().unwrap());
    for batch in batches {
        let dir = tempfile::tempdir().unwrap();
        let keys = series_keys();
        let (mut backend, clock) = backend_with_files(dir.path(), &keys);
        let mut rates: Vec<f64> = (0..passes as i64)
            .map(|pass_number| {
                // As on the Python side, the points are ready before the clock starts.
                let batches = pass_batches(&clock, &keys, batch, pass_number);
                let started = Instant::now();
                let cpu_started = thread_cpu_seconds();
                write(&mut backend, &batches);
                let seconds = if cpu_time {
                    thread_cpu_seconds() - cpu_started
                } else {
                    started.elapsed().as_secs_f64()
                };
                (FILES as i64 * batch) as f64 / seconds
            })
            .collect();
        if cpu_time {
            // Each rate is points over seconds: the total time is the sum of the inverses.
            let seconds: f64 = rates
                .iter()
                .map(|rate| (FILES as i64 * batch) as f64 / rate)
                .sum();
            let points = (FILES as i64 * batch) as f64 * rates.len() as f64;
            println!("rust {batch} {:.0}", points / seconds);
            continue;
        }
        rates.sort_by(f64::total_cmp);
        println!("rust {batch} {:.0}", rates[rates.len() / 2]);
    }
}

/// Seconds this thread has spent on a CPU (user and kernel), from the scheduler's statistics.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |nanoseconds| nanoseconds / 1e9)
}

fn main() {
    if std::env::var_os("WHISPER_BENCH_PLAIN").is_some() {
        plain();
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench_update(&mut criterion);
    criterion.final_summary();
}
