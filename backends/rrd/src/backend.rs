//! [`RrdBackend`]: the [`Backend`] that stores series as RRD files in Opsview's layout.
//!
//! Owns the cache of each file's last update and the rule built on it. Guarantees: per series
//! and per [`Backend::write`] call, one `rrd_updatex_r` call with all of the series' new points;
//! a point at or before the file's last update (as librrd would refuse it) is counted in
//! [`WriteReport::late`] and never passed to librrd; a series that fails (bad name, bad value,
//! librrd error) is reported in [`WriteReport::failed`] with its file named, and the other
//! series are still written. The report does not depend on how many threads wrote: `failed`
//! lists the series in the order of the call's batches either way.
//!
//! Who touches which file: the backend is driven through `&mut self`, so one call at a time
//! runs. A call with fewer than [`PARALLEL_MIN_SERIES`] series to write (or a backend with one
//! write thread) writes every file on the calling thread. A bigger call partitions its series
//! *by file* among up to [`RrdBackend::write_threads`] writers (the calling thread plus scoped
//! threads that end before the call returns): every batch of a file, even a file named twice in
//! one call, goes to the same writer, in call order, so each file has exactly one writer, and
//! no two threads of the process ever open the same file at the same time (which also matters
//! because librrd's `fcntl` lock is per process, and any close of the file by another thread
//! would drop it). Each writer owns the cached last updates of its files for the call (moved out
//! of the backend's cache before, moved back after), so the cache needs no lock and none is held
//! during librrd calls. Nothing else in the process may write the same files; the cache is right
//! as long as no other program writes them either.
//!
//! librrd is only called through its thread-safe `_r` functions (see the `librrd` module),
//! whose error message lives in per-thread context; each writer thread reads the messages of
//! its own calls. Several backends on several threads, each with its own directory, share no
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

/// A write call spreads over threads only when it has at least this many series with points,
/// and gives each thread at least half as many: below that, starting a thread (tens of
/// microseconds) costs more than the few files it would write in parallel save.
pub const PARALLEL_MIN_SERIES: usize = 32;

/// Series per writer at least, in a parallel write.
const MIN_SERIES_PER_WRITER: usize = PARALLEL_MIN_SERIES / 2;

/// The cost of a series' `rrd_updatex_r` call (open, lock, header read, write, close) in
/// points' worth of work, used to balance writers.
const SERIES_COST_IN_POINTS: usize = 16;

/// The default of [`RrdBackend::write_threads`]: the number of available cores, at most 4
/// (rrdcached's default number of write threads), at least 1.
pub fn default_write_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(4))
}

/// Stores series as RRD files under one directory, through librrd.
///
/// Write threads: one [`Backend::write`] call with at least [`PARALLEL_MIN_SERIES`] series
/// spreads them, partitioned by file, over up to [`write_threads`](Self::write_threads)
/// threads (the calling thread included; the others are scoped threads started for the call
/// and ended before it returns). The default is [`default_write_threads`]: the available cores,
/// at most 4; [`with_write_threads`](Self::with_write_threads) changes it, and 1 writes every
/// file on the calling thread. The files and the [`WriteReport`] are the same whatever the
/// number of threads.
#[derive(Debug)]
pub struct RrdBackend {
    rrd_dir: PathBuf,
    config: RrdConfig,
    /// Most writers one write call uses, at least 1.
    write_threads: usize,
    /// The calling thread's writer; its cache holds the last update of each file this backend
    /// has created, read or written (between calls, all of them).
    writer: Writer,
    /// Argument buffers of the other writers of a parallel write, kept for the next one.
    spare_arguments: Vec<Vec<String>>,
    /// Consolidation functions of the archives of each file read.
    consolidations: HashMap<PathBuf, Vec<ConsolidationFunction>>,
}

/// What writing one series did.
#[derive(Debug)]
struct SeriesOutcome {
    written: u64,
    late: u64,
}

/// The outcome of each batch of a call, by batch index; `None` until written.
type Outcomes = Vec<Option<Result<SeriesOutcome, BackendError>>>;

/// One writer of files: the only one, for the duration of a call, of the files it is given.
#[derive(Debug, Default)]
struct Writer {
    /// Last update time of files this writer has created, read or written.
    last_updates: HashMap<PathBuf, i64>,
    /// The `T:V` arguments of the series being written, reused across series.
    arguments: Vec<String>,
}

/// librrd's words for a file that is not a whole RRD (`rrd_open.c`): such a file is moved aside
/// rather than failing every write of its series.
const CORRUPT_MARKERS: [&str; 6] = [
    "is not an RRD file",
    "is too small (should be",
    "reached EOF while loading header",
    "short read while reading header",
    "created on another architecture",
    "can't handle RRD file version",
];

/// Whether `error` says the regular file `path` is not a whole RRD. An empty file fails to
/// map ("mmaping file … Invalid argument"); other map failures (a directory, memory) are not
/// the file's fault and are left as errors.
fn is_corrupt(error: &RrdError, path: &Path) -> bool {
    let RrdError::Librrd { message, .. } = error else {
        return false;
    };
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    metadata.is_file()
        && (CORRUPT_MARKERS
            .iter()
            .any(|marker| message.contains(marker))
            || (metadata.len() == 0 && message.contains("mmaping file")))
}

/// Moves a corrupt RRD file aside ([`perfpipe_backend::set_aside`]) with an error in the log
/// naming both paths; the caller creates a new one in its place.
fn set_aside(path: &Path, why: &RrdError) -> Result<PathBuf, BackendError> {
    let aside = perfpipe_backend::set_aside(path).map_err(|source| BackendError::Io {
        context: format!("moving corrupt {} aside", path.display()),
        source,
    })?;
    tracing::error!(
        file = %path.display(),
        moved_to = %aside.display(),
        reason = %why,
        "corrupt RRD file moved aside; a new one takes its place"
    );
    Ok(aside)
}

impl Writer {
    /// The last update of `path`: cached, else read from the file, else `None` (no file, or
    /// a corrupt one, which is then set aside).
    fn last_update(&mut self, path: &Path) -> Result<Option<i64>, BackendError> {
        if let Some(&last) = self.last_updates.get(path) {
            return Ok(Some(last));
        }
        match std::fs::symlink_metadata(path) {
            Ok(_) => {
                let last = match librrd::last_update(path) {
                    Ok(last) => last,
                    Err(error) if is_corrupt(&error, path) => {
                        set_aside(path, &error)?;
                        return Ok(None);
                    }
                    Err(error) => return Err(error.into()),
                };
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

    /// Caches `last` as the last update of `path`.
    fn remember(&mut self, path: &Path, last: i64) {
        match self.last_updates.get_mut(path) {
            Some(cached) => *cached = last,
            None => {
                self.last_updates.insert(path.to_path_buf(), last);
            }
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
        config: &RrdConfig,
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
        librrd::create(path, config.step, start, &create_arguments(config, ds_type))?;
        self.remember(path, start);
        Ok(start)
    }

    /// Writes one series' batch (with at least one point) to its file `path`.
    fn write_series(
        &mut self,
        config: &RrdConfig,
        path: &Path,
        batch: &SeriesBatch,
    ) -> Result<SeriesOutcome, BackendError> {
        let Some(first) = batch.points.first() else {
            return Ok(SeriesOutcome {
                written: 0,
                late: 0,
            });
        };
        let last = match self.last_update(path)? {
            Some(last) => last,
            None => self.create(config, path, batch.ds_type, first.timestamp)?,
        };

        // Points are sorted without duplicates by contract; the running maximum also keeps an
        // out-of-order point from ever reaching librrd, which would refuse the whole call.
        let mut newest = last;
        let mut late = 0;
        let arguments = &mut self.arguments;
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
                return Err(RrdError::InvalidValue {
                    file: path.to_path_buf(),
                    source,
                }
                .into());
            }
            used += 1;
            newest = point.timestamp;
        }
        if used == 0 {
            return Ok(SeriesOutcome { written: 0, late });
        }
        let mut updated = librrd::update(path, &arguments[..used]);
        if let Err(error) = &updated {
            if is_corrupt(error, path) {
                // Damaged since it was last read: set aside, and the points go to a new file.
                set_aside(path, error)?;
                self.last_updates.remove(path);
                self.create(config, path, batch.ds_type, first.timestamp)?;
                updated = librrd::update(path, &self.arguments[..used]);
            }
        }
        match updated {
            Ok(()) => {
                self.remember(path, newest);
                Ok(SeriesOutcome {
                    written: used as u64,
                    late,
                })
            }
            Err(error) => {
                // librrd may have stored part of the call: read the file again next time.
                self.last_updates.remove(path);
                Err(error.into())
            }
        }
    }

    /// Writes the batches `jobs` (indices into `batches` and `paths`), in order.
    fn write_jobs(
        &mut self,
        config: &RrdConfig,
        batches: &[SeriesBatch],
        paths: &[Option<PathBuf>],
        jobs: &[usize],
    ) -> Vec<(usize, Result<SeriesOutcome, BackendError>)> {
        jobs.iter()
            .map(|&index| {
                let path = paths[index].as_deref().expect("jobs have paths");
                (index, self.write_series(config, path, &batches[index]))
            })
            .collect()
    }
}

/// How many writers a call with `busy` series to write uses, given at most `write_threads`.
fn writers_for(busy: usize, write_threads: usize) -> usize {
    if busy < PARALLEL_MIN_SERIES {
        1
    } else {
        write_threads.min(busy / MIN_SERIES_PER_WRITER).max(1)
    }
}

/// Assigns each batch with a path to one of `writers` writers: all batches of one file to the
/// same writer (in call order, as `jobs` keeps them), each new file to the least loaded one.
fn partition(
    batches: &[SeriesBatch],
    paths: &[Option<PathBuf>],
    writers: usize,
) -> Vec<Vec<usize>> {
    let mut jobs = vec![Vec::new(); writers];
    let mut load = vec![0usize; writers];
    let mut writer_of: HashMap<&Path, usize> = HashMap::with_capacity(paths.len());
    for (index, path) in paths.iter().enumerate() {
        let Some(path) = path else { continue };
        let writer = *writer_of.entry(path.as_path()).or_insert_with(|| {
            (0..writers)
                .min_by_key(|&w| load[w])
                .expect("at least one writer")
        });
        load[writer] += batches[index].points.len() + SERIES_COST_IN_POINTS;
        jobs[writer].push(index);
    }
    jobs
}

impl RrdBackend {
    /// A backend storing under `rrd_dir` (created when the first file is) with the layout
    /// `config` describes for new files, and [`default_write_threads`] write threads.
    pub fn new(rrd_dir: impl Into<PathBuf>, config: RrdConfig) -> Result<Self, RrdError> {
        config.validate()?;
        Ok(RrdBackend {
            rrd_dir: rrd_dir.into(),
            config,
            write_threads: default_write_threads(),
            writer: Writer::default(),
            spare_arguments: Vec::new(),
            consolidations: HashMap::new(),
        })
    }

    /// The same backend with at most `threads` write threads per call (0 counts as 1; 1 writes
    /// every file on the calling thread).
    pub fn with_write_threads(mut self, threads: usize) -> Self {
        self.write_threads = threads.max(1);
        self
    }

    /// The most threads one write call uses (the calling thread included).
    pub fn write_threads(&self) -> usize {
        self.write_threads
    }

    /// The directory the files are under.
    pub fn rrd_dir(&self) -> &Path {
        &self.rrd_dir
    }

    /// The RRD file of a series (whether or not it exists yet).
    pub fn series_path(&self, key: &SeriesKey) -> Result<PathBuf, BackendError> {
        series_path(&self.rrd_dir, key)
    }

    /// Writes `jobs` over `jobs.len()` writers: the calling thread takes the first share, a
    /// scoped thread each other one. Each writer is given the cached last updates of its files
    /// and hands back what it learnt; the outcomes go into `outcomes` by batch index.
    fn write_parallel(
        &mut self,
        batches: &[SeriesBatch],
        paths: &[Option<PathBuf>],
        jobs: Vec<Vec<usize>>,
        outcomes: &mut Outcomes,
    ) {
        let mut writers: Vec<Writer> = jobs
            .iter()
            .map(|job| {
                let mut last_updates = HashMap::with_capacity(job.len());
                for &index in job {
                    let path = paths[index].as_deref().expect("jobs have paths");
                    if let Some((path, last)) = self.writer.last_updates.remove_entry(path) {
                        last_updates.insert(path, last);
                    }
                }
                Writer {
                    last_updates,
                    arguments: self.spare_arguments.pop().unwrap_or_default(),
                }
            })
            .collect();
        let config = &self.config;
        let finished = std::thread::scope(|scope| {
            let others = writers.split_off(1);
            let handles: Vec<_> = others
                .into_iter()
                .zip(&jobs[1..])
                .map(|(mut writer, job)| {
                    scope.spawn(move || {
                        let done = writer.write_jobs(config, batches, paths, job);
                        (writer, done)
                    })
                })
                .collect();
            let mut own = writers.pop().expect("at least one writer");
            let done = own.write_jobs(config, batches, paths, &jobs[0]);
            let mut finished = vec![Ok((own, done))];
            finished.extend(handles.into_iter().map(|handle| handle.join()));
            finished
        });
        let mut panic = None;
        for result in finished {
            match result {
                Ok((writer, done)) => {
                    self.writer.last_updates.extend(writer.last_updates);
                    self.spare_arguments.push(writer.arguments);
                    for (index, outcome) in done {
                        outcomes[index] = Some(outcome);
                    }
                }
                // A writer that panicked lost its files' cache entries, which are simply read
                // from the files again next time; the panic goes on once the others are merged.
                Err(payload) => panic = Some(payload),
            }
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Backend for RrdBackend {
    fn name(&self) -> &'static str {
        "rrd"
    }

    fn forget(&mut self, host: &str, series: Option<(&str, &str)>) {
        // Cached last updates and archive lists of files about to move: a new file at the same
        // path starts with no history.
        if let Ok(Some(gone)) = self.stored_at(host, series) {
            self.writer
                .last_updates
                .retain(|path, _| !path.starts_with(&gone));
            self.consolidations
                .retain(|path, _| !path.starts_with(&gone));
        }
    }

    fn stored_at(
        &self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<Option<PathBuf>, BackendError> {
        Ok(Some(match series {
            // The series' directory, `<host>/<service>/<metric>/`, holding value.rrd.
            Some((service, metric)) => self
                .series_path(&SeriesKey::new(host, service, metric))?
                .parent()
                .expect("a series file lies in its directory")
                .to_path_buf(),
            None => self.rrd_dir.join(perfpipe_backend::encode_name(host, 0)?),
        }))
    }

    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError> {
        // Names are checked and empty batches settled here; the rest is written below.
        let mut outcomes: Outcomes = Vec::with_capacity(batches.len());
        let mut paths: Vec<Option<PathBuf>> = Vec::with_capacity(batches.len());
        let mut busy = 0;
        for batch in batches {
            match self.series_path(&batch.key) {
                Err(error) => {
                    outcomes.push(Some(Err(error)));
                    paths.push(None);
                }
                Ok(_) if batch.points.is_empty() => {
                    outcomes.push(Some(Ok(SeriesOutcome {
                        written: 0,
                        late: 0,
                    })));
                    paths.push(None);
                }
                Ok(path) => {
                    outcomes.push(None);
                    paths.push(Some(path));
                    busy += 1;
                }
            }
        }

        let writers = writers_for(busy, self.write_threads);
        if writers == 1 {
            for (index, batch) in batches.iter().enumerate() {
                if let Some(path) = &paths[index] {
                    outcomes[index] = Some(self.writer.write_series(&self.config, path, batch));
                }
            }
        } else {
            let jobs = partition(batches, &paths, writers);
            self.write_parallel(batches, &paths, jobs, &mut outcomes);
        }

        let mut report = WriteReport::default();
        for (batch, outcome) in batches.iter().zip(outcomes) {
            match outcome.expect("every batch was written") {
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
        if self.writer.last_update(&path)?.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use perfpipe_backend::Point;

    fn batch(metric: &str, points: usize) -> SeriesBatch {
        SeriesBatch {
            levels: Vec::new(),
            key: SeriesKey {
                host: "h".into(),
                service: "s".into(),
                metric: metric.into(),
            },
            uom: Default::default(),
            ds_type: DataSourceType::Gauge,
            points: (0..points)
                .map(|i| Point {
                    timestamp: i as i64,
                    value: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn small_calls_stay_on_the_calling_thread() {
        assert_eq!(writers_for(0, 4), 1);
        assert_eq!(writers_for(PARALLEL_MIN_SERIES - 1, 4), 1);
        assert_eq!(writers_for(PARALLEL_MIN_SERIES, 4), 2);
        assert_eq!(writers_for(PARALLEL_MIN_SERIES, 1), 1);
        assert_eq!(writers_for(1000, 4), 4);
        assert_eq!(writers_for(1000, 3), 3);
        assert!((1..=4).contains(&default_write_threads()));
    }

    #[test]
    fn a_file_has_one_writer_and_its_batches_stay_in_call_order() {
        let mut batches: Vec<SeriesBatch> =
            (0..40).map(|i| batch(&format!("m{i}"), i % 5)).collect();
        // The same series three more times, among others: same file, same writer, in order.
        batches.insert(10, batch("m3", 2));
        batches.push(batch("m3", 1));
        batches.push(batch("m0", 1));
        let mut paths: Vec<Option<PathBuf>> = batches
            .iter()
            .map(|b| Some(series_path(Path::new("/d"), &b.key).unwrap()))
            .collect();
        paths[5] = None; // a batch settled before partitioning
        let jobs = partition(&batches, &paths, 3);
        assert_eq!(jobs.len(), 3);
        let mut seen: Vec<usize> = jobs.iter().flatten().copied().collect();
        seen.sort_unstable();
        let expected: Vec<usize> = (0..batches.len()).filter(|&i| i != 5).collect();
        assert_eq!(seen, expected, "every batch with a path exactly once");
        let mut writer_of: HashMap<&Path, usize> = HashMap::new();
        for (writer, job) in jobs.iter().enumerate() {
            assert!(job.windows(2).all(|w| w[0] < w[1]), "call order");
            assert!(job.len() >= 10, "balanced: {jobs:?}");
            for &index in job {
                let path = paths[index].as_deref().unwrap();
                assert_eq!(*writer_of.entry(path).or_insert(writer), writer, "{path:?}");
            }
        }
    }
}
