//! A write-back cache of one file's bytes, living for one `update_many`.
//!
//! Whisper reads and writes the same few regions many times per update (archive bases, the
//! finer points a coarser point is computed from, single 12-byte points). Two ways to reach the
//! file, with the same results:
//!
//! - **Mapped** (files opened for writing): reads copy from the file's memory map, overlaid with
//!   this update's pending writes; [`PageCache::flush`] copies the pending writes into the map.
//!   No system call at all, which is what makes a one-point update cheap. The kernel writes the
//!   dirty pages back exactly as it does for `pwrite` (neither path calls `fsync`).
//! - **Paged** (no map): each 4 KiB page is read with one `pread` the first time it is needed,
//!   and every modified byte range is written back with one `pwrite` per contiguous run.
//!
//! The resulting file content is exactly what the same reads and writes applied directly would
//! give. If the update fails before [`PageCache::flush`], nothing is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::MmapMut;

use crate::error::WhisperError;

const PAGE_SIZE: u64 = 4096;

/// This update's writes to a mapped file, in the order made: `(offset, bytes)`.
type PendingWrites = Vec<(u64, Vec<u8>)>;

struct Page {
    bytes: Box<[u8]>,
    /// Bytes at the start of the page that exist in the file or were written.
    valid: usize,
    /// The modified byte range within the page, if any.
    dirty: Option<(usize, usize)>,
}

pub(crate) struct PageCache<'a> {
    file: &'a File,
    path: &'a Path,
    pages: BTreeMap<u64, Page>,
    map: Option<(&'a mut MmapMut, PendingWrites)>,
}

impl<'a> PageCache<'a> {
    /// A cache over `file`, through its memory map when it has one.
    pub(crate) fn new(file: &'a File, path: &'a Path, map: Option<&'a mut MmapMut>) -> Self {
        PageCache {
            file,
            path,
            pages: BTreeMap::new(),
            map: map.map(|map| (map, Vec::new())),
        }
    }

    fn truncated(&self, len: usize, offset: u64) -> WhisperError {
        WhisperError::corrupt(
            self.path,
            format!("truncated: {len} bytes expected at offset {offset}"),
        )
    }

    fn page(&mut self, index: u64) -> Result<&mut Page, WhisperError> {
        if !self.pages.contains_key(&index) {
            let mut bytes = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
            let mut valid = 0;
            while valid < bytes.len() {
                let read = self
                    .file
                    .read_at(&mut bytes[valid..], index * PAGE_SIZE + valid as u64);
                match read {
                    Ok(0) => break,
                    Ok(count) => valid += count,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(WhisperError::io("read", self.path, error)),
                }
            }
            self.pages.insert(
                index,
                Page {
                    bytes,
                    valid,
                    dirty: None,
                },
            );
        }
        Ok(self.pages.get_mut(&index).expect("page just inserted"))
    }

    /// Fills `buffer` from `offset`; reading past the end of the file is a corrupt file.
    pub(crate) fn read_exact_at(
        &mut self,
        buffer: &mut [u8],
        offset: u64,
    ) -> Result<(), WhisperError> {
        if let Some((map, pending)) = &self.map {
            let end = offset as usize + buffer.len();
            if end > map.len() {
                return Err(self.truncated(buffer.len(), offset));
            }
            buffer.copy_from_slice(&map[offset as usize..end]);
            // Later writes win, as they would in the file.
            for (write_offset, bytes) in pending {
                let from = offset.max(*write_offset);
                let to = (offset + buffer.len() as u64).min(write_offset + bytes.len() as u64);
                if from < to {
                    buffer[(from - offset) as usize..(to - offset) as usize].copy_from_slice(
                        &bytes[(from - write_offset) as usize..(to - write_offset) as usize],
                    );
                }
            }
            return Ok(());
        }
        let mut done = 0;
        while done < buffer.len() {
            let position = offset + done as u64;
            let within = (position % PAGE_SIZE) as usize;
            let page = self.page(position / PAGE_SIZE)?;
            let count = (buffer.len() - done).min(PAGE_SIZE as usize - within);
            if within + count > page.valid {
                return Err(self.truncated(buffer.len(), offset));
            }
            buffer[done..done + count].copy_from_slice(&page.bytes[within..within + count]);
            done += count;
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` into the cache.
    pub(crate) fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> Result<(), WhisperError> {
        if let Some((map, pending)) = &mut self.map {
            if offset as usize + bytes.len() <= map.len() {
                pending.push((offset, bytes.to_vec()));
                return Ok(());
            }
            // Past the end: whisper extends the file here (a run longer than the last ring),
            // which a map cannot; go on paged for the rest of this update.
            self.leave_map()?;
        }
        let mut done = 0;
        while done < bytes.len() {
            let position = offset + done as u64;
            let within = (position % PAGE_SIZE) as usize;
            let page = self.page(position / PAGE_SIZE)?;
            let count = (bytes.len() - done).min(PAGE_SIZE as usize - within);
            page.bytes[within..within + count].copy_from_slice(&bytes[done..done + count]);
            page.valid = page.valid.max(within + count);
            page.dirty = Some(match page.dirty {
                None => (within, within + count),
                Some((start, end)) => (start.min(within), end.max(within + count)),
            });
            done += count;
        }
        Ok(())
    }

    /// Switches from the map to pages, carrying this update's pending writes over.
    fn leave_map(&mut self) -> Result<(), WhisperError> {
        if let Some((_, pending)) = self.map.take() {
            for (offset, bytes) in pending {
                self.write_all_at(&bytes, offset)?;
            }
        }
        Ok(())
    }

    /// Writes every modified range back, one `pwrite` per contiguous run.
    pub(crate) fn flush(&mut self) -> Result<(), WhisperError> {
        if let Some((map, pending)) = &mut self.map {
            for (offset, bytes) in pending.drain(..) {
                map[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
            }
            return Ok(());
        }
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        for (&index, page) in &mut self.pages {
            let Some((start, end)) = page.dirty.take() else {
                continue;
            };
            let page_start = index * PAGE_SIZE;
            if !run.is_empty() && run_start + run.len() as u64 != page_start + start as u64 {
                write_run(self.file, self.path, &run, run_start)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = page_start + start as u64;
            }
            run.extend_from_slice(&page.bytes[start..end]);
        }
        if !run.is_empty() {
            write_run(self.file, self.path, &run, run_start)?;
        }
        Ok(())
    }
}

fn write_run(file: &File, path: &Path, bytes: &[u8], offset: u64) -> Result<(), WhisperError> {
    file.write_all_at(bytes, offset)
        .map_err(|error| WhisperError::io("write", path, error))
}
