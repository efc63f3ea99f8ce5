//! The Graphite API as Grafana's Graphite data source uses it, replayed against a real node:
//! the query editor's `/metrics/find`, `POST /render` with a form body, `format=json` and
//! `maxDataPoints`, `/functions` and `/version`; answers checked against the points written.
//! Also: names with dots, dashes and spaces come back in the on-disk encoding and select their
//! own series, bad targets are refused naming what is wrong, and in a cluster a render
//! gathers the series of every owner. (graphite-web itself is compared in
//! `tests/graphite_web.rs`.)

mod common;

use common::{now, temp_dir, Node};
use serde_json::Value;

/// A node keeping Whisper files of one-minute values for a day.
fn start(dir: &std::path::Path) -> Node {
    let config = common::config(
        dir,
        &format!(
            "data_dir = {:?}\nbackends = [\"whisper\"]\n[whisper]\nretentions = \"60s:1d\"\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
            dir.join("data").display().to_string()
        ),
    );
    Node::start(&["--config", config.to_str().unwrap()])
}

/// Writes `minutes` one-minute points ending at `end` for each (host, service, metric),
/// value `base + minute index`, skipping every seventh minute; returns the points written.
fn write(node: &Node, end: i64, minutes: i64, series: &[(&str, &str, &str, f64)]) -> u64 {
    let mut lines = String::new();
    let mut points = 0;
    for &(host, service, metric, base) in series {
        for i in 0..minutes {
            if i % 7 == 3 {
                continue;
            }
            let t = end - (minutes - 1 - i) * 60;
            lines.push_str(&format!(
                "{t}||{host}||{service}||OK||{metric}={}\n",
                base + i as f64
            ));
            points += 1;
        }
    }
    let answer = node.post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    points
}

fn datapoints(series: &Value) -> Vec<(Option<f64>, i64)> {
    series["datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64(), p[1].as_i64().unwrap()))
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    body.finish()
}

#[test]
fn grafana_request_shapes() {
    let dir = temp_dir("graphite-grafana");
    let node = start(&dir);
    let end = (now() - 120) / 60 * 60;
    let written = write(
        &node,
        end,
        120,
        &[
            ("web-01", "HTTP", "time", 100.0),
            ("web-02", "HTTP", "time", 200.0),
            ("db.example.com", "Disk usage", "/var", 0.5),
        ],
    );
    node.wait_written(written);

    // The query editor: top level, then one level down, in treejson.
    let top = node.get("/metrics/find?query=*").json();
    let ids: Vec<&str> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db%2Eexample%2Ecom", "web%2D01", "web%2D02"]);
    assert_eq!(top[1]["text"], "web-01", "text shows the name, id the path");
    assert_eq!(
        (top[1]["leaf"].as_i64(), top[1]["expandable"].as_i64()),
        (Some(0), Some(1))
    );
    let leaves = node.get("/metrics/find?query=web%252D01.HTTP.*").json();
    assert_eq!(leaves[0]["id"], "web%2D01.HTTP.time");
    assert_eq!(leaves[0]["leaf"], 1);
    let completer = node
        .get("/metrics/find?query=db%252Eexample%252Ecom.Disk&format=completer")
        .json();
    assert_eq!(
        completer["metrics"][0]["path"],
        "db%2Eexample%2Ecom.Disk%20usage."
    );

    // The panel: POST /render as a form, with maxDataPoints.
    let now_text = (end + 60).to_string();
    let body = form(&[
        ("target", "web%2D0*.HTTP.time"),
        ("target", "alias(sumSeries(web%2D0*.HTTP.time),'total')"),
        ("from", "-2h"),
        ("until", "now"),
        ("now", &now_text),
        ("format", "json"),
        ("maxDataPoints", "1000"),
    ]);
    let answer = node.post("/render", "application/x-www-form-urlencoded", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let series = answer.json();
    let names: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web%2D01.HTTP.time", "web%2D02.HTTP.time", "total"]);
    // The value written for a timestamp: minute index from the first point written.
    let written_at = |at: i64, base: f64, per_minute: f64| {
        let minute = (at - (end - 119 * 60)) / 60;
        (minute <= 119 && minute % 7 != 3).then_some(base + per_minute * minute as f64)
    };
    let first = datapoints(&series[0]);
    assert_eq!(first.len(), 120, "two hours of minutes");
    // Whisper's window starts one step after `from` and ends at `now`'s step.
    assert_eq!(first[0].1, end - 118 * 60);
    for (value, at) in &first {
        assert_eq!(*value, written_at(*at, 100.0, 1.0), "at {at}");
    }
    for (value, at) in datapoints(&series[2]) {
        assert_eq!(value, written_at(at, 300.0, 2.0), "total at {at}");
    }

    // maxDataPoints consolidates by averaging, as graphite-web does.
    let answer = node.get(&format!(
        "/render?target=web%252D01.HTTP.time&from=-2h&now={now_text}&format=json&maxDataPoints=12"
    ));
    let coarse = datapoints(&answer.json()[0]);
    assert!(coarse.len() <= 13, "{} points for 12", coarse.len());
    assert!(
        coarse.windows(2).all(|w| w[1].1 - w[0].1 == 600),
        "ten-minute buckets"
    );

    // The function list and the version the data source asks for.
    let functions = node.get("/functions").json();
    for name in [
        "sumSeries",
        "movingAverage",
        "groupByNode",
        "consolidateBy",
        "asPercent",
    ] {
        assert_eq!(functions[name]["name"], name);
        assert!(functions[name]["params"]
            .as_array()
            .is_some_and(|p| !p.is_empty()));
    }
    assert_eq!(node.get("/version").body, "1.1.8");

    // Names from outside select only their own series, whatever they hold.
    let csv = node
        .get(&format!("/render?target=db%252Eexample%252Ecom.Disk%2520usage.%252Fvar&from=-10min&now={now_text}&format=csv"))
        .body;
    assert!(
        csv.starts_with("db%2Eexample%2Ecom.Disk%20usage.%2Fvar,"),
        "{csv}"
    );

    // Bad requests say what is wrong.
    for (query, expected) in [
        ("target=sumSeries(web*.HTTP.time", "expected ',' or ')'"),
        ("target=noSuchFunction(a.b.c)", "unknown function"),
        ("target=scale(web*.HTTP.time,'x')", "must be a number"),
        ("target=a.b.c&from=-5m", "ambiguous"),
        ("target=a.b.c&format=png", "not images"),
    ] {
        let answer = node.get(&format!(
            "/render?{}",
            query.replace('*', "%2A").replace('\'', "%27")
        ));
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body.contains(expected), "{query}: {}", answer.body);
    }
}

#[test]
fn a_render_gathers_every_owner_of_a_cluster() {
    let dir = temp_dir("graphite-cluster");
    let (nodes, _urls) = common::start_cluster_with(&dir, 2, |_| {
        "backends = [\"whisper\"]\n[whisper]\nretentions = \"60s:1d\"\n".to_string()
    });
    let end = (now() - 120) / 60 * 60;
    let hosts: Vec<String> = (0..12).map(|h| format!("host{h:02}")).collect();
    let series: Vec<(&str, &str, &str, f64)> = hosts
        .iter()
        .enumerate()
        .map(|(h, host)| (host.as_str(), "Load", "load1", h as f64 * 1000.0))
        .collect();
    write(&nodes[0], end, 30, &series);
    // Each node stores only its own hosts; wait until both together hold all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let now_text = (end + 60).to_string();
    loop {
        let answer = nodes[1].get(&format!(
            "/render?target=host*.Load.load1&from=-30min&now={now_text}&format=json"
        ));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json = answer.json();
        let complete = json.as_array().unwrap().len() == 12
            && json
                .as_array()
                .unwrap()
                .iter()
                .all(|s| datapoints(s)[28].0.is_some());
        if complete {
            for (h, one) in json.as_array().unwrap().iter().enumerate() {
                assert_eq!(one["target"], format!("host{h:02}.Load.load1"));
                // The window is `now - 30 min` (exclusive) to `now`: the newest value is 28th.
                assert_eq!(datapoints(one)[28].0, Some(h as f64 * 1000.0 + 29.0));
            }
            let summed = nodes[0]
                .get(&format!(
                    "/render?target=sumSeries(host*.Load.load1)&from=-30min&now={now_text}"
                ))
                .json();
            let expected: f64 = (0..12).map(|h| h as f64 * 1000.0 + 29.0).sum();
            assert_eq!(datapoints(&summed[0])[28].0, Some(expected));
            let expanded = nodes[0]
                .get("/metrics/expand?query=host0*.Load.load1")
                .json();
            assert_eq!(expanded["results"].as_array().unwrap().len(), 10);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all series rendered: {json}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
