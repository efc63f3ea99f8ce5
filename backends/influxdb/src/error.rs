//! What can go wrong talking to the server, typed, and how it crosses the backend boundary.
//!
//! Owns [`InfluxError`] and its conversion into [`BackendError`]. Guarantees: a refusal carries
//! the server's own message (trimmed to [`MAX_MESSAGE_CHARS`]) and, for a partial write, how
//! many points the server dropped; connection failures become [`BackendError::Io`] with the
//! URL in the context; nothing here holds a password or token.

use perfpipe_backend::BackendError;

use crate::line::LineError;

/// The longest server message kept in an error.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The series cannot be written as line protocol.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The server refused the request (4xx other than a partial write).
    #[error("{url} answered {status}: {message}")]
    Refused {
        /// Where the request went (without credentials).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server stored some lines of the body and dropped others (InfluxDB's 400
    /// `partial write: … dropped=N`).
    #[error("{url} dropped {} point(s) (partial write): {message}", dropped.map_or_else(|| "some".to_owned(), |n| n.to_string()))]
    PartialWrite {
        /// Where the request went.
        url: String,
        /// How many points were dropped, when the server said.
        dropped: Option<u64>,
        /// The server's message.
        message: String,
    },
    /// The server kept failing (5xx or 429) through every try.
    #[error("{url} answered {status} on each of {tries} tries; last: {message}")]
    Unavailable {
        /// Where the request went.
        url: String,
        /// The last HTTP status.
        status: u16,
        /// How many tries were made.
        tries: u32,
        /// The server's last message.
        message: String,
    },
    /// The server could not be reached (refused, reset, timed out, name unknown) through every
    /// try.
    #[error("{url} unreachable after {tries} tries: {source}")]
    Transport {
        /// Where the request went.
        url: String,
        /// How many tries were made.
        tries: u32,
        /// The last failure.
        source: ureq::Error,
    },
    /// The server answered something that is not what the API documents.
    #[error("{url}: unexpected answer: {detail}")]
    BadAnswer {
        /// Where the request went.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// An InfluxQL statement failed on the server.
    #[error("influxql query failed: {0}")]
    Query(String),
    /// Reading is only implemented over the v1 API (InfluxQL).
    #[error("reading is not supported with api = \"v2\": perfpipe reads with InfluxQL over /query (api = \"v1\"); VictoriaMetrics has no InfluxQL")]
    ReadNotSupported,
    /// The range asked for cannot be answered as one [`perfpipe_backend::SeriesRange`].
    #[error("bad range: {0}")]
    BadRange(String),
}

impl From<InfluxError> for BackendError {
    fn from(error: InfluxError) -> Self {
        match error {
            InfluxError::Transport { ref url, .. } => BackendError::Io {
                context: format!("influxdb at {url}"),
                source: std::io::Error::other(error.to_string()),
            },
            other => BackendError::Store(other.to_string()),
        }
    }
}

/// The message in an error answer: InfluxDB 1.x's `{"error": …}`, 2.x's `{"message": …}`, or the
/// text as it is (VictoriaMetrics), trimmed.
pub fn server_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        message: Option<String>,
    }
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: Some(text), ..
        })
        | Ok(ErrorBody {
            message: Some(text),
            ..
        }) => text,
        _ => body.trim().to_owned(),
    };
    if message.chars().count() > MAX_MESSAGE_CHARS {
        let mut short: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        short.push('…');
        short
    } else {
        message
    }
}

/// The `N` of InfluxDB's `partial write: … dropped=N`, if the message says.
pub fn dropped_count(message: &str) -> Option<u64> {
    let at = message.rfind("dropped=")?;
    let digits: String = message[at + "dropped=".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_from_each_servers_answer() {
        assert_eq!(
            server_message(r#"{"error":"database not found: \"nope\""}"#),
            "database not found: \"nope\""
        );
        assert_eq!(
            server_message(r#"{"code":"invalid","message":"bad bucket"}"#),
            "bad bucket"
        );
        assert_eq!(server_message("  plain text\n"), "plain text");
        assert_eq!(
            server_message(&"x".repeat(5000)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn dropped_counts_are_read_from_partial_writes() {
        let message = "partial write: field type conflict: input field \"value\" on measurement \"metrics\" is type integer, already exists as type float dropped=3";
        assert_eq!(dropped_count(message), Some(3));
        assert_eq!(dropped_count("unable to parse"), None);
    }
}
