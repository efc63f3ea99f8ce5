//! Shared by the reference tests: a driver for graphite's whisper in Debian's `/usr/bin/python3`
//! (one process per test, JSON lines over pipes) and generators of random whisper workloads that
//! obey whisper's validation rules.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use perfpipe_whisper::{AggregationMethod, ArchiveSpec};
use serde_json::{json, Value};

/// The interpreter with Debian's python3-whisper.
pub const PYTHON: &str = "/usr/bin/python3";

/// What `whisper.fetch` returned: `None`, or `((from, until, step), values)`.
pub type ReferenceFetch = Option<((i64, i64, i64), Vec<Option<f64>>)>;

/// A running `whisper_driver.py`.
pub struct ReferenceWhisper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ReferenceWhisper {
    /// Starts the driver; fails the test with a clear message if python3-whisper is missing.
    pub fn start() -> ReferenceWhisper {
        let probe = Command::new(PYTHON)
            .args([
                "-c",
                "import whisper, importlib.metadata as m; v = m.version('whisper'); assert v == '1.1.4', v",
            ])
            .output()
            .unwrap_or_else(|error| panic!("cannot run {PYTHON} ({error}); install python3"));
        assert!(
            probe.status.success(),
            "{PYTHON} cannot import graphite's whisper 1.1.4 (apt-get install python3-whisper): {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/whisper_driver.py");
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {PYTHON} {}: {error}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        ReferenceWhisper {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command; returns `Ok(result)` or `Err(python exception text)`.
    pub fn call(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").expect("whisper driver stdin");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("whisper driver stdout");
        assert!(!line.is_empty(), "whisper driver exited on {command}");
        let answer: Value = serde_json::from_str(&line).expect("whisper driver answer");
        if answer["ok"] == json!(true) {
            Ok(answer.get("result").cloned().unwrap_or(Value::Null))
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    pub fn create(
        &mut self,
        path: &Path,
        archives: &[ArchiveSpec],
        aggregation: AggregationMethod,
        xff: f64,
    ) {
        let archives: Vec<[u32; 2]> = archives
            .iter()
            .map(|a| [a.seconds_per_point, a.points])
            .collect();
        self.call(json!({"op": "create", "path": path, "archives": archives,
                         "xff": xff, "aggregation": aggregation.name()}))
            .unwrap_or_else(|error| panic!("whisper.create {}: {error}", path.display()));
    }

    pub fn update_many(&mut self, path: &Path, points: &[(i64, f64)], now: i64) {
        let points: Vec<(i64, u64)> = points.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        self.call(json!({"op": "update_many", "path": path, "points": points, "now": now}))
            .unwrap_or_else(|error| panic!("whisper.update_many {}: {error}", path.display()));
    }

    /// `whisper.fetch`: `Ok(None)` for whisper's `None`, values as `Option<f64>`.
    pub fn fetch(
        &mut self,
        path: &Path,
        from: i64,
        until: i64,
        now: i64,
    ) -> Result<ReferenceFetch, String> {
        let result = self
            .call(json!({"op": "fetch", "path": path, "from": from, "until": until, "now": now}))?;
        if result.is_null() {
            return Ok(None);
        }
        let info = &result[0];
        let time_info = (
            info[0].as_i64().unwrap(),
            info[1].as_i64().unwrap(),
            info[2].as_i64().unwrap(),
        );
        let values = result[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().map(f64::from_bits))
            .collect();
        Ok(Some((time_info, values)))
    }

    pub fn set_order(&mut self, values: &[u64]) -> Vec<u64> {
        let result = self
            .call(json!({"op": "set_order", "values": values}))
            .unwrap();
        result
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    }
}

impl Drop for ReferenceWhisper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A random archive list that whisper's `validateArchiveList` accepts: 1–4 archives, small
/// enough that random updates wrap the rings.
pub fn random_archives(rng: &mut fastrand::Rng) -> Vec<ArchiveSpec> {
    let count = rng.usize(1..=4);
    let mut archives = Vec::with_capacity(count);
    let mut spec = ArchiveSpec {
        seconds_per_point: *rng.choice(&[1, 2, 5, 10, 60]).unwrap(),
        points: rng.u32(2..40),
    };
    archives.push(spec);
    while archives.len() < count {
        let factor = rng.u32(2..=spec.points.min(6));
        let seconds_per_point = spec.seconds_per_point * factor;
        let min_points = (spec.retention() / u64::from(seconds_per_point)) as u32 + 1;
        spec = ArchiveSpec {
            seconds_per_point,
            points: min_points.max(2) + rng.u32(0..30),
        };
        archives.push(spec);
    }
    // whisper sorts the list itself; hand it over shuffled now and then.
    if rng.bool() {
        rng.shuffle(&mut archives);
    }
    archives
}

/// A random xFilesFactor in [0, 1], with the edges and common values often.
pub fn random_xff(rng: &mut fastrand::Rng) -> f64 {
    match rng.u8(0..6) {
        0 => 0.0,
        1 => 1.0,
        2 => 0.5,
        _ => rng.f64(),
    }
}

/// A random value: integers, fractions, negatives, zeros, large magnitudes.
pub fn random_value(rng: &mut fastrand::Rng) -> f64 {
    match rng.u8(0..6) {
        0 => f64::from(rng.i32(-100..100)),
        1 => 0.0,
        2 => (rng.f64() - 0.5) * 1e12,
        3 => -0.0,
        _ => rng.f64() * 100.0,
    }
}

/// Random points for one `update_many` call at `now` on a file whose finest step is
/// `finest_step` and whose longest retention is `max_retention`: mostly inside the retention,
/// some too old, some slightly in the future, some duplicates and some sharing an interval.
pub fn random_points(
    rng: &mut fastrand::Rng,
    now: i64,
    finest_step: i64,
    max_retention: i64,
) -> Vec<(i64, f64)> {
    let count = rng.usize(1..=40);
    let mut points: Vec<(i64, f64)> = Vec::with_capacity(count);
    let burst_start = now - rng.i64(0..=max_retention);
    for i in 0..count {
        let timestamp = match rng.u8(0..10) {
            0 => now - max_retention - rng.i64(0..=max_retention), // too old (or exactly at the edge)
            1 => now + rng.i64(0..=finest_step * 3),               // in the future
            2 if !points.is_empty() => points[rng.usize(..points.len())].0, // duplicate
            3 | 4 => burst_start + i as i64 * finest_step,         // a consecutive run
            _ => now - rng.i64(0..=max_retention),
        };
        points.push((timestamp, random_value(rng)));
    }
    points
}
