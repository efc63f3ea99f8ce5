//! Real servers for the tests: `influxd` (InfluxDB 1.x) and `victoria-metrics`, each started on
//! a free loopback port with its files in a temporary directory, and killed when its guard is
//! dropped. A missing binary fails the test with what to install; nothing is skipped.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use perfpipe_backend::{SeriesBatch, SeriesKey};
use tempfile::TempDir;

/// How long a server may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn spawn(binary: &str, package: &str, args: &[String], log: &Path, dir: &Path) -> Child {
    let log_file = fs::File::create(log).expect("create server log");
    let log_err = log_file.try_clone().expect("clone log handle");
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start `{binary}` ({error}): these tests need it on PATH; \
                 install the Debian package `{package}` (apt-get install -y {package})"
            )
        })
}

/// Waits until `GET {url}` answers `status`; `None` if the child exited or time ran out.
fn wait_for(child: &mut Child, url: &str, status: u16) -> Option<()> {
    let agent = agent();
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if let Ok(response) = agent.get(url).call() {
            if response.status().as_u16() == status {
                return Some(());
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(3000);
    text.get(start..).unwrap_or(&text).to_owned()
}

/// A running `influxd`, killed on drop.
pub struct Influxd {
    child: Child,
    /// Base URL of its HTTP API.
    pub url: String,
    _dir: TempDir,
}

impl Influxd {
    /// Starts `influxd run` with its files in a new temporary directory.
    pub fn start() -> Influxd {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let (rpc_port, http_port) = (free_port(), free_port());
            let root = dir.path().display();
            let config = format!(
                "reporting-disabled = true\n\
                 bind-address = \"127.0.0.1:{rpc_port}\"\n\
                 [meta]\n  dir = \"{root}/meta\"\n\
                 [data]\n  dir = \"{root}/data\"\n  wal-dir = \"{root}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n\
                 [continuous_queries]\n  enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n"
            );
            let config_path = dir.path().join("influxdb.conf");
            fs::write(&config_path, config).expect("write influxd config");
            let log = dir.path().join("influxd.log");
            let args = vec![
                "run".to_owned(),
                "-config".to_owned(),
                config_path.display().to_string(),
            ];
            let mut child = spawn("influxd", "influxdb", &args, &log, dir.path());
            let url = format!("http://127.0.0.1:{http_port}");
            if wait_for(&mut child, &format!("{url}/ping"), 204).is_some() {
                return Influxd {
                    child,
                    url,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = log_tail(&log);
        }
        panic!("influxd did not start in three tries; its log ends:\n{last_log}");
    }

    /// Runs InfluxQL (POST /query), panicking on a transport error; returns the JSON answer.
    pub fn query(&self, db: &str, statement: &str) -> serde_json::Value {
        let mut response = agent()
            .post(format!("{}/query", self.url))
            .query("db", db)
            .query("epoch", "s")
            .send_form([("q", statement)])
            .expect("influxd /query");
        let text = response.body_mut().read_to_string().expect("answer body");
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
    }

    /// Creates a database.
    pub fn create_db(&self, db: &str) {
        let answer = self.query(db, &format!("CREATE DATABASE \"{db}\""));
        assert!(answer["results"][0]["error"].is_null(), "{answer}");
    }

    /// `SHOW TAG VALUES` of `tag`, as stored.
    pub fn tag_values(&self, db: &str, tag: &str) -> Vec<String> {
        let answer = self.query(
            db,
            &format!("SHOW TAG VALUES FROM \"metrics\" WITH KEY = \"{tag}\""),
        );
        let mut values: Vec<String> = answer["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row[1].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        values.sort();
        values
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `victoria-metrics`, killed on drop.
pub struct VictoriaMetrics {
    child: Child,
    /// Base URL of its HTTP API.
    pub url: String,
    _dir: TempDir,
}

impl VictoriaMetrics {
    /// Starts single-node VictoriaMetrics with its data in a new temporary directory.
    pub fn start() -> VictoriaMetrics {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = free_port();
            let log = dir.path().join("victoria-metrics.log");
            let args = vec![
                format!("-storageDataPath={}", dir.path().join("data").display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                "-retentionPeriod=100y".to_owned(),
                "-loggerLevel=WARN".to_owned(),
            ];
            let mut child = spawn(
                "victoria-metrics",
                "victoria-metrics",
                &args,
                &log,
                dir.path(),
            );
            let url = format!("http://127.0.0.1:{port}");
            if wait_for(&mut child, &format!("{url}/health"), 200).is_some() {
                return VictoriaMetrics {
                    child,
                    url,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = log_tail(&log);
        }
        panic!("victoria-metrics did not start in three tries; its log ends:\n{last_log}");
    }

    /// Every series of measurement `metrics`, as `/api/v1/export` gives them (one JSON object
    /// per series: `metric` labels, `values`, `timestamps` in milliseconds).
    pub fn export(&self) -> Vec<serde_json::Value> {
        let agent = agent();
        let flushed = agent
            .get(format!("{}/internal/force_flush", self.url))
            .call()
            .expect("force_flush");
        assert_eq!(flushed.status().as_u16(), 200);
        let mut response = agent
            .post(format!("{}/api/v1/export", self.url))
            .send_form([("match[]", "{__name__=~\"metrics.*\"}")])
            .expect("export");
        let text = response.body_mut().read_to_string().expect("export body");
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
            })
            .collect()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A series of `points`, its type from `uom`.
pub fn series(
    host: &str,
    service: &str,
    metric: &str,
    uom: &str,
    points: &[(i64, f64)],
) -> SeriesBatch {
    SeriesBatch::new(SeriesKey::new(host, service, metric), uom, points)
}

/// Labels that break naive line protocol, or InfluxDB 1.x, each in a series of its own.
pub const AWKWARD_LABELS: &[&str] = &[
    "C:\\",
    "C:\\ Used Space",
    "'C:\\ Used Space'",
    "a b",
    "a,b",
    "a=b",
    "a\"b",
    "\\",
    "\\\\",
    "trailing\\",
    "x~",
    "C:\\~",
    "µs ☃ 日本",
    "/var/log",
];

/// An epoch second in 2020, a multiple of 3600.
pub const T0: i64 = 1_600_002_000;

/// For every awkward label: a series with it as the metric (two points, `base + i` and its
/// negative; units alternately none and `B`) and a series with it as host and service too.
/// Three points per label in all.
pub fn awkward_batches(base: f64) -> Vec<SeriesBatch> {
    let mut batches = Vec::new();
    for (i, label) in AWKWARD_LABELS.iter().enumerate() {
        let value = i as f64 + base;
        let unit = if i % 2 == 0 { "" } else { "B" };
        batches.push(series(
            "win 1,a=b",
            "Disk C:\\",
            label,
            unit,
            &[(T0, value), (T0 + 60, -value)],
        ));
        batches.push(series(label, label, "m", "%", &[(T0, value)]));
    }
    batches
}
