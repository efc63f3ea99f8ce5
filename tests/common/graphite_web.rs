//! Debian's graphite-web (1.1.8) run for one test, side by side with perfpipe: started by
//! `tests/graphite_web/launch.py` under `/usr/bin/python3` (gunicorn, 2 sync workers, on
//! 127.0.0.1 with an ephemeral port, settings and sqlite database in a temp dir, no render
//! cache), over a whisper directory the test wrote with graphite's own `whisper` module
//! (`write_whisper`). Killed, with its workers, when dropped. Also the plain HTTP helpers the
//! comparisons use against any Graphite render API (`http_get`, `render_path`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Debian's interpreter, which has graphite-web, Django, gunicorn and whisper (the `python3`
/// first on PATH may be another one).
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// The launcher: writes the settings module, migrates, execs gunicorn.
pub const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphite_web/launch.py");

/// Writes whisper files from a JSON description on stdin.
pub const WHISPER_WRITER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/graphite_web/write_whisper.py"
);

/// A graphite-web server over one whisper directory; killed (the whole process group) on Drop.
pub struct GraphiteWeb {
    child: Child,
    address: String,
    log: Arc<Mutex<String>>,
    work: tempfile::TempDir,
}

impl GraphiteWeb {
    /// Starts graphite-web with 2 gunicorn workers over `whisper_dir` and waits until
    /// `/render` answers; panics with the server's log if it does not within 60 s. The
    /// server also dies when the calling thread ends (so start it in the test's thread).
    pub fn start(whisper_dir: &Path) -> GraphiteWeb {
        GraphiteWeb::start_with_workers(whisper_dir, 2)
    }

    /// As `start`, with this many gunicorn workers.
    pub fn start_with_workers(whisper_dir: &Path, workers: usize) -> GraphiteWeb {
        let work = tempfile::Builder::new()
            .prefix("perfpipe-graphite-web-")
            .tempdir()
            .expect("temp dir");
        let mut child = Command::new(DEBIAN_PYTHON)
            .arg(LAUNCHER)
            .arg(whisper_dir)
            .arg(work.path())
            .arg("--workers")
            .arg(workers.to_string())
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            // gunicorn's master dies with the thread that starts it (prctl PDEATHSIG), so
            // that a killed test run leaves no server behind: start it from the test's thread.
            .env("PERFPIPE_GRAPHITE_PDEATHSIG", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so that Drop stops gunicorn's workers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{DEBIAN_PYTHON} {LAUNCHER} does not start: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        let show = std::env::var_os("PERFPIPE_TEST_LOG").is_some();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if show {
                    eprintln!("[graphite-web] {line}");
                }
                if let Some(rest) = line.split("Listening at: http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = address_tx.send(address);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = GraphiteWeb {
            child,
            address: String::new(),
            log,
            work,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => server.address = address,
            Err(_) => panic!(
                "graphite-web did not start listening within 60 s; its log:\n{}",
                server.log()
            ),
        }
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("graphite-web exited ({status}); its log:\n{}", server.log());
            }
            if let Ok((200, _)) = http_get(&format!(
                "{}/render?target=perfpipe.harness.none&format=json",
                server.url()
            )) {
                return server;
            }
            if Instant::now() > deadline {
                panic!(
                    "graphite-web does not answer /render within 60 s; its log:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// gunicorn's stderr so far, then graphite-web's own log files (exception.log …).
    pub fn log(&self) -> String {
        let mut text = self.log.lock().unwrap().clone();
        if let Ok(entries) = std::fs::read_dir(self.work.path().join("log")) {
            for entry in entries.flatten() {
                if let Ok(body) = std::fs::read_to_string(entry.path()) {
                    if !body.is_empty() {
                        text.push_str(&format!("==> {} <==\n{body}", entry.path().display()));
                    }
                }
            }
        }
        text
    }

    /// The temp dir with the generated settings, database and logs.
    pub fn work_dir(&self) -> PathBuf {
        self.work.path().to_path_buf()
    }

    /// GET `path_and_query` (starting with `/`): status and body.
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        http_get(&format!("{}{path_and_query}", self.url()))
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}; log:\n{}", self.log()))
    }

    /// GET `path_and_query` and parse the JSON body; panics (with the log) unless 200 JSON.
    pub fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = self.get(path_and_query);
        if status != 200 {
            panic!(
                "GET {path_and_query}: {status} {body}\nlog:\n{}",
                self.log()
            );
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: not JSON ({e}): {body}"))
    }

    /// `/render` of these targets as JSON (targets URL-encoded); panics unless 200 JSON.
    pub fn render_json(
        &self,
        targets: &[&str],
        from: &str,
        until: &str,
        extra: &[(&str, &str)],
    ) -> serde_json::Value {
        self.try_render_json(targets, from, until, extra)
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()))
    }

    /// `/render` as JSON, or why not (status and body, or the transport error).
    pub fn try_render_json(
        &self,
        targets: &[&str],
        from: &str,
        until: &str,
        extra: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        render_json_at(&self.url(), targets, from, until, extra)
    }
}

impl Drop for GraphiteWeb {
    fn drop(&mut self) {
        // The launcher exec'd gunicorn, whose workers share its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a full URL: status and body (any status; an error only when there is no answer).
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut answer = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = answer.status().as_u16();
    let body = answer
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, body))
}

/// `/render?target=…&…&format=json&from=…&until=…&extra…`, every value URL-encoded.
pub fn render_path(targets: &[&str], from: &str, until: &str, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for target in targets {
        query.append_pair("target", target);
    }
    query.append_pair("format", "json");
    query.append_pair("from", from);
    query.append_pair("until", until);
    for (key, value) in extra {
        query.append_pair(key, value);
    }
    format!("/render?{}", query.finish())
}

/// `/render` at `base_url` (`http://host:port`, graphite-web's or perfpipe's) as JSON, or why
/// not: `"{status} {body}"` for a non-200 answer or one that is not JSON.
pub fn render_json_at(
    base_url: &str,
    targets: &[&str],
    from: &str,
    until: &str,
    extra: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let path = render_path(targets, from, until, extra);
    let (status, body) = http_get(&format!("{base_url}{path}"))?;
    if status != 200 {
        return Err(format!("{status} {}", error_summary(&body)));
    }
    parse_render_body(&body).map_err(|e| format!("200 but not JSON ({e}): {body}"))
}

/// The gist of an error answer: graphite-web's 500 page is HTML with the Python traceback,
/// whose last line (`TypeError: …`) is returned; other bodies are returned trimmed.
pub fn error_summary(body: &str) -> String {
    if !body.contains("Traceback") {
        return body.trim().to_string();
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&");
    text.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.chars().all(|c| c == '^' || c == '~'))
        .unwrap_or("")
        .to_string()
}

/// Parses a render answer. graphite-web writes infinite values as `1e9999` (views.py
/// renderViewJson replaces `Infinity,`), which JSON parsers reject as out of range: those
/// become ±f64::MAX.
pub fn parse_render_body(body: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(body).or_else(|e| {
        if body.contains("1e9999") {
            serde_json::from_str(&body.replace("1e9999", "1.7976931348623157e308"))
        } else {
            Err(e)
        }
    })
}

/// One series' points: `(timestamp, value or None for a gap)`.
pub type WhisperPoints = Vec<(i64, Option<f64>)>;

/// Writes whisper files under `dir` with graphite's own `whisper` module: for each
/// `(series, points)` the file `dir/a/b/c.wsp` of series `a.b.c`, created with `retentions`
/// (`"60s:1d,5m:30d"`), xFilesFactor 0.5 and average aggregation, then the points that are
/// not `None` written with `whisper.update_many` (which drops those older than the file's
/// retention counted from now).
pub fn write_whisper(dir: &Path, retentions: &str, series: &[(String, WhisperPoints)]) {
    let files: serde_json::Map<String, serde_json::Value> = series
        .iter()
        .map(|(name, points)| {
            let points = points
                .iter()
                .map(|(t, v)| serde_json::json!([t, v]))
                .collect::<Vec<_>>();
            (name.clone(), serde_json::Value::Array(points))
        })
        .collect();
    let spec = serde_json::json!({
        "dir": dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        "retentions": retentions,
        "x_files_factor": 0.5,
        "aggregation": "average",
        "files": files,
    });
    let mut child = Command::new(DEBIAN_PYTHON)
        .arg(WHISPER_WRITER)
        .env_remove("PYTHONPATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{DEBIAN_PYTHON} {WHISPER_WRITER}: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(spec.to_string().as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "write_whisper.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Retentions of the sample tree: a day of minutes, 30 days of 5-minute points.
pub const SAMPLE_RETENTIONS: &str = "60s:1d,5m:30d";

/// The series of the sample tree: `h1..h3` × `svc, db` × `m1..m3` gauges, and
/// `h1..h3.svc.req_total` counters (all names `[A-Za-z0-9_]`).
pub fn sample_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for host in ["h1", "h2", "h3"] {
        for service in ["svc", "db"] {
            for metric in ["m1", "m2", "m3"] {
                paths.push(format!("{host}.{service}.{metric}"));
            }
        }
        paths.push(format!("{host}.svc.req_total"));
    }
    paths
}

/// The points of sample series `k` (its index in `sample_paths`) for the minutes up to `end`
/// (a multiple of 60), 26 hours of them (the oldest 2 hours land in the 5-minute archive
/// only): gauges with negative and zero values, counters that grow and wrap once, each with a
/// gap of its own (`None`) and a few missing single minutes.
pub fn sample_points(path: &str, k: usize, end: i64) -> WhisperPoints {
    let minutes = 26 * 60;
    let start = end - (minutes - 1) * 60;
    let gap_at = 200 + 97 * k as i64;
    let gap_len = (k % 4) as i64 * 7;
    let mut counter = 1000.0 * k as f64;
    (0..minutes)
        .map(|i| {
            let t = start + i * 60;
            let missing = (i >= gap_at && i < gap_at + gap_len) || (i * 7 + k as i64) % 211 == 0;
            let phase = i as f64 / 60.0 + k as f64;
            let value = if path.ends_with("req_total") {
                counter += ((i * 13 + k as i64) % 17) as f64;
                if i == 700 + 11 * k as i64 {
                    counter = 3.0; // a counter reset
                }
                counter
            } else if path.ends_with("m1") {
                ((phase.sin() * 50.0 + 50.0) * 100.0).round() / 100.0
            } else if path.ends_with("m2") {
                // Negative, zero and positive.
                ((i + 3 * k as i64) % 21 - 10) as f64 * 0.5
            } else {
                ((i / 30 + k as i64) % 5) as f64 * 12.25
            };
            (t, (!missing).then_some(value))
        })
        .collect()
}

/// Writes the sample tree under `dir` with graphite's whisper module (retentions
/// `SAMPLE_RETENTIONS`, data up to `end`) and returns its series paths.
pub fn write_sample_tree(dir: &Path, end: i64) -> Vec<String> {
    let paths = sample_paths();
    let series: Vec<(String, WhisperPoints)> = paths
        .iter()
        .enumerate()
        .map(|(k, path)| (path.clone(), sample_points(path, k, end)))
        .collect();
    write_whisper(dir, SAMPLE_RETENTIONS, &series);
    paths
}

/// A perfpipe config serving (reading) the whisper tree `whisper_dir`, as graphite-web does:
/// `backends = ["whisper"]`, `whisper.dir` the tree, data under `data_dir`. Write it with
/// `common::config(dir, &text)` and start the node with
/// `Node::start(&["--config", path])` (which listens on 127.0.0.1:0).
pub fn perfpipe_config_over(whisper_dir: &Path, data_dir: &Path, retentions: &str) -> String {
    format!(
        "data_dir = {:?}\nbackends = [\"whisper\"]\n\n[whisper]\ndir = {:?}\nretentions = {:?}\n",
        data_dir.display().to_string(),
        whisper_dir.display().to_string(),
        retentions
    )
}
