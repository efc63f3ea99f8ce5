//! Hour aggregates written by a node as ordinary series (`service/H/avg` …), checked against
//! the raw points summed here, read back through `/api/v1/query` and the catalogue.

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
    let times: Vec<i64> = (first_hour..=now()).step_by(60).collect();
    for chunk in times.chunks(50) {
        let lines: String = chunk
            .iter()
            .map(|t| format!("{t}||web||http||OK||time={}ms\n", value_at(*t)))
            .collect();
        let answer = node.post("/api/v1/write", "text/plain", &lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

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
            let deadline = Instant::now() + Duration::from_secs(20);
            let found = loop {
                let answer = node
                    .get(&format!(
                        "/api/v1/query?hsm={hsm}&start={}&end={}",
                        hour - 60,
                        hour + 60
                    ))
                    .json();
                let series = &answer["series"][0];
                let step = series["step"].as_i64().unwrap_or(60);
                let index = (hour - series["start"].as_i64().unwrap_or(hour)) / step;
                if let Some(value) = series["values"][index as usize].as_f64() {
                    break value;
                }
                assert!(
                    Instant::now() < deadline,
                    "{hsm} at {hour} not written: {answer}"
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            assert!(
                (found - expected).abs() < 1e-9,
                "{hsm} at {hour}: {found} != {expected}"
            );
        }
    }
    // Aggregates keep their own resolution and their rule's retention (plus the period being
    // closed): 15-minute slots, 26 hours for the hour level; the base series the configured
    // archives.
    let info = |path: &str| -> serde_json::Value {
        let output = std::process::Command::new("/usr/bin/python3")
            .args(["/usr/bin/whisper-info", "--json"])
            .arg(dir.join("data/whisper").join(path))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let suffix = if weekend(first_hour) {
        "%2Fweekend"
    } else {
        ""
    };
    let hourly = info(&format!("web/http%2FH%2Favg{suffix}/time.wsp"));
    assert_eq!(hourly["archives"][0]["secondsPerPoint"], 900, "{hourly}");
    assert_eq!(hourly["maxRetention"], 26 * 3600, "{hourly}");
    let base = info("web/http/time.wsp");
    assert_eq!(base["archives"][0]["secondsPerPoint"], 60, "{base}");

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
}
