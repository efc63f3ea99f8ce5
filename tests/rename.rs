//! `perfpipe rename` on a node under write load: the old host's points join the new host's
//! (merged into its existing Whisper file), nothing acknowledged meanwhile is lost.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{config, now, temp_dir, Node, Poster};

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
    let config = config(&dir, "[enqueuer]\nmax_batch_age = \"100ms\"\n");
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
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
    let hosts = node.get("/api/v1/hosts").json();
    let names: Vec<&str> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"old-web") && names.contains(&"new-web"),
        "{hosts}"
    );

    // Every point acknowledged during the rename was written.
    let busy = acknowledged.load(Ordering::Relaxed);
    assert!(busy > 0);
    node.wait_written(40 + busy);
    let oldest = t0 - 60 * (busy as i64 - 1);
    let stored = values(&node, "busy::load::load1", oldest - 60, t0 + 60);
    assert_eq!(stored.len() as u64, busy);
}

/// RRD files cannot take older points: a series whose new name already has one stays whole
/// under its old name (no file of it moves), and the answer says so. (RRD needs the `rrd`
/// feature, which the test command turns on.)
#[cfg(feature = "rrd")]
#[test]
fn a_series_rrd_cannot_merge_stays_whole_under_its_old_name() {
    let dir = temp_dir("rename-rrd");
    let config = config(
        &dir,
        "backends = [\"whisper\", \"rrd\"]\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let t = (now() / 300 - 10) * 300;
    let lines =
        format!("{t}||a||Disk||OK||used=1\n{t}||b||Disk||OK||used=2\n{t}||a||Load||OK||load1=3\n");
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(3);
    let answer = node.post("/api/v1/rename?host=a&to_host=b", "text/plain", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let renamed = &answer.json()["renamed"];
    assert_eq!(renamed["series"], 1, "{renamed}");
    assert_eq!(renamed["moved"], 2, "{renamed}");
    let kept = renamed["kept"][0].as_str().unwrap();
    assert!(
        kept.contains("a::Disk::used stays") && kept.contains("rrd"),
        "{kept}"
    );
    let whisper = dir.join("data/whisper");
    assert!(whisper.join("a/Disk/used.wsp").exists());
    assert!(whisper.join("b/Load/load1.wsp").exists());
    assert!(!whisper.join("a/Load/load1.wsp").exists());
    assert!(dir.join("data/rrd/b/Load/load1").exists());
}
