//! This crate against graphite's whisper 1.1.4 itself (Debian's python3-whisper): the same
//! random files and updates must leave byte-identical files, and fetches must agree.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use perfpipe_backend::{Backend, SeriesBatch, SeriesKey};
use perfpipe_whisper::python_set_order::python_set_order;
use perfpipe_whisper::{
    AggregationMethod, ArchiveSpec, WhisperBackend, WhisperConfig, WhisperFile,
};
use support::{random_archives, random_points, random_xff, ReferenceWhisper};

/// Seconds since the epoch around which the random workloads happen.
const EPOCH_BASE: i64 = 1_700_000_000;

struct RandomFile {
    archives: Vec<ArchiveSpec>,
    aggregation: AggregationMethod,
    xff: f64,
}

impl RandomFile {
    fn new(rng: &mut fastrand::Rng) -> RandomFile {
        RandomFile {
            archives: random_archives(rng),
            aggregation: *rng.choice(&AggregationMethod::ALL).unwrap(),
            xff: random_xff(rng),
        }
    }

    fn finest_step(&self) -> i64 {
        self.archives
            .iter()
            .map(|a| i64::from(a.seconds_per_point))
            .min()
            .unwrap()
    }

    fn max_retention(&self) -> i64 {
        self.archives
            .iter()
            .map(|a| a.retention() as i64)
            .max()
            .unwrap()
    }
}

fn assert_same_bytes(python: &Path, rust: &Path, context: &str) {
    let expected = std::fs::read(python).unwrap();
    let actual = std::fs::read(rust).unwrap();
    if expected != actual {
        let first = expected
            .iter()
            .zip(&actual)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(actual.len()));
        panic!(
            "{context}: files differ (whisper {} bytes, ours {} bytes), first difference at byte {first}",
            expected.len(),
            actual.len()
        );
    }
}

/// Creates the same random file with whisper and with this crate, applies the same random
/// `update_many` calls to both, and returns (python path, rust path, last now).
fn build_pair(
    reference: &mut ReferenceWhisper,
    rng: &mut fastrand::Rng,
    dir: &Path,
    case: usize,
    spec: &RandomFile,
    mapped: bool,
) -> (std::path::PathBuf, std::path::PathBuf, i64) {
    let python_path = dir.join(format!("python-{case}.wsp"));
    let rust_path = dir.join(format!("rust-{case}.wsp"));
    let context = format!(
        "case {case} (mapped: {mapped}): archives {:?}, {}, xff {}",
        spec.archives, spec.aggregation, spec.xff
    );
    reference.create(&python_path, &spec.archives, spec.aggregation, spec.xff);
    let mut file = WhisperFile::create(&rust_path, &spec.archives, spec.aggregation, spec.xff)
        .unwrap_or_else(|error| panic!("{context}: create: {error}"));
    file.allow_mapping(mapped);
    assert_same_bytes(
        &python_path,
        &rust_path,
        &format!("{context}, after create"),
    );

    let mut now = EPOCH_BASE + rng.i64(0..1_000_000);
    for call in 0..rng.usize(1..=6) {
        let points = random_points(rng, now, spec.finest_step(), spec.max_retention());
        reference.update_many(&python_path, &points, now);
        file.update_many(&points, now)
            .unwrap_or_else(|error| panic!("{context}: update_many {call}: {error}"));
        assert_same_bytes(
            &python_path,
            &rust_path,
            &format!("{context}, after update_many call {call} at now {now} with {points:?}"),
        );
        // Time moves on between calls, sometimes by less than a step, sometimes by a lot.
        now += match rng.u8(0..3) {
            0 => 0,
            1 => rng.i64(1..=spec.finest_step() * 3),
            _ => rng.i64(0..=spec.max_retention()),
        };
    }
    (python_path, rust_path, now)
}

#[test]
fn update_many_is_byte_identical_with_whisper() {
    let mut reference = ReferenceWhisper::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5715_9e12);
    // 1,200 sequences through the memory-mapped path (from each file's second update on), 600
    // more through pread/pwrite only.
    for case in 0..1800 {
        let spec = RandomFile::new(&mut rng);
        let (python_path, rust_path, _) = build_pair(
            &mut reference,
            &mut rng,
            dir.path(),
            case,
            &spec,
            case < 1200,
        );
        std::fs::remove_file(python_path).unwrap();
        std::fs::remove_file(rust_path).unwrap();
    }
}

/// The backend's own way of writing — files kept open, memory-mapped from their second update,
/// watched with inotify and then updated with no check at all while nothing is reported — leaves
/// the bytes whisper leaves, call after call, for several series per call.
#[test]
fn the_backend_leaves_the_bytes_whisper_leaves() {
    let mut reference = ReferenceWhisper::start();
    let mut rng = fastrand::Rng::with_seed(0x00ba_c4e2);
    for configuration in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let spec = RandomFile::new(&mut rng);
        let now = Arc::new(AtomicI64::new(EPOCH_BASE + rng.i64(0..1_000_000)));
        let clock = now.clone();
        let mut config = WhisperConfig::new(dir.path().join("perfpipe"));
        config.archives = spec.archives.clone();
        config.aggregation = spec.aggregation;
        config.x_files_factor = spec.xff;
        let mut backend = WhisperBackend::new(config)
            .unwrap()
            .with_clock(move || clock.load(Ordering::Relaxed));
        let keys: Vec<SeriesKey> = (0..4)
            .map(|i| SeriesKey::new("host", "service", format!("metric-{i}")))
            .collect();
        let python_paths: Vec<_> = (0..keys.len())
            .map(|i| dir.path().join(format!("python-{i}.wsp")))
            .collect();
        for path in &python_paths {
            reference.create(path, &spec.archives, spec.aggregation, spec.xff);
        }
        for call in 0..8 {
            let at = now.load(Ordering::Relaxed);
            let mut batches = Vec::new();
            for (key, python_path) in keys.iter().zip(&python_paths) {
                let mut points =
                    random_points(&mut rng, at, spec.finest_step(), spec.max_retention());
                // The enqueuer hands batches over in time order.
                points.sort_by_key(|&(timestamp, _)| timestamp);
                reference.update_many(python_path, &points, at);
                batches.push(SeriesBatch::new(key.clone(), "", &points));
            }
            let report = backend.write(&batches).unwrap();
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            for (key, python_path) in keys.iter().zip(&python_paths) {
                assert_same_bytes(
                    python_path,
                    &backend.series_path(key).unwrap(),
                    &format!(
                        "configuration {configuration} ({:?}, {}, xff {}), call {call}, {}",
                        spec.archives, spec.aggregation, spec.xff, key.metric
                    ),
                );
            }
            now.fetch_add(
                match rng.u8(0..3) {
                    0 => 0,
                    1 => rng.i64(1..=spec.finest_step() * 3),
                    _ => rng.i64(0..=spec.max_retention() / 4),
                },
                Ordering::Relaxed,
            );
        }
    }
}

/// A `WhisperFile` keeps what it read of its file between updates; when another program (here
/// whisper itself, writing in place: same inode, same length) changes the file between two of
/// its updates, the next update must notice and work from the file's new content.
#[test]
fn updates_after_another_writer_see_its_changes() {
    let mut reference = ReferenceWhisper::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x0dd_ba11);
    for case in 0..150 {
        let spec = RandomFile::new(&mut rng);
        let expected_path = dir.path().join(format!("python-{case}.wsp"));
        let shared_path = dir.path().join(format!("shared-{case}.wsp"));
        let context = format!(
            "case {case}: archives {:?}, {}, xff {}",
            spec.archives, spec.aggregation, spec.xff
        );
        reference.create(&expected_path, &spec.archives, spec.aggregation, spec.xff);
        let mut file =
            WhisperFile::create(&shared_path, &spec.archives, spec.aggregation, spec.xff)
                .unwrap_or_else(|error| panic!("{context}: create: {error}"));
        // Both ways of reaching the bytes: through a mapping, and through pread/pwrite with
        // kept chunks (which must notice the other writer).
        file.allow_mapping(case % 2 == 0);
        let mut now = EPOCH_BASE + rng.i64(0..1_000_000);
        for call in 0..rng.usize(2..=8) {
            let points = random_points(&mut rng, now, spec.finest_step(), spec.max_retention());
            reference.update_many(&expected_path, &points, now);
            let writer = if rng.bool() {
                reference.update_many(&shared_path, &points, now);
                "whisper"
            } else {
                file.update_many(&points, now)
                    .unwrap_or_else(|error| panic!("{context}: update_many {call}: {error}"));
                "ours"
            };
            assert_same_bytes(
                &expected_path,
                &shared_path,
                &format!("{context}, after call {call} ({writer}) at now {now} with {points:?}"),
            );
            now += match rng.u8(0..3) {
                0 => 0,
                1 => rng.i64(1..=spec.finest_step() * 3),
                _ => rng.i64(0..=spec.max_retention() / 4),
            };
        }
    }
}

#[test]
fn fetch_matches_whisper_fetch() {
    let mut reference = ReferenceWhisper::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0xfe7c4);
    let mut compared_values = 0;
    for case in 0..300 {
        let spec = RandomFile::new(&mut rng);
        let (python_path, rust_path, now) =
            build_pair(&mut reference, &mut rng, dir.path(), case, &spec, true);
        let file = WhisperFile::open_read_only(&rust_path).unwrap();
        let span = spec.max_retention();
        for _ in 0..10 {
            let from = now - rng.i64(-span / 4..=span + span / 4);
            let until = match rng.u8(0..4) {
                0 => from,                   // zero-length range
                1 => from - rng.i64(1..=10), // invalid: from after until
                _ => from + rng.i64(0..=span + span / 2),
            };
            let fetch_now = now + rng.i64(0..=spec.finest_step());
            let expected = reference.fetch(&python_path, from, until, fetch_now);
            let actual = file.fetch(from, until, fetch_now);
            let context = format!("case {case}: fetch({from}, {until}, now {fetch_now})");
            match (expected, actual) {
                (Err(_), Err(_)) => {}
                (Ok(None), Ok(None)) => {}
                (Ok(Some((time_info, values))), Ok(Some(fetched))) => {
                    assert_eq!(
                        time_info,
                        (fetched.from, fetched.until, i64::from(fetched.step)),
                        "{context}"
                    );
                    let bits = |values: &[Option<f64>]| -> Vec<Option<u64>> {
                        values.iter().map(|v| v.map(f64::to_bits)).collect()
                    };
                    assert_eq!(bits(&values), bits(&fetched.values), "{context}");
                    compared_values += values.iter().filter(|v| v.is_some()).count();
                }
                (expected, actual) => panic!("{context}: whisper {expected:?}, ours {actual:?}"),
            }
        }
    }
    assert!(
        compared_values > 1000,
        "only {compared_values} known values compared"
    );
}

#[test]
fn set_order_matches_cpython() {
    let mut reference = ReferenceWhisper::start();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..300 {
        let step = *rng.choice(&[1u64, 10, 60, 300, 3600]).unwrap();
        let base = 1_700_000_000 / step * step;
        let values: Vec<u64> = (0..rng.usize(1..200))
            .map(|_| base + rng.u64(0..400) * step)
            .collect();
        assert_eq!(
            python_set_order(values.iter().copied()),
            reference.set_order(&values),
            "{values:?}"
        );
    }
}
