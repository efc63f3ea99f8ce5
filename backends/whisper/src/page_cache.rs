//! A write-back cache of one open whisper file's bytes, in 512-byte chunks, kept between
//! updates.
//!
//! Whisper reads and writes the same few regions many times per update (the finer points a
//! coarser point is computed from, single 12-byte points), and successive updates of a series
//! touch the same regions again: the slots just after the ones written last time. The backend is
//! each series' only writer and keeps its files open, so what this cache holds stays what the
//! file holds from one update to the next, as long as nobody else touched the file — which the
//! owner ([`crate::format::WhisperFile`]) checks with one `fstat` before each update, dropping
//! the whole cache if the file changed. In the steady state an update then reads nothing and
//! costs one `pwrite` per contiguous run of modified bytes.
//!
//! Rules that keep the file's bytes exactly what the same reads and writes applied directly
//! would give:
//! - a read of bytes the cache does not know `pread`s the chunks holding them (one `pread` for a
//!   run of missing chunks); bytes written but not yet flushed win over what is read;
//! - a write does not read what it overwrites: a chunk that was never read holds one contiguous
//!   range of known bytes (what was written), and is read first only if a write or a read falls
//!   outside that range;
//! - a write of the bytes already there (known to be in the file) is no write;
//! - at [`ChunkCache::flush`] every modified byte range is written back, one `pwrite` per
//!   contiguous run across chunks. If an update fails before its flush, the owner drops the
//!   cache ([`ChunkCache::clear`]) and nothing is written.
//!
//! Memory: during an update the cache holds whatever the update touched; after each flush
//! [`ChunkCache::trim`] keeps the [`MAX_KEPT_CHUNKS`] most recently used chunks, so an open file
//! keeps at most `MAX_KEPT_CHUNKS * CHUNK_SIZE` = 8 KiB of data (plus ~50 bytes per chunk of
//! bookkeeping) between updates. The buffers of dropped chunks go to a [`ChunkPool`] shared by
//! all files (one per backend, at most [`ChunkPool::MAX`] buffers), so that the chunks coming and
//! going with every update cost no allocation.
//!
//! This is the path of a file's first update after it is opened, and of files that are not
//! memory-mapped (see `crate::format`'s "I/O").

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::WhisperError;

/// Bytes per chunk. Small, so that the chunks kept per file stay cheap; an update of the default
/// archives touches a few dozen bytes per archive (one point, and the 5 or 12 finer points a
/// coarser point is computed from), and a chunk of 42 points lasts 42 one-point updates.
const CHUNK_SIZE: usize = 512;

/// Chunks kept between updates, at most: enough for the head of each archive of a file with a
/// handful of archives (the regions the next update reads and writes), at 8 KiB per open file.
pub(crate) const MAX_KEPT_CHUNKS: usize = 16;

/// Known, unmodified bytes between two modified ranges that [`ChunkCache::flush`] rewrites rather
/// than issue a second `pwrite`.
const MAX_GAP: usize = 256;

struct Chunk {
    /// Chunk number: the chunk holds the file's bytes from `index * CHUNK_SIZE`.
    index: u64,
    bytes: Box<[u8; CHUNK_SIZE]>,
    /// The known bytes: `start..end` of `bytes` hold the file's content (or what was written).
    /// Bytes outside are never looked at (a recycled buffer holds anything there).
    start: usize,
    end: usize,
    /// Whether the chunk was read from the file: then `start` is 0 and bytes from `end` on lie
    /// past the end of the file.
    loaded: bool,
    /// The modified byte range, not yet written back, if any (inside `start..end`).
    dirty: Option<(usize, usize)>,
    /// The [`ChunkCache::epoch`] of the last access, for [`ChunkCache::trim`].
    last_used: u64,
}

impl Chunk {
    fn knows(&self, within: usize, count: usize) -> bool {
        self.start <= within && within + count <= self.end
    }

    /// Takes the file's bytes `file_bytes` (the chunk's first bytes, up to the end of the file)
    /// under what the chunk knows already, which is as new or newer.
    fn fill(&mut self, file_bytes: &[u8]) {
        let len = file_bytes.len();
        if self.start == self.end {
            self.bytes[..len].copy_from_slice(file_bytes);
            self.end = len;
        } else {
            let before = self.start.min(len);
            self.bytes[..before].copy_from_slice(&file_bytes[..before]);
            // Bytes between the end of the file and written bytes read as zeros, as a `pwrite`
            // past the end of a file leaves them.
            self.bytes[before..self.start].fill(0);
            if self.end < len {
                self.bytes[self.end..len].copy_from_slice(&file_bytes[self.end..]);
            }
            self.end = self.end.max(len);
        }
        self.start = 0;
        self.loaded = true;
    }
}

/// Buffers of dropped chunks, for new ones (of any file).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    // Boxed on purpose: buffers move between the pool and chunks without being copied.
    #[allow(clippy::vec_box)]
    buffers: Vec<Box<[u8; CHUNK_SIZE]>>,
}

impl ChunkPool {
    /// Buffers kept, at most: 32 KiB.
    pub(crate) const MAX: usize = 64;

    fn take(&mut self) -> Box<[u8; CHUNK_SIZE]> {
        self.buffers
            .pop()
            .unwrap_or_else(|| Box::new([0; CHUNK_SIZE]))
    }

    fn give(&mut self, buffer: Box<[u8; CHUNK_SIZE]>) {
        if self.buffers.len() < Self::MAX {
            self.buffers.push(buffer);
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct ChunkCache {
    /// Sorted by index; a few dozen at most in the usual update, so a sorted `Vec` searched
    /// from the last chunk used beats a tree.
    chunks: Vec<Chunk>,
    /// Position in `chunks` of the last chunk used, tried first.
    hint: usize,
    /// Counts updates (flushes), to know which chunks were used last.
    epoch: u64,
}

impl ChunkCache {
    /// Forgets everything, including writes not flushed.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.hint = 0;
    }

    /// The position of chunk `index` in `chunks`, or where it would go.
    fn find(&mut self, index: u64) -> Result<usize, usize> {
        if let Some(chunk) = self.chunks.get(self.hint) {
            if chunk.index == index {
                return Ok(self.hint);
            }
            // Accesses mostly move forward by one chunk.
            if chunk.index + 1 == index
                && self
                    .chunks
                    .get(self.hint + 1)
                    .is_some_and(|next| next.index == index)
            {
                self.hint += 1;
                return Ok(self.hint);
            }
        }
        let found = self
            .chunks
            .binary_search_by_key(&index, |chunk| chunk.index);
        if let Ok(position) = found {
            self.hint = position;
        }
        found
    }

    /// The position of chunk `index`, inserted empty if absent.
    fn find_or_insert(&mut self, index: u64, pool: &mut ChunkPool) -> usize {
        match self.find(index) {
            Ok(position) => position,
            Err(position) => {
                let bytes = pool.take();
                self.chunks.insert(
                    position,
                    Chunk {
                        index,
                        bytes,
                        start: 0,
                        end: 0,
                        loaded: false,
                        dirty: None,
                        last_used: self.epoch,
                    },
                );
                self.hint = position;
                position
            }
        }
    }

    /// Fills `buffer` from `offset`; reading past the end of the file is a corrupt file.
    pub(crate) fn read_exact_at(
        &mut self,
        file: &File,
        path: &Path,
        pool: &mut ChunkPool,
        buffer: &mut [u8],
        offset: u64,
    ) -> Result<(), WhisperError> {
        let mut done = 0;
        while done < buffer.len() {
            let position = offset + done as u64;
            let within = (position % CHUNK_SIZE as u64) as usize;
            let count = (buffer.len() - done).min(CHUNK_SIZE - within);
            let found = self
                .find(position / CHUNK_SIZE as u64)
                .ok()
                .map(|at| &mut self.chunks[at]);
            match found {
                Some(chunk) if chunk.knows(within, count) => {
                    chunk.last_used = self.epoch;
                    buffer[done..done + count]
                        .copy_from_slice(&chunk.bytes[within..within + count]);
                    done += count;
                }
                Some(chunk) if chunk.loaded => {
                    // The file ends before the bytes asked for.
                    return Err(WhisperError::corrupt(
                        path,
                        format!(
                            "truncated: {} bytes expected at offset {offset}",
                            buffer.len()
                        ),
                    ));
                }
                // Read the rest at once; the loop then finds the chunk loaded.
                _ => self.load(file, path, pool, position, buffer.len() - done)?,
            }
        }
        Ok(())
    }

    /// Reads from the file every chunk overlapping `offset..offset + len` that was not read yet,
    /// one `pread` per run of consecutive such chunks.
    fn load(
        &mut self,
        file: &File,
        path: &Path,
        pool: &mut ChunkPool,
        offset: u64,
        len: usize,
    ) -> Result<(), WhisperError> {
        let first = offset / CHUNK_SIZE as u64;
        let last = (offset + len.max(1) as u64 - 1) / CHUNK_SIZE as u64;
        let loaded = |cache: &mut ChunkCache, index| {
            cache.find(index).is_ok_and(|at| cache.chunks[at].loaded)
        };
        let mut index = first;
        let mut buffer = Vec::new();
        while index <= last {
            if loaded(self, index) {
                index += 1;
                continue;
            }
            let mut run_end = index + 1;
            while run_end <= last && !loaded(self, run_end) {
                run_end += 1;
            }
            buffer.clear();
            buffer.resize((run_end - index) as usize * CHUNK_SIZE, 0);
            let count = read_up_to(file, path, &mut buffer, index * CHUNK_SIZE as u64)?;
            for chunk_index in index..run_end {
                let from = (chunk_index - index) as usize * CHUNK_SIZE;
                let file_bytes = &buffer[from.min(count)..(from + CHUNK_SIZE).min(count)];
                let at = self.find_or_insert(chunk_index, pool);
                self.chunks[at].fill(file_bytes);
            }
            index = run_end;
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` into the cache.
    pub(crate) fn write_all_at(
        &mut self,
        file: &File,
        path: &Path,
        pool: &mut ChunkPool,
        bytes: &[u8],
        offset: u64,
    ) -> Result<(), WhisperError> {
        let mut done = 0;
        while done < bytes.len() {
            let position = offset + done as u64;
            let within = (position % CHUNK_SIZE as u64) as usize;
            let count = (bytes.len() - done).min(CHUNK_SIZE - within);
            let part = &bytes[done..done + count];
            let at = self.find_or_insert(position / CHUNK_SIZE as u64, pool);
            let chunk = &mut self.chunks[at];
            let fits = chunk.loaded
                || chunk.start == chunk.end
                || (within <= chunk.end && chunk.start <= within + count);
            if !fits {
                // A never-read chunk knows one range only: read the rest before adding another.
                self.load(file, path, pool, position, count)?;
                continue;
            }
            chunk.last_used = self.epoch;
            if chunk.knows(within, count) && chunk.bytes[within..within + count] == *part {
                done += count;
                continue;
            }
            chunk.bytes[within..within + count].copy_from_slice(part);
            if !chunk.loaded && chunk.start == chunk.end {
                chunk.start = within;
            } else {
                // Past the end of the file in a loaded chunk: the gap reads as zeros.
                if chunk.end < within {
                    chunk.bytes[chunk.end..within].fill(0);
                }
                chunk.start = chunk.start.min(within);
            }
            chunk.end = chunk.end.max(within + count);
            chunk.dirty = Some(match chunk.dirty {
                None => (within, within + count),
                Some((start, end)) => (start.min(within), end.max(within + count)),
            });
            done += count;
        }
        Ok(())
    }

    /// Writes every modified range back, one `pwrite` per contiguous run, and returns whether
    /// anything was written. The chunks then hold what the file holds.
    ///
    /// Two modified ranges separated by at most [`MAX_GAP`] bytes the cache knows are written as
    /// one run, gap included: rewriting bytes with what the file holds already costs far less
    /// than a system call (this also joins a point split by a chunk boundary whose bytes on one
    /// side did not change).
    pub(crate) fn flush(&mut self, file: &File, path: &Path) -> Result<bool, WhisperError> {
        // The run being gathered: its file offset, the chunks it spans and its length. A run
        // inside one chunk (the usual case) is written straight from it.
        let mut run: Option<(u64, std::ops::Range<usize>, usize)> = None;
        let mut gathered: Vec<u8> = Vec::new();
        let mut wrote = false;
        for at in 0..self.chunks.len() {
            let chunk = &self.chunks[at];
            let Some((start, end)) = chunk.dirty else {
                continue;
            };
            wrote = true;
            let chunk_start = chunk.index * CHUNK_SIZE as u64;
            if let Some((run_start, chunks, len)) = &mut run {
                let run_end = *run_start + *len as u64;
                let dirty_start = chunk_start + start as u64;
                if dirty_start >= run_end
                    && dirty_start - run_end <= MAX_GAP as u64
                    && self.known_between(chunks.end - 1, at, run_end, dirty_start)
                {
                    chunks.end = at + 1;
                    *len = (chunk_start + end as u64 - *run_start) as usize;
                    continue;
                }
                self.write_run(file, path, *run_start, chunks.clone(), *len, &mut gathered)?;
            }
            run = Some((chunk_start + start as u64, at..at + 1, end - start));
        }
        if let Some((run_start, chunks, len)) = run {
            self.write_run(file, path, run_start, chunks, len, &mut gathered)?;
        }
        for chunk in &mut self.chunks {
            chunk.dirty = None;
        }
        self.epoch += 1;
        Ok(wrote)
    }

    /// Whether the chunks at positions `first..=last` (consecutive in the file) know every byte
    /// of `from..to`.
    fn known_between(&self, first: usize, last: usize, from: u64, to: u64) -> bool {
        let chunks = &self.chunks[first..=last];
        let consecutive = chunks
            .windows(2)
            .all(|pair| pair[0].index + 1 == pair[1].index);
        consecutive
            && chunks.iter().all(|chunk| {
                let chunk_start = chunk.index * CHUNK_SIZE as u64;
                let lo = from.clamp(chunk_start, chunk_start + CHUNK_SIZE as u64);
                let hi = to.clamp(chunk_start, chunk_start + CHUNK_SIZE as u64);
                lo == hi || chunk.knows((lo - chunk_start) as usize, (hi - lo) as usize)
            })
    }

    /// Writes `len` bytes from `offset`, held by the chunks at positions `chunks`.
    fn write_run(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        chunks: std::ops::Range<usize>,
        len: usize,
        gathered: &mut Vec<u8>,
    ) -> Result<(), WhisperError> {
        let within = (offset % CHUNK_SIZE as u64) as usize;
        let bytes = if chunks.len() == 1 {
            &self.chunks[chunks.start].bytes[within..within + len]
        } else {
            gathered.clear();
            let mut from = within;
            for chunk in &self.chunks[chunks] {
                let take = (len - gathered.len()).min(CHUNK_SIZE - from);
                gathered.extend_from_slice(&chunk.bytes[from..from + take]);
                from = 0;
            }
            &gathered[..]
        };
        file.write_all_at(bytes, offset)
            .map_err(|error| WhisperError::io("write", path, error))
    }

    /// Drops the least recently used chunks beyond [`MAX_KEPT_CHUNKS`], their buffers to `pool`.
    /// Only after a flush: chunks with unwritten bytes must stay.
    pub(crate) fn trim(&mut self, pool: &mut ChunkPool) {
        let mut excess = self.chunks.len().saturating_sub(MAX_KEPT_CHUNKS);
        while excess > 0 {
            // The chunks last used longest ago, as many as needed (usually all of one update).
            let oldest = self
                .chunks
                .iter()
                .map(|chunk| chunk.last_used)
                .min()
                .expect("chunks present");
            let mut kept = 0;
            for at in 0..self.chunks.len() {
                if excess > 0 && self.chunks[at].last_used == oldest {
                    excess -= 1;
                } else {
                    // Keep the others in order at the front.
                    self.chunks.swap(kept, at);
                    kept += 1;
                }
            }
            for chunk in self.chunks.drain(kept..) {
                pool.give(chunk.bytes);
            }
        }
        // An update that touched many chunks (a long run, a wide consolidation) leaves no large
        // table behind either.
        self.chunks.shrink_to(2 * MAX_KEPT_CHUNKS);
        self.hint = 0;
    }
}

/// Reads from `offset` until `buffer` is full or the file ends; returns the bytes read.
fn read_up_to(
    file: &File,
    path: &Path,
    buffer: &mut [u8],
    offset: u64,
) -> Result<usize, WhisperError> {
    let mut count = 0;
    while count < buffer.len() {
        match file.read_at(&mut buffer[count..], offset + count as u64) {
            Ok(0) => break,
            Ok(read) => count += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(WhisperError::io("read", path, error)),
        }
    }
    Ok(count)
}
