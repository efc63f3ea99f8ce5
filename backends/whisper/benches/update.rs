//! Throughput of `update_many` through files, as perfpipe drives it: for each of many series,
//! open its file and store the series' new points (1, 10 or 100 per call), time advancing between
//! calls so every call writes new intervals and propagates.
//!
//! `cargo bench --bench update` runs it under criterion (throughput in points/s). With
//! `WHISPER_BENCH_PLAIN=1` it runs the exact workload `vs-python.sh` gives graphite's whisper
//! instead and prints `rust <points per call> <median points/s>` lines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use perfpipe_whisper::{
    parse_retentions, AggregationMethod, Preallocation, WhisperFile, DEFAULT_RETENTIONS,
};

/// Series (files) written per pass.
const FILES: usize = 1_000;
/// Points per series per call.
const BATCH_SIZES: [i64; 3] = [1, 10, 100];
/// The simulated "now" of the first pass.
const START: i64 = 1_700_000_040;
/// Timed passes in plain mode (the median is reported).
const PLAIN_PASSES: usize = 7;

/// `FILES` fresh files with whisper's default archives (sparse, so setup stays cheap; the bytes
/// are the same as zero-filled).
fn create_files(dir: &Path) -> Vec<PathBuf> {
    let archives = parse_retentions(DEFAULT_RETENTIONS).unwrap();
    (0..FILES)
        .map(|i| {
            let path = dir.join(format!("series-{i}.wsp"));
            WhisperFile::create_with(
                &path,
                &archives,
                AggregationMethod::Average,
                0.5,
                Preallocation::Sparse,
            )
            .unwrap();
            path
        })
        .collect()
}

/// One pass: every file gets `batch` points ending at the pass's "now" (60 s apart).
fn pass(paths: &[PathBuf], batch: i64, pass_number: i64) {
    let now = START + (pass_number + 1) * batch * 60;
    let points: Vec<(i64, f64)> = (0..batch)
        .map(|i| (now - (batch - 1 - i) * 60, (i + pass_number) as f64))
        .collect();
    for path in paths {
        let mut file = WhisperFile::open(path).unwrap();
        file.update_many(&points, now).unwrap();
    }
}

fn bench_update(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("update_many");
    group.sample_size(10);
    for batch in BATCH_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let paths = create_files(dir.path());
        let mut pass_number = 0;
        group.throughput(Throughput::Elements(FILES as u64 * batch as u64));
        group.bench_function(
            BenchmarkId::new(format!("{FILES}_files"), format!("{batch}_points_per_call")),
            |b| {
                b.iter(|| {
                    pass(&paths, batch, pass_number);
                    pass_number += 1;
                })
            },
        );
    }
    group.finish();
}

fn plain() {
    for batch in BATCH_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let paths = create_files(dir.path());
        let mut rates: Vec<f64> = (0..PLAIN_PASSES as i64)
            .map(|pass_number| {
                let started = Instant::now();
                pass(&paths, batch, pass_number);
                (FILES as i64 * batch) as f64 / started.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!("rust {batch} {:.0}", rates[rates.len() / 2]);
    }
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
