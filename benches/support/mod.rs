//! What the end-to-end drivers (`load_driver`, `plugin_cache_load`) share about the processes
//! they run and measure: signals, `perf record`, and CPU time from `/proc`.

#![allow(dead_code)] // each driver uses a different part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context};

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
