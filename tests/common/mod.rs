//! Helpers for tests that run `perfpipe serve` as a separate process on 127.0.0.1 with an
//! ephemeral port and a temporary data directory, and talk plain HTTP/1.1 to it.

#![allow(dead_code)] // each test file uses a different part

pub mod graphite_compare;
pub mod graphite_targets;
pub mod graphite_web;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A node started for one test; killed if the test ends without stopping it.
pub struct Node {
    pub child: Child,
    pub address: String,
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

impl Node {
    /// Starts `perfpipe serve` on an ephemeral port with these extra arguments.
    pub fn start(args: &[&str]) -> Node {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Node::start_with(&all)
    }

    /// Starts `perfpipe serve` with exactly these arguments (the config says where to listen).
    pub fn start_with(args: &[&str]) -> Node {
        Node::start_with_env(args, &[])
    }

    /// Starts `perfpipe serve` with exactly these arguments and these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("perfpipe starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let mut address = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                address = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        let address = address.expect("serve logs the address it listens on");
        // Keep draining the log so the node never blocks on a full pipe; with
        // PERFPIPE_TEST_LOG set, pass it on to the test's output.
        let show = std::env::var_os("PERFPIPE_TEST_LOG").is_some();
        let tag = address.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if show {
                    eprintln!("[{tag}] {line}");
                }
            }
        });
        Node { child, address }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None, b"")
    }

    pub fn post(&self, path: &str, content_type: &str, body: &str) -> Answer {
        self.request("POST", path, Some(content_type), body.as_bytes())
    }

    /// The host names `/api/v1/hosts` lists, in its order.
    pub fn host_names(&self) -> Vec<String> {
        let hosts = self.get("/api/v1/hosts").json();
        hosts["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("no host list: {hosts}"))
            .iter()
            .map(|host| host["host"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until `/status` reports at least `points` written by every backend.
    pub fn wait_written(&self, points: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.get("/status").json();
            let written = status["backends"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["written"].as_u64().unwrap() + b["late"].as_u64().unwrap())
                .min()
                .unwrap_or(0);
            if written >= points {
                return;
            }
            assert!(Instant::now() < deadline, "not written in time: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to a node, without owning its process.
pub struct Poster {
    address: String,
}

impl Poster {
    /// Requests to the node at `address` (another thread's).
    pub fn new(address: String) -> Poster {
        Poster { address }
    }

    /// POSTs and returns the status, or `None` when the node could not be reached or did not
    /// answer.
    pub fn try_post(&self, path: &str, content_type: &str, body: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(&self.address).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let response = String::from_utf8_lossy(&response);
        response.split_whitespace().nth(1)?.parse().ok()
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for configs that must name ports before
/// the nodes start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory for one test.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("perfpipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A test's temporary directory, removed when dropped: at the end of the test, passed or
/// failed (declared before the nodes that use it, it outlives them). Set PERFPIPE_KEEP_TEMP to
/// keep it for a look after a failure.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PERFPIPE_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Writes a config file into `dir` and returns its path.
pub fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("perfpipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Starts `count` nodes on ephemeral ports as one cluster, data under `dir/node<i>`, batches
/// flushed within 100 ms; `extra(i)` is appended to node `i`'s config (TOML sections). Answers
/// the nodes and their URLs, in cluster order.
pub fn start_cluster_with(
    dir: &Path,
    count: usize,
    extra: impl Fn(usize) -> String,
) -> (Vec<Node>, Vec<String>) {
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let nodes = (0..count)
        .map(|i| {
            let config = dir.join(format!("node{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{}\"\ndata_dir = {:?}\n{}\n[cluster]\nnodes = {:?}\nself = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
                    ports[i],
                    dir.join(format!("node{i}")).display().to_string(),
                    extra(i),
                    urls,
                    urls[i]
                ),
            )
            .unwrap();
            Node::start_with(&["--config", config.to_str().unwrap()])
        })
        .collect();
    (nodes, urls)
}

/// [`start_cluster_with`] with nothing more in the configs.
pub fn start_cluster(dir: &Path, count: usize) -> (Vec<Node>, Vec<String>) {
    start_cluster_with(dir, count, |_| String::new())
}

/// `(timestamp, value)` of every slot of a Whisper file from `from` to `until`, as graphite's
/// own `whisper-fetch --json` reads them (Debian's python3-whisper; the test command installs
/// it).
pub fn whisper_fetch(file: &Path, from: i64, until: i64) -> Vec<(i64, Option<f64>)> {
    assert!(file.is_file(), "{} exists", file.display());
    let output = Command::new("whisper-fetch")
        .arg("--json")
        .arg(format!("--from={from}"))
        .arg(format!("--until={until}"))
        .arg(file)
        .output()
        .expect("whisper-fetch runs (python3-whisper)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let (start, step) = (
        json["start"].as_i64().unwrap(),
        json["step"].as_i64().unwrap(),
    );
    json["values"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, value)| (start + i as i64 * step, value.as_f64()))
        .collect()
}
