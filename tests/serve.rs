//! `perfpipe serve` as a load balancer sees it: it listens on the address it is given (here
//! 127.0.0.1 with an ephemeral port), answers `GET /health` with 200, and exits 0 on SIGTERM.

mod common;

use common::{temp_dir, Node};

#[test]
fn health_answers_200_and_sigterm_stops_cleanly() {
    let data_dir = temp_dir("serve");
    let mut node = Node::start(&["--data-dir", data_dir.to_str().unwrap()]);
    assert!(node.address.starts_with("127.0.0.1:"), "{}", node.address);
    assert!(data_dir.is_dir(), "serve creates its data dir");

    let health = node.get("/health");
    assert_eq!(health.status, 200, "{}", health.head);
    assert_eq!(health.body, r#"{"status":"ok"}"#);
    assert_eq!(node.get("/no-such-path").status, 404);

    assert_eq!(node.terminate(), Some(0), "SIGTERM ends serve with exit 0");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_node() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data_dir = temp_dir("serve-closed-stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Up to the line that says where it listens (others, such as the open-file limit's, may
    // come first).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let address = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no address logged"
        );
        if let Some(address) = line.split("address=").nth(1) {
            break address.trim().to_string();
        }
    };
    // The reader is dropped here: the node's stderr is now a closed pipe. It used to panic on
    // its next log line (tracing-subscriber reports failed writes with eprintln!).
    drop(stderr);
    let mut node = Node { child, address };
    assert_eq!(node.get("/health").status, 200);
    assert_eq!(node.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&data_dir);
}
