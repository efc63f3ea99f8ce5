//! Graphite Whisper storage for perfpipe, in pure Rust and byte-identical with graphite's
//! whisper 1.1.4 (as run by CPython 3.11, Debian's `python3-whisper`).
//!
//! Owns the whisper file format ([`format`](mod@format): [`WhisperFile::create`],
//! [`WhisperFile::update_many`], [`WhisperFile::fetch`], [`WhisperFile::info`]), retention
//! parsing and validation ([`parse_retentions`]), the eight aggregation methods
//! ([`AggregationMethod`]) and [`WhisperBackend`], the [`perfpipe_backend::Backend`] that stores
//! each series in its own file.
//!
//! Guarantees: for the same file, points and `now`, `update_many` leaves the file with exactly
//! the bytes whisper's `update_many` leaves, and `fetch` returns what whisper's `fetch` returns;
//! bad input and corrupt files give a [`WhisperError`] naming the file, never a panic.

pub mod aggregation;
pub mod backend;
pub mod error;
pub mod format;
mod mapped;
mod page_cache;
pub mod python_set_order;
pub mod retention;
mod watch;

pub use aggregation::AggregationMethod;
pub use backend::{
    ArchivesBySeries, Clock, WhisperBackend, WhisperConfig, DEFAULT_RETENTIONS, MAX_OPEN_FILES,
};
pub use error::WhisperError;
pub use format::{
    ArchiveInfo, FetchedSeries, Header, Preallocation, UpdateSummary, WhisperFile,
    DEFAULT_X_FILES_FACTOR,
};
pub use retention::{parse_retention_def, parse_retentions, validate_archive_list, ArchiveSpec};
