//! `perfpipe serve` as a load balancer sees it: it listens on the address it is given (here
//! 127.0.0.1 with an ephemeral port), answers `GET /health` with 200, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A node started for one test; killed if the test ends without stopping it.
struct Node {
    child: Child,
    address: String,
}

impl Node {
    fn start(data_dir: &std::path::Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("perfpipe starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut address = None;
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                address = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        let address = address.expect("serve logs the address it listens on");
        // stderr is closed here on purpose: a node whose log pipe goes away must keep running
        // and still stop cleanly (it once panicked on its next log line).
        Node { child, address }
    }

    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("perfpipe-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn health_answers_200_and_sigterm_stops_cleanly() {
    let data_dir = temp_dir("serve");
    let mut node = Node::start(&data_dir);
    assert!(node.address.starts_with("127.0.0.1:"), "{}", node.address);
    assert!(data_dir.is_dir(), "serve creates its data dir");

    let response = node.get("/health");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    let missing = node.get("/no-such-path");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = node.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM ends serve with exit 0");
    let _ = std::fs::remove_dir_all(&data_dir);
}
