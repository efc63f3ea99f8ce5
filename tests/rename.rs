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
