//! The backend checked against the real `rrdtool`: files it writes are read back with
//! `rrdtool info` and `rrdtool fetch`, and its own reads are compared with `rrdtool fetch`.

#![cfg(feature = "rrd")]

mod common;

use common::*;
use perfpipe_backend::{Backend, BackendError, Consolidation, RangeQuery};
use perfpipe_rrd::{RrdBackend, RrdConfig};

fn opsview_backend(dir: &std::path::Path) -> RrdBackend {
    RrdBackend::new(dir, RrdConfig::default()).expect("default config is valid")
}

/// `n` points every 300 s from `T0` with values `f(i)`.
fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (T0 + 300 * i as i64, f(i))).collect()
}

#[test]
fn gauge_file_has_opsviews_layout_and_the_written_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let key = key("web 01", "HTTP", "time");
    let points = series(12, |i| i as f64 * 1.5 + 0.25);

    let report = backend.write(&[batch(&key, "s", &points)]).unwrap();
    assert_eq!((report.written, report.late), (12, 0));
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let file = dir.path().join("web%2001/HTTP/time/value.rrd");
    assert_eq!(backend.series_path(&key).unwrap(), file);
    let info = info(&file);
    let expected = [
        ("step", "300"),
        ("ds[value].type", "\"GAUGE\""),
        ("ds[value].minimal_heartbeat", "600"),
        ("ds[value].min", "NaN"),
        ("ds[value].max", "NaN"),
        ("last_update", &(T0 + 300 * 11).to_string()),
        ("rra[0].cf", "\"AVERAGE\""),
        ("rra[0].pdp_per_row", "1"),
        ("rra[0].rows", "600"),
        ("rra[0].xff", "5.0000000000e-01"),
        ("rra[1].cf", "\"AVERAGE\""),
        ("rra[1].pdp_per_row", "6"),
        ("rra[1].rows", "700"),
        ("rra[1].xff", "5.0000000000e-01"),
        ("rra[2].cf", "\"AVERAGE\""),
        ("rra[2].pdp_per_row", "24"),
        ("rra[2].rows", "775"),
        ("rra[2].xff", "5.0000000000e-01"),
        ("rra[3].cf", "\"AVERAGE\""),
        ("rra[3].pdp_per_row", "288"),
        ("rra[3].rows", "797"),
        ("rra[3].xff", "5.0000000000e-01"),
    ];
    for (field, value) in expected {
        assert_eq!(info.get(field).map(String::as_str), Some(value), "{field}");
    }
    assert!(!info.contains_key("rra[4].cf"), "only four archives");
    assert_eq!(
        info.keys()
            .filter(|k| k.starts_with("ds["))
            .map(|k| &k[..9])
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "one data source"
    );

    // Each row ending at T0 + 300 i holds the gauge value written at that time; the first
    // point only covers the one second since the file's start, so its row is unknown.
    let rows = fetch(&file, "AVERAGE", T0 - 600, T0 + 300 * 11, None);
    assert_eq!(rows.first().map(|r| r.0), Some(T0 - 300));
    assert_rows_hold(&rows, &points[1..]);
}

#[test]
fn counter_series_from_unit_c_stores_rates() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let key = key("router", "eth0", "octets");
    // +600 per 300 s (2/s) for four steps, then +900 per 300 s (3/s).
    let mut count = 1_000_000.0;
    let mut points = vec![(T0, count)];
    for i in 1..=8 {
        count += if i <= 4 { 600.0 } else { 900.0 };
        points.push((T0 + 300 * i, count));
    }
    let report = backend.write(&[batch(&key, "c", &points)]).unwrap();
    assert_eq!(report.written, 9);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let file = backend.series_path(&key).unwrap();
    assert_eq!(info(&file)["ds[value].type"], "\"COUNTER\"");
    let rows = fetch(&file, "AVERAGE", T0 - 300, T0 + 300 * 8, None);
    let rates: Vec<_> = (1..=8)
        .map(|i| (T0 + 300 * i, if i <= 4 { 2.0 } else { 3.0 }))
        .collect();
    assert_rows_hold(&rows, &rates);
}

#[test]
fn counter_values_that_are_not_whole_numbers_fail_that_series_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let bad = key("h", "s", "fractional");
    let good = key("h", "s", "fine");
    let report = backend
        .write(&[
            batch(&bad, "c", &[(T0, 10.0), (T0 + 300, 12.5)]),
            batch(&good, "c", &[(T0, 10.0), (T0 + 300, 610.0)]),
        ])
        .unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.failed.len(), 1);
    let (failed_key, error) = &report.failed[0];
    assert_eq!(failed_key, &bad);
    let message = error.to_string();
    assert!(message.contains("fractional/value.rrd"), "{message}");
    assert!(message.contains("12.5"), "{message}");
    let good_file = backend.series_path(&good).unwrap();
    assert_rows_hold(
        &fetch(&good_file, "AVERAGE", T0 - 300, T0 + 300, None),
        &[(T0 + 300, 2.0)],
    );
}

#[test]
fn late_points_are_counted_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = key("db", "load", "load1");
    let mut backend = opsview_backend(dir.path());
    let first = series(4, |i| 10.0 + i as f64); // T0 .. T0+900
    assert_eq!(
        backend.write(&[batch(&key, "", &first)]).unwrap().written,
        4
    );

    // T0+600 is before the last update, T0+900 equal to it: both late; T0+1200 is new.
    let report = backend
        .write(&[batch(
            &key,
            "",
            &[(T0 + 600, 99.0), (T0 + 900, 99.0), (T0 + 1200, 20.0)],
        )])
        .unwrap();
    assert_eq!((report.written, report.late), (1, 2));
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // A new backend learns the last update from the file itself.
    let mut reopened = opsview_backend(dir.path());
    let report = reopened
        .write(&[batch(&key, "", &[(T0 + 1200, 77.0), (T0 + 1500, 30.0)])])
        .unwrap();
    assert_eq!((report.written, report.late), (1, 1));
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let file = backend.series_path(&key).unwrap();
    assert_eq!(info(&file)["last_update"], (T0 + 1500).to_string());
    assert_rows_hold(
        &fetch(&file, "AVERAGE", T0 - 300, T0 + 1500, None),
        &[
            (T0 + 300, 11.0),
            (T0 + 600, 12.0),
            (T0 + 900, 13.0),
            (T0 + 1200, 20.0),
            (T0 + 1500, 30.0),
        ],
    );

    // A batch that is all late writes nothing and touches nothing.
    let report = reopened.write(&[batch(&key, "", &[(T0, 1.0)])]).unwrap();
    assert_eq!((report.written, report.late), (0, 1));
    assert_eq!(info(&file)["last_update"], (T0 + 1500).to_string());
}

#[test]
fn batches_across_several_calls_and_series_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let keys: Vec<_> = (0..5)
        .map(|i| key("host", "svc", &format!("m{i}")))
        .collect();
    let value = |series: usize, i: usize| (series * 1000 + i) as f64 / 8.0;
    for call in 0..3 {
        let batches: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(s, key)| {
                let points: Vec<_> = (call * 4..call * 4 + 4)
                    .map(|i| (T0 + 300 * i as i64, value(s, i)))
                    .collect();
                batch(key, "B", &points)
            })
            .collect();
        let report = backend.write(&batches).unwrap();
        assert_eq!((report.written, report.late), (20, 0), "call {call}");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    for (s, key) in keys.iter().enumerate() {
        let file = backend.series_path(key).unwrap();
        let expected: Vec<_> = (1..12)
            .map(|i| (T0 + 300 * i as i64, value(s, i)))
            .collect();
        assert_rows_hold(
            &fetch(&file, "AVERAGE", T0 - 300, T0 + 300 * 11, None),
            &expected,
        );
    }
}

#[test]
fn hostile_names_stay_inside_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut backend = opsview_backend(&data);
    let hostile = key("../../etc", "a/b", "..");
    let too_long = key("h", "s", &"x".repeat(300));
    let report = backend
        .write(&[
            batch(&hostile, "", &[(T0, 1.0), (T0 + 300, 2.0)]),
            batch(&too_long, "", &[(T0, 1.0)]),
        ])
        .unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.failed.len(), 1);
    let (failed_key, error) = &report.failed[0];
    assert_eq!(failed_key, &too_long);
    assert!(
        matches!(error, BackendError::NameTooLong { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("300 bytes, limit 255"),
        "{error}"
    );

    // Exactly one file, under the data directory, nothing beside it, nothing truncated.
    assert_eq!(
        files_under(root.path()),
        [std::path::PathBuf::from(
            "data/%2E%2E%2F%2E%2E%2Fetc/a%2Fb/%2E%2E/value.rrd"
        )]
    );
    let file = backend.series_path(&hostile).unwrap();
    assert_eq!(info(&file)["last_update"], (T0 + 300).to_string());
}

#[test]
fn one_unwritable_path_fails_its_series_with_the_file_named_and_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let broken = key("h", "s", "broken");
    let fine = key("h", "s", "fine");
    let broken_file = backend.series_path(&broken).unwrap();
    // A directory where the file should be.
    std::fs::create_dir_all(&broken_file).unwrap();

    let report = backend
        .write(&[
            batch(&broken, "", &[(T0, 1.0)]),
            batch(&fine, "", &[(T0, 1.0), (T0 + 300, 5.0)]),
        ])
        .unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.failed.len(), 1);
    let (failed_key, error) = &report.failed[0];
    assert_eq!(failed_key, &broken);
    assert!(
        error.to_string().contains(broken_file.to_str().unwrap()),
        "{error}"
    );
    assert!(broken_file.is_dir(), "left as it was");
    let fine_file = backend.series_path(&fine).unwrap();
    assert_eq!(info(&fine_file)["last_update"], (T0 + 300).to_string());
}

#[test]
fn corrupt_files_are_moved_aside_and_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let series = key("h", "s", "m");
    let file = backend.series_path(&series).unwrap();
    backend.write(&[batch(&series, "", &[(T0, 1.0)])]).unwrap();
    let whole = std::fs::read(&file).unwrap();
    let corruptions: [(&str, Vec<u8>); 3] = [
        ("not an RRD", b"this is not an RRD file".to_vec()),
        ("empty", Vec::new()),
        ("truncated", whole[..whole.len() / 3].to_vec()),
    ];
    for (n, (what, bytes)) in corruptions.into_iter().enumerate() {
        std::fs::write(&file, &bytes).unwrap();
        // A new backend: nothing cached, so the damage is found when the file is read.
        let mut backend = opsview_backend(dir.path());
        let at = T0 + 300 * (n as i64 + 1);
        let report = backend.write(&[batch(&series, "", &[(at, 2.0)])]).unwrap();
        assert!(report.failed.is_empty(), "{what}: {:?}", report.failed);
        let mut aside = file.as_os_str().to_owned();
        if n > 0 {
            aside.push(format!(".{n}"));
        }
        aside.push(".corrupt");
        assert_eq!(std::fs::read(&aside).unwrap(), bytes, "{what}: set aside");
        assert_eq!(
            info(&file)["last_update"],
            at.to_string(),
            "{what}: a new file"
        );
    }

    // Damaged while the backend has its last update cached: the update itself finds it.
    let at = T0 + 300 * 10;
    std::fs::write(&file, b"garbage").unwrap();
    let report = backend.write(&[batch(&series, "", &[(at, 3.0)])]).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(info(&file)["last_update"], at.to_string());
}

fn read_rows(
    backend: &mut RrdBackend,
    key: &perfpipe_backend::SeriesKey,
    query: RangeQuery,
) -> Vec<(i64, Option<f64>)> {
    let range = backend.read(key, &query).unwrap();
    range
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| (range.start + i as i64 * i64::from(range.step), v))
        .collect()
}

#[test]
fn reads_equal_rrdtool_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let config = RrdConfig {
        rras: [
            "RRA:AVERAGE:0.5:1:600",
            "RRA:AVERAGE:0.5:6:700",
            "RRA:MAX:0.5:1:600",
            "RRA:MIN:0.5:6:700",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect(),
        ..RrdConfig::default()
    };
    let mut backend = RrdBackend::new(dir.path(), config).unwrap();
    let key = key("h", "s", "wave");
    let points = series(60, |i| ((i * 7) % 11) as f64 + 0.5);
    backend.write(&[batch(&key, "", &points)]).unwrap();
    let file = backend.series_path(&key).unwrap();
    let end = T0 + 300 * 59;

    for (consolidation, cf, step) in [
        (Consolidation::Average, "AVERAGE", None),
        (Consolidation::Average, "AVERAGE", Some(1800)),
        (Consolidation::Max, "MAX", None),
        (Consolidation::Min, "MIN", Some(1800)),
    ] {
        let query = RangeQuery {
            start: T0,
            end,
            step,
            consolidation,
        };
        let ours = read_rows(&mut backend, &key, query);
        let theirs = fetch(&file, cf, T0, end, step);
        assert!(theirs.len() >= 10, "{cf} {step:?}: {theirs:?}");
        assert!(
            theirs.iter().filter(|r| r.1.is_some()).count() >= 9,
            "{theirs:?}"
        );
        assert_rows_eq(&ours, &theirs);
    }

    // The 1800 s row ending at T0 + 1800 is the mean of the six 300 s values after T0 (T0 is a multiple of 1800).
    let coarse = read_rows(
        &mut backend,
        &key,
        RangeQuery {
            start: T0,
            end,
            step: Some(1800),
            consolidation: Consolidation::Average,
        },
    );
    let (time, value) = coarse[0];
    assert_eq!(
        time,
        T0 + 1800,
        "the first row ends one step after the start"
    );
    let mean = points[1..=6].iter().map(|p| p.1).sum::<f64>() / 6.0;
    assert!(close(value.unwrap(), mean), "{value:?} vs {mean}");
}

#[test]
fn reading_a_consolidation_without_its_archive_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = opsview_backend(dir.path());
    let key = key("h", "s", "m");
    backend
        .write(&[batch(&key, "", &series(4, |i| i as f64))])
        .unwrap();
    let query = RangeQuery {
        start: T0,
        end: T0 + 900,
        step: None,
        consolidation: Consolidation::Max,
    };
    let error = backend.read(&key, &query).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("has no MAX archive"), "{message}");
    assert!(message.contains("h/s/m/value.rrd"), "{message}");

    let missing = backend
        .read(&common::key("h", "s", "nothing"), &query)
        .unwrap_err();
    assert!(matches!(missing, BackendError::NotFound(_)), "{missing:?}");
    let reversed = RangeQuery {
        start: T0,
        end: T0,
        step: None,
        consolidation: Consolidation::Average,
    };
    assert!(backend.read(&key, &reversed).is_err());
}

#[test]
fn configured_step_and_heartbeat_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let config: RrdConfig =
        toml::from_str("step = 60\nheartbeat = 120\nrras = [\"RRA:LAST:0.5:1:100\"]").unwrap();
    let mut backend = RrdBackend::new(dir.path(), config).unwrap();
    let key = key("h", "s", "m");
    let report = backend
        .write(&[batch(
            &key,
            "",
            &[(T0, 1.0), (T0 + 60, 2.0), (T0 + 120, 3.0)],
        )])
        .unwrap();
    assert_eq!(report.written, 3);
    let info = info(&backend.series_path(&key).unwrap());
    assert_eq!(info["step"], "60");
    assert_eq!(info["ds[value].minimal_heartbeat"], "120");
    assert_eq!(info["rra[0].cf"], "\"LAST\"");
    assert_eq!(info["rra[0].rows"], "100");
    assert!(!info.contains_key("rra[1].cf"));
}

/// The batches of one call over `series` series `m<i>` (every fourth a counter), points `range`
/// of each, plus the troublemakers: a series twice in the call, a counter value that is not a
/// whole number, a name too long for a file name, and a series whose file is not an RRD file.
fn mixed_call(
    series: usize,
    range: std::ops::Range<i64>,
    extra: i64,
) -> Vec<perfpipe_backend::SeriesBatch> {
    let mut batches: Vec<_> = (0..series)
        .map(|s| {
            let (uom, f): (&str, fn(usize, i64) -> f64) = if s % 4 == 0 {
                ("c", |s, i| (1000 * s as i64 + 600 * i) as f64)
            } else {
                ("ms", |s, i| s as f64 + i as f64 / 8.0)
            };
            let points: Vec<_> = range.clone().map(|i| (T0 + 300 * i, f(s, i))).collect();
            batch(&key("many", "svc", &format!("m{s}")), uom, &points)
        })
        .collect();
    let twice: Vec<_> = (range.end - 2..range.end + extra)
        .map(|i| (T0 + 300 * i, 7.0 + i as f64))
        .collect();
    batches.insert(series / 2, batch(&key("many", "svc", "m7"), "ms", &twice));
    batches.insert(
        3,
        batch(
            &key("many", "svc", "fractional"),
            "c",
            &[(T0, 1.0), (T0 + 300, 2.5)],
        ),
    );
    batches.insert(
        series / 3,
        batch(&key("many", "svc", &"x".repeat(300)), "", &[(T0, 1.0)]),
    );
    batches.push(batch(
        &key("many", "svc", "broken"),
        "",
        &[(T0 + 300 * range.start, 1.0)],
    ));
    batches
}

/// A report as comparable text: counts, then each failed series with its message, the data
/// directory replaced by `DIR`.
fn report_text(report: &perfpipe_backend::WriteReport, dir: &std::path::Path) -> String {
    let mut text = format!("written {} late {}\n", report.written, report.late);
    for (key, error) in &report.failed {
        text += &format!("{key}: {error}\n").replace(path_str(dir), "DIR");
    }
    text
}

#[test]
fn many_series_written_by_several_threads_give_the_same_files_and_report_as_one_thread() {
    const SERIES: usize = 96; // well above PARALLEL_MIN_SERIES, so four writers
    const { assert!(SERIES >= 4 * perfpipe_rrd::PARALLEL_MIN_SERIES / 2) };
    let single_dir = tempfile::tempdir().unwrap();
    let multi_dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: fails its series every time (a corrupt file
    // would be set aside and replaced).
    for dir in [single_dir.path(), multi_dir.path()] {
        let broken = dir.join("many/svc/broken/value.rrd");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("inside"), b"not an RRD file").unwrap();
    }
    let mut single = opsview_backend(single_dir.path()).with_write_threads(1);
    let mut multi = opsview_backend(multi_dir.path()).with_write_threads(4);
    assert_eq!((single.write_threads(), multi.write_threads()), (1, 4));

    // Call 1 creates the files; call 2 overlaps it by five points (late) on the cached last
    // updates; call 3, through new backends, learns them from the files (rrd_last_r on the
    // writer threads) and overlaps by two.
    let calls = [(0..10, 2), (5..20, 3), (18..30, 1)];
    for (number, (range, extra)) in calls.into_iter().enumerate() {
        if number == 2 {
            single = opsview_backend(single_dir.path()).with_write_threads(1);
            multi = opsview_backend(multi_dir.path()).with_write_threads(4);
        }
        let batches = mixed_call(SERIES, range.clone(), extra);
        let single_report = single.write(&batches).unwrap();
        let multi_report = multi.write(&batches).unwrap();
        let expected = report_text(&single_report, single_dir.path());
        assert_eq!(
            report_text(&multi_report, multi_dir.path()),
            expected,
            "call {number}"
        );

        // Each failure is reported for its series, with its file named, in call order.
        let failed: Vec<String> = multi_report
            .failed
            .iter()
            .map(|(k, _)| k.metric.to_string())
            .collect();
        let long = "x".repeat(300);
        // The fractional counter's file was created, but its bad value stopped its update
        // each time, so its points are never late and it fails again in every call.
        let expected_failed = ["fractional", &long, "broken"];
        assert_eq!(failed, expected_failed, "call {number}");
        assert!(
            expected.contains("DIR/many/svc/broken/value.rrd"),
            "{expected}"
        );
        if number == 0 {
            assert!(
                expected.contains("DIR/many/svc/fractional/value.rrd"),
                "{expected}"
            );
        }

        // Late points: in call 1 only the two of m7's second batch that its first one wrote;
        // later, the overlap with the previous call, longer for m7 by what its second batch
        // added then.
        let overlap = [0, 5, 2][number];
        let previous_extra = [0, 2, 3][number];
        let points = (range.end - range.start) as u64;
        assert_eq!(
            (multi_report.written, multi_report.late),
            (
                SERIES as u64 * (points - overlap) - previous_extra + extra as u64,
                SERIES as u64 * overlap + previous_extra + 2,
            ),
            "call {number}: {expected}"
        );
    }

    // The same files, holding the same rows.
    let files = files_under(single_dir.path());
    assert_eq!(files_under(multi_dir.path()), files);
    assert_eq!(files.len(), SERIES + 2, "{files:?}"); // + fractional and broken
    for file in &files {
        let (a, b) = (single_dir.path().join(file), multi_dir.path().join(file));
        if file.starts_with("many/svc/broken") {
            assert_eq!(std::fs::read(&b).unwrap(), b"not an RRD file");
            continue;
        }
        assert_eq!(info(&b)["last_update"], info(&a)["last_update"], "{file:?}");
        let end = T0 + 300 * 40;
        let (rows_a, rows_b) = (
            fetch(&a, "AVERAGE", T0 - 300, end, None),
            fetch(&b, "AVERAGE", T0 - 300, end, None),
        );
        // Every file holds values but the fractional counter's, which was only ever created.
        let holds_values = rows_a.iter().any(|r| r.1.is_some());
        assert_eq!(
            holds_values,
            !file.starts_with("many/svc/fractional"),
            "{file:?}"
        );
        assert_eq!(rows_b, rows_a, "{file:?}");
    }
}
