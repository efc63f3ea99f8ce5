//! Deleted data's last stop: files and directories of deleted hosts and series are moved into
//! `<data_dir>/trash/<epoch seconds>-<sequence>/`, keeping their path relative to the data
//! directory (or, for stores configured elsewhere, their path below the root), and a periodic
//! purge removes trash older than `trash_retention`. Moving is a rename, instant and
//! reversible by hand until the purge; where the deleted path lies on another file system than
//! the trash (a mount inside the data directory), it is a copy, then the original removed.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tracing::info;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn trash_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trash")
}

/// Moves each existing path of `paths` into a new trash folder; returns how many were moved.
pub fn move_to_trash(data_dir: &Path, paths: &[PathBuf]) -> anyhow::Result<usize> {
    let now = perfpipe_backend::unix_now();
    let existing: Vec<&PathBuf> = paths.iter().filter(|path| path.exists()).collect();
    if existing.is_empty() {
        return Ok(0);
    }
    // A folder of its own, never one left by an earlier run in the same second.
    let folder = loop {
        let folder = trash_dir(data_dir).join(format!(
            "{now}-{}",
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(trash_dir(data_dir))
            .with_context(|| format!("creating {}", trash_dir(data_dir).display()))?;
        match std::fs::create_dir(&folder) {
            Ok(()) => break folder,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", folder.display()))
            }
        }
    };
    let mut moved = 0;
    for path in existing {
        let relative: PathBuf = match path.strip_prefix(data_dir) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => path
                .components()
                .filter(|part| matches!(part, Component::Normal(_)))
                .collect(),
        };
        let target = folder.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        move_path(path, &target)
            .with_context(|| format!("moving {} to the trash", path.display()))?;
        moved += 1;
    }
    Ok(moved)
}

/// Renames `from` to `to`; where they lie on different file systems (a host's directory on a
/// mount of its own, the trash on the data dir's), copies the tree and removes the original
/// instead, entry by entry, so that what was copied is removed only once its copy exists.
fn move_path(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {
            copy_then_remove(from, to)
        }
        other => other,
    }
}

fn copy_then_remove(from: &Path, to: &Path) -> std::io::Result<()> {
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if kind.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_then_remove(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::remove_dir(from)
    } else if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        std::fs::remove_file(from)
    } else {
        std::fs::copy(from, to)?;
        std::fs::remove_file(from)
    }
}

/// Removes trash folders older than `retention`; returns how many.
pub fn purge(data_dir: &Path, retention: Duration) -> anyhow::Result<usize> {
    let now = perfpipe_backend::unix_now();
    let dir = trash_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0); // no trash yet
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        // Ours are directories named `<epoch seconds>-<sequence>`; anything else is left alone.
        let name = entry.file_name();
        let Some((seconds, sequence)) = name.to_str().and_then(|name| name.split_once('-')) else {
            continue;
        };
        let (Ok(moved_at), Ok(_)) = (seconds.parse::<i64>(), sequence.parse::<u64>()) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        if now.saturating_sub(moved_at) >= i64::try_from(retention.as_secs()).unwrap_or(i64::MAX) {
            // One folder that cannot be removed does not stop the others.
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(folder = %entry.path().display(), %error, "cannot purge")
                }
            }
        }
    }
    if removed > 0 {
        info!(removed, "trash purged");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_keep_relative_paths_and_purge_keeps_what_is_not_ours() {
        let data = std::env::temp_dir().join(format!("perfpipe-trash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let series = data.join("whisper/h/s");
        std::fs::create_dir_all(&series).unwrap();
        std::fs::write(series.join("m.wsp"), b"x").unwrap();
        std::fs::write(series.join("n.wsp"), b"y").unwrap();

        assert_eq!(move_to_trash(&data, &[series.join("m.wsp")]).unwrap(), 1);
        assert_eq!(
            move_to_trash(&data, &[series.join("n.wsp"), data.join("gone")]).unwrap(),
            1
        );
        let folders: Vec<PathBuf> = std::fs::read_dir(data.join("trash"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(
            folders.len(),
            2,
            "a folder per move, even within one second"
        );
        assert!(folders
            .iter()
            .any(|f| f.join("whisper/h/s/m.wsp").is_file()));

        std::fs::write(data.join("trash/123-notes.txt"), b"keep").unwrap();
        std::fs::create_dir(data.join("trash/keep-me")).unwrap();
        assert_eq!(
            purge(&data, Duration::from_secs(3600)).unwrap(),
            0,
            "too young"
        );
        assert_eq!(purge(&data, Duration::ZERO).unwrap(), 2);
        assert!(data.join("trash/123-notes.txt").is_file());
        assert!(data.join("trash/keep-me").is_dir());
        let _ = std::fs::remove_dir_all(&data);
    }
}
