//! A load generator for the RRD backend: writes a fixed workload through [`RrdBackend`] and
//! prints points per second. `benches/vs-rrdtool.sh` feeds the same workload to `rrdtool
//! update` and to rrdcached and compares.
//!
//! Usage: `rrd-load DIR FILES POINTS PER_CALL`: series `bench/svc/m<i>` for `i` in
//! `0..FILES`, each with `POINTS` points at `T0 + 300 j` valued `((7 i + j) % 100) + 0.5`,
//! written `PER_CALL` points per series per `write` call (all series in each call).

use std::process::ExitCode;
use std::time::Instant;

use perfpipe_backend::{Backend, DataSourceType, Point, SeriesBatch, SeriesKey};
use perfpipe_rrd::{RrdBackend, RrdConfig};

/// First point time, step-aligned; the same in `vs-rrdtool.sh`.
const T0: i64 = 1_700_002_800;

fn value(file: usize, point: usize) -> f64 {
    ((7 * file + point) % 100) as f64 + 0.5
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match &args[..] {
        [dir, files, points, per_call] => files
            .parse::<usize>()
            .ok()
            .zip(points.parse::<usize>().ok())
            .zip(per_call.parse::<usize>().ok().filter(|&n| n > 0))
            .map(|((files, points), per_call)| (dir.clone(), files, points, per_call)),
        _ => None,
    };
    let Some((dir, files, points, per_call)) = parsed else {
        eprintln!("usage: rrd-load DIR FILES POINTS PER_CALL (PER_CALL >= 1)");
        return ExitCode::from(2);
    };
    let mut backend = match RrdBackend::new(&dir, RrdConfig::default()) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("rrd-load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let keys: Vec<SeriesKey> = (0..files)
        .map(|i| SeriesKey {
            host: "bench".into(),
            service: "svc".into(),
            metric: format!("m{i}"),
        })
        .collect();

    let started = Instant::now();
    let mut written = 0;
    for first in (0..points).step_by(per_call) {
        let last = (first + per_call).min(points);
        let batches: Vec<SeriesBatch> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| SeriesBatch {
                key: key.clone(),
                uom: String::new(),
                ds_type: DataSourceType::Gauge,
                points: (first..last)
                    .map(|j| Point {
                        timestamp: T0 + 300 * j as i64,
                        value: value(i, j),
                    })
                    .collect(),
            })
            .collect();
        match backend.write(&batches) {
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
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{written} points in {seconds:.3} s: {:.0} points/s",
        written as f64 / seconds
    );
    ExitCode::SUCCESS
}
