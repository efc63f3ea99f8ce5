//! Properties of the reader over generated inputs: it never panics, every error offset is a
//! char boundary inside the input, and a well-formed metric written out reads back to itself.

use perfpipe_perfdata::{read, Reader};
use proptest::prelude::*;

/// Strings rich in the grammar's delimiters, so generated inputs hit every rule.
fn perfdata_like() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("=".to_string()),
        Just("'".to_string()),
        Just("''".to_string()),
        Just(";".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("~".to_string()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just(",".to_string()),
        Just(".".to_string()),
        Just("e".to_string()),
        Just("-".to_string()),
        Just("U".to_string()),
        "[0-9]{1,4}",
        "[a-zA-Z%]{1,3}",
        "\\PC",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(pieces, 0..40).prop_map(|parts| parts.concat())
}

fn check_offsets(input: &str) {
    for item in Reader::new(input) {
        let offset = match item {
            Ok(metric) => metric.offset,
            Err(error) => error.offset,
        };
        assert!(offset < input.len(), "offset {offset} outside {input:?}");
        assert!(
            input.is_char_boundary(offset),
            "offset {offset} in {input:?}"
        );
    }
}

/// A label as a plugin would print it: bare when the reading reads it back unchanged,
/// otherwise quoted with `''` escapes.
fn write_label(label: &str) -> String {
    let bare_safe = !label.is_empty()
        && !label.contains(['=', '\'', ' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        && !label.starts_with('\'');
    if bare_safe {
        label.to_string()
    } else {
        format!("'{}'", label.replace('\'', "''"))
    }
}

fn threshold_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        (0f64..1e6).prop_map(|v| v.to_string()),
        (-1e6f64..1e6).prop_map(|v| format!("~:{v}")),
        (0u32..100, 100u32..200).prop_map(|(a, b)| format!("@{a}:{b}")),
        (0u32..100).prop_map(|a| format!("{a}:")),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_any_string(input in any::<String>()) {
        let _ = read(&input);
        check_offsets(&input);
    }

    #[test]
    fn never_panics_on_grammar_shaped_strings(input in perfdata_like()) {
        let _ = read(&input);
        check_offsets(&input);
    }

    #[test]
    fn a_written_metric_reads_back(
        label in "\\PC{1,30}",
        value in prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()), (-1e9f64..1e9)],
        unknown in prop::bool::weighted(0.1),
        uom in "[a-zA-Z%/µ°]{0,4}",
        warn in threshold_text(),
        crit in threshold_text(),
        min in prop::option::of(-1e9f64..1e9),
        max in prop::option::of(-1e9f64..1e9),
        leading in "[ \t]{0,2}",
    ) {
        // A unit starting with a digit or e/E would merge into the number.
        prop_assume!(!uom.starts_with(['e', 'E']));
        let value_text = if unknown { "U".to_string() } else { format!("{value:?}") };
        let text = format!(
            "{leading}{}={value_text}{uom};{};{};{};{}",
            write_label(&label),
            warn.clone().unwrap_or_default(),
            crit.clone().unwrap_or_default(),
            min.map(|m| m.to_string()).unwrap_or_default(),
            max.map(|m| m.to_string()).unwrap_or_default(),
        );
        let read = read(&text);
        prop_assert!(read.errors.is_empty(), "{text:?}: {:?}", read.errors);
        prop_assert_eq!(read.metrics.len(), 1, "{:?}", text);
        let metric = &read.metrics[0];
        prop_assert_eq!(metric.label.as_ref(), label.as_str());
        prop_assert_eq!(metric.value, (!unknown).then_some(value));
        prop_assert_eq!(metric.uom, uom.as_str());
        prop_assert_eq!(metric.warn.map(|t| t.raw), warn.as_deref());
        prop_assert_eq!(metric.crit.map(|t| t.raw), crit.as_deref());
        prop_assert!(metric.warn.is_none_or(|t| t.range.is_some()));
        prop_assert!(metric.crit.is_none_or(|t| t.range.is_some()));
        prop_assert_eq!(metric.min, min);
        prop_assert_eq!(metric.max, max);
        prop_assert_eq!(metric.offset, leading.len());
    }

    #[test]
    fn metrics_joined_by_whitespace_read_back_in_order(labels in prop::collection::vec("\\PC{1,12}", 1..8)) {
        let text: Vec<String> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| format!("{}={i}", write_label(label)))
            .collect();
        let text = text.join(" ");
        let read = read(&text);
        prop_assert!(read.errors.is_empty(), "{:?}: {:?}", text, read.errors);
        let got: Vec<&str> = read.metrics.iter().map(|m| m.label.as_ref()).collect();
        let want: Vec<&str> = labels.iter().map(String::as_str).collect();
        prop_assert_eq!(got, want);
    }
}
