//! Failures that need no server: a server that is down is retried with backoff, then the call
//! fails with the URL and the number of tries.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, series, T0};
use perfpipe_backend::{Backend, BackendError};
use perfpipe_influxdb::{ConfigError, InfluxBackend, InfluxConfig};

#[test]
fn a_server_that_is_down_is_retried_then_reported() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut config = InfluxConfig::v1(&url, "db");
    config.retries = 3;
    config.retry_backoff = Duration::from_millis(100);
    config.connect_timeout = Duration::from_secs(2);
    let mut backend = InfluxBackend::new(config).expect("config");
    let started = Instant::now();
    let error = backend
        .write(&[series("h", "s", "m", "", &[(T0, 1.0)])])
        .expect_err("nothing listens there");
    let waited = started.elapsed();
    // Waits of 100, 200 and 400 ms between four tries.
    assert!(
        waited >= Duration::from_millis(700),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "took {waited:?}");
    assert!(matches!(error, BackendError::Io { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("unreachable after 4 tries"), "{message}");
}

#[test]
fn configs_missing_what_their_api_needs_are_refused() {
    let mut config = InfluxConfig::v2("http://127.0.0.1:1", "org", "bucket");
    config.bucket = None;
    assert_eq!(
        InfluxBackend::new(config).unwrap_err(),
        ConfigError::Missing {
            api: "v2",
            key: "bucket"
        }
    );
}
