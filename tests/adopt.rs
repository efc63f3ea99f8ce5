//! `perfpipe adopt` and `perfpipe export` on trees made by the reference tools: an Opsview
//! RRD tree made with `rrdtool create/update` (with a `uom` file and a COUNTER), a Graphite
//! tree made with graphite's `whisper-create`/`whisper-update`, each adopted without a byte of
//! its files changing and then served by a node; an export from RRD to Whisper read back with
//! `whisper-fetch`, and run again to show it resumes rather than copies twice.

mod common;

use std::path::Path;
use std::process::Command;

use common::{now, temp_dir, Node};

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn perfpipe(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("perfpipe runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// `rrdtool fetch` rows `(time, value)` with a value.
fn rrd_rows(file: &Path, start: i64, end: i64) -> Vec<(i64, f64)> {
    run(
        "rrdtool",
        &[
            "fetch",
            file.to_str().unwrap(),
            "AVERAGE",
            "-s",
            &start.to_string(),
            "-e",
            &end.to_string(),
        ],
    )
    .lines()
    .filter_map(|line| {
        let (time, value) = line.split_once(": ")?;
        let value: f64 = value.trim().parse().ok()?;
        (!value.is_nan()).then(|| (time.trim().parse().unwrap(), value))
    })
    .collect()
}

#[test]
fn an_opsview_rrd_tree_is_adopted_then_exported_to_whisper() {
    let dir = temp_dir("adopt-rrd");
    let rrd = dir.join("rrd");
    let t0 = (now() - 86_400) / 300 * 300;
    let make = |path: &str, ds: &str, value: &dyn Fn(i64) -> f64| {
        let file = rrd.join(path).join("value.rrd");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        run(
            "rrdtool",
            &[
                "create",
                file.to_str().unwrap(),
                "--start",
                &(t0 - 300).to_string(),
                "--step",
                "300",
                &format!("DS:value:{ds}:600:U:U"),
                "RRA:AVERAGE:0.5:1:600",
                "RRA:AVERAGE:0.5:6:700",
                "RRA:AVERAGE:0.5:24:775",
                "RRA:AVERAGE:0.5:288:797",
            ],
        );
        let updates: Vec<String> = (0..200)
            .map(|i| format!("{}:{}", t0 + i * 300, value(i)))
            .collect();
        let mut args = vec!["update".to_string(), file.display().to_string()];
        args.extend(updates);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("rrdtool", &args);
        file
    };
    let time_file = make("web%2D01/HTTP/time", "GAUGE", &|i| 0.25 * i as f64);
    std::fs::write(time_file.parent().unwrap().join("uom"), "ms\n").unwrap();
    make("web%2D01/Interface/bytes_in", "COUNTER", &|i| {
        (i * 3000) as f64
    });
    make("not-encoded/HTTP/time", "GAUGE", &|_| 1.0);
    let before = digest(&rrd);

    let config = common::config(
        &dir,
        &format!(
            // Whisper at RRD's 5-minute step: exported values are stored as they are.
            "data_dir = {:?}\nbackends = [\"rrd\"]\n[rrd]\ndir = {:?}\n[whisper]\nretentions = \"5m:30d\"\n",
            dir.join("data").display().to_string(),
            rrd.display().to_string()
        ),
    );
    let config = config.to_str().unwrap();

    // Another directory than the configured one is refused, naming both.
    let (ok, _, stderr) = perfpipe(&["adopt", "--rrd", dir.to_str().unwrap(), "--config", config]);
    assert!(!ok && stderr.contains("is not the directory"), "{stderr}");

    let (ok, stdout, stderr) =
        perfpipe(&["adopt", "--rrd", rrd.to_str().unwrap(), "--config", config]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("adopted 2 series") && stdout.contains("skipped 1 files"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not-encoded") && stderr.contains("not in perfpipe's encoding"),
        "{stderr}"
    );
    assert_eq!(digest(&rrd), before, "adoption changes no file");

    // A node over the tree lists the series with unit and type, and reads the files' values.
    let node = Node::start(&["--config", config]);
    let metrics = node.get("/api/v1/hosts/web-01/metrics").json();
    let list = metrics["metrics"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{metrics}");
    let time = list.iter().find(|m| m["metric"] == "time").unwrap();
    assert_eq!(
        (time["uom"].as_str(), time["ds_type"].as_str()),
        (Some("ms"), Some("GAUGE"))
    );
    let bytes = list.iter().find(|m| m["metric"] == "bytes_in").unwrap();
    assert_eq!(bytes["ds_type"], "COUNTER");
    assert_eq!(time["last_seen"].as_i64(), Some(t0 + 199 * 300));
    assert_eq!(time["last_value"].as_f64(), Some(0.25 * 199.0));
    let (start, end) = (t0 + 300, t0 + 199 * 300);
    let answer = node
        .get(&format!(
            "/api/v1/query?hsm=web-01::HTTP::time&start={start}&end={end}"
        ))
        .json();
    let series = &answer["series"][0];
    let values = series["values"].as_array().unwrap();
    let served: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.as_f64()
                .map(|v| (series["start"].as_i64().unwrap() + i as i64 * 300, v))
        })
        .collect();
    assert_eq!(served, rrd_rows(&time_file, start, end));
    drop(node);

    // Export into Whisper; the values read back with whisper-fetch.
    let (ok, stdout, stderr) = perfpipe(&["export", "--to", "whisper", "--config", config]);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("copied 2 series"), "{stdout}");
    let wsp = dir.join("data/whisper/web%2D01/HTTP/time.wsp");
    let fetched = run(
        "whisper-fetch",
        &[
            "--from",
            &(t0 - 60).to_string(),
            "--until",
            &(t0 + 200 * 300).to_string(),
            wsp.to_str().unwrap(),
        ],
    );
    let stored: Vec<(i64, f64)> = fetched
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (at, value) = (
                parts.next()?.parse().ok()?,
                parts.next()?.parse::<f64>().ok()?,
            );
            Some((at, value))
        })
        .collect();
    let expected = rrd_rows(&time_file, t0 - 300, t0 + 200 * 300);
    assert!(expected.len() >= 190, "{expected:?}");
    for (at, value) in &expected {
        assert!(
            stored.contains(&(*at, *value)),
            "{at} {value} missing from whisper-fetch: {fetched}"
        );
    }

    // A second run resumes: nothing copied twice.
    let (ok, stdout, _) = perfpipe(&["export", "--to", "whisper", "--config", config]);
    assert!(ok);
    assert!(
        stdout.contains("copied 0 series") && stdout.contains("2 already copied"),
        "{stdout}"
    );
}

#[test]
fn a_graphite_tree_is_adopted_and_rendered() {
    let dir = temp_dir("adopt-whisper");
    let tree = dir.join("whisper");
    let t0 = (now() - 3_600) / 60 * 60;
    let make = |path: &str| {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        run(
            "whisper-create",
            &[file.to_str().unwrap(), "60:1d", "300:30d"],
        );
        let points: Vec<String> = (0..50)
            .map(|i| format!("{}:{}", t0 + i * 60, i * 2))
            .collect();
        let mut args = vec![file.display().to_string()];
        args.extend(points);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("whisper-update", &args);
    };
    make("db%2D1/Disk/used.wsp");
    make("collectd/web01/cpu-0/idle.wsp");
    let before = digest(&tree);
    let config = common::config(
        &dir,
        &format!(
            "data_dir = {:?}\n[whisper]\ndir = {:?}\nretentions = \"60s:1d,5m:30d\"\n",
            dir.join("data").display().to_string(),
            tree.display().to_string()
        ),
    );
    let config = config.to_str().unwrap();
    let (ok, stdout, stderr) = perfpipe(&[
        "adopt",
        "--whisper",
        tree.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("adopted 1 series"), "{stdout}");
    assert!(stderr.contains("4 levels of names"), "{stderr}");
    assert_eq!(digest(&tree), before);

    let node = Node::start(&["--config", config]);
    let render = node
        .get(&format!(
            "/render?target=db%252D1.Disk.used&from={}&until={}&format=json",
            t0 - 60,
            t0 + 49 * 60
        ))
        .json();
    let points = render[0]["datapoints"].as_array().unwrap();
    assert_eq!(points.len(), 50);
    for (i, point) in points.iter().enumerate() {
        assert_eq!(point[1].as_i64(), Some(t0 + i as i64 * 60));
        assert_eq!(point[0].as_f64(), Some(i as f64 * 2.0));
    }
}
