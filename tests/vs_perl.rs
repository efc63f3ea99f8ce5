//! Cross-check against the reference parser: every line of `fixtures/perfdata/realworld.txt`
//! read by perfpipe and by Perl's `Monitoring::Plugin::Performance->parse_perfstring` (the
//! algorithm of Opsview's old importer) must give the same metrics: label, value and unit,
//! what ends up stored. Thresholds, min and max are not compared: that parser rewrites ranges
//! into its own normal form (`10:~` becomes `10:`), drops those it cannot read (`@0:6` next to
//! `~:4`, `90%`), and drops some min fields, where the reading keeps the raw text. Where the
//! reading deliberately differs on the stored data, the line is listed in `KNOWN_DIFFERENCES`
//! with the reason, and the test checks that it still differs (so a list entry cannot outlive
//! the difference it explains).

use std::io::Write;
use std::process::{Command, Stdio};

use perfpipe_perfdata::Metric;

/// Lines (by a substring) where READING.md reads differently from the Perl parser, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "'Adaptive Security Appliance 'outside'",
        "unescaped quotes inside a quoted label: the reading keeps such metrics (a lone quote is \
         literal); the Perl parser drops the whole line",
    ),
    (
        "=27196b/s;",
        "units with '/': the reading keeps `b/s` whole; the Perl parser's unit pattern stops at \
         the '/' and reads `b`",
    ),
];

fn perl_metrics(lines: &[&str]) -> Vec<Vec<Vec<Option<String>>>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/monitoring_plugin_dump.pl"
    );
    let mut child = Command::new("perl")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl runs (scripts/test installs libmonitoring-plugin-perl)");
    let input = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "the Perl reference parser failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A number as the Perl parser prints it (15 significant digits) against ours.
fn same_number(perl: &str, ours: f64) -> bool {
    perl.parse::<f64>()
        .is_ok_and(|theirs| theirs == ours || ((theirs - ours) / ours).abs() < 1e-13)
}

fn agrees(perl: &[Option<String>], ours: &Metric<'_>) -> Result<(), String> {
    let number = |perl: &Option<String>, ours: Option<f64>| match (perl, ours) {
        (None, None) => true,
        (Some(theirs), Some(ours)) => same_number(theirs, ours),
        _ => false,
    };
    let checks = [
        ("label", perl[0].as_deref() == Some(&*ours.label)),
        ("value", number(&perl[1], ours.value)),
        ("uom", perl[2].as_deref().unwrap_or("") == ours.uom),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        None => Ok(()),
        Some((field, _)) => Err(format!("{field}: perl {perl:?}, perfpipe {ours:?}")),
    }
}

#[test]
fn realworld_lines_read_as_the_perl_parser_reads_them() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/perfdata/realworld.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once('\t').map(|(_, perfdata)| perfdata))
        .collect();
    assert!(lines.len() > 50);
    let perl = perl_metrics(&lines);
    assert_eq!(perl.len(), lines.len());

    let mut disagreements = Vec::new();
    let mut known_seen = vec![false; KNOWN_DIFFERENCES.len()];
    for (line, theirs) in lines.iter().zip(&perl) {
        let ours = perfpipe_perfdata::read(line);
        let verdict = if theirs.len() != ours.metrics.len() {
            Err(format!(
                "perl read {} metrics, perfpipe {}",
                theirs.len(),
                ours.metrics.len()
            ))
        } else {
            theirs
                .iter()
                .zip(&ours.metrics)
                .try_for_each(|(theirs, ours)| agrees(theirs, ours))
        };
        let known = KNOWN_DIFFERENCES
            .iter()
            .position(|(needle, _)| line.contains(needle));
        match (known, verdict) {
            (Some(index), Err(_)) => known_seen[index] = true,
            (Some(index), Ok(())) => disagreements.push(format!(
                "{line:?} is listed as a known difference ({}) but now agrees",
                KNOWN_DIFFERENCES[index].1
            )),
            (None, Err(why)) => disagreements.push(format!("{line:?}: {why}")),
            (None, Ok(())) => {}
        }
    }
    for (seen, (needle, _)) in known_seen.iter().zip(KNOWN_DIFFERENCES) {
        assert!(
            seen,
            "no line of realworld.txt contains {needle:?} any more"
        );
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
