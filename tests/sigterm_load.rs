//! SIGTERM while a client writes as fast as the node answers: every point the node
//! acknowledged (answered 200) is in the files after it exits, and it exits 0.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{config, now, temp_dir, Node, Poster};
use perfpipe_whisper::WhisperFile;

const HOSTS: usize = 50;

#[test]
fn sigterm_under_load_loses_no_acknowledged_point() {
    let dir = temp_dir("sigterm-load");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"1s\"\n",
            data.display().to_string()
        ),
    );
    let mut node = Node::start(&["--config", config.to_str().unwrap()]);
    let first = (now() - 23 * 3600) / 60 * 60;
    let address = node.address.clone();

    // The client: request i carries one point per host at first + i minutes, value i (1,300
    // minutes fit the finest archive of a day; the node is stopped long before).
    let stop = Arc::new(AtomicBool::new(false));
    let client_stop = stop.clone();
    let client = std::thread::spawn(move || {
        let poster = Poster::new(address);
        let mut acknowledged = 0usize;
        for i in 0..1300 {
            if client_stop.load(Ordering::Relaxed) && i > acknowledged + 5 {
                break;
            }
            let lines: String = (0..HOSTS)
                .map(|h| format!("{}||host-{h}||Load||OK||load1={i}\n", first + i as i64 * 60))
                .collect();
            match poster.try_post("/api/v1/write", "text/plain", &lines) {
                Some(200) => acknowledged = i + 1,
                _ => break, // the node stopped listening
            }
        }
        acknowledged
    });

    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(node.terminate(), Some(0), "exit 0 after flushing");
    let acknowledged = client.join().unwrap();
    assert!(
        (10..1300).contains(&acknowledged),
        "SIGTERM came while the client was writing ({acknowledged} requests)"
    );
    eprintln!("{acknowledged} requests of {HOSTS} points acknowledged before SIGTERM");

    for h in 0..HOSTS {
        let path = data.join(format!("whisper/host%2D{h}/Load/load1.wsp"));
        let file = WhisperFile::open_read_only(&path).unwrap();
        let until = first + acknowledged as i64 * 60;
        let fetched = file.fetch(first - 60, until, now()).unwrap().unwrap();
        for i in 0..acknowledged {
            let slot = ((first + i as i64 * 60 - fetched.from) / i64::from(fetched.step)) as usize;
            assert_eq!(
                fetched.values[slot],
                Some(i as f64),
                "host-{h}, request {i}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
