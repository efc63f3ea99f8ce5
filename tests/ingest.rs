//! `perfpipe ingest --local` as a user runs it: an Opsview spool file into Whisper and RRD
//! files, read back with the reference tools (`whisper-fetch`, `rrdtool fetch`), and the
//! catalogue listing what was stored. Bad lines are reported and the rest is stored.
#![cfg(feature = "rrd")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Opsview's step and the Whisper finest archive both divide this.
const STEP: i64 = 300;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("perfpipe-ingest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn run_ingest(config: &Path, input: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["ingest", "--local", "--config"])
        .arg(config)
        .arg(input)
        .output()
        .expect("perfpipe runs")
}

#[test]
fn opsview_spool_into_whisper_and_rrd() {
    let dir = temp_dir("opsview");
    let data = dir.join("data");
    let config = dir.join("perfpipe.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nbackends = [\"whisper\", \"rrd\"]\n",
            data.display().to_string()
        ),
    )
    .unwrap();

    // Six checks five minutes apart, ending an hour ago, on step boundaries; written out of
    // order, with one duplicate and two bad lines between them.
    let first = (now() - 3 * 3600) / STEP * STEP;
    let times: Vec<i64> = (0..6).map(|i| first + i * STEP).collect();
    let rta = |i: usize| 0.25 + i as f64;
    let mut spool = String::new();
    for &i in &[3usize, 0, 1, 5, 2, 4] {
        spool.push_str(&format!(
            "{}||web-01||TCP/IP - LAN||PING OK||rta={}ms;100;500;0 pl={}%;20;60\n",
            times[i],
            rta(i),
            i * 10
        ));
    }
    spool.push_str(&format!(
        "{}||web-01||TCP/IP - LAN||PING OK||rta=99ms\n",
        times[2]
    ));
    spool.push_str("garbage line\n");
    spool.push_str(&format!("{}||web-01||Load||OK||load1=x\n", times[0]));
    let input = dir.join("perfdata.log");
    std::fs::write(&input, spool).unwrap();

    let output = run_ingest(&config, &input);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "bad lines make the exit status non-zero"
    );
    assert!(
        stderr.contains("line 8"),
        "the garbage line is named: {stderr}"
    );
    assert!(
        stderr.contains("line 9, perfdata: value is not a number"),
        "{stderr}"
    );
    assert!(
        stdout.contains("results 8, points 13, duplicates 1"),
        "summary: {stdout} / {stderr}"
    );
    assert!(stdout.contains("whisper: written 12"), "{stdout}");
    assert!(stdout.contains("rrd: written 12"), "{stdout}");

    // Whisper: the finest archive holds every point, read back by graphite's own tool.
    let wsp = data.join("whisper/web%2D01/TCP%2FIP%20%2D%20LAN/rta.wsp");
    let fetched = common::whisper_fetch(&wsp, first - 1, times[5]);
    let step = fetched[1].0 - fetched[0].0;
    for (i, &t) in times.iter().enumerate() {
        let stored = fetched[((t - fetched[0].0) / step) as usize].1;
        assert_eq!(stored, Some(rta(i)), "whisper at {t}");
    }

    // RRD: Opsview's layout; each 300 s row holds the value written at its end.
    let rrd = data.join("rrd/web%2D01/TCP%2FIP%20%2D%20LAN/rta/value.rrd");
    assert!(rrd.is_file(), "{} exists", rrd.display());
    let fetched = Command::new("rrdtool")
        .arg("fetch")
        .arg(&rrd)
        .args([
            "AVERAGE",
            "-s",
            &times[0].to_string(),
            "-e",
            &times[5].to_string(),
        ])
        .output()
        .expect("rrdtool runs");
    let text = String::from_utf8_lossy(&fetched.stdout);
    for (i, &t) in times.iter().enumerate().skip(1) {
        let row = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{t}: ")))
            .unwrap_or_else(|| panic!("no row {t} in {text}"));
        let value: f64 = row.trim().parse().unwrap();
        assert!(
            (value - rta(i)).abs() < 1e-9,
            "rrd at {t}: {value} != {}",
            rta(i)
        );
    }

    // The catalogue knows both series of the host, with their units.
    let catalogue = perfpipe_sqlite::Catalogue::open(&data.join("catalogue.sqlite")).unwrap();
    let metrics: Vec<(String, String)> = catalogue
        .metrics("web-01")
        .unwrap()
        .into_iter()
        .map(|s| (s.key.metric.into(), s.uom))
        .collect();
    assert_eq!(
        metrics,
        [("pl".into(), "%".into()), ("rta".into(), "ms".into())]
    );

    let _ = std::fs::remove_dir_all(&dir);
}
