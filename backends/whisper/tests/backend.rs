//! `WhisperBackend` end to end: files it writes read back with graphite's own command-line
//! tools, names that must not escape the data directory, and corrupt files.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use perfpipe_backend::{Backend, BackendError, Consolidation, RangeQuery, SeriesBatch, SeriesKey};
use perfpipe_whisper::{
    parse_retentions, AggregationMethod, WhisperBackend, WhisperConfig, WhisperFile,
};
use serde_json::Value;

/// A backend over `dir` whose clock stands at `now`.
fn backend_at(dir: &Path, now: i64) -> WhisperBackend {
    WhisperBackend::new(WhisperConfig::new(dir))
        .unwrap()
        .with_clock(move || now)
}

fn key(host: &str, service: &str, metric: &str) -> SeriesKey {
    SeriesKey::new(host, service, metric)
}

fn batch(key: &SeriesKey, points: &[(i64, f64)]) -> SeriesBatch {
    SeriesBatch::new(key.clone(), "ms", points)
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs one of python3-whisper's tools and parses its JSON output; fails clearly if missing.
fn whisper_tool_json(tool: &str, args: &[String]) -> Value {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {tool} ({error}); it comes with Debian's python3-whisper")
        });
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{tool} output is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn whisper_fetch(path: &Path, from: i64, until: i64) -> (i64, i64, i64, Vec<Option<f64>>) {
    let json = whisper_tool_json(
        "whisper-fetch",
        &[
            "--json".to_owned(),
            format!("--from={from}"),
            format!("--until={until}"),
            path.display().to_string(),
        ],
    );
    let values = json["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    (
        json["start"].as_i64().unwrap(),
        json["end"].as_i64().unwrap(),
        json["step"].as_i64().unwrap(),
        values,
    )
}

#[test]
fn whisper_tools_read_what_the_backend_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WhisperConfig::new(dir.path());
    config.archives = parse_retentions("10s:1h,1m:1d,10m:30d").unwrap();
    config.aggregation = AggregationMethod::Sum;
    config.x_files_factor = 0.2;
    let mut backend = WhisperBackend::new(config).unwrap();
    let series = key("web 1", "HTTP /", "time");
    let now = system_now();
    // Every 10 s over the last 50 minutes, values exact in binary and decimal.
    let points: Vec<(i64, f64)> = (1..=300)
        .rev()
        .map(|k| (now - k * 10, k as f64 * 0.25))
        .collect();
    let report = backend.write(&[batch(&series, &points)]).unwrap();
    assert_eq!(
        (report.written, report.late, report.failed.len()),
        (300, 0, 0)
    );

    let path = backend.series_path(&series).unwrap();
    assert_eq!(path, dir.path().join("web%201/HTTP%20%2F/time.wsp"));

    // The finest archive, read by whisper-fetch, holds exactly the points written.
    let (from, until) = (now - 2400, now - 600);
    let (start, end, step, values) = whisper_fetch(&path, from, until);
    assert_eq!(step, 10);
    assert_eq!(start, from - from.rem_euclid(10) + 10);
    assert_eq!(end, until - until.rem_euclid(10) + 10);
    let expected: Vec<Option<f64>> = (0..(end - start) / 10)
        .map(|i| {
            let interval = start + i * 10;
            points
                .iter()
                .find(|(t, _)| t - t.rem_euclid(10) == interval)
                .map(|&(_, v)| v)
        })
        .collect();
    assert!(expected.iter().all(Option::is_some));
    assert_eq!(values, expected);

    // Our read gives the same.
    let read = backend
        .read(
            &series,
            &RangeQuery {
                start: from,
                end: until,
                step: None,
                consolidation: Consolidation::Average,
            },
        )
        .unwrap();
    assert_eq!(
        (read.start, i64::from(read.step), read.values),
        (start, step, expected)
    );

    // The 1-minute archive (sums of 6 points, propagated) agrees with our fetch.
    let (from, until) = (now - 3 * 3600, now - 900);
    let (start, end, step, values) = whisper_fetch(&path, from, until);
    let ours = WhisperFile::open_read_only(&path)
        .unwrap()
        .fetch(from, until, system_now())
        .unwrap()
        .unwrap();
    assert_eq!(
        (start, end, step),
        (ours.from, ours.until, i64::from(ours.step))
    );
    assert_eq!(step, 60);
    assert_eq!(values, ours.values);
    let full_minutes: Vec<f64> = values.iter().flatten().copied().collect();
    assert!(full_minutes.len() >= 30, "{values:?}");
    let minute = start + 60 * values.iter().position(Option::is_some).unwrap() as i64;
    let expected_sum: f64 = points
        .iter()
        .filter(|(t, _)| t - t.rem_euclid(60) == minute)
        .map(|p| p.1)
        .sum();
    assert_eq!(values.iter().flatten().next().copied(), Some(expected_sum));

    // whisper-info reads the header we wrote.
    let info = whisper_tool_json(
        "whisper-info",
        &["--json".to_owned(), path.display().to_string()],
    );
    assert_eq!(info["aggregationMethod"], "sum");
    assert_eq!(info["maxRetention"], 30 * 86_400);
    assert_eq!(info["xFilesFactor"].as_f64().unwrap(), f64::from(0.2f32));
    let archives: Vec<(u64, u64, u64)> = info["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["offset"].as_u64().unwrap(),
                a["secondsPerPoint"].as_u64().unwrap(),
                a["points"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        archives,
        vec![
            (52, 10, 360),
            (52 + 360 * 12, 60, 1440),
            (52 + 1800 * 12, 600, 4320)
        ]
    );
    assert_eq!(info["fileSize"], 52 + (360 + 1440 + 4320) * 12);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        52 + (360 + 1440 + 4320) * 12
    );
}

#[test]
fn old_points_are_late_and_the_clock_is_injectable() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_800_000_000;
    let mut config = WhisperConfig::new(dir.path());
    config.archives = parse_retentions("60:10").unwrap();
    let mut backend = WhisperBackend::new(config).unwrap().with_clock(move || now);
    let series = key("h", "s", "m");
    let report = backend
        .write(&[batch(
            &series,
            &[(now - 601, 1.0), (now - 600, 2.0), (now - 60, 3.0)],
        )])
        .unwrap();
    assert_eq!((report.written, report.late), (2, 1));
    let read = backend
        .read(
            &series,
            &RangeQuery {
                start: now - 600,
                end: now,
                step: Some(60),
                consolidation: Consolidation::Max,
            },
        )
        .unwrap();
    assert_eq!(read.step, 60);
    assert_eq!(
        read.values.iter().flatten().copied().collect::<Vec<_>>(),
        vec![3.0]
    );
    assert!(matches!(
        backend.read(
            &key("h", "s", "other"),
            &RangeQuery {
                start: 0,
                end: 1,
                step: None,
                consolidation: Consolidation::Average
            }
        ),
        Err(BackendError::NotFound(_))
    ));
}

/// Every file below `root`, relative to it.
fn files_below(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn names_never_leave_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let mut backend = backend_at(&data_dir, 1_800_000_000);
    let escaping = key("../../etc", "a/b", "..");
    let long_label = key("h", "s", &"x".repeat(300));
    let long_encoding = key("h", "s", &"/".repeat(84)); // 84 bytes, 252 once encoded
    let points = [(1_800_000_000 - 60, 1.0)];
    let report = backend
        .write(&[
            batch(&escaping, &points),
            batch(&long_label, &points),
            batch(&long_encoding, &points),
        ])
        .unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(
        files_below(root.path()),
        vec!["data/%2E%2E%2F%2E%2E%2Fetc/a%2Fb/%2E%2E.wsp".to_owned()]
    );
    let failures: Vec<(String, String)> = report
        .failed
        .iter()
        .map(|(key, error)| (key.metric.to_string(), error.to_string()))
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(matches!(
        report.failed[0].1,
        BackendError::NameTooLong { .. }
    ));
    assert!(
        failures[0].1.contains("300 bytes, limit 251"),
        "{failures:?}"
    );
    assert!(
        failures[1].1.contains("252 bytes, limit 251"),
        "{failures:?}"
    );
    assert!(matches!(
        backend.read(
            &long_label,
            &RangeQuery {
                start: 0,
                end: 1,
                step: None,
                consolidation: Consolidation::Average
            }
        ),
        Err(BackendError::NameTooLong { .. })
    ));
}

#[test]
fn corrupt_files_are_moved_aside_and_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_800_000_000;
    let mut backend = backend_at(dir.path(), now);
    let series = key("h", "s", "m");
    backend
        .write(&[batch(&series, &[(now - 60, 1.0)])])
        .unwrap();
    let path = backend.series_path(&series).unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut unknown_aggregation = good.clone();
    unknown_aggregation[3] = 9;
    let mut archive_beyond_end = good.clone();
    archive_beyond_end[24..28].copy_from_slice(&u32::MAX.to_be_bytes()); // archive 0's point count
    let corruptions: [(&str, Vec<u8>); 4] = [
        ("short header", good[..10].to_vec()),
        ("truncated archive", good[..good.len() / 2].to_vec()),
        ("unknown aggregation", unknown_aggregation),
        ("archive beyond the end", archive_beyond_end),
    ];
    let query = RangeQuery {
        start: now - 3600,
        end: now,
        step: None,
        consolidation: Consolidation::Average,
    };
    let aside = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        if n > 0 {
            name.push(format!(".{n}"));
        }
        name.push(".corrupt");
        std::path::PathBuf::from(name)
    };
    for (n, (what, bytes)) in corruptions.into_iter().enumerate() {
        std::fs::write(&path, &bytes).unwrap();
        // Reading a corrupt file is an error naming it; the file is left as it is.
        let message = backend.read(&series, &query).unwrap_err().to_string();
        assert!(
            message.contains("corrupt whisper file")
                && message.contains(&path.display().to_string()),
            "{what}: {message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: file changed");
        // Writing moves it aside, keeping its bytes, and writes into a new file.
        let report = backend
            .write(&[batch(&series, &[(now - 60 * (n as i64 + 2), 2.0)])])
            .unwrap();
        assert!(report.failed.is_empty(), "{what}: {:?}", report.failed);
        assert_eq!(report.written, 1, "{what}");
        assert_eq!(
            std::fs::read(aside(n)).expect(what),
            bytes,
            "{what}: set aside"
        );
        let fetched = backend.read(&series, &query).unwrap();
        let stored: Vec<f64> = fetched.values.iter().flatten().copied().collect();
        assert_eq!(stored, [2.0], "{what}: a new file with the new point only");
    }
}

#[test]
fn a_file_replaced_behind_the_backend_is_reopened() {
    // The backend keeps files open between writes; an operator's tool that renames a new file
    // over the old one (as whisper-resize does) must not make later writes go to the old one.
    // After one write the file is checked with fstat before the next; after three it is mapped
    // and watched, and updated with no check unless inotify reported a change.
    for writes_before in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let mut backend = backend_at(dir.path(), now);
        let series = key("h", "s", "m");
        let early: Vec<(i64, f64)> = (0..writes_before)
            .map(|i| (now - 600 + 60 * i, 1.0 + i as f64))
            .collect();
        for &point in &early {
            backend.write(&[batch(&series, &[point])]).unwrap();
        }
        let path = backend.series_path(&series).unwrap();

        let replacement = dir.path().join("replacement.wsp");
        std::fs::copy(&path, &replacement).unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        let report = backend
            .write(&[batch(&series, &[(now - 60, 9.0)])])
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);

        let mut expected: Vec<f64> = early.iter().map(|&(_, value)| value).collect();
        expected.push(9.0);
        assert_eq!(
            stored_values(dir.path(), &series, now),
            expected,
            "after {writes_before} writes: every point is in the file at the path"
        );
    }
}

/// The values stored for `series` over the last 15 minutes, read by a new backend.
fn stored_values(dir: &Path, series: &SeriesKey, now: i64) -> Vec<f64> {
    let query = RangeQuery {
        start: now - 900,
        end: now,
        step: None,
        consolidation: Consolidation::Average,
    };
    let mut fresh = backend_at(dir, now);
    let range = fresh.read(series, &query).unwrap();
    range.values.iter().flatten().copied().collect()
}

#[test]
fn changes_to_a_mapped_file_by_other_programs_are_noticed() {
    // A file the backend has mapped and watches, changed in place by another program: its
    // header rewritten (as whisper-set-aggregation-method does), then the file truncated (as
    // `cp` over it does). Each must be seen at the next write, not written over blindly.
    let dir = tempfile::tempdir().unwrap();
    let now = 1_800_000_000;
    let mut backend = backend_at(dir.path(), now);
    let series = key("h", "s", "m");
    for i in 0..3 {
        backend
            .write(&[batch(&series, &[(now - 900 + 60 * i, 1.0)])])
            .unwrap();
    }
    let path = backend.series_path(&series).unwrap();

    // Aggregation average (1) -> max (4), in place: the next write propagates with max.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &4u32.to_be_bytes(), 0).unwrap();
    for (i, value) in [(3, 1.0), (4, 7.0)] {
        backend
            .write(&[batch(&series, &[(now - 900 + 60 * i, value)])])
            .unwrap();
    }
    let info = whisper_tool_json(
        "whisper-info",
        &["--json".into(), path.display().to_string()],
    );
    assert_eq!(info["aggregationMethod"], "max", "{info}");
    let five_minutes = WhisperFile::open_read_only(&path)
        .unwrap()
        .fetch_archive(now - 1200, now, now, Some(300))
        .unwrap()
        .unwrap();
    assert!(
        five_minutes.values.contains(&Some(7.0)),
        "propagated with the new method (max of 1 and 7): {:?}",
        five_minutes.values
    );

    // Truncated to its header: the next write sets it aside and starts a new file.
    file.set_len(40).unwrap();
    let report = backend
        .write(&[batch(&series, &[(now - 60, 2.0)])])
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    assert_eq!(std::fs::metadata(&aside).unwrap().len(), 40, "set aside");
    assert_eq!(stored_values(dir.path(), &series, now), [2.0]);
}

/// `read_unwritten` answers what a read of the series' file answers once the file exists with
/// no point in it yet: for every range shape (archive picked by age, an asked step, a range
/// cut by now or by the retention, one outside both).
#[test]
fn an_unwritten_series_reads_as_its_empty_file_will() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_800_000_030;
    let mut config = WhisperConfig::new(dir.path());
    config.archives = parse_retentions("60s:1d,1h:7d").unwrap();
    let mut backend = WhisperBackend::new(config).unwrap().with_clock(move || now);
    let series = key("h", "s", "m");
    let ranges = [
        (now - 3600, now, None),
        (now - 3 * 86_400, now - 86_400, None),
        (now - 600, now + 600, None),
        (now - 7200, now, Some(3600)),
        (now - 7200, now, Some(60)),
        (now - 7200, now - 7200, None),
        (now - 30 * 86_400, now - 20 * 86_400, None),
        (now + 60, now + 120, None),
    ];
    let predicted: Vec<_> = ranges
        .iter()
        .map(|&(start, end, step)| {
            let range = RangeQuery {
                start,
                end,
                step,
                consolidation: Consolidation::Average,
            };
            assert!(matches!(
                backend.read(&series, &range),
                Err(BackendError::NotFound(_))
            ));
            backend
                .read_unwritten(&series, &range, now)
                .expect("whisper can say")
        })
        .collect();
    // The file, created by a write of a point older than the longest retention (dropped).
    backend
        .write(&[batch(&series, &[(now - 30 * 86_400, 1.0)])])
        .unwrap();
    for ((start, end, step), predicted) in ranges.into_iter().zip(predicted) {
        let range = RangeQuery {
            start,
            end,
            step,
            consolidation: Consolidation::Average,
        };
        let read = backend.read(&series, &range).unwrap();
        assert!(read.values.iter().all(Option::is_none), "{read:?}");
        assert_eq!(predicted, read, "{start} {end} {step:?}");
    }
}
