//! Write throughput to a real `influxd` over the v1 API: 1,000 series of 200 points (200,000
//! points) per run, in 1 MB bodies, gzip on and off; three runs each, fresh database per run,
//! median printed. Run: `cargo bench -p perfpipe-influxdb --bench write_influxd`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{series, Influxd, T0};
use perfpipe_backend::Backend;
use perfpipe_influxdb::{InfluxBackend, InfluxConfig};

const SERIES: usize = 1_000;
const POINTS: i64 = 200;

fn main() {
    let server = Influxd::start();
    let batches: Vec<_> = (0..SERIES)
        .map(|n| {
            let points: Vec<(i64, f64)> = (0..POINTS)
                .map(|i| (T0 + 60 * i, (n as f64) * 0.5 + i as f64 / 7.0))
                .collect();
            series(
                &format!("host{}", n % 50),
                "Disk C:\\",
                &format!("C:\\ Used Space {n}"),
                "B",
                &points,
            )
        })
        .collect();
    let total = SERIES as u64 * POINTS as u64;
    for gzip in [true, false] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let db = format!("bench_{gzip}_{run}");
            server.create_db(&db);
            let mut config = InfluxConfig::v1(&server.url, &db);
            config.gzip = gzip;
            let mut backend = InfluxBackend::new(config).expect("config");
            let started = Instant::now();
            let report = backend.write(&batches).expect("write");
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(report.written, total);
            assert!(report.failed.is_empty());
            rates.push(total as f64 / seconds);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "influxd v1, gzip {gzip}: {total} points in 1 MB bodies: median {:.0} points/s (runs: {:.0}, {:.0}, {:.0})",
            rates[1], rates[0], rates[1], rates[2]
        );
    }
}
