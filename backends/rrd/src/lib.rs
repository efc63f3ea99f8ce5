//! perfpipe's RRD storage backend: series stored as RRD files in Opsview's layout, written and
//! read through librrd.
//!
//! Owns the layout (`<rrd_dir>/<enc host>/<enc service>/<enc metric>/value.rrd`, one data source
//! `value`, GAUGE or COUNTER for unit `c`, step 300 s, heartbeat 600 s, Opsview's four AVERAGE
//! archives; see [`layout`] and [`config`]) and, with the `rrd` feature, [`RrdBackend`], the
//! [`perfpipe_backend::Backend`] that writes those files through librrd.
//!
//! Guarantees: a series' name never leads outside the data directory, and a name too long for a
//! file name is refused, never truncated; each series' points of one [`Backend::write`] call go
//! to librrd in one `rrd_updatex_r` call; points at or before a file's last update are counted
//! as late and never given to librrd; a failure of one series is reported with its file named
//! and does not stop the others. Only librrd's thread-safe `_r` functions are called, never the
//! argv/getopt entry points (`rrd_update`, `rrd_create`, ...) that use global state.
//!
//! Who touches which file: one write call with many series (at least [`PARALLEL_MIN_SERIES`])
//! spreads them over up to [`RrdBackend::write_threads`] threads (default: the cores, at most
//! 4), partitioned by file, so each file still has exactly one writer thread; smaller calls
//! write on the calling thread. Files, last-update cache and report are the same either way
//! (see the `backend` module).
//!
//! Without the `rrd` feature the crate builds without any C library and holds only the layout
//! and configuration code.
//!
//! [`Backend::write`]: perfpipe_backend::Backend::write

use std::path::PathBuf;

pub mod config;
pub mod layout;

#[cfg(feature = "rrd")]
mod backend;
#[cfg(feature = "rrd")]
mod librrd;

#[cfg(feature = "rrd")]
pub use backend::{default_write_threads, RrdBackend, PARALLEL_MIN_SERIES};

/// What `perfpipe adopt` learns of an existing file without reading its data: the type of
/// its data source `value` and its last update.
#[cfg(feature = "rrd")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// `GAUGE`, `COUNTER`, `DERIVE`, `ABSOLUTE`; `None` without a data source `value`.
    pub value_type: Option<String>,
    /// Epoch seconds of the last update.
    pub last_update: i64,
}

/// Describes an RRD file (through `rrd_info_r` and `rrd_last_r`).
#[cfg(feature = "rrd")]
pub fn describe(file: &std::path::Path) -> Result<FileSummary, RrdError> {
    Ok(FileSummary {
        value_type: librrd::value_type(file)?,
        last_update: librrd::last_update(file)?,
    })
}
/// Merges the RRD file `source` into `target` (both of this backend's layout or at least with
/// the same data source names): `target` then holds both files' data, `source`'s where both
/// have a value for the same time, and its last update is the later of the two; `source` is
/// left as it was. The unfinished step of each file is lost. See the `librrd` module.
#[cfg(feature = "rrd")]
pub fn merge_into(source: &std::path::Path, target: &std::path::Path) -> Result<(), RrdError> {
    librrd::merge(source, target)
}

pub use config::{ArchiveSpec, ConfigError, ConsolidationFunction, RrdConfig};
pub use layout::ValueError;

/// Why an RRD operation failed. Converted into [`perfpipe_backend::BackendError::Store`] at the
/// backend boundary, with this message.
#[derive(Debug, thiserror::Error)]
pub enum RrdError {
    /// librrd refused or failed an operation on a file.
    #[error("librrd {operation} of {}: {message}", file.display())]
    Librrd {
        /// The librrd call (`create`, `update`, `last`, `fetch`, `merge`).
        operation: &'static str,
        /// The RRD file.
        file: PathBuf,
        /// librrd's error message.
        message: String,
    },
    /// A read asked for a consolidation the file has no archive for.
    #[error(
        "{} has no {consolidation} archive, so no {consolidation} can be read from it \
         (the archives of new files are set by the `rras` setting)",
        file.display()
    )]
    NoArchive {
        /// The RRD file.
        file: PathBuf,
        /// The consolidation asked for.
        consolidation: ConsolidationFunction,
    },
    /// A value of a series' batch cannot be stored; nothing of that batch was written.
    #[error("{}: {source}", file.display())]
    InvalidValue {
        /// The RRD file.
        file: PathBuf,
        /// What is wrong with the value.
        source: ValueError,
    },
    /// A path librrd cannot be given (it contains a NUL byte).
    #[error("path {} contains a NUL byte, which librrd cannot take", file.display())]
    PathWithNul {
        /// The path.
        file: PathBuf,
    },
    /// A time outside what librrd's `time_t` or an RRD can hold.
    #[error("time {timestamp} is out of range for {}", file.display())]
    TimeOutOfRange {
        /// The RRD file.
        file: PathBuf,
        /// The time.
        timestamp: i64,
    },
    /// A read of an empty or reversed range.
    #[error("range start {start} is not before its end {end}")]
    EmptyRange {
        /// The start asked for.
        start: i64,
        /// The end asked for.
        end: i64,
    },
    /// An invalid configuration.
    #[error("invalid RRD configuration: {0}")]
    Config(#[from] ConfigError),
}

impl From<RrdError> for perfpipe_backend::BackendError {
    fn from(error: RrdError) -> Self {
        perfpipe_backend::BackendError::Store(error.to_string())
    }
}
