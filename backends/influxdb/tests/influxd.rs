//! The backend against a real InfluxDB 1.x (`influxd`, Debian package `influxdb`): v1 writes,
//! InfluxQL reads, awkward labels, refusals surfaced, batching and gzip.

mod common;

use common::{awkward_batches, series, Influxd, AWKWARD_LABELS, T0};
use perfpipe_backend::{
    Backend, BackendError, Consolidation, RangeQuery, SeriesKey, ThresholdRange,
};
use perfpipe_influxdb::{map_tag_value, InfluxBackend, InfluxConfig, TagEscaping};

fn backend(server: &Influxd, db: &str) -> InfluxBackend {
    server.create_db(db);
    InfluxBackend::new(InfluxConfig::v1(&server.url, db)).expect("valid config")
}

/// A threshold `0:end` (alert outside), as `80` reads.
fn plain(end: f64) -> Option<ThresholdRange> {
    Some(ThresholdRange {
        start: 0.0,
        end,
        inside: false,
    })
}

fn exact(start: i64, end: i64, step: u32) -> RangeQuery {
    RangeQuery {
        start,
        end,
        step: Some(step),
        consolidation: Consolidation::Average,
    }
}

#[test]
fn awkward_labels_are_written_and_read_back_exactly() {
    let server = Influxd::start();
    let mut backend = backend(&server, "awkward");
    let batches = awkward_batches(0.25);
    let report = backend.write(&batches).expect("write");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written, 3 * AWKWARD_LABELS.len() as u64);

    for (i, label) in AWKWARD_LABELS.iter().enumerate() {
        let value = i as f64 + 0.25;
        let key = SeriesKey {
            host: "win 1,a=b".into(),
            service: "Disk C:\\".into(),
            metric: (*label).into(),
        };
        let range = backend.read(&key, &exact(T0, T0 + 120, 60)).expect("read");
        assert_eq!(range.start, T0);
        assert_eq!(range.values, vec![Some(value), Some(-value)], "{label:?}");
        let key = SeriesKey {
            host: (*label).into(),
            service: (*label).into(),
            metric: "m".into(),
        };
        let range = backend.read(&key, &exact(T0, T0 + 60, 60)).expect("read");
        assert_eq!(
            range.values,
            vec![Some(value)],
            "{label:?} as host and service"
        );
    }

    // What InfluxDB holds is the label itself, or the label with `~` where it ends in `\` or `~`.
    let mut expected: Vec<String> = AWKWARD_LABELS
        .iter()
        .map(|label| map_tag_value(label, TagEscaping::InfluxDb).into_owned())
        .collect();
    expected.push("m".into());
    expected.sort();
    assert_eq!(server.tag_values("awkward", "performanceLabel"), expected);
    assert!(server
        .tag_values("awkward", "performanceLabel")
        .contains(&"C:\\ Used Space".to_owned()));
    assert!(server
        .tag_values("awkward", "performanceLabel")
        .contains(&"C:\\~".to_owned()));
    // nagflux's schema: unit only where the unit is not empty; value is a float field.
    assert_eq!(
        server.tag_values("awkward", "unit"),
        vec!["%".to_owned(), "B".to_owned()]
    );
    let fields = server.query("awkward", "SHOW FIELD KEYS FROM \"metrics\"");
    assert_eq!(
        fields["results"][0]["series"][0]["values"],
        serde_json::json!([["value", "float"]])
    );
}

#[test]
fn values_keep_every_bit_and_reads_fill_gaps_with_none() {
    let server = Influxd::start();
    let mut backend = backend(&server, "values");
    let values = [
        1.0,
        -0.0,
        0.1,
        1e300,
        -1.5e-7,
        5e-324,
        123456789.0,
        f64::MAX,
    ];
    let points: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (T0 + 60 * i as i64, v))
        .collect();
    let report = backend
        .write(&[series("h", "s", "v", "", &points)])
        .expect("write");
    assert_eq!(report.written, values.len() as u64);
    assert!(report.failed.is_empty());
    let key = SeriesKey {
        host: "h".into(),
        service: "s".into(),
        metric: "v".into(),
    };
    let range = backend
        .read(&key, &exact(T0, T0 + 60 * values.len() as i64, 60))
        .expect("read");
    let read: Vec<u64> = range
        .values
        .iter()
        .map(|v| v.expect("no gap").to_bits())
        .collect();
    let written: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    // -0.0 reads back as 0.0 through InfluxQL's JSON; compare it by value.
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(&written) {
        assert_eq!(f64::from_bits(*r), f64::from_bits(*w));
    }

    // Gaps are None; the grid is aligned to the step; step None uses the stored spacing.
    let gappy = [(T0, 1.0), (T0 + 120, 3.0), (T0 + 180, 5.0)];
    backend
        .write(&[series("h", "s", "gappy", "", &gappy)])
        .expect("write");
    let key = SeriesKey {
        metric: "gappy".into(),
        ..key
    };
    let range = backend.read(&key, &exact(T0, T0 + 240, 60)).expect("read");
    assert_eq!(range.start, T0);
    assert_eq!(range.step, 60);
    assert_eq!(range.values, vec![Some(1.0), None, Some(3.0), Some(5.0)]);
    // An unaligned start: the grid starts at the bucket holding it; points before it are out.
    let range = backend
        .read(&key, &exact(T0 + 30, T0 + 240, 60))
        .expect("read");
    assert_eq!(range.start, T0);
    assert_eq!(range.values, vec![None, None, Some(3.0), Some(5.0)]);
    let coarse = backend.read(&key, &exact(T0, T0 + 240, 120)).expect("read");
    assert_eq!(coarse.values, vec![Some(1.0), Some(4.0)]);
    let max = backend
        .read(
            &key,
            &RangeQuery {
                consolidation: Consolidation::Max,
                ..exact(T0, T0 + 240, 120)
            },
        )
        .expect("read");
    assert_eq!(max.values, vec![Some(1.0), Some(5.0)]);
    let finest = backend
        .read(
            &key,
            &RangeQuery {
                step: None,
                ..exact(T0, T0 + 240, 60)
            },
        )
        .expect("read");
    assert_eq!(finest.step, 60);
    assert_eq!(finest.values, vec![Some(1.0), None, Some(3.0), Some(5.0)]);

    let missing = SeriesKey {
        metric: "never written".into(),
        ..key
    };
    assert!(matches!(
        backend.read(&missing, &exact(T0, T0 + 60, 60)),
        Err(BackendError::NotFound(_))
    ));
}

#[test]
fn a_refused_series_is_reported_with_the_servers_message_and_the_others_are_written() {
    let server = Influxd::start();
    let mut backend = backend(&server, "conflict");
    // An integer `value` in a shard a month later: float points there conflict.
    let later = T0 + 30 * 86_400;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent
        .post(format!("{}/write", server.url))
        .query("db", "conflict")
        .query("precision", "s")
        .send(format!(
            "metrics,host=x,service=y,performanceLabel=z value=1i {later}\n"
        ))
        .expect("write integer");
    assert_eq!(answer.status().as_u16(), 204);

    let good = series("h", "s", "good", "", &[(T0, 1.0), (T0 + 60, 2.0)]);
    let bad = series("h", "s", "bad", "", &[(later, 1.0), (later + 60, 2.0)]);
    let broken = series("h", "s", "line\nbreak", "", &[(T0, 1.0)]);
    let report = backend
        .write(&[good.clone(), bad.clone(), broken.clone()])
        .expect("write");
    assert_eq!(report.written, 2, "only the good series' points");
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    let (key, error) = report
        .failed
        .iter()
        .find(|(key, _)| key == &bad.key)
        .expect("bad series reported");
    assert_eq!(key, &bad.key);
    let message = error.to_string();
    assert!(message.contains("field type conflict"), "{message}");
    assert!(message.contains("dropped 2 point(s)"), "{message}");
    let (_, error) = report
        .failed
        .iter()
        .find(|(key, _)| key == &broken.key)
        .expect("line break reported");
    assert!(error.to_string().contains("line break"), "{error}");

    let range = backend
        .read(&good.key, &exact(T0, T0 + 120, 60))
        .expect("read");
    assert_eq!(range.values, vec![Some(1.0), Some(2.0)]);
}

#[test]
fn a_missing_database_fails_the_call_with_the_servers_message() {
    let server = Influxd::start();
    let mut backend = InfluxBackend::new(InfluxConfig::v1(&server.url, "nope")).expect("config");
    let error = backend
        .write(&[series("h", "s", "m", "", &[(T0, 1.0)])])
        .expect_err("no such database");
    let message = error.to_string();
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("database not found"), "{message}");
}

#[test]
fn many_series_go_in_bounded_bodies_with_and_without_gzip() {
    let server = Influxd::start();
    for (db, gzip) in [("zipped", true), ("plain", false)] {
        server.create_db(db);
        let mut config = InfluxConfig::v1(&server.url, db);
        config.gzip = gzip;
        // About three lines per body: 40 series of 10 points become well over a hundred bodies,
        // and each series is cut between its lines.
        config.batch_bytes = 250;
        let mut backend = InfluxBackend::new(config).expect("config");
        let batches: Vec<_> = (0..40)
            .map(|n| {
                let points: Vec<(i64, f64)> = (0..10)
                    .map(|i| (T0 + 60 * i, f64::from(n * 100) + i as f64))
                    .collect();
                series("host", "svc", &format!("metric {n}"), "ms", &points)
            })
            .collect();
        let report = backend.write(&batches).expect("write");
        assert_eq!(report.written, 400);
        assert!(report.failed.is_empty());
        let count = server.query(db, "SELECT count(\"value\") FROM \"metrics\"");
        assert_eq!(
            count["results"][0]["series"][0]["values"][0][1], 400,
            "{count}"
        );
        let range = backend
            .read(&batches[7].key, &exact(T0, T0 + 600, 60))
            .expect("read");
        let expected: Vec<Option<f64>> = (0..10).map(|i| Some(700.0 + f64::from(i))).collect();
        assert_eq!(range.values, expected);
    }
}

/// nagflux's fields beside the value: plain thresholds as `warn`/`crit`, ranges as
/// `-min`/`-max`, bounds as `min`/`max`, each point with the levels in force at its time.
#[test]
fn thresholds_and_bounds_are_stored_beside_each_value() {
    use perfpipe_backend::Levels;
    let server = Influxd::start();
    let mut backend = backend(&server, "levels");
    let mut batch = series("db1", "Disk", "C:\\", "%", &[(T0, 10.0), (T0 + 60, 20.0)]);
    batch.levels = vec![
        (
            T0,
            Levels {
                warn: plain(80.0),
                crit: plain(90.0),
                min: Some(0.0),
                max: Some(100.0),
            },
        ),
        (
            T0 + 60,
            Levels {
                warn: Some(ThresholdRange {
                    start: 5.0,
                    end: 85.0,
                    inside: false,
                }),
                crit: plain(95.0),
                min: Some(0.0),
                max: None,
            },
        ),
    ];
    let report = backend.write(&[batch]).expect("write");
    assert_eq!(report.written, 2, "{:?}", report.failed);
    let answer = server.query(
        "levels",
        "SELECT \"value\",\"warn\",\"warn-min\",\"warn-max\",\"crit\",\"min\",\"max\" FROM \"metrics\"",
    );
    // InfluxQL's JSON writes integral floats without a fraction: compare as numbers.
    let rows: Vec<Vec<Option<f64>>> = answer["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {answer}"))
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64()).collect())
        .collect();
    let t0 = T0 as f64;
    assert_eq!(
        rows,
        [
            [
                Some(t0),
                Some(10.0),
                Some(80.0),
                None,
                None,
                Some(90.0),
                Some(0.0),
                Some(100.0)
            ],
            [
                Some(t0 + 60.0),
                Some(20.0),
                None,
                Some(5.0),
                Some(85.0),
                Some(95.0),
                Some(0.0),
                None
            ],
        ],
        "{answer}"
    );
}

/// Why the trailing-backslash mapping exists: InfluxDB 1.x refuses a tag value ending in a
/// backslash however it is escaped, and the whole body with it.
#[test]
fn influxd_refuses_every_spelling_of_a_trailing_backslash() {
    let server = Influxd::start();
    server.create_db("raw");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for spelling in [r"C:\", r"C:\\", r"C:\\\\"] {
        for after in [",unit=B value=1.0", " value=1.0"] {
            let body = format!(
                "metrics,host=h,service=s,performanceLabel=ok value=1.0 {T0}\n\
                 metrics,host=h,service=s,performanceLabel={spelling}{after} {T0}\n"
            );
            let mut answer = agent
                .post(format!("{}/write", server.url))
                .query("db", "raw")
                .query("precision", "s")
                .send(&body)
                .expect("write");
            let status = answer.status().as_u16();
            let text = answer.body_mut().read_to_string().expect("answer");
            assert_eq!(status, 400, "{body}");
            assert!(text.contains("invalid tag format"), "{text}");
        }
    }
}

/// A rename rewrites every point of the old series under the new tags, every field and the
/// unit with it, in pages (25,000 points: three pages of reads), replaces the new series'
/// values at the same times and keeps its others, then drops the old series.
#[test]
fn a_rename_moves_every_point_and_field_and_drops_the_old_series() {
    use perfpipe_backend::{Levels, SeriesRename};
    let server = Influxd::start();
    let mut backend = backend(&server, "rename");
    let old_points: Vec<(i64, f64)> = (0..25_000).map(|i| (T0 + 10 * i, i as f64 + 0.5)).collect();
    let mut old = series("old 1,a=b", "Disk C:\\", "used", "%", &old_points);
    old.levels = vec![(
        T0,
        Levels {
            warn: plain(80.0),
            crit: plain(90.0),
            min: Some(0.0),
            max: Some(100.0),
        },
    )];
    // The new name already has 10 points at times of the old one and 10 after its last.
    let mut new_points: Vec<(i64, f64)> = (0..10).map(|i| (T0 + 10 * i, -1.0)).collect();
    new_points.extend((0..10).map(|i| (T0 + 10 * (25_000 + i), 7.0)));
    let new = series("new\\", "Disk C:\\", "used", "%", &new_points);
    let (from, to) = (old.key.clone(), new.key.clone());
    let report = backend.write(&[old, new]).expect("write");
    assert_eq!(report.written, 25_020, "{:?}", report.failed);

    let renamed = backend.rename_series(&from, &to).expect("rename");
    assert_eq!(renamed, SeriesRename::Moved { points: 25_000 });

    // Counted and summed by InfluxDB under the new name's stored tag ("new\" is kept as "new\~").
    let stored_new = map_tag_value("new\\", TagEscaping::InfluxDb).into_owned();
    let answer = server.query(
        "rename",
        &format!(
            "SELECT count(\"value\"), sum(\"value\"), count(\"warn\"), sum(\"crit\"), \
             count(\"max\") FROM \"metrics\" WHERE \"host\" = '{}' GROUP BY \"unit\"",
            stored_new.replace('\\', "\\\\")
        ),
    );
    let series = &answer["results"][0]["series"];
    assert_eq!(series.as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(series[0]["tags"]["unit"], "%", "{answer}");
    let row: Vec<f64> = series[0]["values"][0]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|v| v.as_f64().unwrap())
        .collect();
    let old_sum: f64 = old_points.iter().map(|&(_, v)| v).sum();
    assert_eq!(
        row,
        vec![
            25_010.0,
            old_sum + 70.0,
            25_000.0,
            25_000.0 * 90.0,
            25_000.0
        ],
        "{answer}"
    );
    // Read back through the backend: the old name's values won at the shared times.
    let range = backend.read(&to, &exact(T0, T0 + 30, 10)).expect("read");
    assert_eq!(range.values, vec![Some(0.5), Some(1.5), Some(2.5)]);
    let end = T0 + 10 * 25_000;
    let range = backend
        .read(&to, &exact(end - 10, end + 20, 10))
        .expect("read");
    assert_eq!(range.values, vec![Some(24_999.5), Some(7.0), Some(7.0)]);
    // The old series is gone.
    assert!(matches!(
        backend.read(&from, &exact(T0, T0 + 60, 10)),
        Err(BackendError::NotFound(_))
    ));
    assert!(!server
        .tag_values("rename", "host")
        .contains(&"old 1,a=b".to_owned()));
}
