//! The few librrd calls the backend makes, wrapped safely over `rrd-sys`'s bindgen bindings.
//!
//! Owns every `unsafe` of the crate. Guarantees: only librrd's thread-safe `_r` entry points are
//! called (see `man rrdthreads`): `rrd_create_r2`, `rrd_updatex_r`, `rrd_last_r`,
//! `rrd_info_r`, `rrd_fetch_r`. None of them parses options with `getopt` or keeps global state, unlike
//! `rrd_update(argc, argv)` and friends, and only numeric timestamps are passed (never at-style
//! times, whose parser is not thread-safe). librrd's error message lives in a per-thread
//! context: it is cleared before each call and read right after it, on the same thread, so
//! writer threads calling librrd at once each read their own message. Checked for librrd 1.7.2
//! (Debian's `librrd.so.8`, the thread-safe build; the `librrd_th` that `man rrdthreads` names
//! no longer exists separately): `rrd_clear_error` and `rrd_get_error` both go through
//! `rrd_get_context`, which keeps the context in pthread thread-specific data (`pthread_once`,
//! `pthread_getspecific`, a new context per thread on first use). Every buffer librrd
//! allocates is freed with `rrd_freemem`.
//!
//! Why not the `rrd` crate (0.3.1), which wraps the same bindings: it has no wrapper for
//! `rrd_last_r` (only `rrd_info_r`, which builds a map of every header field to learn one time),
//! takes times as `SystemTime` and formats values itself, and brings `nom`, `itertools` and
//! `log` along. Six calls are simpler to audit here than to adapt around.

// `time_t` and `c_ulong` are `i64` and `u64` on 64-bit Linux but narrower on other targets;
// the conversions stay explicit so this module is right on both.
#![allow(clippy::useless_conversion)]

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use rrd_sys::{rrd_char, rrd_int, rrd_ulong, rrd_void, time_t};

use crate::config::ConsolidationFunction;
use crate::RrdError;

fn c_path(file: &Path) -> Result<CString, RrdError> {
    CString::new(file.as_os_str().as_bytes()).map_err(|_| RrdError::PathWithNul {
        file: file.to_path_buf(),
    })
}

fn c_time(file: &Path, timestamp: i64) -> Result<time_t, RrdError> {
    time_t::try_from(timestamp).map_err(|_| RrdError::TimeOutOfRange {
        file: file.to_path_buf(),
        timestamp,
    })
}

/// C strings built from Rust strings, and the array of pointers to them librrd reads.
struct ArgumentArray {
    /// Owns the bytes the pointers point to.
    _strings: Vec<CString>,
    pointers: Vec<*const rrd_char>,
}

impl ArgumentArray {
    fn new<S: AsRef<str>>(file: &Path, arguments: &[S]) -> Result<Self, RrdError> {
        let strings = arguments
            .iter()
            .map(|argument| {
                CString::new(argument.as_ref()).map_err(|_| RrdError::Librrd {
                    operation: "argument",
                    file: file.to_path_buf(),
                    message: format!("argument {:?} contains a NUL byte", argument.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pointers = strings.iter().map(|s| s.as_ptr()).collect();
        Ok(ArgumentArray {
            _strings: strings,
            pointers,
        })
    }

    fn count(&self, file: &Path) -> Result<rrd_int, RrdError> {
        rrd_int::try_from(self.pointers.len()).map_err(|_| RrdError::Librrd {
            operation: "argument",
            file: file.to_path_buf(),
            message: format!(
                "{} arguments are more than librrd takes",
                self.pointers.len()
            ),
        })
    }
}

/// librrd's message for the call that just failed on this thread, then cleared.
fn take_error(operation: &'static str, file: &Path) -> RrdError {
    // SAFETY: rrd_get_error returns a pointer into this thread's librrd context (valid until the
    // next librrd call on this thread) or NULL; the text is copied before any other call.
    let message = unsafe {
        let text = rrd_sys::rrd_get_error();
        let message = if text.is_null() || *text == 0 {
            "failed without a message".to_owned()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        };
        rrd_sys::rrd_clear_error();
        message
    };
    RrdError::Librrd {
        operation,
        file: file.to_path_buf(),
        message,
    }
}

/// Creates `file` with base step `step` and last update `start`, from `DS:`/`RRA:` arguments.
/// Never overwrites an existing file.
pub(crate) fn create(
    file: &Path,
    step: u32,
    start: i64,
    arguments: &[String],
) -> Result<(), RrdError> {
    let path = c_path(file)?;
    let start = c_time(file, start)?;
    let mut arguments = ArgumentArray::new(file, arguments)?;
    let count = arguments.count(file)?;
    let mut no_sources: [*const rrd_char; 1] = [ptr::null()];
    // SAFETY: every pointer is to a NUL-terminated string owned by `path` or `arguments`, alive
    // for the call (librrd takes the strings as `const char *`; the pointer arrays are ours and
    // mutable in case it reorders them); `sources` is an empty NULL-terminated list and the template NULL, as
    // rrd_create_r2 documents for "no template, no source files".
    let status = unsafe {
        rrd_sys::rrd_clear_error();
        rrd_sys::rrd_create_r2(
            path.as_ptr(),
            rrd_ulong::from(step),
            start,
            1, // no_overwrite
            no_sources.as_mut_ptr(),
            ptr::null(),
            count,
            arguments.pointers.as_mut_ptr(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(take_error("create", file))
    }
}

/// Rewrites `target` with the data of `source` and `target` together: `rrd_create_r2` with
/// `target` as template (its data sources, archives and step) and both files as sources, in
/// that order, so where both hold a value for the same time `source`'s is kept, as graphite's
/// `whisper-merge` keeps the source's (librrd's prefill takes each time from the first source
/// that knows it). The last update becomes the later of the two. librrd writes the result to a
/// temporary file and renames it over `target`, so a failure leaves `target` as it was. The
/// unfinished step of both files is not carried over (prefill copies whole rows only).
pub(crate) fn merge(source: &Path, target: &Path) -> Result<(), RrdError> {
    let source_path = c_path(source)?;
    let target_path = c_path(target)?;
    let mut sources: [*const rrd_char; 3] =
        [source_path.as_ptr(), target_path.as_ptr(), ptr::null()];
    let mut no_arguments: [*const rrd_char; 1] = [ptr::null()];
    // SAFETY: every pointer is to a NUL-terminated string owned by `source_path` or
    // `target_path`, alive for the call; `sources` is NULL-terminated as rrd_create_r2 reads it;
    // with a template and no arguments (`argc` 0) it reads no argument. Step 0 takes the
    // template's step and last update -1 the latest of the sources' (rrd_create.c, 1.7.2).
    let status = unsafe {
        rrd_sys::rrd_clear_error();
        rrd_sys::rrd_create_r2(
            target_path.as_ptr(),
            0,
            -1,
            0, // overwrite: the result replaces `target`
            sources.as_mut_ptr(),
            target_path.as_ptr(),
            0,
            no_arguments.as_mut_ptr(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(take_error("merge", source))
    }
}

/// Updates `file` with `T:V` arguments, all in one call.
pub(crate) fn update(file: &Path, arguments: &[String]) -> Result<(), RrdError> {
    let path = c_path(file)?;
    let mut arguments = ArgumentArray::new(file, arguments)?;
    let count = arguments.count(file)?;
    // SAFETY: as in `create`; a NULL template means "every data source, in order", and flags 0
    // means past updates are errors (the caller never passes them).
    let status = unsafe {
        rrd_sys::rrd_clear_error();
        rrd_sys::rrd_updatex_r(
            path.as_ptr(),
            ptr::null(),
            0,
            count,
            arguments.pointers.as_mut_ptr(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(take_error("update", file))
    }
}

/// The time of `file`'s last update (its creation start if never updated).
pub(crate) fn last_update(file: &Path) -> Result<i64, RrdError> {
    let path = c_path(file)?;
    // SAFETY: `path` is NUL-terminated and alive for the call.
    let last = unsafe {
        rrd_sys::rrd_clear_error();
        rrd_sys::rrd_last_r(path.as_ptr())
    };
    if last == -1 {
        return Err(take_error("last", file));
    }
    Ok(i64::from(last))
}

/// The type of `file`'s data source `value` (`ds[value].type` of `rrdtool info`: GAUGE,
/// COUNTER, DERIVE, ABSOLUTE), `None` when the file has no data source of that name.
pub(crate) fn value_type(file: &Path) -> Result<Option<String>, RrdError> {
    let path = c_path(file)?;
    // SAFETY: as in `consolidations`: the list is walked read-only and freed once.
    unsafe {
        rrd_sys::rrd_clear_error();
        let info = rrd_sys::rrd_info_r(path.as_ptr());
        if info.is_null() {
            return Err(take_error("info", file));
        }
        let mut found = None;
        let mut entry = info;
        while !entry.is_null() {
            if CStr::from_ptr((*entry).key).to_bytes() == b"ds[value].type"
                && (*entry).type_ == rrd_sys::rrd_info_type_RD_I_STR
                && !(*entry).value.u_str.is_null()
            {
                found = Some(
                    CStr::from_ptr((*entry).value.u_str)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            entry = (*entry).next;
        }
        rrd_sys::rrd_info_free(info);
        Ok(found)
    }
}

/// The consolidation functions of `file`'s archives (`rra[i].cf` of `rrdtool info`), in order.
pub(crate) fn consolidations(file: &Path) -> Result<Vec<ConsolidationFunction>, RrdError> {
    let path = c_path(file)?;
    // SAFETY: `path` is NUL-terminated and alive for the call; the returned list is walked
    // read-only (keys and string values are NUL-terminated) and freed once with rrd_info_free.
    unsafe {
        rrd_sys::rrd_clear_error();
        let info = rrd_sys::rrd_info_r(path.as_ptr());
        if info.is_null() {
            return Err(take_error("info", file));
        }
        let mut found = Vec::new();
        let mut entry = info;
        while !entry.is_null() {
            let key = CStr::from_ptr((*entry).key).to_bytes();
            if key.starts_with(b"rra[")
                && key.ends_with(b"].cf")
                && (*entry).type_ == rrd_sys::rrd_info_type_RD_I_STR
                && !(*entry).value.u_str.is_null()
            {
                let cf = match CStr::from_ptr((*entry).value.u_str).to_bytes() {
                    b"AVERAGE" => Some(ConsolidationFunction::Average),
                    b"MIN" => Some(ConsolidationFunction::Min),
                    b"MAX" => Some(ConsolidationFunction::Max),
                    b"LAST" => Some(ConsolidationFunction::Last),
                    _ => None, // HWPREDICT and friends: nothing a read can ask for
                };
                found.extend(cf);
            }
            entry = (*entry).next;
        }
        rrd_sys::rrd_info_free(info);
        Ok(found)
    }
}

/// What `rrd_fetch_r` returns for a one-data-source file: the value of the row ending at
/// `first + i * step` is `values[i]`, NaN when unknown.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) first: i64,
    pub(crate) step: u32,
    pub(crate) values: Vec<f64>,
}

/// Reads `[start, end]` of `file`'s first data source from the archive of `consolidation` whose
/// step best matches `resolution` (1 = the finest), as `rrdtool fetch` does. librrd 1.7 falls
/// back to another consolidation when the file has none of the asked one: callers check
/// [`consolidations`] first.
pub(crate) fn fetch(
    file: &Path,
    consolidation: ConsolidationFunction,
    start: i64,
    end: i64,
    resolution: u32,
) -> Result<Fetched, RrdError> {
    let path = c_path(file)?;
    let cf = CString::new(consolidation.as_rrd_name()).map_err(|_| RrdError::PathWithNul {
        file: file.to_path_buf(),
    })?;
    let mut start_t = c_time(file, start)?;
    let mut end_t = c_time(file, end)?;
    let mut step: rrd_ulong = rrd_ulong::from(resolution.max(1));
    let mut ds_count: rrd_ulong = 0;
    let mut ds_names: *mut *mut rrd_char = ptr::null_mut();
    let mut data: *mut f64 = ptr::null_mut();
    // SAFETY: all out-pointers point to locals; on success librrd sets `ds_names` to `ds_count`
    // malloc'd strings and `data` to `(end - start) / step * ds_count` values, freed below.
    let status = unsafe {
        rrd_sys::rrd_clear_error();
        rrd_sys::rrd_fetch_r(
            path.as_ptr(),
            cf.as_ptr(),
            &mut start_t,
            &mut end_t,
            &mut step,
            &mut ds_count,
            &mut ds_names,
            &mut data,
        )
    };
    if status != 0 {
        return Err(take_error("fetch", file));
    }
    let names = usize::try_from(ds_count).unwrap_or(0);
    let rows = if step == 0 || end_t < start_t {
        0
    } else {
        usize::try_from((end_t - start_t) as u64 / u64::from(step)).unwrap_or(0)
    };
    let mut values = Vec::with_capacity(rows);
    // SAFETY: librrd allocated `names` name strings and `rows * names` values (row-major); each
    // is read within bounds and then freed exactly once.
    unsafe {
        if !data.is_null() && names > 0 {
            let all = std::slice::from_raw_parts(data, rows * names);
            values.extend(all.iter().step_by(names).copied());
        }
        if !ds_names.is_null() {
            for i in 0..names {
                rrd_sys::rrd_freemem((*ds_names.add(i)).cast::<rrd_void>());
            }
            rrd_sys::rrd_freemem(ds_names.cast::<rrd_void>());
        }
        if !data.is_null() {
            rrd_sys::rrd_freemem(data.cast::<rrd_void>());
        }
    }
    let step_u32 = u32::try_from(step).map_err(|_| RrdError::Librrd {
        operation: "fetch",
        file: file.to_path_buf(),
        message: format!("returned step {step} out of range"),
    })?;
    Ok(Fetched {
        first: i64::from(start_t) + i64::from(step_u32),
        step: step_u32,
        values,
    })
}
