//! Series housekeeping: stale series listed by `GET /api/v1/stale` and, with
//! `purge_stale = true`, moved to the trash.

mod common;

use common::{config, now, temp_dir, Node};

fn start(dir: &std::path::Path, purge_stale: bool) -> Node {
    let config = config(
        dir,
        &format!("purge_stale = {purge_stale}\nstale_after = \"30days\"\n[enqueuer]\nmax_batch_age = \"100ms\"\n"),
    );
    Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ])
}

#[test]
fn series_quiet_for_stale_after_are_listed_then_purged() {
    let dir = temp_dir("lifecycle");
    let mut node = start(&dir, false);
    let old = now() - 40 * 86_400;
    let lines = format!(
        "{old}||old-host||Disk||OK||used=1\n{}||live-host||Disk||OK||used=2\n",
        now() - 60
    );
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(2);
    let stale = node.get("/api/v1/stale").json();
    let listed: Vec<&str> = stale["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| series["hsm"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["old-host::Disk::used"], "{stale}");
    let recent = node.get("/api/v1/stale?older_than=5s").json();
    assert_eq!(recent["stale"].as_array().unwrap().len(), 2, "{recent}");
    assert_eq!(node.get("/api/v1/stale?older_than=soon").status, 400);
    let file = dir.join("data/whisper/old%2Dhost/Disk/used.wsp");
    assert!(file.exists());

    // With purge_stale the node moves them to the trash at start (then hourly).
    assert_eq!(node.terminate(), Some(0));
    let node = start(&dir, true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "stale file not purged"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(dir.join("data/whisper/live%2Dhost/Disk/used.wsp").exists());
    assert!(node.get("/api/v1/stale").json()["stale"]
        .as_array()
        .unwrap()
        .is_empty());
    let hosts = node.get("/api/v1/hosts").json();
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 1, "{hosts}");
}
