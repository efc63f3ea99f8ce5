//! HTTP to the server: one write of a line-protocol body, one InfluxQL query, with gzip,
//! timeouts and retries.
//!
//! Owns [`Client`]. Guarantees: a body is sent to the configured write API with
//! `precision=s`; connection errors, timeouts, 429 and 5xx answers are retried
//! `retries` times with exponential backoff ([`InfluxConfig::backoff`]); any other 4xx is
//! returned at once with the server's message; credentials go only into the request (query
//! `u`/`p` for v1, `Authorization: Token` for v2), never into an error or a log line.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::thread;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;
use ureq::http::Response;
use ureq::Body;

use crate::config::{Api, InfluxConfig};
use crate::error::{dropped_count, server_message, InfluxError};

/// The largest answer read from the server.
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

/// A blocking HTTP client for one server.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    config: InfluxConfig,
    write_url: String,
    query_url: String,
}

/// An InfluxQL answer (`/query`).
#[derive(Debug, Deserialize)]
pub struct QueryAnswer {
    /// One result per statement.
    #[serde(default)]
    pub results: Vec<StatementResult>,
    /// An error for the whole request.
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer to one InfluxQL statement.
#[derive(Debug, Deserialize)]
pub struct StatementResult {
    /// The series found.
    #[serde(default)]
    pub series: Vec<ResultSeries>,
    /// The statement's error.
    #[serde(default)]
    pub error: Option<String>,
}

/// One series of an InfluxQL answer.
#[derive(Debug, Deserialize)]
pub struct ResultSeries {
    /// Its tags, with `GROUP BY` tags (as stored: escaping marks included).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Column names, `time` first.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Rows, one value per column.
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

/// What one try ended in.
enum Try {
    Done(String),
    Retry(InfluxError),
    Fail(InfluxError),
}

impl Client {
    /// A client for `config` (which should have passed [`InfluxConfig::validate`]).
    pub fn new(config: InfluxConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("perfpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let base = config.url.trim_end_matches('/');
        let write_url = match config.api {
            Api::V1 => format!("{base}/write"),
            Api::V2 => format!("{base}/api/v2/write"),
        };
        let query_url = format!("{base}/query");
        Client {
            agent,
            config,
            write_url,
            query_url,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &InfluxConfig {
        &self.config
    }

    /// Writes one body of line protocol (lines ending in `\n`).
    pub fn write(&self, body: &str) -> Result<(), InfluxError> {
        let payload = if self.config.gzip {
            gzip(body.as_bytes())
        } else {
            body.as_bytes().to_vec()
        };
        self.with_retries(&self.write_url, || {
            let mut request = self
                .agent
                .post(&self.write_url)
                .query("precision", "s")
                .content_type("text/plain; charset=utf-8");
            match self.config.api {
                Api::V1 => {
                    request = request.query("db", self.config.db.as_deref().unwrap_or_default());
                    if let Some(user) = &self.config.user {
                        request = request.query("u", user);
                    }
                    if let Some(password) = &self.config.password {
                        request = request.query("p", password);
                    }
                }
                Api::V2 => {
                    request = request
                        .query("org", self.config.org.as_deref().unwrap_or_default())
                        .query("bucket", self.config.bucket.as_deref().unwrap_or_default());
                    if let Some(token) = &self.config.token {
                        request = request.header("Authorization", format!("Token {token}"));
                    }
                }
            }
            if self.config.gzip {
                request = request.header("Content-Encoding", "gzip");
            }
            request.send(&payload[..])
        })
        .map(|_| ())
    }

    /// Runs InfluxQL statements against the v1 database, with times in epoch seconds.
    pub fn query(&self, statements: &str) -> Result<QueryAnswer, InfluxError> {
        if self.config.api != Api::V1 {
            return Err(InfluxError::ReadNotSupported);
        }
        let text = self.with_retries(&self.query_url, || {
            let mut request = self
                .agent
                .post(&self.query_url)
                .query("db", self.config.db.as_deref().unwrap_or_default())
                .query("epoch", "s");
            if let Some(user) = &self.config.user {
                request = request.query("u", user);
            }
            if let Some(password) = &self.config.password {
                request = request.query("p", password);
            }
            request.send_form([("q", statements)])
        })?;
        let answer: QueryAnswer =
            serde_json::from_str(&text).map_err(|error| InfluxError::BadAnswer {
                url: self.query_url.clone(),
                detail: format!("{error}: {}", server_message(&text)),
            })?;
        if let Some(error) = answer.error {
            return Err(InfluxError::Query(error));
        }
        if let Some(error) = answer
            .results
            .iter()
            .find_map(|result| result.error.clone())
        {
            return Err(InfluxError::Query(error));
        }
        Ok(answer)
    }

    fn with_retries(
        &self,
        url: &str,
        send: impl Fn() -> Result<Response<Body>, ureq::Error>,
    ) -> Result<String, InfluxError> {
        let tries = self.config.retries.saturating_add(1);
        let mut retry = 0;
        loop {
            let error = match classify(url, retry + 1, send()) {
                Try::Done(text) => return Ok(text),
                Try::Fail(error) => return Err(error),
                Try::Retry(error) if retry + 1 >= tries => return Err(error),
                Try::Retry(error) => error,
            };
            let wait = self.config.backoff(retry);
            tracing::warn!(%url, try_number = retry + 1, ?wait, %error, "influxdb request failed; retrying");
            thread::sleep(wait);
            retry += 1;
        }
    }
}

fn classify(url: &str, tries: u32, result: Result<Response<Body>, ureq::Error>) -> Try {
    let mut response = match result {
        Ok(response) => response,
        Err(source) => {
            let retryable = matches!(
                source,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
            );
            let error = InfluxError::Transport {
                url: url.to_owned(),
                tries,
                source,
            };
            return if retryable {
                Try::Retry(error)
            } else {
                Try::Fail(error)
            };
        }
    };
    let status = response.status().as_u16();
    let text = match response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
    {
        Ok(text) => text,
        Err(source) => {
            return Try::Retry(InfluxError::Transport {
                url: url.to_owned(),
                tries,
                source,
            })
        }
    };
    match status {
        200..=299 => Try::Done(text),
        429 | 500..=599 => Try::Retry(InfluxError::Unavailable {
            url: url.to_owned(),
            status,
            tries,
            message: server_message(&text),
        }),
        _ => {
            let message = server_message(&text);
            if message.contains("partial write") {
                Try::Fail(InfluxError::PartialWrite {
                    url: url.to_owned(),
                    dropped: dropped_count(&message),
                    message,
                })
            } else {
                Try::Fail(InfluxError::Refused {
                    url: url.to_owned(),
                    status,
                    message,
                })
            }
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read as _;

    #[test]
    fn gzip_round_trips() {
        let body = "metrics,host=h value=1.0 1\n".repeat(100);
        let packed = gzip(body.as_bytes());
        assert!(packed.len() < body.len() / 10);
        let mut unpacked = String::new();
        GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
    }
}
