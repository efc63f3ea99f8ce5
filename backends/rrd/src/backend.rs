//! [`RrdBackend`]: the [`Backend`] that stores series as RRD files in Opsview's layout.
//!
//! Owns the cache of each file's last update and the rule built on it. Guarantees: per series
//! and per [`Backend::write`] call, one `rrd_updatex_r` call with all of the series' new points;
//! a point at or before the file's last update (as librrd would refuse it) is counted in
//! [`WriteReport::late`] and never passed to librrd; a series that fails (bad name, bad value,
//! librrd error) is reported in [`WriteReport::failed`] with its file named, and the other
//! series are still written.
//!
//! One file, one writer: the backend is driven through `&mut self`, so one thread at a time
//! uses it, and the cached last-update times are right as long as no other program writes the
//! same files. librrd is only called through its thread-safe `_r` functions (see the `librrd`
//! module), so several backends on several threads, each with its own directory, do not share
//! librrd state either.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use perfpipe_backend::{
    Backend, BackendError, DataSourceType, RangeQuery, SeriesBatch, SeriesKey, SeriesRange,
    WriteReport,
};

use crate::config::{ConsolidationFunction, RrdConfig};
use crate::layout::{create_arguments, push_update_argument, series_path};
use crate::{librrd, RrdError};

/// Stores series as RRD files under one directory, through librrd.
#[derive(Debug)]
pub struct RrdBackend {
    rrd_dir: PathBuf,
    config: RrdConfig,
    /// Last update time of each file this backend has created, read or written.
    last_updates: HashMap<PathBuf, i64>,
    /// Consolidation functions of the archives of each file read.
    consolidations: HashMap<PathBuf, Vec<ConsolidationFunction>>,
    /// The `T:V` arguments of the series being written, reused across series.
    arguments: Vec<String>,
}

/// What writing one series did.
struct SeriesOutcome {
    written: u64,
    late: u64,
}

impl RrdBackend {
    /// A backend storing under `rrd_dir` (created when the first file is) with the layout
    /// `config` describes for new files.
    pub fn new(rrd_dir: impl Into<PathBuf>, config: RrdConfig) -> Result<Self, RrdError> {
        config.validate()?;
        Ok(RrdBackend {
            rrd_dir: rrd_dir.into(),
            config,
            last_updates: HashMap::new(),
            consolidations: HashMap::new(),
            arguments: Vec::new(),
        })
    }

    /// The directory the files are under.
    pub fn rrd_dir(&self) -> &Path {
        &self.rrd_dir
    }

    /// The RRD file of a series (whether or not it exists yet).
    pub fn series_path(&self, key: &SeriesKey) -> Result<PathBuf, BackendError> {
        series_path(&self.rrd_dir, key)
    }

    /// The last update of `path`: cached, else read from the file, else `None` (no file).
    fn last_update(&mut self, path: &Path) -> Result<Option<i64>, BackendError> {
        if let Some(&last) = self.last_updates.get(path) {
            return Ok(Some(last));
        }
        match std::fs::symlink_metadata(path) {
            Ok(_) => {
                let last = librrd::last_update(path)?;
                self.last_updates.insert(path.to_path_buf(), last);
                Ok(Some(last))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BackendError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Creates the file of a series whose first point is at `first_timestamp`.
    ///
    /// librrd takes the creation time as the file's last update and refuses any update at or
    /// before it, so the file starts one second before its first point: the latest start that
    /// still accepts that point, and no time before the series existed is claimed. As for any
    /// RRD update, the first point's value covers the time since the previous update, here one
    /// second, so the first step stays unknown (a counter needs two points for a rate anyway).
    fn create(
        &mut self,
        path: &Path,
        ds_type: DataSourceType,
        first_timestamp: i64,
    ) -> Result<i64, BackendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| BackendError::Io {
                context: format!("creating directory {}", dir.display()),
                source,
            })?;
        }
        let start = first_timestamp
            .checked_sub(1)
            .ok_or(RrdError::TimeOutOfRange {
                file: path.to_path_buf(),
                timestamp: first_timestamp,
            })?;
        librrd::create(
            path,
            self.config.step,
            start,
            &create_arguments(&self.config, ds_type),
        )?;
        self.last_updates.insert(path.to_path_buf(), start);
        Ok(start)
    }

    fn write_series(&mut self, batch: &SeriesBatch) -> Result<SeriesOutcome, BackendError> {
        let path = self.series_path(&batch.key)?;
        let Some(first) = batch.points.first() else {
            return Ok(SeriesOutcome {
                written: 0,
                late: 0,
            });
        };
        let last = match self.last_update(&path)? {
            Some(last) => last,
            None => self.create(&path, batch.ds_type, first.timestamp)?,
        };

        // Points are sorted without duplicates by contract; the running maximum also keeps an
        // out-of-order point from ever reaching librrd, which would refuse the whole call.
        let mut newest = last;
        let mut late = 0;
        let mut arguments = std::mem::take(&mut self.arguments);
        let mut used = 0;
        for point in &batch.points {
            if point.timestamp <= newest {
                late += 1;
                continue;
            }
            if arguments.len() == used {
                arguments.push(String::with_capacity(32));
            }
            let argument = &mut arguments[used];
            argument.clear();
            if let Err(source) =
                push_update_argument(argument, point.timestamp, point.value, batch.ds_type)
            {
                self.arguments = arguments;
                return Err(RrdError::InvalidValue { file: path, source }.into());
            }
            used += 1;
            newest = point.timestamp;
        }
        let result = if used == 0 {
            Ok(())
        } else {
            librrd::update(&path, &arguments[..used])
        };
        self.arguments = arguments;
        match result {
            Ok(()) => {
                self.last_updates.insert(path, newest);
                Ok(SeriesOutcome {
                    written: used as u64,
                    late,
                })
            }
            Err(error) => {
                // librrd may have stored part of the call: read the file again next time.
                self.last_updates.remove(&path);
                Err(error.into())
            }
        }
    }
}

impl Backend for RrdBackend {
    fn name(&self) -> &'static str {
        "rrd"
    }

    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError> {
        let mut report = WriteReport::default();
        for batch in batches {
            match self.write_series(batch) {
                Ok(outcome) => {
                    report.written += outcome.written;
                    report.late += outcome.late;
                }
                Err(error) => report.failed.push((batch.key.clone(), error)),
            }
        }
        Ok(report)
    }

    /// Reads as `rrdtool fetch FILE CF -s START -e END [-r STEP]` does: librrd picks the archive
    /// of that consolidation whose step best fits, and `values[i]` is the row that ends at
    /// `start + i * step` (an RRD row stands for the `step` seconds up to its time). Without a
    /// step the finest archive covering the range is used. A consolidation the file has no
    /// archive of is an error (librrd itself would silently answer from another one).
    fn read(&mut self, key: &SeriesKey, range: &RangeQuery) -> Result<SeriesRange, BackendError> {
        let path = self.series_path(key)?;
        if range.start >= range.end {
            return Err(RrdError::EmptyRange {
                start: range.start,
                end: range.end,
            }
            .into());
        }
        if self.last_update(&path)?.is_none() {
            return Err(BackendError::NotFound(key.clone()));
        }
        let consolidation = ConsolidationFunction::from(range.consolidation);
        let available = match self.consolidations.entry(path.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(librrd::consolidations(&path)?),
        };
        if !available.contains(&consolidation) {
            return Err(RrdError::NoArchive {
                file: path,
                consolidation,
            }
            .into());
        }
        let fetched = librrd::fetch(
            &path,
            consolidation,
            range.start,
            range.end,
            range.step.unwrap_or(1),
        )?;
        Ok(SeriesRange {
            start: fetched.first,
            step: fetched.step,
            values: fetched
                .values
                .into_iter()
                .map(|value| if value.is_nan() { None } else { Some(value) })
                .collect(),
        })
    }
}
