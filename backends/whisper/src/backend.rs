//! [`WhisperBackend`]: perfpipe's [`Backend`] over a directory of whisper files.
//!
//! A series lives at `<data dir>/<host>/<service>/<metric>.wsp`, each name encoded with
//! [`encode_name`] (so `..`, `/` and any other byte stay inside one path component, and a name
//! too long for a file name is refused, never truncated). A file is created on the first write
//! of its series with the configured archives, aggregation method and xFilesFactor; an existing
//! file keeps the configuration it was created with.
//!
//! Writes go through [`WhisperFile::update_many`] with `now` from the clock (the system clock
//! unless another is injected): points older than the coarsest retention are reported as
//! `late`. Values are stored verbatim whatever the data-source type: graphite derives rates of
//! counters when rendering, not when storing.
//!
//! Reads go through [`WhisperFile::fetch`] with `from = start`, `until = end`, so the result
//! follows whisper's conventions: it starts at the interval after the one holding `start`, its
//! step is the step of the finest archive covering `start` (or, if the query names a step that
//! is exactly one archive's step, that archive's), and a range wholly in the future or beyond the
//! retention reads as no values. The query's consolidation is not applied: whisper consolidated
//! with its own aggregation method when it wrote the coarser archives.

// hashbrown (foldhash, seeded at random per process) rather than std's SipHash: this map is
// looked up once per series written.
use hashbrown::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use perfpipe_backend::{
    encode_name, Backend, BackendError, RangeQuery, SeriesBatch, SeriesKey, SeriesRange,
    WriteReport,
};

use crate::aggregation::AggregationMethod;
use crate::error::WhisperError;
use crate::format::{Preallocation, UpdateScratch, WhisperFile, DEFAULT_X_FILES_FACTOR};
use crate::retention::{parse_retentions, validate_archive_list, ArchiveSpec};
use crate::watch::{Notices, Watcher};

/// The retentions new files get unless configured otherwise.
pub const DEFAULT_RETENTIONS: &str = "60s:1d,5m:30d,1h:3y";

/// Bytes reserved in a metric's file name for the `.wsp` extension.
const EXTENSION_BYTES: usize = 4;

/// How new files are made and where they live.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperConfig {
    /// The directory holding one sub-directory per host.
    pub data_dir: PathBuf,
    /// Archives of new files.
    pub archives: Vec<ArchiveSpec>,
    /// Aggregation method of new files.
    pub aggregation: AggregationMethod,
    /// xFilesFactor of new files.
    pub x_files_factor: f64,
    /// How new files are zero-filled.
    pub preallocation: Preallocation,
    /// Files kept open between calls, at most (0 keeps none open). Each open file also keeps up
    /// to 8 KiB of its content in memory (see [`WhisperBackend`]).
    pub max_open_files: usize,
    /// Archives of new files of particular series (aggregates kept at their own resolution),
    /// instead of `archives`.
    pub archives_by_series: Option<ArchivesBySeries>,
}

/// The archives of a new file of a series; `None` = the configured `archives`.
pub type ChooseArchives = dyn Fn(&SeriesKey) -> Option<Vec<ArchiveSpec>> + Send + Sync;

/// Chooses the archives of new files by their series.
#[derive(Clone)]
pub struct ArchivesBySeries(pub Arc<ChooseArchives>);

impl std::fmt::Debug for ArchivesBySeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchivesBySeries(..)")
    }
}

impl PartialEq for ArchivesBySeries {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl WhisperConfig {
    /// Whisper's defaults (`60s:1d,5m:30d,1h:3y`, average, 0.5, zero-filled) under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> WhisperConfig {
        WhisperConfig {
            data_dir: data_dir.into(),
            archives: parse_retentions(DEFAULT_RETENTIONS)
                .expect("the default retentions are valid"),
            aggregation: AggregationMethod::Average,
            x_files_factor: DEFAULT_X_FILES_FACTOR,
            preallocation: Preallocation::Zeros,
            max_open_files: MAX_OPEN_FILES,
            archives_by_series: None,
        }
    }
}

/// The source of "now", in seconds since the epoch.
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// Files kept open between calls, at most, unless [`WhisperConfig::max_open_files`] says
/// otherwise (the node sizes it from its descriptor limit and shard count).
pub const MAX_OPEN_FILES: usize = 65_536;

/// perfpipe's Whisper storage backend.
///
/// Files stay open between calls (at most `max_open_files`; when full, half are closed), so a
/// write costs no `open` or `close`. An open [`WhisperFile`]'s first update goes through
/// `pread`/`pwrite`, the next through a memory mapping of the file (see [`crate::format`]'s
/// "I/O"), and from its second update each open file is watched with inotify (the `watch`
/// module): a file with no notice since its last checked update is updated with no system call
/// at all. A file with a
/// notice (or unwatched) is checked with one `fstat` first ([`WhisperFile::update_many_if_linked`]):
/// a file replaced (`whisper-resize`) or removed by someone else is reopened, so no write goes
/// to a file nobody reads; one changed in place (truncated, copied over) is read afresh. Notices
/// are read before and after each call; a file that may have lost its name during the call is
/// written again, checked, so its points reach the file its path names. This relies on the
/// backend's contract that it is a series' only writer while it writes.
///
/// Memory per open file: the header, at most 8 KiB of content kept for `pread`/`pwrite`, the
/// mapping (address space, not memory: the page cache's pages it touches are shared with the
/// kernel's cache) and an inotify watch (about 1 KiB of kernel memory).
pub struct WhisperBackend {
    config: WhisperConfig,
    clock: Clock,
    open_files: HashMap<SeriesKey, OpenFile>,
    /// Notices of changes to the open files; `None` before the first write (a backend used
    /// only for reading needs none) and where inotify is unavailable.
    watcher: Option<Watcher>,
    /// Whether creating `watcher` was tried.
    watcher_tried: bool,
    /// Counts `write` calls, to know which files a call wrote.
    calls: u64,
    /// Working memory of updates, shared by all files.
    scratch: UpdateScratch,
}

/// A file kept open between writes.
#[derive(Debug)]
struct OpenFile {
    file: WhisperFile,
    /// Its inotify watch, if it has one.
    watch: Option<i32>,
    /// Whether watching it was tried: at its second update, so that a file opened for a
    /// single update (many series cycling through fewer open files) costs no watch.
    watch_tried: bool,
    /// No notice since its last update checked with `fstat`: the next may skip the check.
    quiet: bool,
    /// The `write` call of its last update, and the position of its batch in that call.
    last_write: (u64, usize),
}

impl std::fmt::Debug for WhisperBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WhisperBackend {
    /// A backend with `config`, reading the system clock. Checks the configuration now rather
    /// than at the first write.
    pub fn new(mut config: WhisperConfig) -> Result<WhisperBackend, WhisperError> {
        validate_archive_list(&mut config.archives)?;
        if !(0.0..=1.0).contains(&config.x_files_factor) {
            return Err(WhisperError::InvalidXFilesFactor(config.x_files_factor));
        }
        Ok(WhisperBackend {
            config,
            clock: Box::new(perfpipe_backend::unix_now),
            open_files: HashMap::new(),
            watcher: None,
            watcher_tried: false,
            calls: 0,
            scratch: UpdateScratch::default(),
        })
    }

    /// Replaces the clock (for tests and replays).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + 'static) -> WhisperBackend {
        self.clock = Box::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// The file of a series: `<data dir>/<host>/<service>/<metric>.wsp`, names encoded.
    pub fn series_path(&self, key: &SeriesKey) -> Result<PathBuf, BackendError> {
        let mut path = self.config.data_dir.clone();
        path.push(encode_name(&key.host, 0)?);
        path.push(encode_name(&key.service, 0)?);
        path.push(encode_name(&key.metric, EXTENSION_BYTES)? + ".wsp");
        Ok(path)
    }

    /// Closes every file kept open; the next write of each series opens it again.
    pub fn close_files(&mut self) {
        self.close_where(|_| true);
    }

    /// Closes the open files of the series `close` picks (and stops watching them).
    fn close_where(&mut self, mut close: impl FnMut(&SeriesKey) -> bool) {
        let watcher = &mut self.watcher;
        self.open_files.retain(|key, open| {
            let closing = close(key);
            if let (true, Some(watcher), Some(wd)) = (closing, watcher.as_mut(), open.watch) {
                watcher.unwatch(wd);
            }
            !closing
        });
    }

    /// Closes one open file, if open.
    fn close(&mut self, key: &SeriesKey) {
        if let Some(open) = self.open_files.remove(key) {
            if let (Some(watcher), Some(wd)) = (self.watcher.as_mut(), open.watch) {
                watcher.unwatch(wd);
            }
        }
    }

    /// Reads the notices queued so far: the files they name lose their `quiet`. Returns the
    /// positions, in this call's batches, of the files written by this call (`call`) that may
    /// have lost their name since.
    fn take_notices(&mut self, call: u64) -> Vec<usize> {
        let Some(watcher) = self.watcher.as_mut() else {
            return Vec::new();
        };
        let mut rewrite = Vec::new();
        let mut mark = |open: &mut OpenFile, name_lost: bool| {
            open.quiet = false;
            if name_lost && open.last_write.0 == call {
                rewrite.push(open.last_write.1);
            }
        };
        match watcher.drain() {
            Notices::Changed(notices) => {
                for notice in notices {
                    if let Some(open) = self.open_files.get_mut(&notice.key) {
                        mark(open, notice.name_lost);
                    }
                }
            }
            Notices::Overflow => {
                tracing::debug!("inotify queue overflowed: every open whisper file is checked");
                self.open_files
                    .values_mut()
                    .for_each(|open| mark(open, true));
            }
        }
        rewrite.sort_unstable();
        rewrite.dedup();
        rewrite
    }

    fn write_series(
        &mut self,
        batch: &SeriesBatch,
        position: usize,
        now: i64,
        points: &mut Vec<(i64, f64)>,
    ) -> Result<(u64, u64), BackendError> {
        if batch.points.is_empty() {
            return Ok((0, 0));
        }
        batch.copy_pairs_into(points);
        let call = self.calls;
        if let Some(open) = self.open_files.get_mut(&batch.key) {
            if !open.watch_tried {
                // Before this update's check, so that no change after it goes unnoticed.
                open.watch_tried = true;
                open.watch = self
                    .watcher
                    .as_mut()
                    .and_then(|watcher| watcher.watch(open.file.descriptor(), &batch.key));
            }
            let checked = !open.quiet;
            match open
                .file
                .update(points, now, &mut self.scratch, true, open.quiet)
            {
                Ok(Some(summary)) => {
                    open.last_write = (call, position);
                    if checked {
                        open.quiet = open
                            .watch
                            .zip(self.watcher.as_ref())
                            .is_some_and(|(wd, watcher)| watcher.is_watching(wd));
                    }
                    return Ok((summary.stored, summary.dropped));
                }
                // Removed or replaced behind our back: write to whatever the path names now.
                Ok(None) => self.close(&batch.key),
                // Damaged behind our back: opened again below, which sets it aside.
                Err(WhisperError::Corrupt { .. }) => self.close(&batch.key),
                Err(error) => {
                    // Reopen next time: the file may have been repaired or replaced.
                    self.close(&batch.key);
                    return Err(error.into());
                }
            }
        }
        let path = self.series_path(&batch.key)?;
        let mut file = self.open_or_create(&path, &batch.key)?;
        let summary = file
            .update(points, now, &mut self.scratch, false, false)?
            .unwrap_or_default();
        if self.config.max_open_files == 0 {
            return Ok((summary.stored, summary.dropped));
        }
        if self.open_files.len() >= self.config.max_open_files {
            let mut kept = 0;
            self.close_where(|_| {
                kept += 1;
                kept % 2 == 1
            });
        }
        self.open_files.insert(
            batch.key.clone(),
            OpenFile {
                file,
                watch: None,
                watch_tried: false,
                quiet: false,
                last_write: (call, position),
            },
        );
        Ok((summary.stored, summary.dropped))
    }

    /// The series' file, created when there is none. A corrupt one is moved aside to
    /// `<file>.corrupt` (or `<file>.<n>.corrupt` when that exists) with an error in the log
    /// naming both, and a new one is created in its place: the series goes on being written,
    /// and the old bytes are kept for a person to look at.
    fn open_or_create(&self, path: &Path, key: &SeriesKey) -> Result<WhisperFile, WhisperError> {
        match WhisperFile::open(path) {
            Ok(file) => return Ok(file),
            Err(WhisperError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(WhisperError::Corrupt { reason, .. }) => {
                let aside = perfpipe_backend::set_aside(path)
                    .map_err(|error| WhisperError::io("move aside", path, error))?;
                tracing::error!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "corrupt whisper file moved aside; a new one takes its place"
                );
            }
            Err(other) => return Err(other),
        }
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .map_err(|error| WhisperError::io("create directory", directory, error))?;
        }
        let config = &self.config;
        let chosen = config
            .archives_by_series
            .as_ref()
            .and_then(|choose| (choose.0)(key));
        match WhisperFile::create_with(
            path,
            chosen.as_deref().unwrap_or(&config.archives),
            config.aggregation,
            config.x_files_factor,
            config.preallocation,
        ) {
            // Another writer created it meanwhile.
            Err(WhisperError::AlreadyExists(_)) => WhisperFile::open(path),
            other => other,
        }
    }
}

impl Backend for WhisperBackend {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError> {
        let now = (self.clock)();
        if !self.watcher_tried {
            self.watcher_tried = true;
            self.watcher = Watcher::new();
            if self.watcher.is_none() {
                tracing::debug!("inotify unavailable: open whisper files are checked with fstat");
            }
        }
        self.calls += 1;
        let call = self.calls;
        self.take_notices(call);
        let mut report = WriteReport::default();
        let mut points = Vec::new();
        for (position, batch) in batches.iter().enumerate() {
            match self.write_series(batch, position, now, &mut points) {
                Ok((written, late)) => {
                    report.written += written;
                    report.late += late;
                }
                Err(error) => report.failed.push((batch.key.clone(), error)),
            }
        }
        // A file that lost its name during this call (renamed over, removed) may have taken
        // points after it did: they are written again, checked, into the file the path names
        // now. Writing an update twice leaves the bytes writing it once leaves; the counts are
        // the first write's.
        for position in self.take_notices(call) {
            let batch = &batches[position];
            if let Err(error) = self.write_series(batch, position, now, &mut points) {
                report.failed.push((batch.key.clone(), error));
            }
        }
        Ok(report)
    }

    fn forget(&mut self, host: &str, series: Option<(&str, &str)>) {
        self.close_where(|key| {
            key.host == host
                && series
                    .is_none_or(|(service, metric)| key.service == service && key.metric == metric)
        });
    }

    fn stored_at(
        &self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<Option<PathBuf>, BackendError> {
        Ok(Some(match series {
            Some((service, metric)) => self.series_path(&SeriesKey::new(host, service, metric))?,
            None => self.config.data_dir.join(encode_name(host, 0)?),
        }))
    }

    fn read(&mut self, key: &SeriesKey, range: &RangeQuery) -> Result<SeriesRange, BackendError> {
        let now = (self.clock)();
        self.read_as_of(key, range, now)
    }

    fn read_as_of(
        &mut self,
        key: &SeriesKey,
        range: &RangeQuery,
        now: i64,
    ) -> Result<SeriesRange, BackendError> {
        let path = self.series_path(key)?;
        let file = match WhisperFile::open_read_only(&path) {
            Ok(file) => file,
            Err(WhisperError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(BackendError::NotFound(key.clone()));
            }
            Err(other) => return Err(other.into()),
        };
        let archive_step = range.step.filter(|&step| {
            file.info()
                .archives
                .iter()
                .any(|archive| archive.seconds_per_point == step)
        });
        match file.fetch_archive(range.start, range.end, now, archive_step)? {
            Some(fetched) => Ok(SeriesRange {
                start: fetched.from,
                step: fetched.step,
                values: fetched.values,
            }),
            None => Ok(SeriesRange {
                start: range.start,
                step: archive_step.unwrap_or(file.info().archives[0].seconds_per_point),
                values: Vec::new(),
            }),
        }
    }

    fn read_unwritten(&self, key: &SeriesKey, range: &RangeQuery, now: i64) -> Option<SeriesRange> {
        let config = &self.config;
        let chosen = config
            .archives_by_series
            .as_ref()
            .and_then(|choose| (choose.0)(key));
        let archives = chosen.as_deref().unwrap_or(&config.archives);
        // As `WhisperFile::fetch_archive` reads a file whose archives were never written.
        let max_retention = archives.iter().map(ArchiveSpec::retention).max()? as i64;
        let wanted = range.step.and_then(|step| {
            archives
                .iter()
                .find(|archive| archive.seconds_per_point == step)
        });
        if range.start > range.end || range.start > now || range.end < now - max_retention {
            return Some(SeriesRange {
                start: range.start,
                step: wanted.unwrap_or(archives.first()?).seconds_per_point,
                values: Vec::new(),
            });
        }
        let (from, until) = (range.start.max(now - max_retention), range.end.min(now));
        let archive = match wanted {
            Some(archive) => archive,
            None => archives
                .iter()
                .find(|archive| archive.retention() as i64 >= now - from)
                .or(archives.last())?,
        };
        let step = i64::from(archive.seconds_per_point);
        let (from_interval, until_interval) = crate::format::fetch_interval(from, until, step);
        Some(SeriesRange {
            start: from_interval,
            step: archive.seconds_per_point,
            values: vec![None; ((until_interval - from_interval) / step).max(0) as usize],
        })
    }
}
