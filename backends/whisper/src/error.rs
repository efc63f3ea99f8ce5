//! The one error type of this crate, [`WhisperError`], and how it maps onto the backend
//! boundary's [`BackendError`]. Every error that concerns a file names that file.

use std::io;
use std::path::PathBuf;

use perfpipe_backend::BackendError;

/// Why a Whisper operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// A retention definition such as `60s:1d` could not be parsed.
    #[error("invalid retention definition {definition:?}: {reason}")]
    InvalidRetention {
        /// The definition as given.
        definition: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive list that whisper's `validateArchiveList` (or a `u32` header field) refuses.
    #[error("invalid archive configuration: {0}")]
    InvalidConfiguration(String),
    /// An xFilesFactor outside `[0, 1]` (or NaN).
    #[error("invalid xFilesFactor {0}, not between 0 and 1")]
    InvalidXFilesFactor(f64),
    /// An aggregation method name whisper does not know.
    #[error("unrecognized aggregation method: {0:?}")]
    InvalidAggregationMethod(String),
    /// A fetch whose start lies after its end.
    #[error("invalid time interval: from time {from} is after until time {until}")]
    InvalidTimeInterval {
        /// Requested start.
        from: i64,
        /// Requested end.
        until: i64,
    },
    /// A fetch asking for an archive step the file does not have.
    #[error("{path}: invalid granularity: no archive has {seconds_per_point} seconds per point")]
    InvalidGranularity {
        /// The file.
        path: PathBuf,
        /// The requested step.
        seconds_per_point: u32,
    },
    /// A point whose aligned timestamp cannot be stored in whisper's unsigned 32-bit field.
    #[error("{path}: timestamp {timestamp} cannot be stored (whisper timestamps are 0..2^32)")]
    TimestampOutOfRange {
        /// The file.
        path: PathBuf,
        /// The offending timestamp.
        timestamp: i64,
    },
    /// `create` was asked to make a file that already exists.
    #[error("whisper file {0} already exists")]
    AlreadyExists(PathBuf),
    /// The file is not a well-formed whisper file (bad header, truncated archive, ...).
    #[error("corrupt whisper file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `write`, ...).
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl WhisperError {
    pub(crate) fn io(operation: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        WhisperError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        WhisperError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl From<WhisperError> for BackendError {
    fn from(error: WhisperError) -> Self {
        match error {
            WhisperError::Io {
                operation,
                path,
                source,
            } => BackendError::Io {
                context: format!("whisper: {operation} {}", path.display()),
                source,
            },
            other => BackendError::Store(format!("whisper: {other}")),
        }
    }
}
