//! The write-ahead log: a write is acknowledged only once its points are in an append-only log
//! on this node's disk, flushed with `fdatasync`, so a node killed at any moment loses nothing
//! it acknowledged.
//!
//! The log is a directory of segments named by a 16-digit number (`0000000000000007.wal`): an
//! 8-byte magic, then records of `u32 length, u32 CRC-32 of the payload, payload`
//! (little-endian), each payload one request's points ([`encode`]). One committer thread
//! appends, syncing at most once per `sync_interval`: a request after a quiet spell is synced
//! at once, and the requests that arrive within the interval after a sync share the next write
//! and `fdatasync` (group commit); [`Wal::append`] answers each only after its sync, and the
//! synced pages are then dropped from the page cache (the log is read only by a replay). A
//! segment is sealed when it passes `segment_size` or is older than `segment_age`, and deleted once
//! the reaper thread's [`Settle`] says its points are safe elsewhere. For the node's log that
//! is the enqueuer's barrier ([`crate::enqueuer::Barrier`]): every point in it is in every
//! backend. The write path hands points to the enqueuer *before* logging them, so by the time
//! a segment is sealed every point in it is already queued ahead of the barrier sent then. For
//! a hinted-handoff log ([`crate::handoff`]) it is the delivery of its records to their owner.
//!
//! On start, [`replay`] reads what segments are left, oldest first. A record whose length runs
//! past the end of its segment, or whose checksum does not match, ends the segment: the rest is
//! cut (the file truncated there) with a warning naming the segment and the bytes cut. Replayed
//! points are written again; the backends take a point they already hold as an overwrite
//! (Whisper, InfluxDB) or count it late (RRD), never as a second point.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perfpipe_backend::{Levels, Name, Point, SeriesKey, ThresholdRange};
use tracing::{error, info, warn};

use crate::enqueuer::SeriesPoints;

/// The first bytes of every segment.
const MAGIC: &[u8; 8] = b"PPWAL01\n";
/// A record's length and checksum.
const RECORD_HEADER: usize = 8;
/// How often the committer looks at an idle segment's age.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Where the log lives and how it commits.
#[derive(Debug, Clone)]
pub struct WalSettings {
    pub dir: PathBuf,
    /// Requests arriving within this of the first share one `fdatasync`.
    pub sync_interval: Duration,
    /// A segment is sealed once it holds this many bytes...
    pub segment_size: u64,
    /// ...or once it is this old and holds a record.
    pub segment_age: Duration,
}

/// Why the log did not take a record, or could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// The disk refused (full, read-only, failing).
    #[error("write-ahead log {path}: {source}")]
    Io {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// The node is stopping.
    #[error("the write-ahead log has stopped")]
    Stopped,
}

impl WalError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// The disk is full (or over quota): worth a 503 and a retry, not a 500.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT)))
    }
}

const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// What the log has done, for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct WalCounters {
    /// Records appended (one per logged request).
    pub records: AtomicU64,
    /// Bytes appended, headers included.
    pub bytes: AtomicU64,
    /// `fdatasync` calls.
    pub syncs: AtomicU64,
    /// Appends refused by the disk.
    pub failures: AtomicU64,
    /// Segments on disk (the active one included).
    pub segments: AtomicU64,
    /// Bytes on disk in segments not yet deleted.
    pub bytes_on_disk: AtomicU64,
}

struct Append {
    record: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(), WalError>>,
}

/// Called by the reaper with sealed segments, oldest first: `true` once their points are safe
/// elsewhere (the segments are then deleted), `false` to stop reaping (the node is stopping;
/// the segments stay for the next start).
pub type Settle = Box<dyn FnMut(&[PathBuf]) -> bool + Send>;

/// The running log: the committer and reaper threads.
pub struct Wal {
    appends: Mutex<Option<Sender<Append>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<WalCounters>,
    dir: PathBuf,
}

impl Wal {
    /// Starts logging into a new segment after the `replayed` ones, which are handed to the
    /// reaper at once (their points were queued by [`replay`] before this is called).
    pub fn start(
        settings: WalSettings,
        replayed: Replayed,
        settle: Settle,
    ) -> Result<Wal, WalError> {
        let counters = Arc::new(WalCounters::default());
        let (sealed_sender, sealed) = mpsc::channel::<Sealed>();
        for segment in replayed.segments {
            counters.segments.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_on_disk
                .fetch_add(segment.bytes, Ordering::Relaxed);
            let _ = sealed_sender.send(segment);
        }
        let reaper_counters = counters.clone();
        std::thread::Builder::new()
            .name("wal-reaper".into())
            .spawn(move || reap(sealed, settle, reaper_counters))
            .map_err(|error| WalError::io(&settings.dir, error))?;
        let (appends, requests) = mpsc::channel::<Append>();
        let committer_counters = counters.clone();
        let dir = settings.dir.clone();
        let committer = Committer {
            settings,
            next_id: replayed.next_id,
            active: None,
            sealed: sealed_sender,
            counters: committer_counters,
        };
        let committer = std::thread::Builder::new()
            .name("wal-committer".into())
            .spawn(move || committer.run(requests))
            .map_err(|error| WalError::io(&dir, error))?;
        Ok(Wal {
            appends: Mutex::new(Some(appends)),
            committer: Mutex::new(Some(committer)),
            counters,
            dir,
        })
    }

    /// Appends `record` (from [`encode`]); resolves once it is synced to disk.
    pub async fn append(&self, record: Vec<u8>) -> Result<(), WalError> {
        let (done, synced) = tokio::sync::oneshot::channel();
        {
            let appends = self.appends.lock().unwrap_or_else(|e| e.into_inner());
            let Some(appends) = appends.as_ref() else {
                return Err(WalError::Stopped);
            };
            appends
                .send(Append { record, done })
                .map_err(|_| WalError::Stopped)?;
        }
        synced.await.map_err(|_| WalError::Stopped)?
    }

    /// The log's counters.
    pub fn counters(&self) -> &WalCounters {
        &self.counters
    }

    /// Whether any segment is on disk: records not yet settled, or an open segment.
    pub fn has_segments(&self) -> bool {
        self.counters.segments.load(Ordering::Acquire) > 0
    }

    /// Stops taking records and waits for the committer. The reaper is left to end by itself:
    /// its barrier holds the enqueuer only weakly and fails once the enqueuer has shut down,
    /// so a backend that is down cannot make this wait. Call before the enqueuer's shutdown.
    pub fn stop(&self) {
        drop(
            self.appends
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(thread) = self
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = thread.join();
        }
    }

    /// Deletes every segment: for after a shutdown that wrote every queued point.
    pub fn remove_all(&self) -> Result<usize, WalError> {
        let segments = list_segments(&self.dir)?;
        for (_, path) in &segments {
            remove(path)?;
        }
        self.counters.segments.store(0, Ordering::Relaxed);
        self.counters.bytes_on_disk.store(0, Ordering::Relaxed);
        Ok(segments.len())
    }
}

/// A segment no longer appended to.
struct Sealed {
    path: PathBuf,
    bytes: u64,
}

struct Active {
    file: File,
    path: PathBuf,
    len: u64,
    opened: Instant,
    records: u64,
}

impl Active {
    /// Tells the kernel to drop the synced pages of the segment from the page cache. The log is
    /// read again only by a replay after a crash, so caching what it wrote is of no use, and it
    /// costs: a segment stays on disk until its points are settled (with rollups, until the
    /// next rollup checkpoint, up to a minute), and meanwhile its pages would take ever new
    /// memory from the kernel, the whole log's size of it, where dropped pages are taken again
    /// at the next append while still warm. On a virtual machine that hands free memory back to
    /// its host, a fresh page costs a fault in the host too: measured at the node's sustained
    /// load, the committer's copies into the page cache took 5 times the CPU while segments
    /// waited a minute (docs/performance.md). `synced_from` is where the append just synced
    /// began; the kernel leaves a partial last page (and any page not yet written back) alone,
    /// so the range starts at the page holding it, which the previous call left. Only advice: a
    /// refusal changes nothing but the cache, and is not an error.
    fn drop_synced_pages(&self, synced_from: u64) {
        let page = rustix::param::page_size() as u64;
        let from = synced_from - synced_from % page;
        if let Some(len) = std::num::NonZeroU64::new(self.len - from) {
            let _ = rustix::fs::fadvise(&self.file, from, Some(len), rustix::fs::Advice::DontNeed);
        }
    }
}

struct Committer {
    settings: WalSettings,
    next_id: u64,
    active: Option<Active>,
    sealed: Sender<Sealed>,
    counters: Arc<WalCounters>,
}

impl Committer {
    fn run(mut self, requests: Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::new();
        let mut buffer: Vec<u8> = Vec::new();
        let mut last_sync = Instant::now()
            .checked_sub(self.settings.sync_interval)
            .unwrap_or_else(Instant::now);
        loop {
            let first = match requests.recv_timeout(IDLE_CHECK.min(self.settings.segment_age)) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.seal_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            batch.push(first);
            // At most one sync per interval: a record arriving after a quiet spell is synced at
            // once, one arriving just after a sync waits out the rest of the interval with
            // whatever else arrives meanwhile.
            let deadline = last_sync + self.settings.sync_interval;
            loop {
                let now = Instant::now();
                let next = if now >= deadline {
                    requests.try_recv().ok()
                } else {
                    requests.recv_timeout(deadline - now).ok()
                };
                match next {
                    Some(append) => batch.push(append),
                    None => break,
                }
            }
            buffer.clear();
            for append in &batch {
                frame(&append.record, &mut buffer);
            }
            let outcome = self.write_and_sync(&buffer, batch.len() as u64);
            last_sync = Instant::now();
            if let Err(failure) = &outcome {
                self.counters
                    .failures
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                error!(%failure, requests = batch.len(), "write-ahead log append failed");
            }
            for append in batch.drain(..) {
                let _ = append.done.send(outcome.clone());
            }
            self.seal_if_due();
        }
    }

    /// Appends `bytes` to the active segment (opening one if needed) and syncs it. On failure
    /// the segment is cut back to its last synced length, so no half record stays in it.
    fn write_and_sync(&mut self, bytes: &[u8], records: u64) -> Result<(), WalError> {
        if self.active.is_none() {
            self.active = Some(self.open_segment()?);
        }
        let active = self.active.as_mut().expect("opened above");
        let written = active
            .file
            .write_all(bytes)
            .and_then(|()| active.file.sync_data());
        if let Err(error) = written {
            let failure = WalError::io(&active.path, error);
            // After a failed fdatasync the page cache's state is unknown: cut back and move
            // on to a new segment rather than trust this one's tail.
            let cut = active.file.set_len(active.len);
            let active = self.active.take().expect("present");
            if active.records == 0 {
                drop(active.file);
                let _ = std::fs::remove_file(&active.path);
                self.counters.segments.fetch_sub(1, Ordering::Relaxed);
                self.counters
                    .bytes_on_disk
                    .fetch_sub(active.len, Ordering::Relaxed);
            } else {
                if let Err(error) = cut {
                    // Replay cuts the half record off by its checksum.
                    warn!(segment = %active.path.display(), %error, "could not cut a failed append");
                }
                self.seal(active);
            }
            return Err(failure);
        }
        let synced_from = active.len;
        active.len += bytes.len() as u64;
        active.drop_synced_pages(synced_from);
        active.records += records;
        self.counters.records.fetch_add(records, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.counters
            .bytes_on_disk
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn open_segment(&mut self) -> Result<Active, WalError> {
        let dir = &self.settings.dir;
        std::fs::create_dir_all(dir).map_err(|error| WalError::io(dir, error))?;
        let path = dir.join(segment_name(self.next_id));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|error| WalError::io(&path, error))?;
        let ready = file
            .write_all(MAGIC)
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(error) = ready {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(WalError::io(&path, error));
        }
        self.next_id += 1;
        self.counters.segments.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_on_disk
            .fetch_add(MAGIC.len() as u64, Ordering::Relaxed);
        Ok(Active {
            file,
            path,
            len: MAGIC.len() as u64,
            opened: Instant::now(),
            records: 0,
        })
    }

    fn seal_if_due(&mut self) {
        let due = self.active.as_ref().is_some_and(|active| {
            active.records > 0
                && (active.len >= self.settings.segment_size
                    || active.opened.elapsed() >= self.settings.segment_age)
        });
        if due {
            let active = self.active.take().expect("checked above");
            self.seal(active);
        }
    }

    fn seal(&mut self, active: Active) {
        let _ = self.sealed.send(Sealed {
            path: active.path,
            bytes: active.len,
        });
    }
}

/// Deletes sealed segments once `settle` says so; all segments waiting are settled together.
fn reap(sealed: Receiver<Sealed>, mut settle: Settle, counters: Arc<WalCounters>) {
    while let Ok(first) = sealed.recv() {
        let mut due = vec![first];
        due.extend(sealed.try_iter());
        let paths: Vec<PathBuf> = due.iter().map(|segment| segment.path.clone()).collect();
        if !settle(&paths) {
            // The node is stopping; what is left is settled by its shutdown or next start.
            return;
        }
        for segment in due {
            match remove(&segment.path) {
                Ok(()) => {
                    counters.segments.fetch_sub(1, Ordering::Relaxed);
                    counters
                        .bytes_on_disk
                        .fetch_sub(segment.bytes, Ordering::Relaxed);
                }
                Err(failure) => warn!(%failure, "written segment not deleted"),
            }
        }
    }
}

fn remove(path: &Path) -> Result<(), WalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(WalError::io(path, error)),
    }
}

fn segment_name(id: u64) -> String {
    format!("{id:016}.wal")
}

/// The segments in `dir`, oldest first (none when it does not exist).
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io(dir, error)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io(dir, error))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".wal"))
            .and_then(|stem| stem.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push((id, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

/// What [`replay`] found, for [`Wal::start`].
#[derive(Default)]
pub struct Replayed {
    segments: Vec<Sealed>,
    next_id: u64,
    /// Records read back.
    pub records: u64,
    /// Points read back.
    pub points: u64,
    /// Bytes cut from torn or corrupt tails.
    pub cut_bytes: u64,
}

/// Reads every segment in `dir`, oldest first, handing each record's points and sequence
/// number (when it has one) to `take` (which queues them). Points that a later deletion record forgets are left out (a first
/// pass finds the deletions). Torn or corrupt tails are cut, and so is a record that does not
/// decode; each cut is logged with the segment and the bytes cut.
pub fn replay(
    dir: &Path,
    mut take: impl FnMut(Vec<SeriesPoints>, Option<u64>),
) -> Result<Replayed, WalError> {
    let segments = list_segments(dir)?;
    let read = |path: &Path| -> Result<Vec<u8>, WalError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|error| WalError::io(path, error))?;
        Ok(bytes)
    };
    // Pass 1: the deletions (record number, host, series), in log order.
    type Deletion = (u64, String, Option<(String, String)>);
    let mut forgets: Vec<Deletion> = Vec::new();
    let mut index = 0u64;
    for (_, path) in &segments {
        let bytes = read(path)?;
        for (payload, _) in records_from(&bytes, 0).unwrap_or_default() {
            match decode_record(payload) {
                Some(Record::Forget { host, series }) => forgets.push((index, host, series)),
                Some(Record::Points { .. }) => {}
                None => break,
            }
            index += 1;
        }
    }
    let forgotten_later = |record: u64, key: &perfpipe_backend::SeriesKey| {
        forgets.iter().any(|(at, host, series)| {
            *at > record
                && key.host == *host
                && series.as_ref().is_none_or(|(service, metric)| {
                    key.service == *service && key.metric == *metric
                })
        })
    };
    let mut replayed = Replayed::default();
    let mut index = 0u64;
    for (id, path) in segments {
        replayed.next_id = replayed.next_id.max(id + 1);
        let bytes = read(&path)?;
        let mut good = 0usize;
        if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] == MAGIC {
            good = MAGIC.len();
            while let Some((payload, next)) = next_record(&bytes, good) {
                match decode_record(payload) {
                    Some(Record::Points {
                        mut series,
                        sequence,
                    }) => {
                        if !forgets.is_empty() {
                            series.retain(|one| !forgotten_later(index, &one.key));
                        }
                        replayed.records += 1;
                        replayed.points += series
                            .iter()
                            .map(|series| series.points.len() as u64)
                            .sum::<u64>();
                        if !series.is_empty() {
                            take(series, sequence);
                        }
                        good = next;
                    }
                    Some(Record::Forget { .. }) => {
                        replayed.records += 1;
                        good = next;
                    }
                    None => break,
                }
                index += 1;
            }
        }
        if good < bytes.len() {
            let cut = bytes.len() - good;
            warn!(
                segment = %path.display(),
                bytes = cut,
                "write-ahead log: torn or corrupt tail cut"
            );
            replayed.cut_bytes += cut as u64;
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(good as u64).and_then(|()| file.sync_all()))
                .map_err(|error| WalError::io(&path, error))?;
        }
        replayed.segments.push(Sealed {
            path,
            bytes: good as u64,
        });
    }
    if replayed.records > 0 || replayed.cut_bytes > 0 {
        info!(
            records = replayed.records,
            points = replayed.points,
            deletions = forgets.len(),
            cut_bytes = replayed.cut_bytes,
            "write-ahead log replayed"
        );
    }
    Ok(replayed)
}

/// The payloads of a sealed segment's records from byte `from` on (`from` 0 = the first), each
/// with the offset just past it; `None` when the file is not a segment.
pub fn records_from(bytes: &[u8], from: usize) -> Option<Vec<(&[u8], usize)>> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let mut at = from.max(MAGIC.len());
    let mut records = Vec::new();
    while let Some((payload, next)) = next_record(bytes, at) {
        records.push((payload, next));
        at = next;
    }
    Some(records)
}

/// The payload of the record at `at` and where the next starts, if a whole, intact record
/// is there.
fn next_record(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at + RECORD_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(header[4..].try_into().ok()?);
    let start = at + RECORD_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == checksum).then_some((payload, start + len))
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Marks a record that is a deletion, not points (no points record has this many series).
const FORGET_MARKER: usize = u32::MAX as usize;

/// Marks a points record that carries the enqueuer's sequence number of its request (an `u64`
/// after the marker, then a payload of [`encode`]); records without it (hint logs, segments
/// of earlier versions) have no number.
const SEQUENCED_MARKER: usize = u32::MAX as usize - 1;

/// A deletion as a record payload: at replay, the points logged before it of `host` (or of its
/// one series `(service, metric)`) are not replayed, so a delete survives a crash that comes
/// before its points' segments are gone.
pub fn encode_forget(host: &str, series: Option<(&str, &str)>) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, FORGET_MARKER);
    put_u32(&mut out, host.len());
    out.extend_from_slice(host.as_bytes());
    match series {
        None => out.push(0),
        Some((service, metric)) => {
            out.push(1);
            for text in [service, metric] {
                put_u32(&mut out, text.len());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out
}

/// What a record of the log holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// One request's points, with its sequence number when the record carries one
    /// ([`encode_sequenced`]).
    Points {
        series: Vec<SeriesPoints>,
        sequence: Option<u64>,
    },
    /// A deletion ([`encode_forget`]).
    Forget {
        host: String,
        series: Option<(String, String)>,
    },
}

/// Reads a payload of [`encode`], [`encode_sequenced`] or [`encode_forget`]; `None` when it is
/// none of them.
pub fn decode_record(payload: &[u8]) -> Option<Record> {
    let mut reader = Reader(payload);
    match reader.u32()? {
        FORGET_MARKER => {}
        SEQUENCED_MARKER => {
            let sequence = u64::from_le_bytes(reader.take()?);
            return decode(reader.0).map(|series| Record::Points {
                series,
                sequence: Some(sequence),
            });
        }
        _ => {
            return decode(payload).map(|series| Record::Points {
                series,
                sequence: None,
            })
        }
    }
    let host = reader.text()?.into();
    let series = match reader.byte()? {
        0 => None,
        _ => Some((reader.text()?.into(), reader.text()?.into())),
    };
    reader
        .0
        .is_empty()
        .then_some(Record::Forget { host, series })
}

/// [`encode`] behind a sequence number, to be set with [`set_sequence`] once the enqueuer has
/// numbered the request (replay tells the enqueuer which points its saved rollup state holds).
pub fn encode_sequenced(series: &[SeriesPoints]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + encoded_size(series));
    put_u32(&mut out, SEQUENCED_MARKER);
    out.extend_from_slice(&0u64.to_le_bytes());
    encode_into(series, &mut out);
    out
}

/// Sets the sequence number of a payload of [`encode_sequenced`].
pub fn set_sequence(payload: &mut [u8], sequence: u64) {
    debug_assert_eq!(payload[..4], (SEQUENCED_MARKER as u32).to_le_bytes());
    payload[4..12].copy_from_slice(&sequence.to_le_bytes());
}

/// One request's points as a record payload: per series its names, unit, points and level
/// changes, little-endian, lengths as `u32`.
pub fn encode(series: &[SeriesPoints]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_size(series));
    encode_into(series, &mut out);
    out
}

fn encoded_size(series: &[SeriesPoints]) -> usize {
    4 + series
        .iter()
        .map(|s| {
            32 + s.key.host.len()
                + s.key.service.len()
                + s.key.metric.len()
                + s.uom.len()
                + 16 * s.points.len()
                + 60 * s.levels.len()
        })
        .sum::<usize>()
}

fn encode_into(series: &[SeriesPoints], out: &mut Vec<u8>) {
    put_u32(out, series.len());
    for series in series {
        for text in [
            series.key.host.as_str(),
            series.key.service.as_str(),
            series.key.metric.as_str(),
            series.uom.as_str(),
        ] {
            put_u32(out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        put_u32(out, series.points.len());
        for point in &series.points {
            out.extend_from_slice(&point.timestamp.to_le_bytes());
            out.extend_from_slice(&point.value.to_le_bytes());
        }
        put_u32(out, series.levels.len());
        for (timestamp, levels) in &series.levels {
            out.extend_from_slice(&timestamp.to_le_bytes());
            let flags = u8::from(levels.warn.is_some())
                | u8::from(levels.crit.is_some()) << 1
                | u8::from(levels.min.is_some()) << 2
                | u8::from(levels.max.is_some()) << 3;
            out.push(flags);
            for range in [&levels.warn, &levels.crit].into_iter().flatten() {
                out.extend_from_slice(&range.start.to_le_bytes());
                out.extend_from_slice(&range.end.to_le_bytes());
                out.push(u8::from(range.inside));
            }
            for bound in [levels.min, levels.max].into_iter().flatten() {
                out.extend_from_slice(&bound.to_le_bytes());
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

/// Reads a payload of [`encode`]; `None` when it is not one.
pub fn decode(payload: &[u8]) -> Option<Vec<SeriesPoints>> {
    let mut reader = Reader(payload);
    let count = reader.u32()?;
    let mut series = Vec::with_capacity(count.min(payload.len() / 20));
    for _ in 0..count {
        let host = reader.text()?;
        let service = reader.text()?;
        let metric = reader.text()?;
        let uom = reader.text()?;
        let point_count = reader.u32()?;
        let mut points = Vec::with_capacity(point_count.min(reader.0.len() / 16));
        for _ in 0..point_count {
            points.push(Point {
                timestamp: reader.i64()?,
                value: reader.f64()?,
            });
        }
        let level_count = reader.u32()?;
        let mut levels = Vec::with_capacity(level_count.min(reader.0.len() / 9));
        for _ in 0..level_count {
            let timestamp = reader.i64()?;
            let flags = reader.byte()?;
            let mut range = |present: bool| -> Option<Option<ThresholdRange>> {
                if !present {
                    return Some(None);
                }
                Some(Some(ThresholdRange {
                    start: reader.f64()?,
                    end: reader.f64()?,
                    inside: reader.byte()? != 0,
                }))
            };
            let warn = range(flags & 1 != 0)?;
            let crit = range(flags & 2 != 0)?;
            let min = if flags & 4 != 0 {
                Some(reader.f64()?)
            } else {
                None
            };
            let max = if flags & 8 != 0 {
                Some(reader.f64()?)
            } else {
                None
            };
            levels.push((
                timestamp,
                Levels {
                    warn,
                    crit,
                    min,
                    max,
                },
            ));
        }
        series.push(SeriesPoints {
            key: SeriesKey::new(host, service, metric),
            uom,
            points: points.into(),
            levels: levels.into(),
        });
    }
    reader.0.is_empty().then_some(series)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u32(&mut self) -> Option<usize> {
        self.take::<4>().map(|b| u32::from_le_bytes(b) as usize)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_le_bytes)
    }

    fn f64(&mut self) -> Option<f64> {
        self.take::<8>().map(f64::from_le_bytes)
    }

    fn text(&mut self) -> Option<Name> {
        let len = self.u32()?;
        if len > self.0.len() {
            return None;
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(text).ok().map(Name::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SeriesPoints> {
        vec![
            SeriesPoints {
                key: SeriesKey::new("web-01", "PING", "rta"),
                uom: "ms".into(),
                points: smallvec::smallvec![
                    Point {
                        timestamp: 100,
                        value: 0.25,
                    },
                    Point {
                        timestamp: 160,
                        value: f64::NAN,
                    },
                ],
                levels: smallvec::smallvec![(
                    100,
                    Levels {
                        warn: Some(ThresholdRange {
                            start: f64::NEG_INFINITY,
                            end: 80.0,
                            inside: true,
                        }),
                        crit: None,
                        min: Some(0.0),
                        max: None,
                    },
                )],
            },
            SeriesPoints {
                key: SeriesKey::new("h/../é", "", "m\0"),
                uom: Name::default(),
                points: smallvec::smallvec![Point {
                    timestamp: -5,
                    value: 1e300,
                }],
                levels: smallvec::SmallVec::new(),
            },
        ]
    }

    #[test]
    fn records_round_trip_bit_for_bit() {
        let series = sample();
        let decoded = decode(&encode(&series)).expect("decodes");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].key, series[0].key);
        assert_eq!(decoded[0].levels, series[0].levels);
        assert!(decoded[0].points[1].value.is_nan());
        assert_eq!(decoded[1], series[1]);
        // Any cut of a payload is refused, never misread.
        let payload = encode(&series);
        for len in 0..payload.len() {
            assert!(decode(&payload[..len]).is_none(), "cut at {len}");
        }
    }

    #[test]
    fn a_sequenced_record_keeps_its_number_and_a_plain_one_has_none() {
        let series = sample();
        let mut payload = encode_sequenced(&series);
        set_sequence(&mut payload, 0x0123_4567_89ab_cdef);
        let Some(Record::Points {
            series: decoded,
            sequence,
        }) = decode_record(&payload)
        else {
            panic!("a sequenced record does not decode");
        };
        assert_eq!(sequence, Some(0x0123_4567_89ab_cdef));
        assert_eq!(decoded[1], series[1]);
        assert!(decoded[0].points[1].value.is_nan());
        for len in 0..payload.len() {
            assert!(decode_record(&payload[..len]).is_none(), "cut at {len}");
        }
        assert!(matches!(
            decode_record(&encode(&series)),
            Some(Record::Points { sequence: None, .. })
        ));
    }

    fn start(dir: &Path, segment_size: u64) -> (Wal, Vec<Vec<SeriesPoints>>) {
        let mut taken = Vec::new();
        let replayed = replay(dir, |series, _| taken.push(series)).unwrap();
        let wal = Wal::start(
            WalSettings {
                dir: dir.to_path_buf(),
                sync_interval: Duration::from_millis(1),
                segment_size,
                segment_age: Duration::from_secs(3600),
            },
            replayed,
            Box::new(|_| false),
        )
        .unwrap();
        (wal, taken)
    }

    #[tokio::test]
    async fn a_deletion_keeps_earlier_points_from_replay_and_not_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = start(dir.path(), 1 << 20);
        wal.append(encode(&sample())).await.unwrap();
        wal.append(encode_forget("web-01", None)).await.unwrap();
        wal.append(encode_forget("h/../é", Some(("other", "series"))))
            .await
            .unwrap();
        wal.append(encode(&sample()[..1])).await.unwrap();
        wal.stop();
        assert_eq!(
            decode_record(&encode_forget("h", Some(("s", "m")))),
            Some(Record::Forget {
                host: "h".into(),
                series: Some(("s".into(), "m".into()))
            })
        );
        let (wal, taken) = start(dir.path(), 1 << 20);
        wal.stop();
        // First record: web-01 forgotten later, the other host kept (its deletion named
        // another series); the record after the deletion replayed whole.
        let hosts: Vec<Vec<&str>> = taken
            .iter()
            .map(|record| record.iter().map(|s| s.key.host.as_str()).collect())
            .collect();
        assert_eq!(hosts, vec![vec!["h/../é"], vec!["web-01"]]);
    }

    #[tokio::test]
    async fn appended_records_are_replayed_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = start(dir.path(), 1 << 20);
        for _ in 0..3 {
            wal.append(encode(&sample())).await.unwrap();
        }
        assert_eq!(wal.counters().syncs.load(Ordering::Relaxed), 3);
        wal.stop();
        // A crash in the middle of a record: its first bytes only.
        let segment = &list_segments(dir.path()).unwrap()[0].1;
        let whole = std::fs::metadata(segment).unwrap().len();
        let mut torn = Vec::new();
        frame(&encode(&sample()), &mut torn);
        OpenOptions::new()
            .append(true)
            .open(segment)
            .unwrap()
            .write_all(&torn[..torn.len() - 3])
            .unwrap();

        let (wal, taken) = start(dir.path(), 1 << 20);
        assert_eq!(taken.len(), 3);
        assert_eq!(taken[2][1], sample()[1]);
        assert_eq!(std::fs::metadata(segment).unwrap().len(), whole, "tail cut");
        // New records go to a new segment; the old one waits for its barrier.
        wal.append(encode(&sample()[1..])).await.unwrap();
        wal.stop();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 2);
        let (_, taken) = start(dir.path(), 1 << 20);
        assert_eq!(taken.len(), 4);
    }

    #[tokio::test]
    async fn a_flipped_byte_ends_the_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = start(dir.path(), 1 << 20);
        for _ in 0..4 {
            wal.append(encode(&sample())).await.unwrap();
        }
        wal.stop();
        let segment = list_segments(dir.path()).unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&segment).unwrap();
        let record = (bytes.len() - MAGIC.len()) / 4;
        let third = MAGIC.len() + 2 * record + RECORD_HEADER + 5;
        bytes[third] ^= 0x40;
        std::fs::write(&segment, &bytes).unwrap();
        let (_, taken) = start(dir.path(), 1 << 20);
        assert_eq!(taken.len(), 2, "records before the damage only");
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len() as usize,
            MAGIC.len() + 2 * record
        );
    }

    /// Bytes of `file` in the page cache, by util-linux's `fincore` (an essential package).
    fn cached_bytes(file: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(file)
            .output()
            .expect("fincore runs");
        assert!(out.status.success(), "fincore: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[tokio::test]
    async fn synced_records_leave_the_page_cache_and_replay_all_the_same() {
        // In the build's target directory: /tmp may be a tmpfs, whose pages are the file.
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).unwrap();
        let dir = tempfile::tempdir_in(&target).unwrap();
        let (wal, _) = start(dir.path(), 64 << 20);
        let many: Vec<SeriesPoints> = (0..200).flat_map(|_| sample()).collect();
        let record = encode(&many);
        let mut appended = 0;
        while appended < 2 << 20 {
            wal.append(record.clone()).await.unwrap();
            appended += record.len();
        }
        wal.stop();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 1);
        let size = std::fs::metadata(&segments[0].1).unwrap().len();
        assert!(size > 2 << 20, "segment of {size} bytes");
        // At most the partial last page stays cached (fincore counts whole pages).
        let cached = cached_bytes(&segments[0].1);
        let page = rustix::param::page_size() as u64;
        assert!(cached <= page, "{cached} of {size} bytes still cached");
        let (_, replayed) = start(dir.path(), 64 << 20);
        assert_eq!(replayed.len() * record.len(), appended);
        // Compared encoded: the sample holds a NaN.
        assert!(replayed.iter().all(|series| encode(series) == record));
    }

    #[tokio::test]
    async fn segments_are_sealed_by_size_and_deleted_after_the_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let (barrier, passed) = crate::enqueuer::Barrier::manual();
        let wal = Wal::start(
            WalSettings {
                dir: dir.path().to_path_buf(),
                sync_interval: Duration::ZERO,
                segment_size: 100,
                segment_age: Duration::from_secs(3600),
            },
            Replayed::default(),
            Box::new(move |_| barrier.wait()),
        )
        .unwrap();
        for _ in 0..4 {
            wal.append(encode(&sample())).await.unwrap();
        }
        // Each record passes the size: four sealed segments, none deleted before the barrier.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(list_segments(dir.path()).unwrap().len(), 4);
        for _ in 0..4 {
            let _ = passed.send(());
        }
        // The count goes down after the file is gone (on the committer's thread): both are
        // waited for, or a check between the two fails.
        let deadline = Instant::now() + Duration::from_secs(5);
        let settled = || {
            list_segments(dir.path()).unwrap().is_empty()
                && wal.counters().segments.load(Ordering::Relaxed) == 0
        };
        while !settled() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(list_segments(dir.path()).unwrap().is_empty());
        assert_eq!(wal.counters().segments.load(Ordering::Relaxed), 0);
        drop(passed);
        wal.stop();
    }
}
