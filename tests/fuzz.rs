//! Bad input, generated: every reader of outside bytes (the write bodies in each format, the
//! check-result envelopes, the write-ahead log's records and segments, the peers' points, the
//! expression language) takes anything without panicking, and what it takes stays consistent.
//!
//! 10,000 cases per target here; `PERFPIPE_FUZZ_CASES=1000000` (`scripts/soak`) for the soak.

use perfpipe::intake::{self, Format, Limits};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PERFPIPE_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(10_000)
}

/// Text built from the pieces the envelopes and perfdata are made of, so that generated bodies
/// get past the first check and reach every rule.
fn body_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just("||".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\t".to_string()),
        Just("::".to_string()),
        Just("DATATYPE::SERVICEPERFDATA".to_string()),
        Just("TIMET::".to_string()),
        Just("HOSTNAME::".to_string()),
        Just("SERVICEDESC::".to_string()),
        Just("SERVICEPERFDATA::".to_string()),
        Just("HOSTPERFDATA::".to_string()),
        Just("{\"results\":[".to_string()),
        Just("{\"host\":\"h\",\"service\":\"s\",\"timestamp\":".to_string()),
        Just(",\"perfdata\":\"".to_string()),
        Just("\"}".to_string()),
        Just("]}".to_string()),
        Just("=".to_string()),
        Just(";".to_string()),
        Just("'".to_string()),
        Just("..".to_string()),
        Just("/".to_string()),
        Just("\0".to_string()),
        Just("%2F".to_string()),
        "[0-9]{1,12}",
        "[a-zA-Z%~@:.-]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        prop::collection::vec(pieces, 0..60).prop_map(|parts| parts.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::JsonBody),
        Just(Format::Ndjson),
        Just(Format::Spool),
        Just(Format::Detect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any body in any format: no panic; the counts agree with what was taken; every error
    /// names a result inside the body; the limits hold.
    #[test]
    fn write_bodies_never_panic_and_stay_within_limits(body in body_like(), format in format()) {
        let limits = Limits { max_results: 5, max_metrics_per_result: 4, max_name_length: 16 };
        let intake = intake::read_within(&body, format, &limits);
        let points: usize = intake.series.iter().map(|series| series.points.len()).sum();
        prop_assert_eq!(points as u64, intake.points);
        prop_assert!(intake.results as usize <= limits.max_results);
        // An error's index is a line of the body (line formats) or an element of it (JSON).
        let lines = body.split(|&b| b == b'\n').count();
        for error in &intake.errors {
            match format {
                Format::Spool | Format::Ndjson => prop_assert!(error.result < lines, "{:?}", error),
                _ => prop_assert!(error.result <= body.len(), "{:?}", error),
            }
        }
        for series in &intake.series {
            for name in [&series.key.host, &series.key.service, &series.key.metric] {
                prop_assert!(name.len() <= limits.max_name_length || name == "_HOST_");
            }
            // Each series' levels start at its first point, in arrival order.
            if let (Some(first), Some((at, _))) = (series.points.first(), series.levels.first()) {
                prop_assert_eq!(first.timestamp, *at);
            }
        }
    }

    /// A log record: anything decodes or is refused, never panics; what encodes decodes back.
    #[test]
    fn log_records_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = perfpipe::wal::decode_record(&bytes);
        if let Some(series) = perfpipe::wal::decode(&bytes) {
            prop_assert_eq!(perfpipe::wal::decode(&perfpipe::wal::encode(&series)).map(|s| s.len()), Some(series.len()));
        }
    }

    /// Whatever bytes a segment file holds, replay reads or cuts them without panicking, and
    /// reading it a second time finds nothing more to cut.
    #[test]
    fn log_segments_are_read_or_cut(tail in prop::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
        // In memory where there is a tmpfs: a cut segment is synced, which a disk makes slow.
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
        let mut bytes = if magic { b"PPWAL01\n".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.path().join("0000000000000000.wal"), &bytes).unwrap();
        let first = perfpipe::wal::replay(dir.path(), |_, _| {}).unwrap();
        let again = perfpipe::wal::replay(dir.path(), |_, _| {}).unwrap();
        prop_assert_eq!(again.cut_bytes, 0);
        prop_assert_eq!(again.records, first.records);
    }

    /// The peers' points body: any bytes are parsed or refused.
    #[test]
    fn peer_point_bodies_never_panic(body in body_like()) {
        let _ = serde_json::from_slice::<perfpipe::cluster::WireBatch>(&body);
    }

    /// Expressions from the outside (`/api/v1/eval`, `perfpipe check`): parsed or refused.
    #[test]
    fn expressions_never_panic(text in "[a-zA-Z0-9\"\\[\\]():+*/ .,-]{0,60}") {
        let _ = perfpipe::expr::parse(&text);
    }
}
