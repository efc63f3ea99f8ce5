//! The `[influxdb]` configuration: where to write, which API, how to batch, retry and time out.
//!
//! Owns [`InfluxConfig`] (read with serde, unknown keys refused), [`Api`] and [`ConfigError`].
//! Guarantees: a config that passes [`InfluxConfig::validate`] names everything its API needs
//! (a database for v1; an organisation and a bucket for v2), has a non-zero batch size, and
//! its `Debug` form never shows the password or the token.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::line::TagEscaping;

/// Which write API of the server is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/write?db=…&precision=s` (InfluxDB 1.x, VictoriaMetrics); reads with InfluxQL over
    /// `/query`.
    #[default]
    V1,
    /// `/api/v2/write?org=…&bucket=…&precision=s` with `Authorization: Token …` (InfluxDB 2.x,
    /// VictoriaMetrics); write-only here.
    V2,
}

/// The `[influxdb]` section. Every key has a default: a missing section or key means
/// v1 at `http://127.0.0.1:8086`, database `perfpipe`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8086` (a path prefix is kept).
    pub url: String,
    /// Which write API.
    #[serde(default)]
    pub api: Api,
    /// v1: the database.
    #[serde(default)]
    pub db: Option<String>,
    /// v1: user name, sent as `u=`.
    #[serde(default)]
    pub user: Option<String>,
    /// v1: password, sent as `p=`.
    #[serde(default)]
    pub password: Option<String>,
    /// v2: the organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: the API token (`Authorization: Token …`); VictoriaMetrics needs none.
    #[serde(default)]
    pub token: Option<String>,
    /// How tag values are escaped: `"influxdb"` for InfluxDB 1.x/2.x, `"spec"` for
    /// VictoriaMetrics (see [`crate::line`]).
    #[serde(default)]
    pub tag_escaping: TagEscaping,
    /// Largest request body before compression, in bytes; a series longer than this is cut
    /// between lines.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Gzip request bodies (`Content-Encoding: gzip`).
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// Time allowed to connect.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first try, on connection errors, timeouts, 429 and 5xx answers.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each further retry.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// The longest wait between two tries.
    #[serde(default = "default_retry_backoff_max", with = "humantime_serde")]
    pub retry_backoff_max: Duration,
}

fn default_batch_bytes() -> usize {
    1_000_000
}
fn default_gzip() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    3
}
fn default_retry_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_backoff_max() -> Duration {
    Duration::from_secs(30)
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The URL is not `http://…` or `https://…`.
    #[error("influxdb url must start with http:// or https://: {0:?}")]
    BadUrl(String),
    /// A key the chosen API needs is missing or empty.
    #[error("influxdb api {api} needs `{key}`")]
    Missing {
        /// `v1` or `v2`.
        api: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// `batch_bytes` is zero.
    #[error("influxdb batch_bytes must be at least 1")]
    ZeroBatch,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig::v1("http://127.0.0.1:8086", "perfpipe")
    }
}

impl InfluxConfig {
    /// A v1 configuration with every other key at its default.
    pub fn v1(url: impl Into<String>, db: impl Into<String>) -> Self {
        InfluxConfig {
            db: Some(db.into()),
            ..Self::base(url.into(), Api::V1)
        }
    }

    /// A v2 configuration with every other key at its default.
    pub fn v2(url: impl Into<String>, org: impl Into<String>, bucket: impl Into<String>) -> Self {
        InfluxConfig {
            org: Some(org.into()),
            bucket: Some(bucket.into()),
            ..Self::base(url.into(), Api::V2)
        }
    }

    fn base(url: String, api: Api) -> Self {
        InfluxConfig {
            url,
            api,
            db: None,
            user: None,
            password: None,
            org: None,
            bucket: None,
            token: None,
            tag_escaping: TagEscaping::default(),
            batch_bytes: default_batch_bytes(),
            gzip: default_gzip(),
            connect_timeout: default_connect_timeout(),
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            retry_backoff_max: default_retry_backoff_max(),
        }
    }

    /// Checks that the configuration can be used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigError::BadUrl(self.url.clone()));
        }
        let present = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
        match self.api {
            Api::V1 if !present(&self.db) => {
                return Err(ConfigError::Missing {
                    api: "v1",
                    key: "db",
                })
            }
            Api::V2 if !present(&self.org) => {
                return Err(ConfigError::Missing {
                    api: "v2",
                    key: "org",
                })
            }
            Api::V2 if !present(&self.bucket) => {
                return Err(ConfigError::Missing {
                    api: "v2",
                    key: "bucket",
                })
            }
            _ => {}
        }
        if self.batch_bytes == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        Ok(())
    }

    /// The wait before retry number `retry` (0 for the first): `retry_backoff * 2^retry`,
    /// at most `retry_backoff_max`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }
}

impl fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("InfluxConfig")
            .field("url", &self.url)
            .field("api", &self.api)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &hidden(&self.token))
            .field("tag_escaping", &self.tag_escaping)
            .field("batch_bytes", &self.batch_bytes)
            .field("gzip", &self.gzip)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Result<InfluxConfig, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn defaults_and_durations_are_read() {
        let config = from_json(
            r#"{"url": "http://127.0.0.1:8086", "db": "perf", "timeout": "2s",
                "retry_backoff": "100ms", "tag_escaping": "spec"}"#,
        )
        .unwrap();
        assert_eq!(config.api, Api::V1);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.retry_backoff, Duration::from_millis(100));
        assert_eq!(config.tag_escaping, TagEscaping::Spec);
        assert!(config.gzip);
        assert_eq!(config.retries, 3);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_missing_names_are_refused() {
        assert!(from_json(r#"{"url": "http://x", "database": "perf"}"#).is_err());
        let config = from_json(r#"{"url": "http://x", "api": "v2", "org": "o"}"#).unwrap();
        assert_eq!(
            config.validate(),
            Err(ConfigError::Missing {
                api: "v2",
                key: "bucket"
            })
        );
        let config = from_json(r#"{"url": "http://x", "db": ""}"#).unwrap();
        assert_eq!(
            config.validate(),
            Err(ConfigError::Missing {
                api: "v1",
                key: "db"
            })
        );
        let config = from_json(r#"{"url": "ftp://x", "db": "d"}"#).unwrap();
        assert!(matches!(config.validate(), Err(ConfigError::BadUrl(_))));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut config = InfluxConfig::v1("http://x", "d");
        config.retry_backoff = Duration::from_millis(100);
        config.retry_backoff_max = Duration::from_millis(500);
        let waits: Vec<u128> = (0..5).map(|n| config.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(config.backoff(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut config = InfluxConfig::v2("http://x", "o", "b");
        config.token = Some("s3cret-token".into());
        config.password = Some("s3cret-pw".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<hidden>"));
    }
}
