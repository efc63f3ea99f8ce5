//! Criterion bench of the write path's front: [`perfpipe::intake::read`] of one request body
//! as the load driver posts it (benches/load_driver.rs): 1,000 check results of one round, 3
//! metrics each with thresholds and a range, in the JSON body, the NDJSON and the Opsview spool
//! forms. Each iteration reads the body into per-series points and drops them, so allocation
//! and growth of the per-series vectors are in the figure. Throughput is in points.
//!
//! Run: `cargo bench --bench intake` (numbers in docs/performance.md, "Intake").

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe::intake::{read, Format};

/// The binary's allocator (src/main.rs), so that allocation costs what it costs in the node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RESULTS: usize = 1_000;
const METRICS: usize = 3;
const TIMESTAMP: i64 = 1_764_000_000;

fn perfdata_of(result: usize) -> String {
    let mut perfdata = String::new();
    for metric in 0..METRICS {
        let value = ((result * 31 + metric * 3) % 1000) as f64 / 10.0;
        if metric > 0 {
            perfdata.push(' ');
        }
        let _ = write!(perfdata, "m{metric}={value}ms;10;20;0;100");
    }
    perfdata
}

/// The body in `format`; hosts of 10 services each, as the driver names them.
fn body(format: Format) -> Vec<u8> {
    let mut body = String::new();
    if matches!(format, Format::JsonBody) {
        body.push_str("{\"results\":[");
    }
    for result in 0..RESULTS {
        let (host, service) = (result / 10, result % 10);
        let perfdata = perfdata_of(result);
        match format {
            Format::JsonBody | Format::Ndjson => {
                if matches!(format, Format::JsonBody) && result > 0 {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    "{{\"host\":\"host{host:05}\",\"service\":\"service{service:02}\",\
                     \"timestamp\":{TIMESTAMP},\"perfdata\":\"{perfdata}\"}}"
                );
                if matches!(format, Format::Ndjson) {
                    body.push('\n');
                }
            }
            _ => {
                let _ = writeln!(
                    body,
                    "{TIMESTAMP}||host{host:05}||service{service:02}||OK||{perfdata}"
                );
            }
        }
    }
    if matches!(format, Format::JsonBody) {
        body.push_str("]}");
    }
    body.into_bytes()
}

fn bench_intake(c: &mut Criterion) {
    let mut group = c.benchmark_group("intake");
    group.throughput(Throughput::Elements((RESULTS * METRICS) as u64));
    for (name, format) in [
        ("json_body", Format::JsonBody),
        ("ndjson", Format::Ndjson),
        ("spool", Format::Spool),
    ] {
        let body = body(format);
        let intake = read(&body, format);
        assert_eq!(
            intake.points as usize,
            RESULTS * METRICS,
            "{name}: every point read"
        );
        assert!(intake.errors.is_empty(), "{name}: {:?}", intake.errors);
        group.bench_function(name, |b| b.iter(|| read(black_box(&body), format)));
    }
    group.finish();
}

criterion_group!(benches, bench_intake);
criterion_main!(benches);
