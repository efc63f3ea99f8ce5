//! `perfpipe rename` on a node under write load: the old host's points join the new host's
//! (merged into its existing Whisper file), nothing acknowledged meanwhile is lost; RRD files
//! merged by librrd; InfluxDB's points rewritten under the new name.

mod common;
#[path = "../backends/influxdb/tests/common/mod.rs"]
mod influx_servers;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{config, now, temp_dir, Node, Poster};

/// A node with its data under `dir/data`, batches flushed within 100 ms, and `backends` (TOML
/// before any section) plus `sections` in its config.
fn start_node(dir: &std::path::Path, backends: &str, sections: &str) -> Node {
    let config = config(
        dir,
        &format!("{backends}{sections}[enqueuer]\nmax_batch_age = \"100ms\"\n"),
    );
    Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ])
}

fn values(node: &Node, hsm: &str, start: i64, end: i64) -> Vec<f64> {
    let answer = node
        .get(&format!("/api/v1/query?hsm={hsm}&start={start}&end={end}"))
        .json();
    answer["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .filter_map(|value| value.as_f64())
        .collect()
}

#[test]
fn a_renamed_host_merges_into_the_new_name_under_load() {
    let dir = temp_dir("rename");
    let node = start_node(&dir, "", "");
    let t0 = (now() / 60 - 60) * 60;
    let old: String = (0..20)
        .map(|i| format!("{}||old-web||http||OK||time={i}\n", t0 + 60 * i))
        .collect();
    let new: String = (20..40)
        .map(|i| format!("{}||new-web||http||OK||time={i}\n", t0 + 60 * i))
        .collect();
    assert_eq!(node.post("/api/v1/write", "text/plain", &old).status, 200);
    assert_eq!(node.post("/api/v1/write", "text/plain", &new).status, 200);
    node.wait_written(40);

    // Write load on another host while the rename runs.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        let poster = Poster::new(node.address.clone());
        std::thread::spawn(move || {
            // One point a minute going back from t0, within Whisper's finest day.
            let mut t = t0;
            while !stop.load(Ordering::Relaxed) && t > t0 - 1200 * 60 {
                let line = format!("{t}||busy||load||OK||load1=1\n");
                if poster.try_post("/api/v1/write", "text/plain", &line) == Some(200) {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                t -= 60;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let renamed = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["rename", "--host", "old-web", "new-web", "--url"])
        .arg(format!("http://{}", node.address))
        .output()
        .unwrap();
    assert!(renamed.status.success(), "{renamed:?}");
    let printed = String::from_utf8(renamed.stdout).unwrap();
    assert!(printed.contains("\"merged\":1"), "{printed}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let merged = values(&node, "new-web::http::time", t0 - 60, t0 + 40 * 60);
    assert_eq!(merged.len(), 40, "{merged:?}");
    assert_eq!(merged.iter().sum::<f64>(), (0..40).sum::<i32>() as f64);
    assert!(values(&node, "old-web::http::time", t0 - 60, t0 + 40 * 60).is_empty());
    let names = node.host_names();
    assert!(
        !names.iter().any(|name| name == "old-web") && names.iter().any(|name| name == "new-web"),
        "{names:?}"
    );

    // Every point acknowledged during the rename was written.
    let busy = acknowledged.load(Ordering::Relaxed);
    assert!(busy > 0);
    node.wait_written(40 + busy);
    let oldest = t0 - 60 * (busy as i64 - 1);
    let stored = values(&node, "busy::load::load1", oldest - 60, t0 + 60);
    assert_eq!(stored.len() as u64, busy);
}

/// A series whose new name already has RRD files is merged by librrd: the new name's file then
/// holds both hosts' points, read back with `rrdtool fetch`. (RRD needs the `rrd` feature,
/// which the test command turns on.)
#[cfg(feature = "rrd")]
#[test]
fn rrd_files_of_both_names_are_merged() {
    let dir = temp_dir("rename-rrd");
    let node = start_node(&dir, "backends = [\"whisper\", \"rrd\"]\n", "");
    // Host a's Disk in the first hour, host b's in the second (RRD steps of 300 s), and a's
    // Load, which b does not have.
    let t0 = (now() / 300 - 30) * 300;
    let mut lines = String::new();
    for i in 0..=10 {
        lines.push_str(&format!("{}||a||Disk||OK||used={}\n", t0 + i * 300, 10 + i));
        lines.push_str(&format!(
            "{}||b||Disk||OK||used={}\n",
            t0 + (i + 12) * 300,
            50 + i
        ));
    }
    lines.push_str(&format!("{t0}||a||Load||OK||load1=3\n"));
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(23);
    // Onto itself: refused, and nothing moves (merged into itself, a series would be removed).
    let itself = node.post("/api/v1/rename?host=a&to_host=a", "text/plain", "");
    assert_eq!(itself.status, 400, "{}", itself.body);
    assert!(itself.body.contains("nothing to rename"), "{}", itself.body);
    assert!(dir.join("data/rrd/a/Disk/used/value.rrd").exists());
    let answer = node.post("/api/v1/rename?host=a&to_host=b", "text/plain", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let renamed = &answer.json()["renamed"];
    assert_eq!(renamed["series"], 2, "{renamed}");
    assert_eq!(renamed["merged"], 2, "Disk in Whisper and RRD: {renamed}");
    assert_eq!(renamed["moved"], 2, "Load in Whisper and RRD: {renamed}");
    assert_eq!(
        renamed["kept"].as_array().map(Vec::len),
        Some(0),
        "{renamed}"
    );
    let rrd = dir.join("data/rrd");
    assert!(!rrd.join("a/Disk/used").exists());
    assert!(rrd.join("b/Load/load1/value.rrd").exists());

    // Each 300 s step after the first point of each host holds that host's value.
    let fetched = Command::new("rrdtool")
        .arg("fetch")
        .arg(rrd.join("b/Disk/used/value.rrd"))
        .args(["AVERAGE", "-r", "300", "-s"])
        .arg((t0 - 300).to_string())
        .arg("-e")
        .arg((t0 + 24 * 300).to_string())
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    let values: std::collections::HashMap<i64, f64> = String::from_utf8(fetched.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (time, value) = line.split_once(':')?;
            let value: f64 = value.trim().parse().ok()?;
            Some((time.trim().parse().ok()?, value))
        })
        .filter(|(_, value): &(i64, f64)| !value.is_nan())
        .collect();
    for i in 1..=10 {
        assert_eq!(
            values.get(&(t0 + i * 300)),
            Some(&((10 + i) as f64)),
            "a's step {i}: {values:?}"
        );
        assert_eq!(
            values.get(&(t0 + (i + 12) * 300)),
            Some(&((50 + i) as f64)),
            "b's step {i}: {values:?}"
        );
    }
    // The merged file goes on taking new points.
    let later = format!("{}||b||Disk||OK||used=99\n", t0 + 23 * 300);
    assert_eq!(node.post("/api/v1/write", "text/plain", &later).status, 200);
    node.wait_written(24);
    let last = Command::new("rrdtool")
        .arg("lastupdate")
        .arg(rrd.join("b/Disk/used/value.rrd"))
        .output()
        .unwrap();
    let last = String::from_utf8(last.stdout).unwrap();
    assert!(last.contains(&format!("{}: 99", t0 + 23 * 300)), "{last}");
}

/// With InfluxDB (v1, a real `influxd`) beside Whisper, a rename rewrites the old host's
/// InfluxDB points under the new host, which already had some, and drops the old series; the
/// answer counts them.
#[test]
fn a_rename_moves_the_points_in_influxdb_too() {
    let influx = influx_servers::Influxd::start();
    influx.create_db("perfpipe");
    let dir = temp_dir("rename-influx");
    let node = start_node(
        &dir,
        "backends = [\"whisper\", \"influxdb\"]\n",
        &format!("[influxdb]\nurl = {:?}\ndb = \"perfpipe\"\n", influx.url),
    );
    let t0 = (now() / 60 - 60) * 60;
    let lines: String = (0..20)
        .map(|i| format!("{}||old-db||disk||OK||used={i}%;80;90\n", t0 + 60 * i))
        .chain((20..25).map(|i| format!("{}||new-db||disk||OK||used={i}%\n", t0 + 60 * i)))
        .collect();
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(25);

    let renamed = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["rename", "--host", "old-db", "new-db", "--url"])
        .arg(format!("http://{}", node.address))
        .output()
        .unwrap();
    assert!(renamed.status.success(), "{renamed:?}");
    let printed: serde_json::Value = serde_json::from_slice(&renamed.stdout).unwrap();
    assert_eq!(printed["renamed"]["points_rewritten"], 20, "{printed}");
    assert_eq!(printed["renamed"]["merged"], 1, "{printed}");
    assert_eq!(
        printed["renamed"]["kept"],
        serde_json::json!([]),
        "{printed}"
    );

    let count = |host: &str| {
        influx.query(
            "perfpipe",
            &format!(
                "SELECT count(\"value\"), sum(\"value\"), count(\"warn\") FROM \"metrics\" \
                 WHERE \"host\" = '{host}' GROUP BY \"unit\""
            ),
        )
    };
    let new = count("new-db");
    assert_eq!(new["results"][0]["series"][0]["tags"]["unit"], "%", "{new}");
    assert_eq!(
        new["results"][0]["series"][0]["values"][0],
        serde_json::json!([0, 25, (0..25).sum::<i64>(), 20]),
        "{new}"
    );
    let old = count("old-db");
    assert!(old["results"][0]["series"].is_null(), "{old}");
}
