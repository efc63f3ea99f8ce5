//! A load generator for the RRD backend: writes a fixed workload through [`RrdBackend`] and
//! prints how long the writes took. `benches/vs-rrdtool.sh` feeds the same workload to `rrdtool
//! update` and to rrdcached and compares.
//!
//! Usage: `rrd-load DIR FILES POINTS PER_CALL [THREADS]`: series `bench/svc/m<i>` for `i` in
//! `0..FILES`, each with `POINTS` points at `T0 + 300 j` valued `((7 i + j) % 100) + 0.5`,
//! written `PER_CALL` points per series per `write` call (all series in each call), with at
//! most `THREADS` write threads (default: [`perfpipe_rrd::default_write_threads`]).
//!
//! What is timed: from the moment every call's batches are in memory to the moment the last
//! `write` call returned, i.e. the data is in the files (no fsync, as for rrdtool and
//! rrdcached). Building the batches and starting the process are not timed; turning the values
//! into librrd's `T:V` text is (it is part of `write`), and the time that formatting alone
//! takes is printed beside it. Output, one line:
//! `written <points> ns <write ns> format_ns <formatting ns> threads <n>`.

use std::process::ExitCode;
use std::time::Instant;

use perfpipe_backend::{Backend, DataSourceType, Point, SeriesBatch, SeriesKey};
use perfpipe_rrd::layout::push_update_argument;
use perfpipe_rrd::{RrdBackend, RrdConfig};

/// First point time, step-aligned; the same in `vs-rrdtool.sh`.
const T0: i64 = 1_700_002_800;

fn value(file: usize, point: usize) -> f64 {
    ((7 * file + point) % 100) as f64 + 0.5
}

/// Nanoseconds that formatting every point of `calls` as `T:V` takes, as `write` does it.
fn formatting_ns(calls: &[Vec<SeriesBatch>]) -> u128 {
    let started = Instant::now();
    let mut text = String::with_capacity(32);
    let mut bytes = 0;
    for batch in calls.iter().flatten() {
        for point in &batch.points {
            text.clear();
            push_update_argument(&mut text, point.timestamp, point.value, batch.ds_type)
                .expect("benchmark values are finite");
            bytes += text.len();
        }
    }
    let ns = started.elapsed().as_nanos();
    std::hint::black_box(bytes);
    ns
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, files, points, per_call, threads) = match &args[..] {
        [dir, files, points, per_call, rest @ ..] if rest.len() <= 1 => {
            let threads = match rest.first() {
                Some(text) => text.parse::<usize>().ok().filter(|&n| n > 0),
                None => Some(perfpipe_rrd::default_write_threads()),
            };
            match (
                files.parse::<usize>().ok(),
                points.parse::<usize>().ok(),
                per_call.parse::<usize>().ok().filter(|&n| n > 0),
                threads,
            ) {
                (Some(files), Some(points), Some(per_call), Some(threads)) => {
                    (dir.clone(), files, points, per_call, threads)
                }
                _ => return usage(),
            }
        }
        _ => return usage(),
    };
    let mut backend = match RrdBackend::new(&dir, RrdConfig::default()) {
        Ok(backend) => backend.with_write_threads(threads),
        Err(error) => {
            eprintln!("rrd-load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let keys: Vec<SeriesKey> = (0..files)
        .map(|i| SeriesKey {
            host: "bench".into(),
            service: "svc".into(),
            metric: format!("m{i}").into(),
        })
        .collect();
    let calls: Vec<Vec<SeriesBatch>> = (0..points)
        .step_by(per_call)
        .map(|first| {
            let last = (first + per_call).min(points);
            keys.iter()
                .enumerate()
                .map(|(i, key)| SeriesBatch {
                    levels: Vec::new(),
                    key: key.clone(),
                    uom: Default::default(),
                    ds_type: DataSourceType::Gauge,
                    points: (first..last)
                        .map(|j| Point {
                            timestamp: T0 + 300 * j as i64,
                            value: value(i, j),
                        })
                        .collect(),
                })
                .collect()
        })
        .collect();

    let started = Instant::now();
    let mut written = 0;
    for batches in &calls {
        match backend.write(batches) {
            Ok(report) => {
                if let Some((key, error)) = report.failed.first() {
                    eprintln!("rrd-load: {key}: {error}");
                    return ExitCode::FAILURE;
                }
                written += report.written;
            }
            Err(error) => {
                eprintln!("rrd-load: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ns = started.elapsed().as_nanos();
    println!(
        "written {written} ns {ns} format_ns {} threads {threads}",
        formatting_ns(&calls)
    );
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: rrd-load DIR FILES POINTS PER_CALL [THREADS] (PER_CALL, THREADS >= 1)");
    ExitCode::from(2)
}
