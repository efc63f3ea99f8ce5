//! Expressions over a node's last values: `GET /api/v1/eval`, `perfpipe eval` and the
//! `perfpipe check` plugin against a node started here; the last values outlive a restart.

mod common;

use std::process::Command;

use common::{config, now, temp_dir, Node};

fn start(dir: &std::path::Path) -> Node {
    let config = config(dir, "[enqueuer]\nmax_batch_age = \"100ms\"\n");
    Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ])
}

fn eval(node: &Node, expr: &str) -> (u16, serde_json::Value) {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("expr", expr)
        .finish();
    let answer = node.get(&format!("/api/v1/eval?{query}"));
    (answer.status, answer.json())
}

/// Runs `perfpipe check` against `url`; exit code and output line.
fn check(url: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["check", "--url", url, "--timeout", "2"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn expressions_read_the_last_values_and_the_plugin_alerts_on_them() {
    let dir = temp_dir("eval");
    let mut node = start(&dir);
    // Ten values one minute apart, 1.0 (oldest) to 10.0 (newest), for a host with '-' in it.
    let t0 = now() - 600;
    let lines: String = (1..=10)
        .map(|i| format!("{}||web-01||http||OK||time={i}.0s\n", t0 + 60 * i))
        .collect();
    let answer = node.post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    node.wait_written(10);

    let time = r#""web-01"-http-time"#;
    assert_eq!(eval(&node, &format!("{time}[0]")).1["value"], 10.0);
    assert_eq!(eval(&node, &format!("{time}[3]")).1["value"], 7.0);
    assert_eq!(
        eval(&node, &format!("avg({time}[0:9]) * 2")).1["value"],
        11.0
    );
    assert_eq!(
        eval(&node, &format!("{time}[0:2]")).1["values"],
        serde_json::json!([10.0, 9.0, 8.0])
    );
    let (status, missing) = eval(&node, &format!("{time}[10]"));
    assert_eq!(status, 200);
    assert!(missing["value"].is_null(), "{missing}");
    assert!(
        missing["reason"].as_str().unwrap().contains("10 values"),
        "{missing}"
    );
    let (status, refused) = eval(&node, &format!("{time}[0"));
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("expected"),
        "{refused}"
    );

    let url = format!("http://{}", node.address);
    let value = format!("{time}[0]");
    let (code, line) = check(
        &url,
        &["--expr", &value, "--warning", "20", "--critical", "30"],
    );
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("PERFPIPE OK - value 10"), "{line}");
    assert!(line.contains("| value=10;20;30"), "{line}");
    let threshold = format!("avg({time}[0:9])");
    let (code, line) = check(
        &url,
        &[
            "--expr",
            &value,
            "--warning",
            &threshold,
            "--critical",
            "30",
        ],
    );
    assert_eq!(code, 1, "{line}");
    assert!(line.starts_with("PERFPIPE WARNING"), "{line}");
    let (code, line) = check(
        &url,
        &[
            "--expr",
            &value,
            "--warning",
            "5",
            "--critical",
            &format!("{time}[1]"),
        ],
    );
    assert_eq!(code, 2, "{line}");
    let (code, line) = check(&url, &["--expr", &format!("{time}[50]"), "--warning", "5"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("no value"), "{line}");

    let printed = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args([
            "eval",
            "--url",
            &url,
            &format!("max({time}[0:4]) - min({time}[0:4])"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap().trim(),
        r#"{"value":4.0}"#
    );

    // A clean stop saves the last values; the restarted node answers from them.
    assert_eq!(node.terminate(), Some(0));
    let node = start(&dir);
    assert_eq!(eval(&node, &format!("{time}[0]")).1["value"], 10.0);
    assert_eq!(eval(&node, &format!("sum({time}[0:9])")).1["value"], 55.0);
}

#[test]
fn the_plugin_is_unknown_when_the_node_is_down() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let (code, line) = check(&url, &["--expr", "a-b-c[0]", "--warning", "1"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("PERFPIPE UNKNOWN"), "{line}");
}
