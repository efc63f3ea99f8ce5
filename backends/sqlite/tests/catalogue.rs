//! The catalogue on a real SQLite file: upserts keep first/last seen and last value right
//! across flushes, listing and search find what was recorded, deletes mark and writes revive,
//! and a second connection (another process's view) reads it while WAL is on; thresholds follow
//! the newest point, and a version-1 database gains them when opened.

use std::borrow::Cow;

use perfpipe_backend::{DataSourceType, SeriesKey, ThresholdRange};
use perfpipe_sqlite::{format_range, parse_range, Catalogue, CatalogueError, SeriesUpdate};

fn key(host: &str, service: &str, metric: &str) -> SeriesKey {
    SeriesKey {
        host: host.into(),
        service: service.into(),
        metric: metric.into(),
    }
}

fn update(key: SeriesKey, first: i64, last: i64, value: f64) -> SeriesUpdate<'static> {
    SeriesUpdate {
        key: Cow::Owned(key),
        uom: "ms".into(),
        ds_type: DataSourceType::Gauge,
        first_seen: first,
        last_seen: last,
        last_value: value,
        warn: None,
        crit: None,
        may_lag: 0,
    }
}

fn range(start: f64, end: f64, inside: bool) -> ThresholdRange {
    ThresholdRange { start, end, inside }
}

/// A catalogue path in a temporary directory, removed when the returned guard is dropped.
fn temp_db(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("perfpipe-catalogue-{name}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("catalogue.sqlite");
    (dir, path)
}

#[test]
fn upserts_move_first_back_and_last_forward() {
    let (_dir, path) = temp_db("upsert");
    let mut catalogue = Catalogue::open(&path).unwrap();
    assert_eq!(catalogue.journal_mode().unwrap(), "wal");
    let rta = key("web-01", "PING", "rta");

    catalogue
        .record(&[update(rta.clone(), 1000, 1300, 0.5)])
        .unwrap();
    // A late flush: older points only. first_seen moves back; last stays.
    catalogue
        .record(&[update(rta.clone(), 700, 900, 9.0)])
        .unwrap();
    // A newer flush with a new unit and type.
    let mut newer = update(rta.clone(), 1400, 1600, 0.7);
    newer.uom = "s".into();
    newer.ds_type = DataSourceType::Counter;
    catalogue.record(&[newer]).unwrap();

    let info = catalogue.series(&rta).unwrap().unwrap();
    assert_eq!((info.first_seen, info.last_seen), (700, 1600));
    assert_eq!(info.last_value, Some(0.7));
    assert_eq!(info.uom, "s");
    assert_eq!(info.ds_type, DataSourceType::Counter);

    // Another connection sees the same rows.
    let other = Catalogue::open(&path).unwrap();
    assert_eq!(other.series(&rta).unwrap(), Some(info));
}

/// A connection records a series new to it by inserting its row, and when the row is there
/// already (made by another connection or an earlier process, or deleted since) by updating
/// it: never a second row, and its id is remembered for the next flush either way.
#[test]
fn a_series_made_by_another_connection_is_updated_and_revived_not_doubled() {
    let (_dir, path) = temp_db("made-elsewhere");
    let mut earlier = Catalogue::open(&path).unwrap();
    let (rta, loss) = (key("web-01", "PING", "rta"), key("web-01", "PING", "pl"));
    earlier
        .record(&[
            update(rta.clone(), 1000, 1300, 0.5),
            update(loss.clone(), 1000, 1300, 0.0),
        ])
        .unwrap();
    assert!(earlier.delete_series(&loss, 1350).unwrap());

    let mut later = Catalogue::open(&path).unwrap();
    let fresh = key("web-02", "PING", "rta");
    later
        .record(&[
            update(rta.clone(), 700, 900, 9.0),
            update(fresh.clone(), 1400, 1400, 3.0),
            update(loss.clone(), 1400, 1400, 10.0),
        ])
        .unwrap();
    later
        .record(&[update(rta.clone(), 1400, 1600, 0.7)])
        .unwrap();

    let all = earlier.all().unwrap();
    let seen: Vec<(String, i64, i64, Option<f64>)> = all
        .iter()
        .map(|info| {
            (
                info.key.to_string(),
                info.first_seen,
                info.last_seen,
                info.last_value,
            )
        })
        .collect();
    assert_eq!(all.len(), 3, "one row per series: {seen:?}");
    let info = |key: &SeriesKey| {
        let info = earlier.series(key).unwrap().unwrap();
        (info.first_seen, info.last_seen, info.last_value)
    };
    assert_eq!(info(&rta), (700, 1600, Some(0.7)));
    assert_eq!(info(&fresh), (1400, 1400, Some(3.0)));
    assert_eq!(info(&loss), (1000, 1400, Some(10.0)), "revived");
}

#[test]
fn listing_search_and_delete() {
    let (_dir, path) = temp_db("listing");
    let mut catalogue = Catalogue::open(&path).unwrap();
    catalogue
        .record(&[
            update(key("web-01", "PING", "rta"), 1, 10, 1.0),
            update(key("web-01", "PING", "pl"), 1, 10, 0.0),
            update(key("web-01", "Disk: /var", "/var"), 1, 20, 5.0),
            update(key("web-02", "PING", "rta"), 1, 30, 2.0),
            update(key("db-01", "Load", "load1"), 1, 40, 0.3),
            update(key("C:\\ host", "Disk", "C:\\ Used Space"), 1, 50, 13.5),
        ])
        .unwrap();

    let hosts: Vec<(String, u64, i64)> = catalogue
        .hosts("")
        .unwrap()
        .into_iter()
        .map(|h| (h.host, h.series, h.last_seen))
        .collect();
    assert_eq!(
        hosts,
        [
            ("C:\\ host".to_string(), 1, 50),
            ("db-01".to_string(), 1, 40),
            ("web-01".to_string(), 3, 20),
            ("web-02".to_string(), 1, 30),
        ]
    );
    let web: Vec<String> = catalogue
        .hosts("web-")
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(web, ["web-01", "web-02"]);
    assert!(catalogue.hosts("zzz").unwrap().is_empty());

    assert_eq!(
        catalogue.services("web-01").unwrap(),
        ["Disk: /var", "PING"]
    );
    let metrics: Vec<String> = catalogue
        .metrics("web-01")
        .unwrap()
        .into_iter()
        .map(|s| format!("{}/{}", s.key.service, s.key.metric))
        .collect();
    assert_eq!(metrics, ["Disk: /var//var", "PING/pl", "PING/rta"]);

    let found: Vec<String> = catalogue
        .search("rta", 10)
        .unwrap()
        .into_iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(found, ["web-01::PING::rta", "web-02::PING::rta"]);
    assert_eq!(catalogue.search("Used", 10).unwrap().len(), 1);
    assert_eq!(
        catalogue.search("%", 10).unwrap().len(),
        0,
        "no LIKE wildcards"
    );
    assert_eq!(catalogue.search("", 2).unwrap().len(), 2, "limit holds");

    assert!(catalogue
        .delete_series(&key("web-01", "PING", "pl"), 99)
        .unwrap());
    assert!(!catalogue
        .delete_series(&key("web-01", "PING", "pl"), 99)
        .unwrap());
    assert_eq!(catalogue.metrics("web-01").unwrap().len(), 2);
    assert_eq!(catalogue.delete_host("web-02", 99).unwrap(), 1);
    let hosts: Vec<String> = catalogue
        .hosts("")
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(hosts, ["C:\\ host", "db-01", "web-01"]);

    // Writing a deleted series again brings it back.
    catalogue
        .record(&[update(key("web-02", "PING", "rta"), 40, 60, 3.0)])
        .unwrap();
    let revived = catalogue
        .series(&key("web-02", "PING", "rta"))
        .unwrap()
        .unwrap();
    assert_eq!((revived.first_seen, revived.last_seen), (1, 60));
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = temp_db("newer");
    drop(Catalogue::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    match Catalogue::open(&path) {
        Err(error @ CatalogueError::NewerSchema { found: 99, .. }) => {
            assert!(error.to_string().contains("catalogue.sqlite"), "{error}")
        }
        other => panic!("expected NewerSchema, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn thresholds_are_those_of_the_newest_point() {
    let (_dir, path) = temp_db("thresholds");
    let mut catalogue = Catalogue::open(&path).unwrap();
    let series = key("web", "PING", "rta");
    let mut newer = update(series.clone(), 100, 200, 1.0);
    newer.warn = Some(range(0.0, 100.0, false));
    newer.crit = Some(range(f64::NEG_INFINITY, 500.5, true));
    catalogue.record(&[newer]).unwrap();
    // An older flush (a late point) does not replace them; a newer one without any clears them.
    let mut older = update(series.clone(), 50, 60, 2.0);
    older.warn = Some(range(0.0, 1.0, false));
    catalogue.record(&[older]).unwrap();
    let info = catalogue.series(&series).unwrap().unwrap();
    assert_eq!(info.warn, Some(range(0.0, 100.0, false)));
    assert_eq!(info.crit, Some(range(f64::NEG_INFINITY, 500.5, true)));
    catalogue
        .record(&[update(series.clone(), 300, 300, 3.0)])
        .unwrap();
    let info = catalogue.series(&series).unwrap().unwrap();
    assert_eq!((info.warn, info.crit), (None, None));
}

#[test]
fn thresholds_round_trip_as_nagios_text() {
    for (threshold, text) in [
        (range(0.0, 10.0, false), "0:10"),
        (range(f64::NEG_INFINITY, 5.0, false), "~:5"),
        (range(20.0, f64::INFINITY, false), "20:"),
        (range(10.0, 20.5, true), "@10:20.5"),
        (range(-0.125, 1e6, false), "-0.125:1000000"),
    ] {
        assert_eq!(format_range(&threshold), text);
        assert_eq!(parse_range(text), Some(threshold));
    }
    // Any finite bound comes back exactly.
    let extreme = range(-1e-300, 3e300, false);
    assert_eq!(parse_range(&format_range(&extreme)), Some(extreme));
    for bad in ["", "5", "a:b", "1:NaN", "@", "1:inf"] {
        assert_eq!(parse_range(bad), None, "{bad:?}");
    }
}

#[test]
fn a_version_1_database_gains_the_thresholds_and_loses_the_unused_index() {
    let (_dir, path) = temp_db("migrate");
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE series (
                id INTEGER PRIMARY KEY, host TEXT NOT NULL, service TEXT NOT NULL,
                metric TEXT NOT NULL, uom TEXT NOT NULL,
                ds_type TEXT NOT NULL CHECK (ds_type IN ('GAUGE', 'COUNTER')),
                first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_value REAL,
                deleted_at INTEGER, UNIQUE (host, service, metric));
             CREATE INDEX series_by_metric ON series (metric);
             INSERT INTO series (host, service, metric, uom, ds_type, first_seen, last_seen,
                                 last_value) VALUES ('web', 'PING', 'rta', 'ms', 'GAUGE', 1, 2, 0.5);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut catalogue = Catalogue::open(&path).unwrap();
    let series = key("web", "PING", "rta");
    let old = catalogue.series(&series).unwrap().unwrap();
    assert_eq!((old.last_value, old.warn), (Some(0.5), None));
    let mut newer = update(series.clone(), 3, 4, 1.0);
    newer.warn = Some(range(0.0, 7.0, false));
    catalogue.record(&[newer]).unwrap();
    assert_eq!(
        catalogue.series(&series).unwrap().unwrap().warn,
        Some(range(0.0, 7.0, false))
    );
    drop(catalogue);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let indexes: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'series'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        ["sqlite_autoindex_series_1"],
        "the names' index kept, the unused one on the metric dropped"
    );
}

/// A connection remembers the row id of each series it records; rows renamed away by another
/// connection, and their ids taken by other series, must not receive its later updates.
#[test]
fn rows_renamed_elsewhere_and_reused_ids_are_not_updated_by_a_remembered_id() {
    let (_dir, path) = temp_db("row-ids");
    let mut shard = Catalogue::open(&path).unwrap();
    let mut admin = Catalogue::open(&path).unwrap();
    let (old, renamed) = (key("old", "http", "time"), key("new", "http", "time"));
    shard
        .record(&[update(renamed.clone(), 50, 50, 0.5)])
        .unwrap(); // row 1
    shard.record(&[update(old.clone(), 100, 100, 1.0)]).unwrap(); // row 2
                                                                  // Merged into the existing name by the other connection: row 2, the highest, goes, and
                                                                  // the next series made takes its id.
    assert!(admin.rename_series(&old, &renamed).unwrap());
    let other = key("other", "disk", "used");
    admin
        .record(&[update(other.clone(), 150, 150, 7.0)])
        .unwrap();

    let info = |catalogue: &Catalogue, key: &SeriesKey| {
        let info = catalogue.series(key).unwrap().unwrap();
        (info.first_seen, info.last_seen, info.last_value)
    };
    shard.record(&[update(old.clone(), 200, 200, 2.0)]).unwrap();
    assert_eq!(info(&admin, &other), (150, 150, Some(7.0)), "not clobbered");
    assert_eq!(
        info(&admin, &old),
        (200, 200, Some(2.0)),
        "the old name starts afresh"
    );
    assert_eq!(info(&admin, &renamed), (50, 100, Some(1.0)));
    shard.record(&[update(old.clone(), 300, 300, 3.0)]).unwrap();
    shard
        .record(&[update(renamed.clone(), 400, 400, 4.0)])
        .unwrap();
    assert_eq!(info(&admin, &old), (200, 300, Some(3.0)));
    assert_eq!(info(&admin, &renamed), (50, 400, Some(4.0)));
    assert_eq!(info(&admin, &other), (150, 150, Some(7.0)));
}

#[test]
fn a_row_allowed_to_lag_is_written_once_its_series_is_that_far_ahead_or_after_a_deletion() {
    let (_dir, path) = temp_db("lag");
    let mut writer = Catalogue::open(&path).unwrap();
    let mut admin = Catalogue::open(&path).unwrap();
    let hourly = key("web-01", "PING/H/avg", "rta");
    let lagging = |last: i64, value: f64| SeriesUpdate {
        may_lag: 6 * 3_600,
        ..update(hourly.clone(), last, last, value)
    };
    let last_seen = |catalogue: &Catalogue| {
        let info = catalogue.series(&hourly).unwrap().unwrap();
        (info.last_seen, info.last_value)
    };

    // A new row is written whatever the lag allowed.
    writer.record(&[lagging(3_600, 1.0)]).unwrap();
    assert_eq!(last_seen(&admin), (3_600, Some(1.0)));
    // Within six hours of what was written: not written, the row trails.
    for hour in 2..7 {
        writer
            .record(&[lagging(hour * 3_600, hour as f64)])
            .unwrap();
    }
    assert_eq!(last_seen(&admin), (3_600, Some(1.0)));
    // Six hours past it: written, and the next six hours trail that one.
    writer.record(&[lagging(7 * 3_600, 7.0)]).unwrap();
    assert_eq!(last_seen(&admin), (7 * 3_600, Some(7.0)));
    writer.record(&[lagging(8 * 3_600, 8.0)]).unwrap();
    assert_eq!(last_seen(&admin), (7 * 3_600, Some(7.0)));
    // An update allowed no lag is written at once, beside a lagging one.
    let raw = key("web-01", "PING", "rta");
    writer
        .record(&[
            update(raw.clone(), 8 * 3_600, 8 * 3_600, 0.5),
            lagging(9 * 3_600, 9.0),
        ])
        .unwrap();
    assert_eq!(admin.series(&raw).unwrap().unwrap().last_seen, 8 * 3_600);
    assert_eq!(last_seen(&admin), (7 * 3_600, Some(7.0)));

    // Deleted by another connection: the writer still trails it, until told to write again.
    assert!(admin.delete_series(&hourly, 99).unwrap());
    writer.record(&[lagging(10 * 3_600, 10.0)]).unwrap();
    assert_eq!(admin.series(&hourly).unwrap(), None);
    writer.write_lagging_rows_again();
    writer.record(&[lagging(11 * 3_600, 11.0)]).unwrap();
    assert_eq!(last_seen(&admin), (11 * 3_600, Some(11.0)));
}
