//! The plugins' cache manager and state manager, wire-compatible with Opsview's (the protocol
//! is `../shared/protocols/cachemanager.md`): what the HTTP handlers of `api::plugins` call.
//!
//! Owns the node's in-memory [`cache::Cache`] (TTL items and the `get_data` lock), its
//! persistent [`state::StateStore`] (SQLite under the data dir), the node's `ref` (a UUID kept
//! in `<data_dir>/node-ref`, the same across restarts), the namespace tokens ([`token`]) and
//! the checks every request gets before it touches either store ([`check_name`]). Guarantees:
//! names holding `|` never reach a store; an expired item is never answered; a state item
//! answered 200 is on disk.

pub mod cache;
mod item_data;
pub mod peers;
pub mod state;
pub mod token;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::config::Config;
use cache::{Cache, CacheLimits};
use state::{StateLimits, StateStore};

/// The file under the data dir that keeps the node's `ref`.
const NODE_REF_FILE: &str = "node-ref";
/// The state store's file under the data dir.
const STATE_FILE: &str = "state.sqlite";

/// The cache, the state store and what they were configured with.
pub struct CacheManager {
    pub cache: Cache,
    pub state: Arc<StateStore>,
    /// The other nodes of the cache, and who owns what.
    pub peers: Arc<peers::Peers>,
    /// This node's `ref` in `/status`.
    pub node_ref: String,
    /// The longest a `get_data` may wait or hold a lock (`worker_timeout`).
    pub worker_timeout: Duration,
    /// The key namespace tokens are sealed with, when one is configured.
    pub namespace_key: Option<token::NamespaceKey>,
    /// How far a token's time may be from now.
    pub timestamp_error_margin: Duration,
}

impl CacheManager {
    /// Opens the state store and the node's ref under `config.data_dir` (creating both on the
    /// first start) and an empty cache.
    pub fn open(config: &Config) -> anyhow::Result<CacheManager> {
        let node_ref = node_ref(&config.data_dir)?;
        let state_path = config.data_dir.join(STATE_FILE);
        let state = StateStore::open(
            &state_path,
            StateLimits {
                max_item_size: config.state.max_persistent_data_item_size.as_u64(),
                max_items: config.state.max_persistent_data_items as u64,
            },
        )
        .with_context(|| format!("opening the state store {}", state_path.display()))?;
        let namespace_key = if config.cache.namespace_key.is_empty() {
            None
        } else {
            Some(
                token::NamespaceKey::from_hex(&config.cache.namespace_key)
                    .context("cache.namespace_key")?,
            )
        };
        Ok(CacheManager {
            cache: Cache::new(CacheLimits {
                max_item_size: config.cache.max_item_size.as_u64(),
                max_cache_size: config.cache.max_cache_size.as_u64(),
            }),
            state: Arc::new(state),
            peers: Arc::new(peers::Peers::new(config)?),
            node_ref,
            worker_timeout: config.cache.worker_timeout,
            namespace_key,
            timestamp_error_margin: config.cache.timestamp_error_margin,
        })
    }

    /// The namespace a request names: itself, or the name inside its token when the
    /// endpoint's namespaces are `encrypted`.
    pub fn namespace(&self, given: &str, encrypted: bool) -> Result<String, token::TokenError> {
        match (&self.namespace_key, encrypted) {
            (Some(key), true) => key.open(given, now_seconds(), self.timestamp_error_margin),
            // Config validation makes an encrypted endpoint without a key impossible.
            (None, true) => Err(token::TokenError::Invalid),
            (_, false) => Ok(given.to_owned()),
        }
    }
}

/// Refuses a namespace or key the protocol forbids: `|` is the separator of `namespace|key`.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.contains('|') {
        return Err(format!(
            "{field} {value:?} contains '|', which is not allowed"
        ));
    }
    Ok(())
}

/// Seconds since the epoch, with the fraction (the state manager's timestamps are floats).
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// The node's ref: read from `<data_dir>/node-ref`, or made (a random UUID) and written there.
fn node_ref(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(NODE_REF_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if uuid::Uuid::parse_str(text.trim()).is_ok() => Ok(text.trim().to_owned()),
        Ok(text) => anyhow::bail!(
            "{} holds {:?}, not a UUID; remove it to make a new ref",
            path.display(),
            text.trim()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let made = uuid::Uuid::new_v4().to_string();
            // Written whole then renamed, so a crash never leaves half a ref behind.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, format!("{made}\n"))
                .and_then(|()| std::fs::rename(&partial, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(made)
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ref_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_ref(dir.path()).unwrap();
        assert!(uuid::Uuid::parse_str(&first).is_ok());
        assert_eq!(node_ref(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join(NODE_REF_FILE), "garbage").unwrap();
        let error = node_ref(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a UUID"), "{error}");
    }

    #[test]
    fn names_with_the_separator_are_refused_by_field() {
        assert!(check_name("key", "abc").is_ok());
        let error = check_name("namespace", "a|b").unwrap_err();
        assert!(error.starts_with("namespace \"a|b\""), "{error}");
    }
}
