//! Hour aggregates written by a node as series of their own (`service/H/avg` …, kept in the
//! aggregate store), checked against the raw points summed here, read back through
//! `/api/v1/query` and the catalogue.

mod common;

use std::time::{Duration, Instant};

use common::{config, now, temp_dir, Node};

fn value_at(t: i64) -> f64 {
    ((t / 60) % 17) as f64 * 1.5 - 4.0
}

/// Whether the UTC day of `t` is Saturday or Sunday (1970-01-01 was a Thursday).
fn weekend(t: i64) -> bool {
    matches!((t.div_euclid(86_400) + 4) % 7, 0 | 6)
}

/// The value of aggregate series `hsm` stamped `period`, read through `/api/v1/query` once it
/// is written (within 20 s).
fn aggregate_at(node: &Node, hsm: &str, period: i64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = node
            .get(&format!(
                "/api/v1/query?hsm={hsm}&start={}&end={}",
                period - 60,
                period + 60
            ))
            .json();
        let series = &answer["series"][0];
        let step = series["step"].as_i64().unwrap_or(60);
        let index = (period - series["start"].as_i64().unwrap_or(period)) / step;
        if let Some(value) = series["values"][index as usize].as_f64() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{hsm} at {period} not written: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn closed_hours_are_aggregated_into_their_own_series() {
    let dir = temp_dir("rollups");
    let config = config(
        &dir,
        "[enqueuer]\nmax_batch_age = \"100ms\"\n\
         [[rollups]]\nmatch = \"web/*\"\nmethods = [\"avg\", \"max\", \"min\"]\nuseweekend = true\ntimezone = \"UTC\"\n",
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let first_hour = (now() / 3600 - 3) * 3600;
    let post = |times: Vec<i64>| {
        for chunk in times.chunks(50) {
            let lines: String = chunk
                .iter()
                .map(|t| format!("{t}||web||http||OK||time={}ms\n", value_at(*t)))
                .collect();
            let answer = node.post("/api/v1/write", "text/plain", &lines);
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    };
    // The first hour closed and written on its own, then the next two hours.
    let first_suffix = if weekend(first_hour) { "/weekend" } else { "" };
    post((first_hour..=first_hour + 3600).step_by(60).collect());
    aggregate_at(
        &node,
        &format!("web::http/H/avg{first_suffix}::time"),
        first_hour,
    );
    post((first_hour + 3660..=now()).step_by(60).collect());

    for hour in (0..3).map(|n| first_hour + n * 3600) {
        let values: Vec<f64> = (hour..hour + 3600).step_by(60).map(value_at).collect();
        let expected = [
            ("avg", values.iter().sum::<f64>() / values.len() as f64),
            ("max", values.iter().cloned().fold(f64::MIN, f64::max)),
            ("min", values.iter().cloned().fold(f64::MAX, f64::min)),
        ];
        let suffix = if weekend(hour) { "/weekend" } else { "" };
        for (method, expected) in expected {
            let hsm = format!("web::http/H/{method}{suffix}::time");
            let found = aggregate_at(&node, &hsm, hour);
            assert!(
                (found - expected).abs() < 1e-9,
                "{hsm} at {hour}: {found} != {expected}"
            );
        }
    }
    // Aggregates are rows of the aggregate store, not files: read in 15-minute slots, over
    // their rule's retention plus the period being closed (26 hours for the hour level); the
    // base series is a Whisper file of the configured archives.
    let suffix = if weekend(first_hour) { "/weekend" } else { "" };
    let encoded = suffix.replace('/', "%2F");
    let whisper = dir.join("data/whisper/web");
    assert!(!whisper.join(format!("http%2FH%2Favg{encoded}")).exists());
    assert!(whisper.join("http/time.wsp").exists());
    let store = rusqlite::Connection::open(dir.join("data/aggregates.sqlite")).unwrap();
    let rows = stored_values(&store, "web", &format!("http/H{suffix}"), "avg");
    assert!(rows >= 1, "{rows} hour values of http/H/avg{suffix} stored");
    let asked_from = now() - 30 * 3600;
    let answer = node
        .get(&format!(
            "/api/v1/query?hsm=web::http/H/avg{suffix}::time&start={asked_from}&end={}",
            now()
        ))
        .json();
    let series = &answer["series"][0];
    assert_eq!(series["step"], 900, "{answer}");
    let start = series["start"].as_i64().unwrap();
    assert!(
        start > now() - 26 * 3600 - 1800 && start <= now() - 26 * 3600 + 900,
        "the hour level keeps 26 hours, the read starts at {start}: {answer}"
    );

    let metrics = node.get("/api/v1/hosts/web/metrics").json();
    let services: Vec<&str> = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["service"].as_str().unwrap())
        .collect();
    assert!(services.contains(&"http"), "{metrics}");
    assert!(
        services.iter().any(|s| s.starts_with("http/H/avg")),
        "{metrics}"
    );
    // Aggregates carry their base series' unit, as gauges.
    for metric in metrics["metrics"].as_array().unwrap() {
        assert_eq!(metric["uom"], "ms", "{metric}");
        assert_eq!(metric["ds_type"], "GAUGE", "{metric}");
    }
    // An hour series' catalogue row is written every sixth value: it trails here, saying the
    // first hour (written at once, as the series was new) ...
    let last_hour = first_hour + 2 * 3600;
    let last_suffix = if weekend(last_hour) { "/weekend" } else { "" };
    let hourly = format!("http/H/avg{last_suffix}");
    if first_suffix == last_suffix {
        let catalogue = rusqlite::Connection::open(dir.join("data/catalogue.sqlite")).unwrap();
        let row_last_seen: i64 = catalogue
            .query_row(
                "SELECT last_seen FROM series WHERE host = 'web' AND service = ?1",
                [&hourly],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(row_last_seen, first_hour, "the row of {hourly}");
    }
    // ... but the listing says the series' newest value, the last closed hour's.
    let listed = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["service"] == hourly.as_str())
        .unwrap_or_else(|| panic!("{hourly} not listed: {metrics}"));
    let values: Vec<f64> = (last_hour..last_hour + 3600)
        .step_by(60)
        .map(value_at)
        .collect();
    let average = values.iter().sum::<f64>() / values.len() as f64;
    assert_eq!(listed["last_seen"], last_hour, "{listed}");
    assert!(
        (listed["last_value"].as_f64().unwrap() - average).abs() < 1e-9,
        "{listed} (the average is {average})"
    );
    // Nor is an hour series stale while its values are newer than the stale time, whatever
    // its row says.
    let older_than = now() - (first_hour + 3600);
    let stale = node
        .get(&format!("/api/v1/stale?older_than={older_than}s"))
        .json();
    let stale_hours: Vec<&serde_json::Value> = stale["stale"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|series| {
            ["avg", "max", "min"]
                .iter()
                .any(|method| series["service"] == format!("http/H/{method}{last_suffix}").as_str())
        })
        .collect();
    assert!(stale_hours.is_empty(), "{stale}");
}

/// Aggregates in the aggregate store follow a host's rename and a service's, and go with a
/// delete, on a running node, through the same calls as files.
#[test]
fn aggregates_follow_a_rename_and_go_with_a_delete() {
    let dir = temp_dir("rollups-rename");
    let config = config(
        &dir,
        "[enqueuer]\nmax_batch_age = \"100ms\"\n\
         [[rollups]]\nmatch = \"*\"\nmethods = [\"avg\", \"max\"]\ntimezone = \"UTC\"\nuseweekend = true\n",
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let hour = (now() / 3600 - 2) * 3600;
    let lines: String = (hour..hour + 7200)
        .step_by(300)
        .map(|t| format!("{t}||old||http||OK||time={}ms\n", value_at(t)))
        .collect();
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    let suffix = if weekend(hour) { "/weekend" } else { "" };
    let avg = format!("http/H/avg{suffix}");
    let max = format!("http/H/max{suffix}");
    let before = aggregate_at(&node, &format!("old::{avg}::time"), hour);

    let renamed = node.request("POST", "/api/v1/rename?host=old&to_host=new", None, b"");
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(
        aggregate_at(&node, &format!("new::{avg}::time"), hour),
        before
    );
    let old = node
        .get(&format!(
            "/api/v1/query?hsm=old::{avg}::time&start={}&end={}",
            hour - 60,
            hour + 60
        ))
        .json();
    assert!(
        old["series"][0]["values"]
            .as_array()
            .is_none_or(|values| values.iter().all(|v| v.is_null())),
        "the old name holds nothing: {old}"
    );

    let deleted = node.request(
        "DELETE",
        &format!("/api/v1/series?hsm=new::{max}::time"),
        None,
        b"",
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let store = rusqlite::Connection::open(dir.join("data/aggregates.sqlite")).unwrap();
    let group = format!("http/H{suffix}");
    assert_eq!(stored_values(&store, "new", &group, "max"), 0);
    assert!(
        stored_values(&store, "new", &group, "avg") >= 1,
        "the delete of one method leaves the others"
    );

    // A renamed service takes its aggregates with it.
    let renamed = node.request(
        "POST",
        "/api/v1/rename?host=new&to_host=new&service=http&to_service=https",
        None,
        b"",
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let moved = format!("https/H/avg{suffix}");
    assert_eq!(
        aggregate_at(&node, &format!("new::{moved}::time"), hour),
        before
    );
    assert_eq!(stored_values(&store, "new", &group, "avg"), 0);
    assert!(stored_values(&store, "new", &format!("https/H{suffix}"), "avg") >= 1);
}

/// How many values of `method` the aggregate store holds for `host`'s group `service` (an
/// aggregate's service without its method: `http/H`).
fn stored_values(store: &rusqlite::Connection, host: &str, service: &str, method: &str) -> i64 {
    store
        .query_row(
            &format!(
                "SELECT count(value_{method}) FROM aggregate_rows JOIN aggregate_groups \
                 ON id = grp WHERE host = ?1 AND service = ?2"
            ),
            [host, service],
            |row| row.get(0),
        )
        .unwrap()
}

/// Posts one body to `address`; the answer's status, or `None` when the node is gone.
fn try_post(address: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// `(avg, max, min)` of `values`.
fn aggregates(values: &[f64]) -> (f64, f64, f64) {
    (
        values.iter().sum::<f64>() / values.len() as f64,
        values.iter().cloned().fold(f64::MIN, f64::max),
        values.iter().cloned().fold(f64::MAX, f64::min),
    )
}

/// The config of a node in `dir` whose rollup checkpoints come every 100 ms (log segments
/// sealed every 200 ms), with avg, max and min of every series, weekends apart, and batches
/// written after `max_batch_age`.
fn checkpointing_config(dir: &std::path::Path, max_batch_age: &str) -> std::path::PathBuf {
    config(
        dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"{max_batch_age}\"\n\
             rollup_checkpoint = \"100ms\"\n\
             [wal]\nsegment_age = \"200ms\"\n[whisper]\nretentions = \"1s:6h\"\n\
             [[rollups]]\nmatch = \"*\"\nmethods = [\"avg\", \"max\", \"min\"]\n\
             useweekend = true\ntimezone = \"UTC\"\n",
            dir.join("data").display().to_string()
        ),
    )
}

#[test]
fn aggregates_survive_kill_9_at_any_moment() {
    // Rollup state lives in memory; it is saved at each write-ahead log checkpoint (here every
    // 200 ms) with the number of the last request it holds, and the log replays what came
    // after. A node killed again and again while points of one hour keep arriving must end with
    // that hour's aggregates equal to those of the points it acknowledged: none lost (state
    // gone with the process), none counted twice (replayed into a state that had them).
    let dir = temp_dir("rollups-kill");
    let config = checkpointing_config(&dir, "100ms");
    let hour = (now() / 3600 - 3) * 3600;
    let metrics = ["time", "size", "code"];
    let value = move |second: i64, metric: usize| {
        ((second * 7919 + metric as i64 * 104_729) % 1000) as f64 / 8.0
    };
    let line = move |second: i64| {
        let perfdata: Vec<String> = metrics
            .iter()
            .enumerate()
            .map(|(m, name)| format!("{name}={}", value(second, m)))
            .collect();
        format!("{}||web||http||OK||{}\n", hour + second, perfdata.join(" "))
    };
    let seed = now() as u64;
    let mut random = seed;
    let mut next_random = |below: u64| {
        random = random
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (random >> 33) % below
    };
    let mut acknowledged: Vec<i64> = Vec::new();
    let mut in_doubt: Vec<i64> = Vec::new();
    let mut second = 0i64;
    for _round in 0..8 {
        let mut node = Node::start(&["--config", config.to_str().unwrap()]);
        let address = node.address.clone();
        let first = second;
        let poster = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut second = first;
            while second < 3000 {
                match try_post(&address, &line(second)) {
                    Some(200) => acked.push(second),
                    Some(status) => panic!("write at second {second} answered {status}"),
                    None => return (acked, Some(second)),
                }
                second += 1;
            }
            (acked, None)
        });
        std::thread::sleep(Duration::from_millis(300 + next_random(1200)));
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        let (acked, cut) = poster.join().unwrap();
        second = acked.last().map_or(first, |last| last + 1);
        acknowledged.extend(acked);
        if let Some(cut) = cut {
            in_doubt.push(cut);
            second = second.max(cut + 1);
        }
    }
    assert!(
        acknowledged.len() > 50,
        "only {} writes acknowledged",
        acknowledged.len()
    );

    // A point of the next hour closes this one.
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let answer = node.post("/api/v1/write", "text/plain", &line(3600));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let suffix = if weekend(hour) { "/weekend" } else { "" };
    for (m, metric) in metrics.iter().enumerate() {
        let found: Vec<f64> = ["avg", "max", "min"]
            .iter()
            .map(|method| {
                aggregate_at(
                    &node,
                    &format!("web::http/H/{method}{suffix}::{metric}"),
                    hour,
                )
            })
            .collect();
        // Every acknowledged point is in the raw series...
        let raw = common::whisper_fetch(
            &dir.join(format!("data/whisper/web/http/{metric}.wsp")),
            hour - 1,
            hour + 3599,
        );
        for second in &acknowledged {
            assert_eq!(
                raw[*second as usize],
                (hour + second, Some(value(*second, m))),
                "{metric}: acknowledged point at second {second} (seed {seed})"
            );
        }
        // ...and the aggregates are those of the acknowledged points and of some of the writes
        // cut by a kill (each may or may not have been logged).
        let matches = (0..1u32 << in_doubt.len()).any(|chosen| {
            let mut values: Vec<f64> = acknowledged.iter().map(|s| value(*s, m)).collect();
            for (i, second) in in_doubt.iter().enumerate() {
                if chosen & (1 << i) != 0 {
                    values.push(value(*second, m));
                }
            }
            let (avg, max, min) = aggregates(&values);
            (found[0] - avg).abs() < 1e-9 && found[1] == max && found[2] == min
        });
        let (avg, max, min) = aggregates(
            &acknowledged
                .iter()
                .map(|s| value(*s, m))
                .collect::<Vec<_>>(),
        );
        assert!(
            matches,
            "{metric}: aggregates {found:?}, of the {} acknowledged points {:?} \
             (and {} writes in doubt); seed {seed}",
            acknowledged.len(),
            (avg, max, min),
            in_doubt.len()
        );
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replayed_points_a_saved_rollup_state_holds_are_not_counted_twice() {
    // A crash between saving the rollup state and deleting the log segments it covers leaves
    // segments whose points the state already holds. Made deterministic here: the log of a
    // killed node is copied aside, a second run replays it (aggregating it), takes more points
    // and stops cleanly (state saved, log deleted); then the copy is put back, as if the
    // deletion had never happened. The third run must write those points but not aggregate
    // them again.
    let dir = temp_dir("rollups-replay");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n\
             [wal]\nsegment_age = \"1h\"\n[whisper]\nretentions = \"1s:6h\"\n\
             [[rollups]]\nmatch = \"*\"\nmethods = [\"avg\"]\nuseweekend = true\ntimezone = \"UTC\"\n",
            dir.join("data").display().to_string()
        ),
    );
    let hour = (now() / 3600 - 3) * 3600;
    let value = |second: i64| (second * second % 97) as f64;
    let post = |node: &Node, seconds: std::ops::Range<i64>| {
        for second in seconds {
            let line = format!("{}||web||http||OK||time={}\n", hour + second, value(second));
            let answer = node.post("/api/v1/write", "text/plain", &line);
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    };
    let wal = dir.join("data/wal");
    let aside = dir.join("wal-aside");

    let mut first = Node::start(&["--config", config.to_str().unwrap()]);
    post(&first, 0..20);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    std::fs::create_dir_all(&aside).unwrap();
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(&wal).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, aside.join(path.file_name().unwrap())).unwrap();
        kept.push(path.file_name().unwrap().to_owned());
    }
    assert!(!kept.is_empty(), "the killed node left its log");

    let mut second = Node::start(&["--config", config.to_str().unwrap()]);
    post(&second, 20..40);
    assert_eq!(second.terminate(), Some(0));
    for name in &kept {
        assert!(!wal.join(name).exists(), "a clean stop deletes the log");
        std::fs::copy(aside.join(name), wal.join(name)).unwrap();
    }

    let third = Node::start(&["--config", config.to_str().unwrap()]);
    post(&third, 3600..3601);
    let suffix = if weekend(hour) { "/weekend" } else { "" };
    let found = aggregate_at(&third, &format!("web::http/H/avg{suffix}::time"), hour);
    let (expected, _, _) = aggregates(&(0..40).map(value).collect::<Vec<_>>());
    let (counted_twice, _, _) = aggregates(&(0..20).chain(0..40).map(value).collect::<Vec<_>>());
    assert!(
        (found - expected).abs() < 1e-9,
        "hour average {found}, of the 40 points {expected} (with the first 20 twice: \
         {counted_twice})"
    );
    drop(third);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_aggregates_queued_points_without_writing_them_and_their_flush_adds_only_the_rest() {
    // A rollup checkpoint must hold every point received, but it feeds the rollups the queued
    // points instead of writing every series' file ahead of its time. Here batches are written
    // only by a stop (`max_batch_age` an hour) while checkpoints come every 100 ms: the hour's
    // aggregates appear while its raw points are still queued, and the stop's flush feeds the
    // rollups only the points that arrived after the checkpoint (fed twice, the first ones
    // would pull the average their way).
    let dir = temp_dir("rollups-checkpoint");
    let config = checkpointing_config(&dir, "1h");
    let hour = (now() / 3600 - 3) * 3600;
    let value = |second: i64| ((second * 7) % 23) as f64 - 5.0 + second as f64 / 4.0;
    let post = |node: &Node, seconds: &[i64]| {
        let body: String = seconds
            .iter()
            .map(|second| {
                format!(
                    "{}||web||http||OK||time={}\n",
                    hour + second,
                    value(*second)
                )
            })
            .collect();
        let answer = node.post("/api/v1/write", "text/plain", &body);
        assert_eq!(answer.status, 200, "{}", answer.body);
    };
    let suffix = if weekend(hour) { "/weekend" } else { "" };
    let hsm = |method: &str| format!("web::http/H/{method}{suffix}::time");
    let raw_file = dir.join("data/whisper/web/http/time.wsp");

    let mut node = Node::start(&["--config", config.to_str().unwrap()]);
    // The first 30 seconds of the hour, then a point of the next hour, which closes it.
    post(&node, &(0..30).collect::<Vec<_>>());
    post(&node, &[3600]);
    let early: Vec<f64> = (0..30).map(value).collect();
    let (avg, max, min) = aggregates(&early);
    assert!((aggregate_at(&node, &hsm("avg"), hour) - avg).abs() < 1e-9);
    assert_eq!(aggregate_at(&node, &hsm("max"), hour), max);
    assert_eq!(aggregate_at(&node, &hsm("min"), hour), min);
    assert!(
        !raw_file.exists(),
        "the checkpoint wrote the raw points before their batch was due"
    );

    // Late points of the closed hour join the same queue; the stop writes it whole.
    post(&node, &(30..40).collect::<Vec<_>>());
    assert_eq!(node.terminate(), Some(0));
    let raw = common::whisper_fetch(&raw_file, hour - 1, hour + 3600);
    for second in (0..40).chain([3600]) {
        assert_eq!(
            raw[second as usize],
            (hour + second, Some(value(second))),
            "raw point at second {second}"
        );
    }

    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let all: Vec<f64> = (0..40).map(value).collect();
    let (avg, max, min) = aggregates(&all);
    let (twice, _, _) = aggregates(&(0..30).chain(0..40).map(value).collect::<Vec<_>>());
    let found = aggregate_at(&node, &hsm("avg"), hour);
    assert!(
        (found - avg).abs() < 1e-9,
        "hour average {found}, of the 40 points {avg} (the first 30 fed twice: {twice})"
    );
    assert_eq!(aggregate_at(&node, &hsm("max"), hour), max);
    assert_eq!(aggregate_at(&node, &hsm("min"), hour), min);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_aggregate_the_last_values_cache_does_not_keep_has_its_catalogue_row_written_each_time() {
    // The listings read an aggregate's newest value from the last-values cache, which is why
    // its catalogue row may trail; a series no `[[last_values]]` rule keeps has only its row.
    let dir = temp_dir("rollups-uncached");
    let config = config(
        &dir,
        "[enqueuer]\nmax_batch_age = \"100ms\"\n\
         [[last_values]]\nmatch = \"web/http/time\"\nmaxcount = 5\n\
         [[rollups]]\nmatch = \"*\"\nmethods = [\"avg\"]\nuseweekend = true\ntimezone = \"UTC\"\n",
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let first_hour = (now() / 3600 - 3) * 3600;
    let last_hour = first_hour + 2 * 3600;
    let post = |times: std::ops::RangeInclusive<i64>| {
        let lines: String = times
            .step_by(60)
            .map(|t| format!("{t}||web||http||OK||time={}ms\n", value_at(t)))
            .collect();
        let answer = node.post("/api/v1/write", "text/plain", &lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
    };
    let hsm = |hour: i64| {
        let suffix = if weekend(hour) { "/weekend" } else { "" };
        format!("web::http/H/avg{suffix}::time")
    };
    // The first hour closed and written alone (its series new), then the next two.
    post(first_hour..=first_hour + 3600);
    aggregate_at(&node, &hsm(first_hour), first_hour);
    post(first_hour + 3660..=last_hour + 3600);
    let average = aggregate_at(&node, &hsm(last_hour), last_hour);

    let service = hsm(last_hour).split("::").nth(1).unwrap().to_string();
    let catalogue = rusqlite::Connection::open(dir.join("data/catalogue.sqlite")).unwrap();
    let (row_last_seen, row_last_value): (i64, f64) = catalogue
        .query_row(
            "SELECT last_seen, last_value FROM series WHERE host = 'web' AND service = ?1",
            [&service],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(row_last_seen, last_hour, "the row of {service}");
    assert_eq!(row_last_value, average, "the row of {service}");
    let metrics = node.get("/api/v1/hosts/web/metrics").json();
    let listed = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["service"] == service.as_str())
        .unwrap_or_else(|| panic!("{service} not listed: {metrics}"));
    assert_eq!(listed["last_seen"], last_hour, "{listed}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
