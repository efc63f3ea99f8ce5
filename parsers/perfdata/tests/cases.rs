//! Every worked case of `fixtures/perfdata/cases.jsonl` (a copy of the reading's own cases),
//! read through the library and compared with the expected `perfpipe parse` output.

use serde_json::Value;

#[test]
fn every_case_of_the_reading() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/perfdata/cases.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("cases.jsonl is in fixtures/perfdata");
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let input = case["input"].as_str().unwrap();
        let got = serde_json::to_value(perfpipe_perfdata::read(input)).unwrap();
        if got != case["expect"] {
            failures.push(format!(
                "{} {input:?}\n  expected {}\n  got      {got}",
                case["id"], case["expect"]
            ));
        }
        checked += 1;
    }
    assert!(checked >= 225, "only {checked} cases found");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
