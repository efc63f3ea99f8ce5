//! A whisper file mapped into memory (`MAP_SHARED`), with the one hazard of mapped files
//! contained: an access the file can no longer back raises `SIGBUS`, and this module turns that
//! signal into an answer ("the mapped update failed") instead of the death of the process.
//!
//! Why map at all: an update of a few points reads and writes a few dozen bytes in each archive.
//! Through `pwrite` each contiguous run costs a system call in which ext4 also updates the
//! file's times and journals the inode (about 2–3 µs on the project's machine, most of a
//! one-point update); through a shared mapping the same bytes are plain stores into the page
//! cache, which the kernel writes back as it does for `pwrite`. Both leave the data in the page
//! cache, so what a crash of the process (not of the machine) preserves is the same.
//!
//! The hazard: when the bytes under a mapped page cannot be provided — the file was truncated
//! by another program (`cp` over it opens with `O_TRUNC`), or a store into a hole of a sparse
//! file finds the disk full — the kernel sends `SIGBUS` to the accessing thread, whose default
//! action kills the process with every queued point. Every access to a mapping here runs inside
//! [`Mapping::guarded`], which names the mapping in a thread-local slot; the process-wide
//! handler ([`install_handler`]) checks whether the faulting address lies in the mapping the
//! faulting thread named, and if so replaces the rest of the mapping (from the faulting page on)
//! with anonymous zeroed memory, marks the access failed and returns: the faulting instruction
//! runs again against the anonymous page and the update finishes harmlessly, writing nothing
//! more into the file from that page on. `guarded` then reports the fault, the mapping is
//! dropped, and the caller redoes the update through `pread`/`pwrite`, which report the same
//! condition as an error (`ENOSPC`, a truncated file). A fault at any other address goes to the
//! disposition the process had before (by default, death), as if this handler did not exist.
//!
//! Why redoing is sound: a whisper update is a deterministic function of the file's bytes and the
//! points, and applying it to a file it was already partly applied to gives the same bytes (every
//! write it makes is recomputed from bytes that hold the same values either way). Bytes below
//! the faulting page were read from the file; bytes from it on read as zeros only for the rest of
//! the failed attempt, and an archive's slots lie above its first slot, so a value computed from
//! zeros is only ever stored into the anonymous part.
//!
//! Memory-model note: the mapped bytes may change under us (another program's `pwrite`), so they
//! are never borrowed as a slice; every access copies through raw pointers.

use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

thread_local! {
    /// `(start, len)` of the mapping the current thread is accessing, or `(0, 0)`.
    ///
    /// Constant-initialised and without a destructor, so on Linux the slot is a plain
    /// `#[thread_local]` static: reading it needs no lazy initialisation, which keeps it usable
    /// from a signal handler.
    static ACTIVE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when an access to the active mapping faulted.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

/// The `SIGBUS` disposition in force before [`install_handler`], restored for faults that are
/// not ours.
static PREVIOUS_ACTION: OnceLock<libc::sigaction> = OnceLock::new();
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Installs the process-wide `SIGBUS` handler (once). Returns whether it is in place; without
/// it no file is mapped.
fn install_handler() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page_size) = usize::try_from(page_size) else {
            return;
        };
        // SAFETY: sigaction is given valid pointers to initialised structures; the handler
        // installed is `on_sigbus`, an `extern "C"` function of the signature SA_SIGINFO needs.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) != 0 {
                return;
            }
            if PREVIOUS_ACTION.set(previous).is_err() {
                return;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                return;
            }
        }
        PAGE_SIZE.store(page_size, Ordering::Release);
    });
    PAGE_SIZE.load(Ordering::Acquire) != 0
}

/// The `SIGBUS` handler: see the module documentation. Uses only a thread-local read, `mmap`
/// (a plain system call on Linux) and `sigaction`.
extern "C" fn on_sigbus(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for a signal delivered with SA_SIGINFO.
    let address = unsafe { (*info).si_addr() } as usize;
    let (start, len) = ACTIVE.with(Cell::get);
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    if len != 0 && page_size != 0 && (start..start + len).contains(&address) {
        let page = address & !(page_size - 1);
        // SAFETY: `page..start + len` lies inside the mapping the current thread is accessing,
        // which `Mapping` owns; replacing it with anonymous memory leaves the address range
        // valid for the rest of the guarded access and for the `munmap` of its drop.
        let replaced = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                start + len - page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced != libc::MAP_FAILED {
            FAULTED.with(|faulted| faulted.set(true));
            return;
        }
    }
    // Not ours (or not recoverable): the previous disposition takes the fault when the
    // instruction runs again.
    if let Some(previous) = PREVIOUS_ACTION.get() {
        // SAFETY: restores a disposition read from the kernel.
        unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
    }
}

/// A shared, writable mapping of a whole file, unmapped on drop.
pub(crate) struct Mapping {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned memory like a `Box<[u8]>`; it is only accessed through `&mut self`.
unsafe impl Send for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (opened for reading and writing). `None` when the
    /// file is empty, too large for the address space, the `SIGBUS` handler cannot be installed
    /// or `mmap` fails: the caller goes on with `pread`/`pwrite`.
    pub(crate) fn new(file: &File, len: u64) -> Option<Mapping> {
        let len = usize::try_from(len).ok().filter(|&len| len > 0)?;
        if !install_handler() {
            return None;
        }
        // SAFETY: a fresh shared mapping of a file descriptor we hold; the kernel picks the
        // address. Accesses happen only in `guarded`.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping {
            start: NonNull::new(start.cast())?,
            len,
        })
    }

    /// The mapped length: the file's length when mapped.
    pub(crate) fn len(&self) -> u64 {
        self.len as u64
    }

    /// Runs `access` with a view of the mapping, `SIGBUS` caught. `None` if an access faulted:
    /// from the faulting page on, the mapping no longer shows the file, and the caller must drop
    /// it and not trust what `access` computed.
    pub(crate) fn guarded<R>(
        &mut self,
        access: impl FnOnce(&mut MappedView<'_>) -> R,
    ) -> Option<R> {
        /// Clears the thread's active mapping even if `access` unwinds.
        struct Active;
        impl Drop for Active {
            fn drop(&mut self) {
                ACTIVE.with(|active| active.set((0, 0)));
            }
        }
        FAULTED.with(|faulted| faulted.set(false));
        ACTIVE.with(|active| active.set((self.start.as_ptr() as usize, self.len)));
        let active = Active;
        let result = access(&mut MappedView { mapping: self });
        drop(active);
        if FAULTED.with(Cell::get) {
            None
        } else {
            Some(result)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `new` mapped (parts of which the handler may have
        // replaced with anonymous memory, which this unmaps too).
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

/// Access to a [`Mapping`] inside [`Mapping::guarded`].
pub(crate) struct MappedView<'m> {
    mapping: &'m mut Mapping,
}

impl MappedView<'_> {
    /// Copies the bytes at `offset` into `buffer`; false (nothing read) if they lie beyond the
    /// mapping.
    pub(crate) fn read(&self, buffer: &mut [u8], offset: u64) -> bool {
        let Some(at) = self.checked(offset, buffer.len()) else {
            return false;
        };
        // SAFETY: `at..at + buffer.len()` lies inside the mapping (checked), which stays mapped
        // while `self` borrows it; a fault is caught by the guard around this access.
        unsafe {
            copy_small(
                self.mapping.start.as_ptr().add(at),
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        true
    }

    /// Whether the bytes at `offset` are `expected` (false beyond the mapping).
    pub(crate) fn holds(&self, expected: &[u8], offset: u64, scratch: &mut Vec<u8>) -> bool {
        scratch.clear();
        scratch.resize(expected.len(), 0);
        self.read(scratch, offset) && scratch[..] == *expected
    }

    /// Stores `bytes` at `offset`, leaving bytes that already hold the value untouched (so no
    /// page is dirtied for nothing); false (nothing written) if they lie beyond the mapping.
    pub(crate) fn write(&mut self, bytes: &[u8], offset: u64) -> bool {
        let Some(at) = self.checked(offset, bytes.len()) else {
            return false;
        };
        let target = self.mapping.start.as_ptr().wrapping_add(at);
        // SAFETY: inside the mapping (checked) and guarded, as in `read`. The bytes there are
        // copied out for the comparison; no reference to the shared bytes is formed.
        unsafe {
            let same = if bytes.len() <= POINT {
                let mut present = [0u8; POINT];
                copy_small(target, present.as_mut_ptr(), bytes.len());
                present[..bytes.len()] == *bytes
            } else {
                (0..bytes.len()).all(|i| target.add(i).read() == bytes[i])
            };
            if !same {
                copy_small(bytes.as_ptr(), target, bytes.len());
            }
        }
        true
    }

    fn checked(&self, offset: u64, count: usize) -> Option<usize> {
        let at = usize::try_from(offset).ok()?;
        (at.checked_add(count)? <= self.mapping.len).then_some(at)
    }
}

/// Bytes of a whisper point, the usual size of an access.
const POINT: usize = 12;

/// `copy_nonoverlapping`, with the sizes of whisper's usual accesses (a timestamp, a point)
/// copied inline rather than through a `memcpy` call, which costs more than the copy.
///
/// # Safety
/// As `std::ptr::copy_nonoverlapping`.
#[inline]
unsafe fn copy_small(from: *const u8, to: *mut u8, count: usize) {
    match count {
        4 => to
            .cast::<[u8; 4]>()
            .write_unaligned(from.cast::<[u8; 4]>().read_unaligned()),
        8 => to
            .cast::<[u8; 8]>()
            .write_unaligned(from.cast::<[u8; 8]>().read_unaligned()),
        POINT => to
            .cast::<[u8; POINT]>()
            .write_unaligned(from.cast::<[u8; POINT]>().read_unaligned()),
        _ => std::ptr::copy_nonoverlapping(from, to, count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_go_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [1u8; 100]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut mapping = Mapping::new(&file, 100).unwrap();
        let outcome = mapping.guarded(|view| {
            let mut buffer = [0u8; 4];
            assert!(view.read(&mut buffer, 96));
            assert!(!view.read(&mut buffer, 97), "beyond the end");
            assert!(view.write(&[7, 8], 10));
            assert!(!view.write(&[7, 8], 99));
            buffer
        });
        assert_eq!(outcome, Some([1, 1, 1, 1]));
        drop(mapping);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[9..13], &[1, 7, 8, 1]);
        assert_eq!(bytes.len(), 100);
    }

    #[test]
    fn a_file_truncated_under_the_mapping_is_a_fault_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let page = PAGE_SIZE.load(Ordering::Relaxed).max(4096);
        std::fs::write(&path, vec![5u8; 4 * page]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut mapping = Mapping::new(&file, 4 * page as u64).unwrap();
        // Another program truncates the file to one page.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        let outcome = mapping.guarded(|view| {
            let mut buffer = [0u8; 1];
            assert!(view.read(&mut buffer, 10));
            assert_eq!(buffer, [5], "the page still in the file reads as the file");
            // Beyond the new end: SIGBUS, caught; the access reads zeros and goes on.
            assert!(view.read(&mut buffer, 2 * page as u64 + 3));
            assert!(view.write(&[9], 3 * page as u64));
            buffer
        });
        assert_eq!(outcome, None, "the fault is reported");
        drop(mapping);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), page as u64);
        // The next guarded access of another mapping starts clean.
        std::fs::write(&path, [3u8; 10]).unwrap();
        let mut mapping = Mapping::new(&file, 10).unwrap();
        assert_eq!(
            mapping.guarded(|view| {
                let mut buffer = [0u8; 1];
                view.read(&mut buffer, 9);
                buffer
            }),
            Some([3])
        );
    }
}
