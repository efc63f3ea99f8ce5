//! Opsview's graph API against real files: the same points written through
//! `POST /api/v1/write` to a node storing RRD and to one storing Whisper, then `/rest/graph`
//! answers for named series, wildcard selections and `duration=18w5d1h` compared, time by time
//! and value by value, with what `rrdtool fetch` and graphite's `whisper-fetch` read from the
//! files; a missing series left out; the node's UTC offset with `include_offset_timezone=1`;
//! `/rest/runtime/performancemetric` by type, with `%` filters and paging; bad parameters
//! refused naming themselves; and in a cluster of two, listings and wildcard graphs that
//! gather every node's series.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{now, temp_dir, Node};
use serde_json::Value;

/// 3 days of points every 300 s.
const POINTS: i64 = 864;

/// The series written, with their units.
const SERIES: [(&str, &str, &str, &str); 4] = [
    ("web-01", "HTTP", "time", "s"),
    ("web-01", "HTTP", "size", "B"),
    ("web-02", "HTTP", "time", "s"),
    ("db-01", "Load", "load1", ""),
];

fn value(series: usize, i: i64) -> f64 {
    ((i * 7 + series as i64 * 5) % 23) as f64 * 0.25 + series as f64
}

/// The first point's time: aligned on 300 s, the last point an hour ago.
fn first_time() -> i64 {
    (now() - 3600) / 300 * 300 - (POINTS - 1) * 300
}

fn write_points(node: &Node, first: i64) {
    let times: Vec<i64> = (0..POINTS).map(|i| first + i * 300).collect();
    for (chunk_index, chunk) in times.chunks(200).enumerate() {
        let mut lines = String::new();
        for (offset, t) in chunk.iter().enumerate() {
            let i = (chunk_index * 200 + offset) as i64;
            lines.push_str(&format!(
                "{t}||web-01||HTTP||OK||time={}s size={}B\n{t}||web-02||HTTP||OK||time={}s\n{t}||db-01||Load||OK||load1={}\n",
                value(0, i),
                value(1, i),
                value(2, i),
                value(3, i)
            ));
        }
        let answer = node.post("/api/v1/write", "text/plain", &lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["points"], chunk.len() as u64 * 4);
    }
    node.wait_written(POINTS as u64 * 4);
}

/// Which store a node writes, where its files are, and how the reference tool reads them.
#[derive(Clone, Copy)]
enum Store {
    Rrd,
    Whisper,
}

impl Store {
    fn file(self, data: &Path, host: &str, service: &str, metric: &str) -> PathBuf {
        let enc = |name: &str| -> String {
            name.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'_' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        match self {
            Store::Rrd => data.join(format!(
                "rrd/{}/{}/{}/value.rrd",
                enc(host),
                enc(service),
                enc(metric)
            )),
            Store::Whisper => data.join(format!(
                "whisper/{}/{}/{}.wsp",
                enc(host),
                enc(service),
                enc(metric)
            )),
        }
    }

    /// `(time, value)` as the reference tool reads `file` over `[start, end]`.
    fn fetch(self, file: &Path, start: i64, end: i64) -> Vec<(i64, Option<f64>)> {
        assert!(file.is_file(), "{} exists", file.display());
        match self {
            Store::Rrd => {
                let output = Command::new("rrdtool")
                    .arg("fetch")
                    .arg(file)
                    .args(["AVERAGE", "-s", &start.to_string(), "-e", &end.to_string()])
                    .output()
                    .expect("rrdtool runs");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|line| {
                        let (time, value) = line.split_once(": ")?;
                        let time: i64 = time.trim().parse().ok()?;
                        let value: f64 = value.trim().parse().ok()?;
                        Some((time, (!value.is_nan()).then_some(value)))
                    })
                    .collect()
            }
            Store::Whisper => common::whisper_fetch(file, start, end),
        }
    }
}

fn start_node(dir: &Path, store: Store, env: &[(&str, &str)]) -> Node {
    let backend = match store {
        Store::Rrd => "rrd",
        Store::Whisper => "whisper",
    };
    // Whisper: 5-minute points for a week, hourly for a year, so 18w5d1h reads the hourly
    // archive that every 5-minute point propagates to.
    let config = common::config(
        dir,
        &format!(
            "data_dir = {:?}\nbackends = [\"{backend}\"]\n[whisper]\nretentions = \"300s:7d,1h:1y\"\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
            dir.join("data").display().to_string()
        ),
    );
    Node::start_with_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        env,
    )
}

/// The `data` of a graph entry as `(time, value)`.
fn data_of(entry: &Value) -> Vec<(i64, Option<f64>)> {
    entry["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_i64().unwrap(), pair[1].as_f64()))
        .collect()
}

fn same_values(label: &str, got: &[(i64, Option<f64>)], want: &[(i64, Option<f64>)]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: {} values, the file has {}",
        got.len(),
        want.len()
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{label}: times differ");
        match (g.1, w.1) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{label} at {}: {a} != {b} in the file",
                g.0
            ),
            _ => panic!("{label} at {}: {:?} != {:?} in the file", g.0, g.1, w.1),
        }
    }
}

fn description_of(values: &[(i64, Option<f64>)]) -> String {
    let present: Vec<f64> = values.iter().filter_map(|(_, v)| *v).collect();
    let min = present.iter().copied().fold(f64::INFINITY, f64::min);
    let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let average = present.iter().sum::<f64>() / present.len() as f64;
    format!("Min: {min:.3}<br />Max: {max:.3}<br />Average: {average:.3}")
}

/// Asks `/rest/graph` with `query` and checks every entry against the file of its label;
/// answers the labels in order.
fn graph_matches_files(
    node: &Node,
    store: Store,
    data: &Path,
    query: &str,
    start: i64,
    end: i64,
) -> Vec<String> {
    let answer = node.get(&format!("/rest/graph?{query}"));
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    let json = answer.json();
    assert!(json.get("partial").is_none(), "{query}: {json}");
    let list = json["list"].as_array().unwrap();
    let mut labels = Vec::new();
    for entry in list {
        let label = entry["label"].as_str().unwrap().to_string();
        let parts: Vec<&str> = label.split("::").collect();
        let (_, _, _, uom) = SERIES
            .iter()
            .find(|(h, s, m, _)| [*h, *s, *m] == parts[..])
            .unwrap_or_else(|| panic!("{query}: unknown label {label}"));
        assert_eq!(entry["uom"], *uom, "{query}: {label}");
        let file = store.file(data, parts[0], parts[1], parts[2]);
        let want = store.fetch(&file, start, end);
        let got = data_of(entry);
        same_values(&format!("{query}: {label}"), &got, &want);
        assert!(
            got.iter().any(|(_, v)| v.is_some()),
            "{query}: {label} has values"
        );
        assert_eq!(
            entry["description"],
            description_of(&want),
            "{query}: {label}"
        );
        labels.push(label);
    }
    labels
}

fn graph_against(store: Store, name: &str) {
    let dir = temp_dir(name);
    let node = start_node(&dir, store, &[]);
    let data = dir.join("data");
    let first = first_time();
    write_points(&node, first);
    let last = first + (POINTS - 1) * 300;

    // Named series over six hours, in request order; one that does not exist is left out.
    let (start, end) = (last - 6 * 3600, last);
    let labels = graph_matches_files(
        &node,
        store,
        &data,
        &format!(
            "hsm=db-01::Load::load1&hsm=nope::x::y&hsm=web-01::HTTP::time&start={start}&end={end}"
        ),
        start,
        end,
    );
    assert_eq!(labels, ["db-01::Load::load1", "web-01::HTTP::time"]);

    // 18 weeks, 5 days and 1 hour back from `end`: a coarser archive of each file.
    let long_start = end - (18 * 7 * 86_400 + 5 * 86_400 + 3600);
    let labels = graph_matches_files(
        &node,
        store,
        &data,
        &format!("hsm=web-01::HTTP::size&end={end}&duration=18w5d1h"),
        long_start,
        end,
    );
    assert_eq!(labels, ["web-01::HTTP::size"]);

    // Wildcards: hosts and metrics combined; every match, by name.
    let labels = graph_matches_files(
        &node,
        store,
        &data,
        &format!("hostname=web-*&metricname=time&start={start}&end={end}"),
        start,
        end,
    );
    assert_eq!(labels, ["web-01::HTTP::time", "web-02::HTTP::time"]);
    let labels = graph_matches_files(
        &node,
        store,
        &data,
        &format!("hostname=web-01&servicename=HT*P&end={end}&duration=131d1h"),
        end - (131 * 86_400 + 3600),
        end,
    );
    assert_eq!(labels, ["web-01::HTTP::size", "web-01::HTTP::time"]);
    // A named series first, then the matches not named already.
    let labels = graph_matches_files(
        &node,
        store,
        &data,
        &format!("hsm=web-02::HTTP::time&metricname=*o*&keyword=ignored&start={start}&end={end}"),
        start,
        end,
    );
    assert_eq!(
        labels,
        ["web-02::HTTP::time", "db-01::Load::load1"],
        "load1 matches *o*, time and size do not"
    );

    // Nothing that exists: an empty list, not an error.
    let answer = node.get(&format!(
        "/rest/graph?hsm=nope::x::y&hostname=zzz*&start={start}&end={end}"
    ));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["list"], serde_json::json!([]));

    // `duration` in minutes: m and the word.
    for duration in ["90m", "90minutes"] {
        let json = node
            .get(&format!(
                "/rest/graph?hsm=web-01::HTTP::time&end={end}&duration={duration}"
            ))
            .json();
        let data = data_of(&json["list"][0]);
        let want = store.fetch(
            &store.file(&data_dir(&dir), "web-01", "HTTP", "time"),
            end - 5400,
            end,
        );
        same_values(duration, &data, &want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

#[test]
fn graph_answers_equal_rrdtool_fetch() {
    graph_against(Store::Rrd, "opsview-rrd");
}

#[test]
fn graph_answers_equal_whisper_fetch() {
    graph_against(Store::Whisper, "opsview-whisper");
}

#[test]
fn offsets_listings_and_bad_parameters() {
    let dir = temp_dir("opsview-listing");
    // India: +05:30 all year round.
    let node = start_node(&dir, Store::Whisper, &[("TZ", "Asia/Kolkata")]);
    let first = first_time();
    write_points(&node, first);
    let end = first + (POINTS - 1) * 300;
    let start = end - 3600;

    let query = format!("/rest/graph?hsm=web-01::HTTP::time&start={start}&end={end}");
    let plain = data_of(&node.get(&query).json()["list"][0]);
    let shifted = data_of(
        &node
            .get(&format!("{query}&include_offset_timezone=1"))
            .json()["list"][0],
    );
    assert!(!plain.is_empty());
    assert_eq!(plain.len(), shifted.len());
    for (p, s) in plain.iter().zip(&shifted) {
        assert_eq!(s.0 - p.0, 19_800, "shifted by +05:30");
        assert_eq!(s.1, p.1);
    }
    let zero = data_of(
        &node
            .get(&format!("{query}&include_offset_timezone=0"))
            .json()["list"][0],
    );
    assert_eq!(zero, plain);

    // Listings by type, with % filters; rows and total are strings.
    let list = |query: &str| -> Value {
        let answer = node.get(&format!("/rest/runtime/performancemetric?{query}"));
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        answer.json()
    };
    let json = list("type=host");
    assert_eq!(
        json,
        serde_json::json!({"list": ["db-01", "web-01", "web-02"], "rows": "3", "total": "3"})
    );
    let json = list("type=service&host=web%25");
    assert_eq!(
        json,
        serde_json::json!({"list": ["HTTP"], "rows": "1", "total": "1"})
    );
    let json = list("type=metric&host=web%25");
    assert_eq!(json["list"], serde_json::json!(["size", "time"]));
    let json = list("type=metric&metric=%25i%25&metric=load%25");
    assert_eq!(json["list"], serde_json::json!(["load1", "size", "time"]));
    let json = list("host=web-0%25&service=HTTP&metric=t%25");
    assert_eq!(
        json,
        serde_json::json!({"list": ["web-01::HTTP::time", "web-02::HTTP::time"], "rows": "2", "total": "2"})
    );
    let json = list("host=nothing%25");
    assert_eq!(
        json,
        serde_json::json!({"list": [], "rows": "0", "total": "0"})
    );

    // Paging: rows per page, pages from 1, rows=all.
    let all = [
        "db-01::Load::load1",
        "web-01::HTTP::size",
        "web-01::HTTP::time",
        "web-02::HTTP::time",
    ];
    assert_eq!(
        list(""),
        serde_json::json!({"list": all, "rows": "4", "total": "4"})
    );
    assert_eq!(
        list("rows=3"),
        serde_json::json!({"list": all[..3], "rows": "3", "total": "4"})
    );
    assert_eq!(
        list("rows=3&page=2"),
        serde_json::json!({"list": all[3..], "rows": "1", "total": "4"})
    );
    assert_eq!(
        list("rows=2&page=2"),
        serde_json::json!({"list": all[2..], "rows": "2", "total": "4"})
    );
    assert_eq!(
        list("rows=2&page=3"),
        serde_json::json!({"list": [], "rows": "0", "total": "4"})
    );
    assert_eq!(
        list("rows=all&page=2"),
        serde_json::json!({"list": all, "rows": "4", "total": "4"})
    );

    // Bad parameters name themselves.
    for (query, named) in [
        (
            "/rest/graph?hsm=web-01::HTTP::time&duration=5x",
            "\\\"x\\\"",
        ),
        ("/rest/graph?hsm=web-01::HTTP::time&duration=1d2", "no unit"),
        ("/rest/graph?hsm=web-01::HTTP", "web-01::HTTP"),
        ("/rest/graph?hsm=web-01::HTTP::time&start=soon", "start"),
        (
            "/rest/graph?hsm=web-01::HTTP::time&include_offset_timezone=yes",
            "include_offset_timezone",
        ),
        ("/rest/graph?hsm=a::b::c&colour=red", "colour"),
        ("/rest/graph?start=1&end=2", "hsm"),
        ("/rest/graph?hsm=a::b::c&start=10&end=5", "not before"),
        ("/rest/runtime/performancemetric?type=hosts", "type"),
        ("/rest/runtime/performancemetric?rows=0", "rows"),
        ("/rest/runtime/performancemetric?page=0", "page"),
    ] {
        let answer = node.get(query);
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body.contains(named), "{query}: {}", answer.body);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_lists_and_graphs_every_node() {
    let dir = temp_dir("opsview-cluster");
    let (nodes, _urls) = common::start_cluster(&dir, 2);
    let hosts: Vec<String> = (0..12).map(|h| format!("host-{h:02}")).collect();
    let owners: Vec<usize> = hosts
        .iter()
        .map(|h| perfpipe::routing::owner_of_host(h, 2))
        .collect();
    assert!(owners.contains(&0) && owners.contains(&1), "{owners:?}");
    let t = (now() - 600) / 60 * 60;
    let lines: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{t}||{h}||Load||OK||load1={i}\n"))
        .collect();
    let answer = nodes[0].post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    for (n, node) in nodes.iter().enumerate() {
        node.wait_written(owners.iter().filter(|&&o| o == n).count() as u64);
    }

    for node in &nodes {
        let json = node
            .get("/rest/runtime/performancemetric?type=host&rows=all")
            .json();
        assert_eq!(json["list"], serde_json::json!(hosts), "{json}");
        assert_eq!(json["total"], "12");
        let json = node
            .get(&format!(
                "/rest/graph?hostname=host-*&start={}&end={}",
                t - 120,
                t + 120
            ))
            .json();
        let list = json["list"].as_array().unwrap();
        assert_eq!(list.len(), 12, "{json}");
        for (i, entry) in list.iter().enumerate() {
            assert_eq!(entry["label"], format!("{}::Load::load1", hosts[i]));
            let values: Vec<f64> = data_of(entry).iter().filter_map(|(_, v)| *v).collect();
            assert_eq!(values, [i as f64], "{entry}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
