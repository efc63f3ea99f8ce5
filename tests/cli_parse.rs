//! `perfpipe parse` as a user runs it: every case of the reading through the real binary, the
//! acceptance example, malformed input (answered with errors, never a failure) and `--summary`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn perfpipe_parse(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .arg("parse")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perfpipe starts");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "perfpipe parse failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

#[test]
fn every_case_through_the_binary() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/perfdata/cases.jsonl");
    let cases: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let input: String = cases
        .iter()
        .map(|case| format!("{}\n", case["input"].as_str().unwrap()))
        .collect();

    let got = json_lines(&perfpipe_parse(&[], input.as_bytes()));
    assert_eq!(got.len(), cases.len(), "one output line per input line");
    for (case, got) in cases.iter().zip(&got) {
        // Value equality compares numbers as f64: a printed number that did not parse back to
        // the same f64 fails here.
        assert_eq!(
            got, &case["expect"],
            "case {}: {:?}",
            case["id"], case["input"]
        );
    }
}

#[test]
fn acceptance_example() {
    let got = json_lines(&perfpipe_parse(&[], b"'a b'=1,5ms;~:2;@3:4;0; x=U\n"));
    let want: Value = serde_json::json!({
        "metrics": [
            {"label": "a b", "value": 1.5, "uom": "ms", "warn": "~:2", "crit": "@3:4",
             "min": 0.0, "max": null,
             "warn_range": {"inside": false, "start": null, "start_infinity": true,
                            "end": 2.0, "end_infinity": false},
             "crit_range": {"inside": true, "start": 3.0, "start_infinity": false,
                            "end": 4.0, "end_infinity": false}},
            {"label": "x", "value": null, "uom": "", "warn": null, "crit": null,
             "min": null, "max": null, "warn_range": null, "crit_range": null}
        ],
        "errors": []
    });
    assert_eq!(got, [want]);
}

#[test]
fn malformed_lines_get_errors_with_offsets_and_reading_goes_on() {
    let input = b"ok=1 bad=x 'open=2\n\xff\xfe=1\n\nlast=3;U;;;9";
    let got = json_lines(&perfpipe_parse(&[], input));
    assert_eq!(
        got.len(),
        4,
        "an empty line is a line; a last line without newline too"
    );
    assert_eq!(got[0]["metrics"][0]["label"], "ok");
    assert_eq!(
        got[0]["errors"],
        serde_json::json!([
            {"offset": 5, "message": "value is not a number"},
            {"offset": 11, "message": "unterminated quoted label"}
        ])
    );
    assert_eq!(
        got[1]["errors"],
        serde_json::json!([{"offset": 0, "message": "invalid UTF-8"}])
    );
    assert_eq!(got[2], serde_json::json!({"metrics": [], "errors": []}));
    assert_eq!(got[3]["metrics"][0]["max"], 9.0);
    assert_eq!(
        got[3]["metrics"][0]["warn_range"],
        serde_json::json!({"invalid": true})
    );
}

#[test]
fn numbers_print_as_round_trip_json_numbers() {
    let values = [
        "0.1",
        "1e-7",
        "123456789123456789",
        "2.2250738585072014e-308",
        "-0",
        "1,25",
    ];
    let input: String = values.iter().map(|v| format!("v={v}\n")).collect();
    let output = perfpipe_parse(&[], input.as_bytes());
    let text = String::from_utf8(output.stdout).unwrap();
    for (line, value) in text.lines().zip(values) {
        let printed = line
            .split("\"value\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        let expected: f64 = value.replace(',', ".").parse().unwrap();
        let reparsed: f64 = printed.parse().unwrap();
        assert_eq!(
            reparsed.to_bits(),
            expected.to_bits(),
            "{value} printed as {printed}"
        );
    }
}

#[test]
fn summary_counts_what_parse_reads() {
    let input = b"a=1 b=2\nc=x\n\xff\nd=4 e=5 f=6";
    let output = perfpipe_parse(&["--summary"], input);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["lines"], 4);
    assert_eq!(summary["metrics"], 5);
    assert_eq!(summary["errors"], 2);
    assert_eq!(summary["bytes"], input.len());
    assert!(summary["mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);
}
