//! Helpers shared by the integration tests: running the real `rrdtool` and reading its output.
//! No mock: every check of a file goes through `rrdtool` itself.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use perfpipe_backend::{DataSourceType, Point, SeriesBatch, SeriesKey};

/// A step-aligned time (a multiple of 300 and of 1800) to start series at.
pub const T0: i64 = 1_700_002_800;

pub fn key(host: &str, service: &str, metric: &str) -> SeriesKey {
    SeriesKey {
        host: host.into(),
        service: service.into(),
        metric: metric.into(),
    }
}

pub fn batch(key: &SeriesKey, uom: &str, points: &[(i64, f64)]) -> SeriesBatch {
    SeriesBatch {
        levels: Vec::new(),
        key: key.clone(),
        uom: uom.into(),
        ds_type: DataSourceType::for_unit(uom),
        points: points
            .iter()
            .map(|&(timestamp, value)| Point { timestamp, value })
            .collect(),
    }
}

/// Runs `rrdtool ARGS` and returns its standard output; fails the test clearly if `rrdtool` is
/// missing or fails.
pub fn rrdtool(args: &[&str]) -> String {
    let output = Command::new("rrdtool")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `rrdtool` ({error}); these tests need the real rrdtool \
             (Debian package `rrdtool`) on PATH"
            )
        });
    assert!(
        output.status.success(),
        "rrdtool {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("rrdtool prints UTF-8")
}

/// `rrdtool info FILE` as a map from key to the value text (quotes kept).
pub fn info(file: &Path) -> BTreeMap<String, String> {
    rrdtool(&["info", path_str(file)])
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// `rrdtool fetch FILE CF -s START -e END [-r STEP]` as `(time, value)` rows, `None` for nan.
pub fn fetch(
    file: &Path,
    cf: &str,
    start: i64,
    end: i64,
    step: Option<u32>,
) -> Vec<(i64, Option<f64>)> {
    let (start, end) = (start.to_string(), end.to_string());
    let mut args = vec!["fetch", path_str(file), cf, "-s", &start, "-e", &end];
    let step = step.map(|s| s.to_string());
    if let Some(step) = &step {
        args.extend(["-r", step]);
    }
    rrdtool(&args)
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(time, value)| {
            let time: i64 = time.trim().parse().expect("fetch time");
            let value = value.trim();
            let value = if value.ends_with("nan") {
                None
            } else {
                Some(value.parse::<f64>().expect("fetch value"))
            };
            (time, value)
        })
        .collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Whether two values agree to rrdtool fetch's 11 printed significant digits.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

/// Asserts two row lists are the same times with values equal to rrdtool's printed precision.
pub fn assert_rows_eq(actual: &[(i64, Option<f64>)], expected: &[(i64, Option<f64>)]) {
    let same = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| {
            a.0 == e.0
                && match (a.1, e.1) {
                    (Some(x), Some(y)) => close(x, y),
                    (None, None) => true,
                    _ => false,
                }
        });
    assert!(
        same,
        "rows differ:\n actual   {actual:?}\n expected {expected:?}"
    );
}

/// Asserts `rows` (as `rrdtool fetch` prints them, each row labelled with the end of its
/// interval) hold exactly `expected`: every expected time appears with its value, and every
/// other row is unknown.
pub fn assert_rows_hold(rows: &[(i64, Option<f64>)], expected: &[(i64, f64)]) {
    let wanted: BTreeMap<i64, f64> = expected.iter().copied().collect();
    let ok = wanted.keys().all(|t| rows.iter().any(|r| r.0 == *t))
        && rows.iter().all(|&(t, v)| match (wanted.get(&t), v) {
            (Some(&w), Some(v)) => close(w, v),
            (None, None) => true,
            _ => false,
        });
    assert!(
        ok,
        "rows differ:\n rows     {rows:?}\n expected {expected:?} (others unknown)"
    );
}

/// Every file (not directory) under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
