//! The Whisper file format, and the three operations of whisper 1.1.4 that touch it:
//! `create`, `update_many` and `fetch`, reproduced byte for byte.
//!
//! # Layout (all integers and floats big-endian)
//!
//! ```text
//! File     = Metadata ArchiveInfo{archiveCount} Archive{archiveCount}
//! Metadata = aggregationType:u32 maxRetention:u32 xFilesFactor:f32 archiveCount:u32   (16 bytes)
//! ArchiveInfo = offset:u32 secondsPerPoint:u32 points:u32                              (12 bytes)
//! Archive  = Point{points}
//! Point    = timestamp:u32 value:f64                                                   (12 bytes)
//! ```
//!
//! Archives follow the header back to back, finest precision first. An archive is a ring: the
//! point in its first slot is its *base*; a point for interval `t` lives in slot
//! `((t - base) / secondsPerPoint) mod points`. A base timestamp of 0 means the archive is empty,
//! and its first write goes to slot 0. A slot whose stored timestamp is not the interval asked
//! for reads as unknown (`None`).
//!
//! # Writing (`update_many`)
//!
//! Points are sorted newest first (stably). Walking them, each point goes to the finest archive
//! whose retention covers its age `now - timestamp` (points in the future go to the finest
//! archive); once a point is too old for the coarsest archive, it and all older ones are dropped.
//! Each archive's points are written in time order: aligned down to the archive's step, for
//! several points in one interval the last one in that order wins, and runs of consecutive
//! intervals are written with one write (two where the ring wraps). Then the update propagates:
//! for each coarser archive in turn, every distinct coarser interval touched is recomputed from
//! the next finer archive if at least `xFilesFactor` of its slots are known, using the
//! aggregation method; propagation stops at the first archive where nothing was written.
//!
//! Quirks of whisper kept on purpose because they are visible in the bytes: the distinct coarser
//! intervals are visited in CPython `set` order ([`crate::python_set_order`]); an interval of 0
//! joins any run (Python's `not previousInterval`); a run longer than the ring is written past
//! its end exactly as whisper does.
//!
//! # I/O
//!
//! A [`WhisperFile`]'s first update goes through `pread`/`pwrite`; from its second on, the file
//! is memory-mapped (`MAP_SHARED`) and updates read and store the bytes in the mapping
//! (the private `mapped` module, which also turns the `SIGBUS` of a file truncated under the mapping into
//! an error and a redo through `pread`/`pwrite`). A mapping shows the file as it is, so it needs
//! no trust in anything kept: a mapped update compares the header's bytes with the header it
//! knows (a change sends the update the other way, where the header is read again), and takes
//! the file's length and link count from one `fstat` — unless the caller vouches that nobody
//! touched the file since this value's last update (the backend knows it from inotify), in
//! which case the header and archive bases kept from that update are used and the update makes
//! no system call at all. A `pwrite` costs more than the rest of a small update (ext4 updates
//! the file's times and journals the inode on every one; through a mapping that happens once
//! per page written back).
//!
//! Through `pread`/`pwrite` (the first update of an open file, files that cannot be mapped, and
//! [`WhisperFile::allow_mapping`]`(false)`), a [`WhisperFile`] keeps, between updates, the
//! header, each archive's base and the most recently used bytes of the file (at most 8 KiB, see
//! `page_cache`), and `update_many` performs whisper's reads and writes against that cache: bytes
//! already known are not read again, bytes about to be overwritten are not read at all, and the
//! modified bytes are written back at the end, one `pwrite` per contiguous run.
//!
//! What is kept is only trusted while the file is as this value last left it: each update starts
//! with one `fstat`, and if the file's identity, length, modification or change time differ from
//! what the `fstat` after this value's last write (or at open) said, everything kept is dropped
//! and the header read again. That second `fstat` after writing is needed because the update's
//! own writes change the times, and recording them from the clock instead would miss another
//! program's write in the same clock tick (a mapped update, whose stores change the times later,
//! drops what is kept). The check assumes another program's change is not interleaved with an
//! update's own writes (the window between the first `pwrite` and the `fstat` after the last
//! one), which whisper itself does not survive either: it has no locking by default and
//! computes what it writes from what it read earlier in the same call.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::aggregation::AggregationMethod;
use crate::error::WhisperError;
use crate::mapped::{MappedView, Mapping};
use crate::page_cache::{ChunkCache, ChunkPool};
use crate::python_set_order::{python_set_order_into, SetBuffers};
use crate::retention::{check_archive_order, validate_archive_list, ArchiveSpec};

/// Bytes of the metadata block.
pub const METADATA_SIZE: u64 = 16;
/// Bytes of one archive-info block.
pub const ARCHIVE_INFO_SIZE: u64 = 12;
/// Bytes of one point.
pub const POINT_SIZE: u64 = 12;

/// The xFilesFactor whisper uses when none is given.
pub const DEFAULT_X_FILES_FACTOR: f64 = 0.5;

/// The decoded header of a whisper file.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// How points are consolidated into coarser archives.
    pub aggregation: AggregationMethod,
    /// Seconds covered by the coarsest archive, as stored.
    pub max_retention: u32,
    /// Fraction of known slots needed for a consolidation, as stored (single precision).
    pub x_files_factor: f32,
    /// The archives, finest first.
    pub archives: Vec<ArchiveInfo>,
}

/// Where an archive lives in the file and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Byte offset of the archive's first slot.
    pub offset: u32,
    /// Seconds between points.
    pub seconds_per_point: u32,
    /// Number of slots.
    pub points: u32,
}

impl ArchiveInfo {
    /// Seconds the archive covers.
    pub fn retention(&self) -> u64 {
        u64::from(self.seconds_per_point) * u64::from(self.points)
    }

    /// Bytes the archive occupies.
    pub fn size(&self) -> u64 {
        u64::from(self.points) * POINT_SIZE
    }

    fn start(&self) -> u64 {
        u64::from(self.offset)
    }

    fn end(&self) -> u64 {
        self.start() + self.size()
    }

    fn step(&self) -> i64 {
        i64::from(self.seconds_per_point)
    }

    /// File offset of the slot for `interval`, given the archive's base interval (non-zero).
    fn slot_offset(&self, base: i64, interval: i64) -> u64 {
        let slot = match u32::try_from(interval - base) {
            // The usual case, at or after the base: 32-bit divisions are much cheaper.
            Ok(distance) => u64::from(distance / self.seconds_per_point % self.points),
            Err(_) => {
                let point_distance = (interval - base).div_euclid(self.step());
                // Python's `%` on a positive modulus: always in [0, points).
                point_distance.rem_euclid(i64::from(self.points)) as u64
            }
        };
        self.start() + slot * POINT_SIZE
    }
}

impl Header {
    /// The header's size in bytes.
    pub fn size(&self) -> u64 {
        METADATA_SIZE + ARCHIVE_INFO_SIZE * self.archives.len() as u64
    }

    /// The header for a new file with `archives` (validated and sorted), laid out back to back.
    fn for_new_file(
        archives: &[ArchiveSpec],
        aggregation: AggregationMethod,
        x_files_factor: f64,
    ) -> Result<Header, WhisperError> {
        let mut archives = archives.to_vec();
        validate_archive_list(&mut archives)?;
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(WhisperError::InvalidXFilesFactor(x_files_factor));
        }
        let max_retention = archives.iter().map(ArchiveSpec::retention).max();
        let header_size = METADATA_SIZE + ARCHIVE_INFO_SIZE * archives.len() as u64;
        let mut offset = header_size;
        let mut infos = Vec::with_capacity(archives.len());
        for archive in &archives {
            infos.push(ArchiveInfo {
                // validate_archive_list guarantees the whole file fits in u32.
                offset: offset as u32,
                seconds_per_point: archive.seconds_per_point,
                points: archive.points,
            });
            offset += u64::from(archive.points) * POINT_SIZE;
        }
        Ok(Header {
            aggregation,
            max_retention: max_retention.unwrap_or(0) as u32,
            // struct.pack('!f', x) rounds to nearest, as `as f32` does.
            x_files_factor: x_files_factor as f32,
            archives: infos,
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.size() as usize);
        bytes.extend_from_slice(&self.aggregation.type_code().to_be_bytes());
        bytes.extend_from_slice(&self.max_retention.to_be_bytes());
        bytes.extend_from_slice(&self.x_files_factor.to_be_bytes());
        bytes.extend_from_slice(&(self.archives.len() as u32).to_be_bytes());
        for archive in &self.archives {
            bytes.extend_from_slice(&archive.offset.to_be_bytes());
            bytes.extend_from_slice(&archive.seconds_per_point.to_be_bytes());
            bytes.extend_from_slice(&archive.points.to_be_bytes());
        }
        bytes
    }

    /// Reads and checks the header of `file` (of `file_len` bytes). Beyond whisper's own checks
    /// (known aggregation type, xFilesFactor in `[0, 1]`), the archives must obey whisper's
    /// validation rules and lie inside the file, so that no later operation can misbehave.
    fn read(file: &File, path: &Path, file_len: u64) -> Result<Header, WhisperError> {
        let corrupt = |reason: String| WhisperError::corrupt(path, reason);
        if file_len < METADATA_SIZE {
            return Err(corrupt(format!("{file_len} bytes, shorter than a header")));
        }
        let mut metadata = [0u8; METADATA_SIZE as usize];
        read_exact_at(file, path, &mut metadata, 0)?;
        let field = |i: usize| u32::from_be_bytes(metadata[i * 4..i * 4 + 4].try_into().unwrap());
        let aggregation = AggregationMethod::from_type_code(field(0))
            .ok_or_else(|| corrupt(format!("unknown aggregation type {}", field(0))))?;
        let max_retention = field(1);
        let x_files_factor = f32::from_bits(field(2));
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(corrupt(format!(
                "xFilesFactor {x_files_factor} not in [0, 1]"
            )));
        }
        let archive_count = u64::from(field(3));
        let header_size = METADATA_SIZE + ARCHIVE_INFO_SIZE * archive_count;
        if archive_count == 0 || header_size > file_len {
            return Err(corrupt(format!(
                "{archive_count} archives announced in a file of {file_len} bytes"
            )));
        }
        let mut infos = vec![0u8; (header_size - METADATA_SIZE) as usize];
        read_exact_at(file, path, &mut infos, METADATA_SIZE)?;
        let archives: Vec<ArchiveInfo> = infos
            .chunks_exact(ARCHIVE_INFO_SIZE as usize)
            .map(|info| {
                let field =
                    |i: usize| u32::from_be_bytes(info[i * 4..i * 4 + 4].try_into().unwrap());
                ArchiveInfo {
                    offset: field(0),
                    seconds_per_point: field(1),
                    points: field(2),
                }
            })
            .collect();
        let specs: Vec<ArchiveSpec> = archives
            .iter()
            .map(|archive| ArchiveSpec {
                seconds_per_point: archive.seconds_per_point,
                points: archive.points,
            })
            .collect();
        check_archive_order(&specs)
            .map_err(|reason| corrupt(format!("bad archive list: {reason}")))?;
        for (i, archive) in archives.iter().enumerate() {
            if archive.start() < header_size || archive.end() > file_len {
                return Err(corrupt(format!(
                    "archive {i} spans bytes {}..{} outside the data area {header_size}..{file_len}",
                    archive.start(),
                    archive.end()
                )));
            }
        }
        Ok(Header {
            aggregation,
            max_retention,
            x_files_factor,
            archives,
        })
    }
}

/// How `create` fills the archives with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    /// Write every zero byte, as whisper does by default (`sparse=False`): the disk space is
    /// reserved at creation.
    #[default]
    Zeros,
    /// Only extend the file, leaving a hole (whisper's `sparse=True`); same bytes when read.
    Sparse,
}

/// What one `update_many` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateSummary {
    /// Points handed to an archive (several in one interval count separately).
    pub stored: u64,
    /// Points dropped because they are older than the coarsest archive's retention.
    pub dropped: u64,
}

/// What `fetch` returns: values for the intervals `from, from + step, ...` up to `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedSeries {
    /// First interval (whisper's `fromInterval`: the interval after the one holding `from`).
    pub from: i64,
    /// End interval, exclusive.
    pub until: i64,
    /// Seconds between values.
    pub step: u32,
    /// One value per interval, `None` where nothing is stored.
    pub values: Vec<Option<f64>>,
}

/// What one `fstat` says about a file, as far as noticing another program's changes goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            // `touch -d`, `cp -p` and rsync can set the modification time back; not this one.
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// An open whisper file with its header, and what is kept of its content between updates.
///
/// Memory per value, between updates: the header, one `Option<u32>` per archive and at most
/// 8 KiB of cached file content (`page_cache::MAX_KEPT_CHUNKS` chunks of 512 bytes); from its
/// second update on, a shared mapping of the file (address space, and the page cache's pages it
/// touches).
pub struct WhisperFile {
    file: File,
    path: PathBuf,
    header: Header,
    /// `header` as stored, compared with the mapped file's first bytes before a mapped update.
    header_bytes: Vec<u8>,
    /// The whole file mapped, once this value has updated it once (a file opened for a single
    /// update is not worth a mapping); see [`WhisperFile::update_mapped`].
    mapping: Option<Mapping>,
    /// Set when mapping failed or a mapped access faulted: this value then stays with
    /// `pread`/`pwrite`.
    mapping_refused: bool,
    /// Updates made through this value.
    updates: u64,
    /// The file as last seen by this value (at open, or after its last write); `None` when
    /// unknown, which drops the cache at the next update.
    stamp: Option<Stamp>,
    /// Recently used bytes of the file, trusted while `stamp` matches.
    cache: ChunkCache,
    /// Base interval of each archive once read, trusted while `stamp` matches.
    bases: Vec<Option<u32>>,
}

impl std::fmt::Debug for WhisperFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl WhisperFile {
    /// Creates a new file at `path`, as `whisper.create(path, archives, xff, aggregation)`:
    /// archives sorted and validated, header written, archives zero-filled. Refuses an existing
    /// file. The file is opened for reading and writing.
    pub fn create(
        path: impl AsRef<Path>,
        archives: &[ArchiveSpec],
        aggregation: AggregationMethod,
        x_files_factor: f64,
    ) -> Result<WhisperFile, WhisperError> {
        Self::create_with(
            path,
            archives,
            aggregation,
            x_files_factor,
            Preallocation::Zeros,
        )
    }

    /// [`WhisperFile::create`] with a choice of how the archives are zero-filled.
    pub fn create_with(
        path: impl AsRef<Path>,
        archives: &[ArchiveSpec],
        aggregation: AggregationMethod,
        x_files_factor: f64,
        preallocation: Preallocation,
    ) -> Result<WhisperFile, WhisperError> {
        let path = path.as_ref();
        let header = Header::for_new_file(archives, aggregation, x_files_factor)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|error| match error.kind() {
                ErrorKind::AlreadyExists => WhisperError::AlreadyExists(path.to_path_buf()),
                _ => WhisperError::io("create", path, error),
            })?;
        let file_len = header
            .archives
            .last()
            .map_or(header.size(), ArchiveInfo::end);
        let written = write_new_file(&file, &header, file_len, preallocation);
        if let Err(error) = written {
            // Like whisper: a half-created file is worse than none.
            let _ = std::fs::remove_file(path);
            return Err(WhisperError::io("create", path, error));
        }
        // The file as we left it, so that the first update need not read the header again.
        let stamp = file.metadata().ok().map(|metadata| Stamp::of(&metadata));
        Ok(WhisperFile::with_header(file, path, header, stamp))
    }

    fn with_header(file: File, path: &Path, header: Header, stamp: Option<Stamp>) -> WhisperFile {
        let archive_count = header.archives.len();
        WhisperFile {
            file,
            path: path.to_path_buf(),
            header_bytes: header.encode(),
            header,
            mapping: None,
            mapping_refused: false,
            updates: 0,
            stamp,
            cache: ChunkCache::default(),
            bases: vec![None; archive_count],
        }
    }

    /// Opens an existing file for reading and writing and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<WhisperFile, WhisperError> {
        Self::open_with(path.as_ref(), true)
    }

    /// Opens an existing file for reading only and reads its header.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<WhisperFile, WhisperError> {
        Self::open_with(path.as_ref(), false)
    }

    fn open_with(path: &Path, write: bool) -> Result<WhisperFile, WhisperError> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|error| WhisperError::io("open", path, error))?;
        let stamp = Stamp::of(
            &file
                .metadata()
                .map_err(|error| WhisperError::io("stat", path, error))?,
        );
        let header = Header::read(&file, path, stamp.len)?;
        Ok(WhisperFile::with_header(file, path, header, Some(stamp)))
    }

    /// Whether this open file still has a name and is as this value last saw it (same length
    /// and times): false once it was unlinked (removed, or replaced by a rename over it, as
    /// `whisper-resize` does: the old inode then has no links) or changed by someone else. One
    /// `fstat`, no path lookup. (`update_many` makes the same check itself and copes with a
    /// changed file by reading it afresh.)
    pub fn is_current(&self) -> bool {
        self.file.metadata().is_ok_and(|now| {
            now.nlink() > 0 && self.stamp.is_some_and(|stamp| stamp == Stamp::of(&now))
        })
    }

    /// Before an update through the chunk cache, given the update's `fstat`: if the file is not
    /// as this value last left it, drops what is kept of it and reads the header again.
    fn revalidate(&mut self, metadata: &std::fs::Metadata) -> Result<(), WhisperError> {
        let stamp = Stamp::of(metadata);
        if self.stamp != Some(stamp) {
            self.forget_content();
            self.header = Header::read(&self.file, &self.path, stamp.len)?;
            self.header_bytes = self.header.encode();
            self.bases = vec![None; self.header.archives.len()];
            self.stamp = Some(stamp);
        }
        Ok(())
    }

    /// Drops everything kept of the file's content (and unwritten changes).
    fn forget_content(&mut self) {
        self.stamp = None;
        self.cache.clear();
        self.bases.iter_mut().for_each(|base| *base = None);
    }

    /// Whether updates may go through a memory mapping of the file (the default), from this
    /// value's second update on; with `false` every update goes through `pread`/`pwrite` and
    /// the kept chunks. The bytes written are the same either way.
    pub fn allow_mapping(&mut self, allowed: bool) {
        self.mapping_refused = !allowed;
        if !allowed {
            self.mapping = None;
        }
    }

    /// The file's header (whisper's `info`).
    pub fn info(&self) -> &Header {
        &self.header
    }

    /// The open file, for watching it.
    pub(crate) fn descriptor(&self) -> &File {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `points` (timestamp, value) exactly as `whisper.update_many(path, points, now)`.
    ///
    /// Nothing is written if a point that would be stored has a timestamp outside whisper's
    /// unsigned 32-bit range (whisper itself fails half-way in that case).
    pub fn update_many(
        &mut self,
        points: &[(i64, f64)],
        now: i64,
    ) -> Result<UpdateSummary, WhisperError> {
        let summary = self.update(points, now, &mut UpdateScratch::default(), false, false)?;
        Ok(summary.unwrap_or_default())
    }

    /// [`WhisperFile::update_many`] if the file still has a name; `None`, and nothing written,
    /// once it was removed or replaced (see [`WhisperFile::is_current`]).
    pub fn update_many_if_linked(
        &mut self,
        points: &[(i64, f64)],
        now: i64,
    ) -> Result<Option<UpdateSummary>, WhisperError> {
        self.update(points, now, &mut UpdateScratch::default(), true, false)
    }

    /// [`WhisperFile::update_many`] with working memory from `scratch`, and (if `only_if_linked`)
    /// `None` when the file no longer has a name.
    ///
    /// `unchanged` is the caller's word that nobody renamed, removed, truncated or extended the
    /// file since this value's last update (the backend knows it from inotify, `crate::watch`):
    /// a mapped file is then updated without the `fstat`.
    pub(crate) fn update(
        &mut self,
        points: &[(i64, f64)],
        now: i64,
        scratch: &mut UpdateScratch,
        only_if_linked: bool,
        unchanged: bool,
    ) -> Result<Option<UpdateSummary>, WhisperError> {
        if points.is_empty() {
            return Ok(Some(UpdateSummary::default()));
        }
        if let Some(mapped_len) = self
            .mapping
            .as_ref()
            .map(Mapping::len)
            .filter(|_| unchanged)
        {
            if let Some(summary) = self.update_mapped(mapped_len, points, now, scratch, true) {
                self.updates += 1;
                scratch.shrink();
                return summary.map(Some);
            }
        }
        let metadata = self
            .file
            .metadata()
            .map_err(|error| WhisperError::io("stat", &self.path, error))?;
        if metadata.nlink() == 0 && only_if_linked {
            return Ok(None);
        }
        let summary = match self.update_mapped(metadata.len(), points, now, scratch, false) {
            Some(summary) => summary,
            None => self
                .revalidate(&metadata)
                .and_then(|()| self.update_cached(points, now, scratch)),
        };
        self.updates += 1;
        scratch.shrink();
        summary.map(Some)
    }

    /// The update through the mapped file, if this value maps it (from its second update on).
    /// `None` when the update must go through [`WhisperFile::update_cached`] instead: no mapping,
    /// a header that changed (read afresh there), bytes beyond the file's end (a ring run
    /// written past it, or a file shorter than its header says: errors reported there), or a
    /// `SIGBUS` (see [`crate::mapped`]; the update is then redone there, which is sound because
    /// an update applied twice leaves the bytes it leaves once).
    ///
    /// The mapped file needs no trust in kept content: every read sees the file as it is, so
    /// there is no stamp to compare and no second `fstat`. The file's length, from the update's
    /// one `fstat`, must still be the mapping's. Only the header and the archives' bases are
    /// kept from one update to the next, and used only when the caller vouches (`trusted`) that
    /// nobody wrote the file since this value's last update; otherwise the header's bytes are
    /// compared and the bases read again.
    fn update_mapped(
        &mut self,
        file_len: u64,
        points: &[(i64, f64)],
        now: i64,
        scratch: &mut UpdateScratch,
        trusted: bool,
    ) -> Option<Result<UpdateSummary, WhisperError>> {
        if self
            .mapping
            .as_ref()
            .is_some_and(|mapping| mapping.len() != file_len)
        {
            self.mapping = None;
        }
        // The header was checked against the file's length when read; a file that shrank below
        // its archives is for the chunk cache's path to read afresh and report.
        let data_end = self.header.archives.last().map_or(0, ArchiveInfo::end);
        if file_len < data_end {
            self.mapping = None;
            return None;
        }
        if self.mapping.is_none() {
            if self.mapping_refused || self.updates == 0 {
                return None;
            }
            self.mapping = Mapping::new(&self.file, file_len);
            if self.mapping.is_none() {
                tracing::debug!(file = %self.path.display(), "not mapped: pread/pwrite");
                self.mapping_refused = true;
                return None;
            }
        }
        // This update changes the file without the stamp following it: an update through the
        // chunk cache must read everything afresh after it.
        self.stamp = None;
        self.cache.clear();
        if !trusted {
            self.bases.iter_mut().for_each(|base| *base = None);
        }
        let WhisperFile {
            mapping,
            header,
            header_bytes,
            path,
            bases,
            ..
        } = self;
        let mut beyond = false;
        let outcome = mapping.as_mut()?.guarded(|view| {
            if !trusted && !view.holds(header_bytes, 0, &mut scratch.ring) {
                return None;
            }
            let content = Content::Mapped {
                view,
                beyond: &mut beyond,
            };
            Some(apply_update(
                header, path, bases, content, points, now, scratch,
            ))
        });
        if !matches!(outcome, Some(Some(Ok(_)))) {
            // Bases read half-way or from a changed file.
            bases.iter_mut().for_each(|base| *base = None);
        }
        match outcome {
            None => {
                tracing::warn!(
                    file = %path.display(),
                    "the mapped file could not be accessed (truncated by another program, or no \
                     space for a page of a sparse file); this update and the next go through \
                     pread/pwrite"
                );
                self.mapping = None;
                self.mapping_refused = true;
                None
            }
            Some(None) => {
                self.mapping = None;
                None
            }
            Some(Some(Err(_))) if beyond => None,
            Some(Some(result)) => Some(result),
        }
    }

    /// The update through the chunk cache (`pread`/`pwrite`), once [`WhisperFile::revalidate`]
    /// made the kept content trustworthy.
    fn update_cached(
        &mut self,
        points: &[(i64, f64)],
        now: i64,
        scratch: &mut UpdateScratch,
    ) -> Result<UpdateSummary, WhisperError> {
        let content = Content::Cached {
            file: &self.file,
            cache: &mut self.cache,
        };
        let written = apply_update(
            &self.header,
            &self.path,
            &mut self.bases,
            content,
            points,
            now,
            scratch,
        );
        let flushed = written.and_then(|summary| {
            let wrote = self.cache.flush(&self.file, &self.path)?;
            Ok((summary, wrote))
        });
        match flushed {
            Ok((summary, wrote)) => {
                if wrote {
                    // Our writes changed the file's times: what they are now is what the next
                    // update must find.
                    self.stamp = self
                        .file
                        .metadata()
                        .ok()
                        .map(|metadata| Stamp::of(&metadata));
                }
                self.cache.trim(&mut scratch.pool);
                Ok(summary)
            }
            Err(error) => {
                // Unwritten changes, or a file partly written: trust nothing kept.
                self.forget_content();
                Err(error)
            }
        }
    }

    /// Reads `[from, until]` exactly as `whisper.fetch(path, from, until, now)`: `None` when the
    /// range lies in the future or entirely beyond the retention; otherwise the range clamped to
    /// `[now - maxRetention, now]` and read from the finest archive covering its start.
    pub fn fetch(
        &self,
        from: i64,
        until: i64,
        now: i64,
    ) -> Result<Option<FetchedSeries>, WhisperError> {
        self.fetch_archive(from, until, now, None)
    }

    /// [`WhisperFile::fetch`] from the archive with `seconds_per_point` if given (whisper's
    /// `archiveToSelect`), which must exist.
    pub fn fetch_archive(
        &self,
        from: i64,
        until: i64,
        now: i64,
        seconds_per_point: Option<u32>,
    ) -> Result<Option<FetchedSeries>, WhisperError> {
        if from > until {
            return Err(WhisperError::InvalidTimeInterval { from, until });
        }
        // Times from a query may be any i64 (Graphite's `until=`); within ±2^40 s (35,000
        // years, far past the 32-bit times a file holds) the slot arithmetic cannot overflow,
        // and beyond it the answer is the same.
        const FAR: i64 = 1 << 40;
        let (from, until, now) = (
            from.clamp(-FAR, FAR),
            until.clamp(-FAR, FAR),
            now.clamp(-FAR, FAR),
        );
        let oldest = now.saturating_sub(i64::from(self.header.max_retention));
        if from > now || until < oldest {
            return Ok(None);
        }
        let from = from.max(oldest);
        let until = until.min(now);
        let archives = &self.header.archives;
        let archive = match seconds_per_point {
            Some(wanted) => archives
                .iter()
                .find(|archive| archive.seconds_per_point == wanted)
                .ok_or_else(|| WhisperError::InvalidGranularity {
                    path: self.path.clone(),
                    seconds_per_point: wanted,
                })?,
            None => {
                let age = now.saturating_sub(from);
                archives
                    .iter()
                    .find(|archive| archive.retention() as i64 >= age)
                    .unwrap_or(&archives[archives.len() - 1])
            }
        };
        self.archive_fetch(archive, from, until).map(Some)
    }

    fn archive_fetch(
        &self,
        archive: &ArchiveInfo,
        from: i64,
        until: i64,
    ) -> Result<FetchedSeries, WhisperError> {
        let step = archive.step();
        let (from_interval, until_interval) = fetch_interval(from, until, step);
        let mut read =
            |buffer: &mut [u8], offset| read_exact_at(&self.file, &self.path, buffer, offset);
        let base = i64::from(read_base(&mut read, archive)?);
        if base == 0 {
            let count = (until_interval - from_interval).div_euclid(step);
            return Ok(FetchedSeries {
                from: from_interval,
                until: until_interval,
                step: archive.seconds_per_point,
                values: vec![None; count.max(0) as usize],
            });
        }
        let from_offset = archive.slot_offset(base, from_interval);
        let until_offset = archive.slot_offset(base, until_interval);
        let mut bytes = Vec::new();
        read_ring(&mut read, archive, from_offset, until_offset, &mut bytes)?;
        let mut values = Vec::new();
        decode_slots(&bytes, from_interval, step, &mut values);
        Ok(FetchedSeries {
            from: from_interval,
            until: until_interval,
            step: archive.seconds_per_point,
            values,
        })
    }
}

/// The slots whisper's fetch answers for `from..until` in an archive of `step` seconds: the
/// first slot after `from` up to the first after `until`, and one slot for a zero-length range
/// (whisper always includes the next point).
pub fn fetch_interval(from: i64, until: i64, step: i64) -> (i64, i64) {
    // Saturating: the times may come from a query (Graphite's `until=` takes any i64).
    let from_interval = from
        .saturating_sub(from.rem_euclid(step))
        .saturating_add(step);
    let mut until_interval = until
        .saturating_sub(until.rem_euclid(step))
        .saturating_add(step);
    if from_interval == until_interval {
        until_interval = until_interval.saturating_add(step);
    }
    (from_interval, until_interval)
}

/// The update proper, on a file whose header is `header` and whose content `content` gives
/// access to: `points` sorted, assigned to archives, written and propagated. `bases` holds what
/// is known of the archives' first timestamps and is kept current. Nothing is flushed here.
fn apply_update(
    header: &Header,
    path: &Path,
    bases: &mut [Option<u32>],
    content: Content<'_, '_>,
    points: &[(i64, f64)],
    now: i64,
    scratch: &mut UpdateScratch,
) -> Result<UpdateSummary, WhisperError> {
    let mut summary = UpdateSummary::default();
    let mut newest_first = std::mem::take(&mut scratch.newest_first);
    newest_first.clear();
    newest_first.extend_from_slice(points);
    newest_first.sort_by_key(|&(timestamp, _)| std::cmp::Reverse(timestamp));

    // Assign consecutive runs of the sorted points to archives: (archive, range).
    let archives = &header.archives;
    let mut assignments = std::mem::take(&mut scratch.assignments);
    assignments.clear();
    let mut archive_index = 0;
    let mut group_start = 0;
    let mut kept = newest_first.len();
    'points: for (i, &(timestamp, _)) in newest_first.iter().enumerate() {
        let age = i128::from(now) - i128::from(timestamp);
        while i128::from(archives[archive_index].retention()) < age {
            if i > group_start {
                assignments.push((archive_index, group_start..i));
            }
            group_start = i;
            archive_index += 1;
            if archive_index == archives.len() {
                kept = i;
                break 'points;
            }
        }
    }
    if kept == newest_first.len() && group_start < kept {
        assignments.push((archive_index, group_start..kept));
    }
    summary.stored = kept as u64;
    summary.dropped = (newest_first.len() - kept) as u64;

    // Refuse the whole update before writing if any kept point cannot be stored. A group is
    // sorted and aligning is monotonic, so its newest and oldest points decide for all of it
    // (then the first offending point, newest first, is looked for).
    for (archive_index, range) in &assignments {
        let step = archives[*archive_index].step();
        let group = &newest_first[range.clone()];
        let fits = |&(timestamp, _): &(i64, f64)| {
            u32::try_from(timestamp - timestamp.rem_euclid(step)).is_ok()
        };
        if group.first().is_none_or(fits) && group.last().is_none_or(fits) {
            continue;
        }
        for &(timestamp, _) in group {
            let interval = timestamp - timestamp.rem_euclid(step);
            if u32::try_from(interval).is_err() {
                scratch.newest_first = newest_first;
                scratch.assignments = assignments;
                return Err(WhisperError::TimestampOutOfRange {
                    path: path.to_path_buf(),
                    timestamp,
                });
            }
        }
    }

    let mut writer = ArchiveWriter {
        content,
        path,
        header,
        bases,
        scratch,
    };
    let mut oldest_first = std::mem::take(&mut writer.scratch.oldest_first);
    let mut written = Ok(());
    for (archive_index, range) in assignments.drain(..) {
        oldest_first.clear();
        oldest_first.extend(newest_first[range].iter().rev());
        written = writer.archive_update_many(archive_index, &oldest_first);
        if written.is_err() {
            break;
        }
    }
    scratch.oldest_first = oldest_first;
    scratch.newest_first = newest_first;
    scratch.assignments = assignments;
    written.map(|()| summary)
}

/// Writes a new file's header and zero-filled archives.
fn write_new_file(
    file: &File,
    header: &Header,
    file_len: u64,
    preallocation: Preallocation,
) -> std::io::Result<()> {
    let header_bytes = header.encode();
    file.write_all_at(&header_bytes, 0)?;
    match preallocation {
        Preallocation::Sparse => file.set_len(file_len),
        Preallocation::Zeros => {
            const CHUNK: u64 = 1 << 20;
            let zeros = vec![0u8; (file_len - header.size()).min(CHUNK) as usize];
            let mut offset = header.size();
            while offset < file_len {
                let len = (file_len - offset).min(CHUNK) as usize;
                file.write_all_at(&zeros[..len], offset)?;
                offset += len as u64;
            }
            Ok(())
        }
    }
}

/// How an update reaches the file's bytes.
enum Content<'a, 'm> {
    /// Through the file's chunk cache (`pread`, and `pwrite` at the flush).
    Cached {
        file: &'a File,
        cache: &'a mut ChunkCache,
    },
    /// Straight into the mapped file; `beyond` is set when an access fell outside it.
    Mapped {
        view: &'a mut MappedView<'m>,
        beyond: &'a mut bool,
    },
}

impl Content<'_, '_> {
    fn read_exact_at(
        &mut self,
        path: &Path,
        pool: &mut ChunkPool,
        buffer: &mut [u8],
        offset: u64,
    ) -> Result<(), WhisperError> {
        match self {
            Content::Cached { file, cache } => {
                cache.read_exact_at(file, path, pool, buffer, offset)
            }
            Content::Mapped { view, beyond } => {
                if view.read(buffer, offset) {
                    Ok(())
                } else {
                    **beyond = true;
                    Err(WhisperError::corrupt(
                        path,
                        format!(
                            "truncated: {} bytes expected at offset {offset}",
                            buffer.len()
                        ),
                    ))
                }
            }
        }
    }

    fn write_all_at(
        &mut self,
        path: &Path,
        pool: &mut ChunkPool,
        bytes: &[u8],
        offset: u64,
    ) -> Result<(), WhisperError> {
        match self {
            Content::Cached { file, cache } => cache.write_all_at(file, path, pool, bytes, offset),
            Content::Mapped { view, beyond } => {
                if view.write(bytes, offset) {
                    Ok(())
                } else {
                    // Past the end of the file: only `pwrite` can extend it.
                    **beyond = true;
                    Err(WhisperError::corrupt(
                        path,
                        format!(
                            "write of {} bytes at offset {offset} past the end",
                            bytes.len()
                        ),
                    ))
                }
            }
        }
    }
}

/// The writes of one `update_many`.
struct ArchiveWriter<'a, 'm> {
    content: Content<'a, 'm>,
    path: &'a Path,
    header: &'a Header,
    /// Base interval of each archive, once read; kept current by [`ArchiveWriter::write`].
    bases: &'a mut [Option<u32>],
    scratch: &'a mut UpdateScratch,
}

/// Working memory of updates, reused from one to the next (one per backend, not per file).
/// Capacity left by an unusually large update is given back after it ([`UpdateScratch::shrink`]).
#[derive(Debug, Default)]
pub(crate) struct UpdateScratch {
    newest_first: Vec<(i64, f64)>,
    oldest_first: Vec<(i64, f64)>,
    assignments: Vec<(usize, std::ops::Range<usize>)>,
    aligned: Vec<(i64, f64)>,
    packed: Vec<u8>,
    runs: Vec<(i64, std::ops::Range<usize>)>,
    lower_intervals: Vec<u64>,
    set_order: Vec<u64>,
    set_buffers: SetBuffers,
    ring: Vec<u8>,
    slots: Vec<Option<f64>>,
    pool: ChunkPool,
}

impl UpdateScratch {
    /// Elements kept per buffer between updates, at most.
    const KEPT: usize = 1 << 12;

    fn shrink(&mut self) {
        fn cap<T>(buffer: &mut Vec<T>) {
            if buffer.capacity() > UpdateScratch::KEPT {
                *buffer = Vec::new();
            }
        }
        cap(&mut self.newest_first);
        cap(&mut self.oldest_first);
        cap(&mut self.assignments);
        cap(&mut self.aligned);
        cap(&mut self.packed);
        cap(&mut self.runs);
        cap(&mut self.lower_intervals);
        cap(&mut self.set_order);
        cap(&mut self.ring);
        cap(&mut self.slots);
        self.set_buffers.shrink();
    }
}

impl ArchiveWriter<'_, '_> {
    fn base(&mut self, archive_index: usize) -> Result<i64, WhisperError> {
        let base = match self.bases[archive_index] {
            Some(base) => base,
            None => {
                let archive = &self.header.archives[archive_index];
                let base = read_base(
                    &mut |buffer, offset| {
                        self.content.read_exact_at(
                            self.path,
                            &mut self.scratch.pool,
                            buffer,
                            offset,
                        )
                    },
                    archive,
                )?;
                self.bases[archive_index] = Some(base);
                base
            }
        };
        Ok(i64::from(base))
    }

    /// One positional write; forgets the cached base of any archive whose first timestamp it
    /// touches.
    fn write(&mut self, bytes: &[u8], offset: u64) -> Result<(), WhisperError> {
        self.content
            .write_all_at(self.path, &mut self.scratch.pool, bytes, offset)?;
        let end = offset + bytes.len() as u64;
        for (archive, base) in self.header.archives.iter().zip(self.bases.iter_mut()) {
            if archive.start() < end && offset < archive.start() + 4 {
                *base = None;
            }
        }
        Ok(())
    }

    /// whisper's `__archive_update_many`: `points` (oldest first, all assigned to this archive)
    /// written as runs, then propagated to the coarser archives.
    fn archive_update_many(
        &mut self,
        archive_index: usize,
        points: &[(i64, f64)],
    ) -> Result<(), WhisperError> {
        let archive = self.header.archives[archive_index];
        let step = archive.step();
        let mut aligner = Aligner::new(step);
        let mut aligned = std::mem::take(&mut self.scratch.aligned);
        aligned.clear();
        aligned.extend(
            points
                .iter()
                .map(|&(timestamp, value)| (aligner.align(timestamp), value)),
        );

        // Pack runs of consecutive intervals; of several points in one interval keep the last.
        let mut packed = std::mem::take(&mut self.scratch.packed);
        packed.clear();
        let mut runs = std::mem::take(&mut self.scratch.runs);
        runs.clear();
        let mut run_start = 0;
        let mut previous: Option<i64> = None;
        for (i, &(interval, value)) in aligned.iter().enumerate() {
            if aligned.get(i + 1).is_some_and(|next| next.0 == interval) {
                continue;
            }
            // Python's `not previousInterval` is also true for an interval of 0.
            let continues_run = match previous {
                None | Some(0) => true,
                Some(previous) => interval == previous + step,
            };
            if !continues_run {
                runs.push(finish_run(previous, step, run_start, packed.len()));
                run_start = packed.len();
            }
            push_point(&mut packed, interval, value);
            previous = Some(interval);
        }
        runs.push(finish_run(previous, step, run_start, packed.len()));

        let mut base = self.base(archive_index)?;
        if base == 0 {
            // The file's first update: the earliest run starts at slot 0.
            base = runs[0].0;
        }
        for (start_interval, range) in runs.drain(..) {
            let bytes = &packed[range];
            let offset = archive.slot_offset(base, start_interval);
            let beyond = (offset + bytes.len() as u64).saturating_sub(archive.end());
            if beyond > 0 {
                let split = bytes.len() - beyond as usize;
                self.write(&bytes[..split], offset)?;
                // As whisper: the rest from the archive's start, however long it is.
                self.write(&bytes[split..], archive.start())?;
            } else {
                self.write(bytes, offset)?;
            }
        }

        let mut higher = archive_index;
        for lower in archive_index + 1..self.header.archives.len() {
            let lower_step = self.header.archives[lower].step();
            if lower_step <= step {
                continue;
            }
            // `aligned` is in time order, so equal lower intervals are adjacent; leaving out the
            // repeats changes nothing in a set and spares most of its insertions.
            let mut aligner = Aligner::new(lower_step);
            let mut lower_intervals = std::mem::take(&mut self.scratch.lower_intervals);
            lower_intervals.clear();
            for &(interval, _) in &aligned {
                let lower_interval = aligner.align(interval) as u64;
                if lower_intervals.last() != Some(&lower_interval) {
                    lower_intervals.push(lower_interval);
                }
            }
            let mut intervals = std::mem::take(&mut self.scratch.set_order);
            if lower_intervals.len() == 1 {
                intervals.clear();
                intervals.push(lower_intervals[0]);
            } else {
                python_set_order_into(
                    lower_intervals.iter().copied(),
                    &mut self.scratch.set_buffers,
                    &mut intervals,
                );
            }
            self.scratch.lower_intervals = lower_intervals;
            let mut propagated = false;
            for &interval in &intervals {
                propagated |= self.propagate(interval as i64, higher, lower)?;
            }
            self.scratch.set_order = intervals;
            if !propagated {
                break;
            }
            higher = lower;
        }
        self.scratch.aligned = aligned;
        self.scratch.packed = packed;
        self.scratch.runs = runs;
        Ok(())
    }

    /// whisper's `__propagate`: recomputes the `lower` archive's point for `lower_interval`
    /// (already aligned to the lower archive's step, so whisper's own aligning is a no-op left
    /// out) from the `higher` archive. Returns whether a point was written.
    fn propagate(
        &mut self,
        lower_interval: i64,
        higher_index: usize,
        lower_index: usize,
    ) -> Result<bool, WhisperError> {
        let higher = self.header.archives[higher_index];
        let lower = self.header.archives[lower_index];
        debug_assert_eq!(lower_interval.rem_euclid(lower.step()), 0);

        let higher_base = self.base(higher_index)?;
        let first = if higher_base == 0 {
            higher.start()
        } else {
            higher.slot_offset(higher_base, lower_interval)
        };
        let span = (lower.step() / higher.step()) as u64 * POINT_SIZE;
        let last = higher.start() + (first - higher.start() + span) % higher.size();
        read_ring(
            &mut |buffer, offset| {
                self.content
                    .read_exact_at(self.path, &mut self.scratch.pool, buffer, offset)
            },
            &higher,
            first,
            last,
            &mut self.scratch.ring,
        )?;
        decode_slots(
            &self.scratch.ring,
            lower_interval,
            higher.step(),
            &mut self.scratch.slots,
        );
        let neighbors = &self.scratch.slots;

        let known = neighbors.iter().filter(|value| value.is_some()).count();
        if known == 0 {
            return Ok(false);
        }
        let known_fraction = known as f64 / neighbors.len() as f64;
        if known_fraction < f64::from(self.header.x_files_factor) {
            return Ok(false);
        }
        let aggregate = self.header.aggregation.aggregate(neighbors);
        let mut point = [0u8; POINT_SIZE as usize];
        point[..4].copy_from_slice(&(lower_interval as u32).to_be_bytes());
        point[4..].copy_from_slice(&aggregate.to_be_bytes());
        let lower_base = self.base(lower_index)?;
        let offset = if lower_base == 0 {
            lower.start()
        } else {
            lower.slot_offset(lower_base, lower_interval)
        };
        self.write(&point, offset)?;
        Ok(true)
    }
}

/// Aligns timestamps down to a multiple of a step (`t - t % step`, Python's `%`), remembering
/// the last interval: for timestamps in time order the next one is mostly in the same interval
/// or the next, found without a division (a 64-bit division is among the costliest
/// instructions of an update).
struct Aligner {
    step: i64,
    current: Option<i64>,
}

impl Aligner {
    fn new(step: i64) -> Aligner {
        Aligner {
            step,
            current: None,
        }
    }

    fn align(&mut self, timestamp: i64) -> i64 {
        if let Some(current) = self.current {
            match timestamp.checked_sub(current) {
                Some(distance) if (0..self.step).contains(&distance) => return current,
                Some(distance) if (self.step..2 * self.step).contains(&distance) => {
                    self.current = Some(current + self.step);
                    return current + self.step;
                }
                _ => {}
            }
        }
        let interval = match (u32::try_from(timestamp), u32::try_from(self.step)) {
            (Ok(small), Ok(step)) => i64::from(small - small % step),
            _ => timestamp - timestamp.rem_euclid(self.step),
        };
        self.current = Some(interval);
        interval
    }
}

/// The (start interval, byte range) of a finished run ending at interval `last`.
fn finish_run(
    last: Option<i64>,
    step: i64,
    start: usize,
    end: usize,
) -> (i64, std::ops::Range<usize>) {
    let count = ((end - start) as u64 / POINT_SIZE) as i64;
    let start_interval = last.unwrap_or(0) - step * (count - 1);
    (start_interval, start..end)
}

/// Appends one encoded point; the interval has been checked to fit in `u32`.
fn push_point(bytes: &mut Vec<u8>, interval: i64, value: f64) {
    bytes.extend_from_slice(&(interval as u32).to_be_bytes());
    bytes.extend_from_slice(&value.to_be_bytes());
}

/// Values of consecutive slots expected to hold `first, first + step, ...`, into `values`.
fn decode_slots(bytes: &[u8], first: i64, step: i64, values: &mut Vec<Option<f64>>) {
    let mut expected = first;
    values.clear();
    values.extend(bytes.chunks_exact(POINT_SIZE as usize).map(|point| {
        let timestamp = u32::from_be_bytes(point[..4].try_into().unwrap());
        let value = f64::from_be_bytes(point[4..].try_into().unwrap());
        let known = i64::from(timestamp) == expected;
        expected += step;
        known.then_some(value)
    }));
}

/// Positional exact reads, from the file or from a [`ChunkCache`].
type ReadAt<'r> = dyn FnMut(&mut [u8], u64) -> Result<(), WhisperError> + 'r;

/// The timestamp of an archive's first slot (0 if the archive was never written).
fn read_base(read: &mut ReadAt<'_>, archive: &ArchiveInfo) -> Result<u32, WhisperError> {
    let mut timestamp = [0u8; 4];
    read(&mut timestamp, archive.start())?;
    Ok(u32::from_be_bytes(timestamp))
}

/// The ring bytes from `first` up to `last` into `bytes`, wrapping at the archive's end when
/// `last` is not after `first` (equal offsets read the whole ring, as whisper does).
fn read_ring(
    read: &mut ReadAt<'_>,
    archive: &ArchiveInfo,
    first: u64,
    last: u64,
    bytes: &mut Vec<u8>,
) -> Result<(), WhisperError> {
    bytes.clear();
    if first < last {
        bytes.resize((last - first) as usize, 0);
        read(bytes, first)
    } else {
        let tail = (archive.end() - first) as usize;
        bytes.resize(tail + (last - archive.start()) as usize, 0);
        read(&mut bytes[..tail], first)?;
        read(&mut bytes[tail..], archive.start())
    }
}

fn read_exact_at(
    file: &File,
    path: &Path,
    buffer: &mut [u8],
    offset: u64,
) -> Result<(), WhisperError> {
    file.read_exact_at(buffer, offset)
        .map_err(|error| match error.kind() {
            ErrorKind::UnexpectedEof => WhisperError::corrupt(
                path,
                format!(
                    "truncated: {} bytes expected at offset {offset}",
                    buffer.len()
                ),
            ),
            _ => WhisperError::io("read", path, error),
        })
}
