//! One node end to end: check results posted in all three body formats, read back through
//! `/api/v1/query`, from the Whisper files with graphite's `whisper-fetch`, and from the
//! catalogue listings; errors per result with the good results kept; limits answered with
//! 413 and 415; counters in `/status` and `/metrics`; SIGTERM flushes what was acknowledged.

mod common;

use common::{config, now, temp_dir, whisper_fetch, Node};

#[test]
fn writes_in_three_formats_read_back_everywhere() {
    let dir = temp_dir("node-formats");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\nmax_body_size = \"64KB\"\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
            data.display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 3600) / 60 * 60;

    // JSON: two good results (one host check), one bad, one with a bad metric.
    let body = format!(
        r#"{{"results": [
            {{"host": "web-01", "service": "PING", "timestamp": {t}, "perfdata": "rta=0.5ms;100;500;0 pl=0%;20;60", "state": 0}},
            {{"host": "web-01", "timestamp": {t}, "perfdata": "rta=1.5ms"}},
            {{"host": "web-01", "service": "PING", "timestamp": "soon", "perfdata": "rta=9ms"}},
            {{"host": "db-02", "service": "Load", "timestamp": {t}, "perfdata": "load1=0.25 load5=x"}}
        ]}}"#
    );
    let answer = node.post("/api/v1/write", "application/json", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(
        (json["results"].as_u64(), json["points"].as_u64()),
        (Some(3), Some(4))
    );
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["result"], 2);
    assert!(
        errors[0]["message"].as_str().unwrap().contains("timestamp"),
        "{errors:?}"
    );
    assert_eq!(
        (errors[1]["result"].as_u64(), errors[1]["offset"].as_u64()),
        (Some(3), Some(11))
    );
    assert_eq!(errors[1]["message"], "value is not a number");

    // NDJSON: a second point of web-01 PING rta, a minute later.
    let ndjson = format!(
        "{{\"host\": \"web-01\", \"service\": \"PING\", \"timestamp\": {}, \"perfdata\": \"rta=0.75ms\"}}\n",
        t + 60
    );
    let answer = node.post("/api/v1/write", "application/x-ndjson", &ndjson);
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Spool lines: Opsview and Nagios.
    let spool = format!(
        "{}||web-01||PING||PING OK||rta=1.25ms\nDATATYPE::SERVICEPERFDATA\tTIMET::{}\tHOSTNAME::db-02\tSERVICEDESC::Load\tSERVICEPERFDATA::load1=0.5\n",
        t + 120,
        t + 60
    );
    let answer = node.post("/api/v1/write", "text/plain", &spool);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["points"], 2);

    node.wait_written(7);

    // Through the query API, in request order.
    let query = node.get(&format!(
        "/api/v1/query?hsm=web-01::PING::rta&hsm=db-02::Load::load1&hsm=nope::x::y&start={}&end={}",
        t - 60,
        t + 180
    ));
    assert_eq!(query.status, 200, "{}", query.body);
    let series = query.json()["series"].as_array().unwrap().clone();
    assert_eq!(series[0]["hsm"], "web-01::PING::rta");
    assert_eq!(series[0]["uom"], "ms");
    let at = |s: &serde_json::Value, time: i64| {
        let index = (time - s["start"].as_i64().unwrap()) / s["step"].as_i64().unwrap();
        s["values"][index as usize].as_f64()
    };
    assert_eq!(at(&series[0], t), Some(0.5));
    assert_eq!(at(&series[0], t + 60), Some(0.75));
    assert_eq!(at(&series[0], t + 120), Some(1.25));
    assert_eq!(series[1]["hsm"], "db-02::Load::load1");
    assert_eq!(
        (at(&series[1], t), at(&series[1], t + 60)),
        (Some(0.25), Some(0.5))
    );
    assert_eq!(series[2]["error"], "no such series");

    // From the files, by graphite's own tool.
    let file = data.join("whisper/web%2D01/PING/rta.wsp");
    let values = whisper_fetch(&file, t - 60, t + 120);
    assert!(
        values.contains(&(t, Some(0.5))) && values.contains(&(t + 120, Some(1.25))),
        "{values:?}"
    );
    let host_check = data.join("whisper/web%2D01/_HOST_/rta.wsp");
    assert!(whisper_fetch(&host_check, t - 60, t).contains(&(t, Some(1.5))));

    // The catalogue.
    assert_eq!(node.host_names(), ["db-02", "web-01"]);
    let metrics = node.get("/api/v1/hosts/web-01/metrics").json();
    let hsms: Vec<&str> = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hsm"].as_str().unwrap())
        .collect();
    assert_eq!(
        hsms,
        [
            "web-01::PING::pl",
            "web-01::PING::rta",
            "web-01::_HOST_::rta"
        ]
    );
    assert_eq!(node.get("/api/v1/hosts/nobody/metrics").status, 404);

    // Limits and bad requests.
    let big = "x".repeat(100_000);
    assert_eq!(node.post("/api/v1/write", "text/plain", &big).status, 413);
    assert_eq!(
        node.post("/api/v1/write", "application/xml", "<a/>").status,
        415
    );
    assert_eq!(
        node.post("/api/v1/write", "application/json", "[1,2]")
            .status,
        400
    );
    assert_eq!(node.get("/api/v1/query?hsm=a::b").status, 400);
    assert_eq!(
        node.get("/api/v1/query?hsm=a::b::c&start=yesterday").status,
        400
    );

    // Counters.
    let status = node.get("/status").json();
    assert_eq!(status["points"]["accepted"], 7);
    assert_eq!(status["queued_points"], 0);
    let metrics = node.get("/metrics").body;
    assert!(
        metrics.contains("perfpipe_points_written_total{backend=\"whisper\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perfpipe_points_accepted_total 7"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_flushes_every_acknowledged_point() {
    let dir = temp_dir("node-sigterm");
    let data = dir.join("data");
    // Queues that would hold points for an hour: only the shutdown flush writes them.
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"1h\"\nmax_batch_points = 100000\n",
            data.display().to_string()
        ),
    );
    let mut node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 7200) / 60 * 60;
    let mut acknowledged = 0;
    for host in 0..20 {
        let lines: String = (0..30)
            .map(|i| format!("{}||host-{host}||Load||OK||load1={i}\n", t + i * 60))
            .collect();
        let answer = node.post("/api/v1/write", "text/plain", &lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
        acknowledged += answer.json()["points"].as_u64().unwrap();
    }
    assert_eq!(acknowledged, 600);
    assert_eq!(
        node.get("/status").json()["queued_points"],
        600,
        "nothing flushed yet"
    );
    assert_eq!(node.terminate(), Some(0));

    for host in 0..20 {
        let file = data.join(format!("whisper/host%2D{host}/Load/load1.wsp"));
        let stored = whisper_fetch(&file, t - 60, t + 29 * 60)
            .into_iter()
            .filter(|(_, value)| value.is_some())
            .count();
        assert_eq!(stored, 30, "host-{host}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn queries_see_points_still_queued() {
    let dir = temp_dir("node-queued");
    // A queue is written at its 4th point, or after an hour.
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"1h\"\nmax_batch_points = 4\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 3600) / 60 * 60;
    let post = |lines: &str| {
        let answer = node.post("/api/v1/write", "text/plain", lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
    };
    post(
        &(0..4)
            .map(|i| format!("{}||web||http||OK||time={i}\n", t + i * 60))
            .collect::<String>(),
    );
    node.wait_written(4);
    // Two more (slots 4 and 5), and a duplicate of slot 5 that the flush will drop: queued.
    post(&format!(
        "{}||web||http||OK||time=40\n{}||web||http||OK||time=50\n{}||web||http||OK||time=99\n",
        t + 240,
        t + 300,
        t + 300
    ));
    assert_eq!(node.get("/status").json()["queued_points"], 3);
    let answer = node
        .get(&format!(
            "/api/v1/query?hsm=web::http::time&start={}&end={}",
            t - 60,
            t + 420
        ))
        .json();
    let series = &answer["series"][0];
    assert_eq!(series["start"], t, "{answer}");
    let values = series["values"].as_array().unwrap();
    assert_eq!(
        values[..6],
        serde_json::json!([0.0, 1.0, 2.0, 3.0, 40.0, 50.0])
            .as_array()
            .unwrap()[..],
        "the stored points, then the queued ones (the first of two at one time): {answer}"
    );
    assert!(values[6..].iter().all(|value| value.is_null()), "{answer}");
    // The Graphite API too.
    let render = node
        .get(&format!(
            "/render?target=web.http.time&from={}&until={}&format=json",
            t - 60,
            t + 360
        ))
        .json();
    let datapoints: Vec<(Option<f64>, i64)> = render[0]["datapoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{render}"))
        .iter()
        .map(|point| (point[0].as_f64(), point[1].as_i64().unwrap()))
        .collect();
    let expected: Vec<(Option<f64>, i64)> = [0.0, 1.0, 2.0, 3.0, 40.0, 50.0]
        .iter()
        .enumerate()
        .map(|(i, value)| (Some(*value), t + 60 * i as i64))
        .collect();
    assert_eq!(datapoints[..6], expected[..], "{render}");

    // A series never written yet (its only points queued) is answered with them, in the
    // layout its file will have (60 s slots), not as "no such series".
    post(&format!(
        "{}||web||new||OK||fresh=7\n{}||web||new||OK||fresh=8\n",
        t + 60,
        t + 180
    ));
    let answer = node
        .get(&format!(
            "/api/v1/query?hsm=web::new::fresh&hsm=web::none::such&start={}&end={}",
            t - 60,
            t + 420
        ))
        .json();
    let fresh = &answer["series"][0];
    assert!(fresh["error"].is_null(), "{answer}");
    assert_eq!(
        (fresh["start"].as_i64(), fresh["step"].as_i64()),
        (Some(t), Some(60)),
        "{answer}"
    );
    assert_eq!(
        fresh["values"].as_array().unwrap()[..4],
        serde_json::json!([null, 7.0, null, 8.0])
            .as_array()
            .unwrap()[..],
        "{answer}"
    );
    assert_eq!(answer["series"][1]["error"], "no such series", "{answer}");
    // Graphite lists it and renders it too.
    let found = node
        .get("/metrics/find?query=web.*.*&format=completer")
        .json();
    let mut paths: Vec<&str> = found["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("{found}"))
        .iter()
        .map(|metric| metric["path"].as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["web.http.time", "web.new.fresh"], "{found}");
    let render = node
        .get(&format!(
            "/render?target=web.new.*&from={}&until={}&format=json",
            t - 60,
            t + 360
        ))
        .json();
    assert_eq!(render[0]["target"], "web.new.fresh", "{render}");
    let points = render[0]["datapoints"].as_array().unwrap();
    assert_eq!(points[1], serde_json::json!([7.0, t + 60]), "{render}");
    assert_eq!(points[3], serde_json::json!([8.0, t + 180]), "{render}");

    // The listings have it before its first write, as the catalogue will: a host whose only
    // series is queued, with its unit, last value and thresholds.
    post(&format!(
        "{}||queued-only||disk||OK||used=5GB;80;90 free=1GB\n{}||queued-only||disk||OK||used=6GB;85;95 free=2GB\n",
        t + 60,
        t + 120
    ));
    let hosts = node.get("/api/v1/hosts").json();
    let listed: Vec<(&str, u64, i64)> = hosts["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("{hosts}"))
        .iter()
        .map(|host| {
            (
                host["host"].as_str().unwrap(),
                host["series"].as_u64().unwrap(),
                host["last_seen"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("queued-only", 2, t + 120), ("web", 2, t + 180)],
        "web::http::time written (through t + 180; its later points queued are not listed \
         until written), web::new::fresh queued: {hosts}"
    );
    let metrics = node.get("/api/v1/hosts/queued-only/metrics").json();
    let used = &metrics["metrics"][1];
    assert_eq!(metrics["metrics"][0]["metric"], "free", "{metrics}");
    assert_eq!(
        (
            used["hsm"].as_str(),
            used["uom"].as_str(),
            used["first_seen"].as_i64(),
            used["last_seen"].as_i64(),
            used["last_value"].as_f64(),
            used["warn"]["end"].as_f64(),
            used["crit"]["end"].as_f64(),
        ),
        (
            Some("queued-only::disk::used"),
            Some("GB"),
            Some(t + 60),
            Some(t + 120),
            Some(6.0),
            Some(85.0),
            Some(95.0)
        ),
        "{metrics}"
    );
    let series = node.get("/api/v1/series?host=queued-only").json();
    assert_eq!(
        series["series"].as_array().map(Vec::len),
        Some(2),
        "{series}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deletes_move_files_to_the_trash_and_the_purge_empties_it() {
    let dir = temp_dir("node-delete");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\nbackends = {}\ntrash_retention = \"2s\"\n[enqueuer]\nmax_batch_age = \"50ms\"\n",
            data.display().to_string(),
            if cfg!(feature = "rrd") { r#"["whisper", "rrd"]"# } else { r#"["whisper"]"# }
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 3600) / 60 * 60;
    let lines = format!("{t}||web-01||PING||OK||rta=1ms pl=0%\n{t}||web-02||PING||OK||rta=2ms\n");
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(3);
    let rta = data.join("whisper/web%2D01/PING/rta.wsp");
    let pl = data.join("whisper/web%2D01/PING/pl.wsp");
    assert!(rta.is_file() && pl.is_file());

    let answer = node.request("DELETE", "/api/v1/series?hsm=web-01::PING::rta", None, b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["deleted"]["series"], 1);
    assert!(!rta.exists() && pl.is_file(), "only the series' file moved");
    if cfg!(feature = "rrd") {
        assert!(
            !data.join("rrd/web%2D01/PING/rta").exists(),
            "the RRD series moved too"
        );
        assert!(data.join("rrd/web%2D01/PING/pl/value.rrd").is_file());
    }
    let query = node.get(&format!(
        "/api/v1/query?hsm=web-01::PING::rta&start={}&end={}",
        t - 60,
        t + 60
    ));
    assert_eq!(query.json()["series"][0]["error"], "no such series");
    let metrics = node.get("/api/v1/hosts/web-01/metrics").json();
    assert_eq!(metrics["metrics"].as_array().unwrap().len(), 1);

    // A new point after the delete lands in a new file at the series' path, not in the trash.
    let again = format!("{}||web-01||PING||OK||rta=3ms\n", t + 60);
    assert_eq!(node.post("/api/v1/write", "text/plain", &again).status, 200);
    node.wait_written(4);
    assert!(rta.is_file(), "the series starts afresh");

    let answer = node.request("DELETE", "/api/v1/hosts/web-02", None, b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!data.join("whisper/web%2D02").exists());
    assert!(!data.join("rrd/web%2D02").exists());
    let hosts = node.get("/api/v1/hosts").json();
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(
        node.request("DELETE", "/api/v1/hosts/nobody", None, b"")
            .status,
        404
    );

    let trash = data.join("trash");
    assert_eq!(
        std::fs::read_dir(&trash).unwrap().count(),
        2,
        "one trash folder per delete"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&trash).unwrap().count() > 0 {
        assert!(std::time::Instant::now() < deadline, "trash not purged");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
