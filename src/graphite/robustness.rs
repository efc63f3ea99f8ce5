//! Generated input against the render language: random text into the parser and the time
//! reader, and random (well-formed and not) targets evaluated over an in-memory store, none of
//! which may panic; every refusal is an error value.

use proptest::prelude::*;

use super::eval::{evaluate_targets, Request, Store};
use super::functions::FUNCTION_NAMES;
use super::glob::PathPattern;
use super::series::Series;
use super::{parse_at_time, parse_target};

/// Three hosts × two metrics of one-minute values with gaps, negatives and zeros.
struct Memory;

impl Store for Memory {
    fn fetch(
        &mut self,
        pattern: &str,
        start: i64,
        end: i64,
        _now: i64,
    ) -> Result<Vec<Series>, String> {
        let pattern = PathPattern::new(pattern);
        let step = if end - start > 86_400 { 300 } else { 60 };
        let first = start - start.rem_euclid(step) + step;
        let count = ((end - first) / step).clamp(0, 20_000) as usize;
        let mut out = Vec::new();
        for host in ["h1", "h2", "web%2D01"] {
            for metric in ["m1", "cnt"] {
                if !pattern.matches_path(&[host, "svc", metric]) {
                    continue;
                }
                let values = (0..count)
                    .map(|i| (i % 7 != 3).then(|| ((i as f64) * 0.7).sin() * 10.0 + i as f64 % 3.0))
                    .collect();
                out.push(Series::new(
                    format!("{host}.svc.{metric}"),
                    first,
                    first + count as i64 * step,
                    step,
                    values,
                ));
            }
        }
        Ok(out)
    }
}

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("h*.svc.m1".to_string()),
        Just("{h1,h2}.svc.*".to_string()),
        Just("h[12].svc.cnt".to_string()),
        Just("nothing.here.at_all".to_string()),
        (-1_000i64..1_000).prop_map(|n| n.to_string()),
        (-1e9f64..1e9).prop_map(|f| format!("{f}")),
        Just("'1h'".to_string()),
        Just("'-30min'".to_string()),
        Just("'5min'".to_string()),
        Just("'sum'".to_string()),
        Just("'max'".to_string()),
        Just("\"x\"".to_string()),
        Just("true".to_string()),
        Just("None".to_string()),
        Just("inf".to_string()),
        Just("99999999999999".to_string()),
        Just("'1000000y'".to_string()),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let leaf = argument();
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            0..FUNCTION_NAMES.len(),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(f, args)| format!("{}({})", FUNCTION_NAMES[f].0, args.join(",")))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn text_never_panics_the_parsers(text in "\\\\PC{0,60}") {
        let _ = parse_target(&text);
        let _ = parse_at_time(&text, 1_700_000_000);
    }

    #[test]
    fn generated_targets_evaluate_or_refuse(target in target(), span in 60i64..3 * 86_400) {
        let now = 1_700_000_000;
        let request = Request { start: now - span, end: now, now, x_files_factor: 0.0 };
        let _ = evaluate_targets(&mut Memory, request, &[target]);
    }
}
