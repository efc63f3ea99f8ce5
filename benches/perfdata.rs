//! Criterion bench of the perfdata reader over real plugin output.
//!
//! The corpus is `fixtures/perfdata/realworld.txt` (perfdata that real plugins printed; the
//! text after each line's first tab), repeated to about 4 MB. Each iteration reads every line
//! of the corpus with [`perfpipe_perfdata::Reader`] and counts metrics and errors, the same work
//! `perfpipe parse --summary` does per line. Reported twice: as bytes/s and as metrics/s.
//!
//! Run: `cargo bench --bench perfdata` (numbers in docs/performance.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perfpipe_perfdata::Reader;

const CORPUS_BYTES: usize = 4 << 20;

fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/perfdata/realworld.txt"
    );
    let text = std::fs::read_to_string(path).expect("fixtures/perfdata/realworld.txt");
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once('\t').map(|(_, perfdata)| perfdata))
        .collect();
    let mut corpus = Vec::new();
    let mut bytes = 0;
    while bytes < CORPUS_BYTES {
        for line in &lines {
            bytes += line.len() + 1;
            corpus.push(line.to_string());
        }
    }
    corpus
}

fn read_all(corpus: &[String]) -> (u64, u64) {
    let (mut metrics, mut errors) = (0u64, 0u64);
    for line in corpus {
        for item in Reader::new(black_box(line)) {
            match item {
                Ok(metric) => {
                    black_box(&metric);
                    metrics += 1;
                }
                Err(_) => errors += 1,
            }
        }
    }
    (metrics, errors)
}

fn bench_reader(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: u64 = corpus.iter().map(|line| line.len() as u64 + 1).sum();
    let (metrics, errors) = read_all(&corpus);
    eprintln!(
        "corpus: {} lines, {bytes} bytes, {metrics} metrics, {errors} errors",
        corpus.len()
    );

    let mut group = c.benchmark_group("perfdata_reader");
    group.sample_size(30);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("realworld_bytes", |b| b.iter(|| read_all(&corpus)));
    group.throughput(Throughput::Elements(metrics));
    group.bench_function("realworld_metrics", |b| b.iter(|| read_all(&corpus)));
    group.finish();
}

criterion_group!(benches, bench_reader);
criterion_main!(benches);
