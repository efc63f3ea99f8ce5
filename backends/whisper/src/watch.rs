//! Change notices for the whisper files a [`crate::WhisperBackend`] keeps open (Linux inotify).
//!
//! Before writing into a file it keeps open, the backend must know that the file still has its
//! name (nobody removed it or renamed another file over it, as `whisper-resize` does) and still
//! has the length it was mapped with. One `fstat` per update tells, and costs about as much as
//! the rest of a one-point update through a mapping (ext4's getattr and the security hook, about
//! 1 µs here). inotify tells the same with no system call per update: each open file is watched,
//! through `/proc/self/fd/N` so that the watch is on the inode the backend holds whatever its
//! path names now, for
//! - `IN_ATTRIB`: link count (removed, renamed over), times and mode changed by someone;
//! - `IN_MODIFY`: written or truncated through a descriptor (the backend's own `pwrite`s too,
//!   which only costs the next update an `fstat`; stores into a mapping raise nothing);
//! - `IN_MOVE_SELF`, `IN_DELETE_SELF`: moved elsewhere, deleted;
//!
//! and the queue is read (non-blocking) before and after each batch of writes. A file with a
//! notice since its last checked update is checked with `fstat` again; a queue overflow marks
//! every file. When inotify cannot be used (no `/proc`, the per-user watch limit reached), files
//! are checked with `fstat` before every update, as without this module.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use perfpipe_backend::SeriesKey;

/// What a watch reports.
const MASK: u32 = libc::IN_ATTRIB | libc::IN_MODIFY | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;

/// An inotify instance watching open files, each under the series it stores.
#[derive(Debug)]
pub(crate) struct Watcher {
    inotify: OwnedFd,
    series: HashMap<i32, SeriesKey>,
    buffer: Vec<u8>,
    /// Whether the watch limit was reported already.
    limit_reported: bool,
}

/// A notice about one watched file.
pub(crate) struct Notice {
    pub(crate) key: SeriesKey,
    /// The file may have lost its name (link count or attributes changed, moved, deleted, or
    /// no longer watched), rather than only having been written (`IN_MODIFY`).
    pub(crate) name_lost: bool,
}

/// What [`Watcher::drain`] found.
pub(crate) enum Notices {
    /// Notices about watched files (a file may appear several times).
    Changed(Vec<Notice>),
    /// Notices were lost: every watched file may have changed.
    Overflow,
}

impl Watcher {
    /// A watcher, or `None` where inotify is unavailable.
    pub(crate) fn new() -> Option<Watcher> {
        // SAFETY: no pointers involved; the descriptor returned is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        Some(Watcher {
            // SAFETY: a fresh descriptor nobody else owns.
            inotify: unsafe { OwnedFd::from_raw_fd(fd) },
            series: HashMap::new(),
            buffer: vec![0; 64 * 1024],
            limit_reported: false,
        })
    }

    /// Watches the file open as `file` for `key`; the watch descriptor, or `None` if it cannot
    /// be watched (the caller then checks it with `fstat` before each update).
    pub(crate) fn watch(&mut self, file: &impl AsRawFd, key: &SeriesKey) -> Option<i32> {
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        // SAFETY: a NUL-terminated path and our own inotify descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), path.as_ptr(), MASK) };
        if wd < 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENOSPC) && !self.limit_reported {
                self.limit_reported = true;
                tracing::info!(
                    watched = self.series.len(),
                    "inotify watch limit reached (fs.inotify.max_user_watches): further whisper \
                     files are checked with fstat before each update"
                );
            }
            return None;
        }
        self.series.insert(wd, key.clone());
        Some(wd)
    }

    /// Stops watching (the file is closed). Harmless for a watch the kernel already dropped.
    pub(crate) fn unwatch(&mut self, wd: i32) {
        if self.series.remove(&wd).is_some() {
            // SAFETY: our own inotify descriptor; an unknown `wd` only gives EINVAL.
            unsafe { libc::inotify_rm_watch(self.inotify.as_raw_fd(), wd) };
        }
    }

    /// Reads every notice queued so far, without waiting.
    pub(crate) fn drain(&mut self) -> Notices {
        let mut changed = Vec::new();
        let mut overflow = false;
        loop {
            // SAFETY: reads into our own buffer, within its length.
            let count = unsafe {
                libc::read(
                    self.inotify.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                )
            };
            let Ok(count) = usize::try_from(count) else {
                // EAGAIN: nothing more queued (any other error: treat as nothing known).
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
                    overflow = true;
                }
                break;
            };
            if count == 0 {
                break;
            }
            let mut at = 0;
            let header = std::mem::size_of::<libc::inotify_event>();
            while at + header <= count {
                // SAFETY: the kernel writes whole events; `at..at + header` lies inside the
                // bytes read. read_unaligned because the buffer is bytes.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(self.buffer.as_ptr().add(at).cast()) };
                if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                } else if event.mask & libc::IN_IGNORED != 0 {
                    // The kernel dropped the watch (after our `unwatch`, or the file system went
                    // away): nothing more will be heard of this file.
                    if let Some(key) = self.series.remove(&event.wd) {
                        changed.push(Notice {
                            key,
                            name_lost: true,
                        });
                    }
                } else if let Some(key) = self.series.get(&event.wd) {
                    changed.push(Notice {
                        key: key.clone(),
                        name_lost: event.mask & libc::IN_MODIFY == 0,
                    });
                }
                at += header + event.len as usize;
            }
            if count < self.buffer.len() / 2 {
                break;
            }
        }
        if overflow {
            return Notices::Overflow;
        }
        Notices::Changed(changed)
    }

    /// Whether the watch `wd` is still in place.
    pub(crate) fn is_watching(&self, wd: i32) -> bool {
        self.series.contains_key(&wd)
    }
}
