//! The backend against a real VictoriaMetrics (Debian package `victoria-metrics`): v2 and v1
//! writes with the specification's escaping, read back through `/api/v1/export`.

mod common;

use std::collections::BTreeMap;

use common::{awkward_batches, series, VictoriaMetrics, AWKWARD_LABELS, T0};
use perfpipe_backend::{Backend, Consolidation, RangeQuery};
use perfpipe_influxdb::{InfluxBackend, InfluxConfig, TagEscaping};

/// Exported series by (host, service, performanceLabel, unit): (timestamps in s, values).
type Exported = BTreeMap<(String, String, String, String), (Vec<i64>, Vec<f64>)>;

fn exported(server: &VictoriaMetrics) -> Exported {
    server
        .export()
        .into_iter()
        .map(|series| {
            let label = |name: &str| {
                series["metric"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(label("__name__"), "metrics_value", "{series}");
            let times = series["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .map(|t| t.as_i64().expect("integer") / 1000)
                .collect();
            let values = series["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            (
                (
                    label("host"),
                    label("service"),
                    label("performanceLabel"),
                    label("unit"),
                ),
                (times, values),
            )
        })
        .collect()
}

fn write_awkward_labels(config: InfluxConfig) {
    let server = VictoriaMetrics::start();
    let mut config = config;
    config.url = server.url.clone();
    config.tag_escaping = TagEscaping::Spec;
    let mut backend = InfluxBackend::new(config).expect("config");
    let batches = awkward_batches(0.5);
    let report = backend.write(&batches).expect("write");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written, 3 * AWKWARD_LABELS.len() as u64);

    let stored = exported(&server);
    assert_eq!(
        stored.len(),
        batches.len(),
        "one series per batch: {stored:#?}"
    );
    for (i, label) in AWKWARD_LABELS.iter().enumerate() {
        let value = i as f64 + 0.5;
        let unit = if i % 2 == 0 { "" } else { "B" };
        let key = (
            "win 1,a=b".to_owned(),
            "Disk C:\\".to_owned(),
            (*label).to_owned(),
            unit.to_owned(),
        );
        let (times, values) = stored
            .get(&key)
            .unwrap_or_else(|| panic!("{label:?} not stored as is: {stored:#?}"));
        assert_eq!(times, &vec![T0, T0 + 60]);
        assert_eq!(values, &vec![value, -value]);
        let key = (
            (*label).to_owned(),
            (*label).to_owned(),
            "m".to_owned(),
            "%".to_owned(),
        );
        let (_, values) = stored
            .get(&key)
            .unwrap_or_else(|| panic!("{label:?} as host: {stored:#?}"));
        assert_eq!(values, &vec![value]);
    }
}

#[test]
fn awkward_labels_are_stored_as_they_are_over_v2() {
    write_awkward_labels(InfluxConfig::v2(
        "http://placeholder",
        "perfpipe",
        "metrics",
    ));
}

#[test]
fn awkward_labels_are_stored_as_they_are_over_v1_without_gzip() {
    let mut config = InfluxConfig::v1("http://placeholder", "perfpipe");
    config.gzip = false;
    config.batch_bytes = 300;
    write_awkward_labels(config);
}

#[test]
fn reading_over_v2_is_refused_clearly() {
    let server = VictoriaMetrics::start();
    let mut config = InfluxConfig::v2(&server.url, "o", "b");
    config.tag_escaping = TagEscaping::Spec;
    config.token = Some("unused-by-victoria-metrics".into());
    let mut backend = InfluxBackend::new(config).expect("config");
    let batch = series("h", "s", "m", "", &[(T0, 1.0)]);
    assert_eq!(
        backend
            .write(std::slice::from_ref(&batch))
            .expect("write")
            .written,
        1
    );
    let range = RangeQuery {
        start: T0,
        end: T0 + 60,
        step: Some(60),
        consolidation: Consolidation::Average,
    };
    let error = backend
        .read(&batch.key, &range)
        .expect_err("v2 cannot read");
    assert!(error.to_string().contains("not supported"), "{error}");
}
