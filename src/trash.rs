//! Deleted data's last stop: files and directories of deleted hosts and series are moved into
//! `<data_dir>/trash/<epoch seconds>-<sequence>/`, keeping their path relative to the data
//! directory (or, for stores configured elsewhere, their path below the root), and a periodic
//! purge removes trash older than `trash_retention`. Moving is a rename, instant and
//! reversible by hand until the purge.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tracing::info;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn trash_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trash")
}

/// Moves each existing path of `paths` into a new trash folder; returns how many were moved.
pub fn move_to_trash(data_dir: &Path, paths: &[PathBuf]) -> anyhow::Result<usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let folder = trash_dir(data_dir).join(format!(
        "{now}-{}",
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let mut moved = 0;
    for path in paths.iter().filter(|path| path.exists()) {
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
        std::fs::rename(path, &target)
            .with_context(|| format!("moving {} to the trash", path.display()))?;
        moved += 1;
    }
    Ok(moved)
}

/// Removes trash folders older than `retention`; returns how many.
pub fn purge(data_dir: &Path, retention: Duration) -> anyhow::Result<usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let dir = trash_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0); // no trash yet
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(moved_at) = name
            .to_str()
            .and_then(|name| name.split('-').next())
            .and_then(|secs| secs.parse::<u64>().ok())
        else {
            continue; // not ours
        };
        if now.saturating_sub(moved_at) >= retention.as_secs() {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("purging {}", entry.path().display()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        info!(removed, "trash purged");
    }
    Ok(removed)
}
