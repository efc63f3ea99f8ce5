//! What the end-to-end drivers (`load_driver`, `plugin_cache_load`, `soak`) share about the
//! processes they run and measure: starting a node and reading its log, signals, `perf
//! record`, CPU time and memory from `/proc`, and JSON over HTTP.

#![allow(dead_code)] // each driver uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context};

/// `perf record -e cpu-clock -g -p PID -o FILE`, given half a second to attach.
pub fn start_perf(pid: u32, file: &Path) -> anyhow::Result<Child> {
    let perf = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(perf)
}

/// `kill -NAME PID`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// utime + stime of `/proc/<which>/stat`, in seconds.
pub fn cpu_seconds(which: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat"))?;
    let after = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if it cannot say).
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Counts the node's warning and error lines, keeping the first few.
pub struct Log {
    pub count: AtomicU64,
    pub first: Mutex<Vec<String>>,
}

/// Starts `binary serve --config config`; answers the child, the address it logged, and its
/// log's warnings.
pub fn start_node(binary: &Path, config: &Path) -> anyhow::Result<(Child, String, Arc<Log>)> {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut address = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.split("address=").nth(1) {
            address = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let Some(address) = address else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the node did not log its address");
    };
    ensure!(
        address.starts_with("127.0.0.1:"),
        "node listens on {address}"
    );
    let log = Arc::new(Log {
        count: AtomicU64::new(0),
        first: Mutex::new(Vec::new()),
    });
    let drain = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                drain.count.fetch_add(1, Ordering::Relaxed);
                let mut first = drain.first.lock().unwrap();
                if first.len() < 5 {
                    first.push(line);
                }
            }
        }
    });
    Ok((child, address, log))
}

/// An HTTP client for the node: statuses as values, not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `GET url` as JSON (200 only).
pub fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<serde_json::Value> {
    let mut answer = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let text = answer.body_mut().read_to_string()?;
    ensure!(
        answer.status() == 200,
        "GET {url}: {} {text}",
        answer.status()
    );
    Ok(serde_json::from_str(&text)?)
}

/// A process's peak resident memory (VmHWM), in KB.
pub fn vm_hwm_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}
