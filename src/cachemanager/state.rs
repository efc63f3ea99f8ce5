//! The State Manager's persistent store: the items that plugins save with `/store_data` and read
//! back with `/fetch_data`, one SQLite row per (namespace, key) in the node's data dir. It owns
//! the on-disk file, the ordering rule and the per-node limits; the HTTP layer, the replication
//! to the next node and the clock are the caller's.
//!
//! Guarantees: [`StateStore::store`] returns `Ok` only after the item is committed and the WAL
//! is fsynced (`journal_mode = WAL`, `synchronous = FULL`), so an item that was answered with
//! 200 survives a `kill -9` or a power cut. An item is live while `timestamp + ttl > now`, the
//! TTL counting from the item's own timestamp; an item that is not live is never returned and
//! is removed by [`StateStore::purge_expired`]. A store older than the live stored item is
//! refused ([`StateError::Conflict`]); at equal timestamps the later arrival wins. Stores are
//! serialised (one writing connection behind a mutex, each store one `BEGIN IMMEDIATE`
//! transaction), so concurrent stores of one item end as if one came after the other. Data
//! larger than the item size limit is refused, and so is a new item when the node already holds
//! its limit of live items; nothing is ever evicted to make room. `data`, `namespace` and `key`
//! are kept byte for byte (NUL included) and are always SQL parameters.
//!
//! Decisions the protocol leaves open:
//! - An item that is stored but expired counts as absent: it neither blocks a store with an
//!   older timestamp nor takes one of the `max_items` places. Nobody can read it, so a 409 or
//!   507 caused by it could not be explained to the client.
//! - A store that is already expired when it arrives (`timestamp + ttl <= now`, which includes
//!   `ttl <= 0`) is accepted once it passes the ordering rule, and it removes the stored item
//!   instead of writing a row that nobody could read. So it needs no place under `max_items`.
//! - A limit of 0 means "no limit", as for the cache manager's `max_item_size`.
//!
//! [`StateStore`] is `Send + Sync`: callers share one (in an `Arc`) and call it from tokio's
//! `spawn_blocking`, since a store waits for an fsync. Fetches use their own read-only
//! connection, so in WAL mode they never wait behind a store's fsync.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// The schema this code writes and reads, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

// `expires_at` (= timestamp + ttl) is kept beside `ttl` so that "live" is one indexed
// comparison for fetches, counts and purges. `data` is a BLOB of the string's UTF-8 bytes:
// SQLite leaves the result of text functions on strings with NUL inside undefined, blobs are
// bytes. A rowid table (not WITHOUT ROWID) because rows of up to 16 KiB are far above the
// size for which WITHOUT ROWID pays off.
const SCHEMA: &str = "
CREATE TABLE items (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    data        BLOB NOT NULL,
    ttl         INTEGER NOT NULL,
    timestamp   REAL NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX items_by_expiry ON items (expires_at);
";

/// How long a connection waits for a lock held by another process (an operator's `sqlite3`
/// shell, a backup) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-node bounds of the store (`max_persistent_data_item_size`,
/// `max_persistent_data_items`). 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Largest `data` accepted, in bytes of UTF-8.
    pub max_item_size: u64,
    /// Most live items this node holds.
    pub max_items: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_item_size: 16 * 1024,
            max_items: 1024,
        }
    }
}

/// Why a store or fetch failed. The HTTP layer answers 409, 413, 507 and 500 in this order and
/// shows the message to the client.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The live stored item is newer than the store (HTTP 409); the client may retry with a
    /// newer timestamp.
    #[error("document conflict: the stored item has the newer timestamp {stored_timestamp}")]
    Conflict {
        /// The timestamp of the item that stays stored.
        stored_timestamp: f64,
    },
    /// `data` is larger than the item size limit (HTTP 413); nothing was stored.
    #[error("data is {size} bytes, more than max_persistent_data_item_size ({limit} bytes)")]
    TooLarge {
        /// Bytes of `data`.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The node already holds its limit of live items and the store is for a new one
    /// (HTTP 507); nothing was stored and nothing evicted.
    #[error(
        "the state store holds its limit of {limit} items (max_persistent_data_items); \
         nothing was stored and nothing is evicted"
    )]
    Full {
        /// The limit.
        limit: u64,
    },
    /// The database file was written by a newer perfpipe; it is left untouched.
    #[error("state store schema version {found} is newer than this perfpipe's {supported}")]
    NewerSchema {
        /// The file's schema version.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
    /// SQLite failed (HTTP 500).
    #[error("state store database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    /// The data, byte for byte as stored.
    pub data: String,
    /// Seconds the item lives, counted from `timestamp`.
    pub ttl: i64,
    /// The client's timestamp of the store, epoch seconds.
    pub timestamp: f64,
}

/// The persistent store of one node. See the module documentation for what it guarantees.
pub struct StateStore {
    /// The only connection that writes; holding its mutex is what serialises stores.
    writer: Mutex<Connection>,
    /// Read-only; fetches and counts read the last committed state without waiting for a
    /// store's fsync.
    reader: Mutex<Connection>,
    limits: StateLimits,
}

/// Locks a connection. A panic while the lock was held cannot leave a half-done store behind
/// (the transaction rolls back when it is dropped), so a poisoned lock is still usable.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `limit` (0 = none) admits `amount`.
fn within(amount: u64, limit: u64) -> bool {
    limit == 0 || amount <= limit
}

/// The epoch second at which an item stops being live. In f64 like the timestamps: an i64 TTL
/// beyond 2^53 seconds loses precision that nobody can observe.
fn expiry(timestamp: f64, ttl: i64) -> f64 {
    timestamp + ttl as f64
}

impl StateStore {
    /// Opens the store at `path`, creating the file and its schema if needed.
    pub fn open(path: &Path, limits: StateLimits) -> Result<StateStore, StateError> {
        let writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        let journal_mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            // Still durable with synchronous = FULL, but readers then wait for writers.
            tracing::warn!(path = %path.display(), journal_mode, "state store is not in WAL mode");
        }
        // FULL, not the catalogue's NORMAL: in WAL mode NORMAL does not fsync at each commit,
        // and a 200 to /store_data promises the item is on disk.
        writer.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = writer.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            // In one transaction so that a crash here leaves a file that is created again.
            writer.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        // Opened after the writer set WAL mode and created the schema, which it needs.
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        let store = StateStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            limits,
        };
        tracing::debug!(path = %path.display(), ?limits, "state store open");
        Ok(store)
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> StateLimits {
        self.limits
    }

    /// Stores `data` for (`namespace`, `key`) with the client's `timestamp` and `ttl`, `now`
    /// being the node's clock. Returns once the item is on disk.
    pub fn store(
        &self,
        namespace: &str,
        key: &str,
        data: &str,
        ttl: i64,
        timestamp: f64,
        now: f64,
    ) -> Result<(), StateError> {
        let size = data.len() as u64;
        if !within(size, self.limits.max_item_size) {
            return Err(StateError::TooLarge {
                size,
                limit: self.limits.max_item_size,
            });
        }
        let expires_at = expiry(timestamp, ttl);
        let mut writer = lock(&self.writer);
        // IMMEDIATE takes the write lock before reading the stored item, so even a writer in
        // another process cannot slip in between the ordering check and the write.
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored_live_timestamp: Option<f64> = transaction
            .prepare_cached(
                "SELECT timestamp FROM items
                 WHERE namespace = ?1 AND key = ?2 AND expires_at > ?3",
            )?
            .query_row(params![namespace, key, now], |row| row.get(0))
            .optional()?;
        if let Some(stored_timestamp) = stored_live_timestamp {
            if stored_timestamp > timestamp {
                return Err(StateError::Conflict { stored_timestamp });
            }
        }
        if expires_at <= now {
            transaction
                .prepare_cached("DELETE FROM items WHERE namespace = ?1 AND key = ?2")?
                .execute(params![namespace, key])?;
        } else {
            if stored_live_timestamp.is_none() && self.limits.max_items != 0 {
                let live: i64 = transaction
                    .prepare_cached("SELECT count(*) FROM items WHERE expires_at > ?1")?
                    .query_row([now], |row| row.get(0))?;
                if !within(live as u64 + 1, self.limits.max_items) {
                    return Err(StateError::Full {
                        limit: self.limits.max_items,
                    });
                }
            }
            transaction
                .prepare_cached(
                    "INSERT INTO items (namespace, key, data, ttl, timestamp, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (namespace, key) DO UPDATE SET
                        data = excluded.data,
                        ttl = excluded.ttl,
                        timestamp = excluded.timestamp,
                        expires_at = excluded.expires_at",
                )?
                .execute(params![
                    namespace,
                    key,
                    data.as_bytes(),
                    ttl,
                    timestamp,
                    expires_at
                ])?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// The live item (`namespace`, `key`) at `now`, or `None` when there is none or it expired.
    pub fn fetch(
        &self,
        namespace: &str,
        key: &str,
        now: f64,
    ) -> Result<Option<StoredItem>, StateError> {
        let reader = lock(&self.reader);
        let mut select = reader.prepare_cached(
            "SELECT data, ttl, timestamp FROM items
             WHERE namespace = ?1 AND key = ?2 AND expires_at > ?3",
        )?;
        let item = select
            .query_row(params![namespace, key, now], |row| {
                let data = String::from_utf8(row.get(0)?).map_err(|error| {
                    // Only this module writes the column, always from a &str.
                    rusqlite::Error::FromSqlConversionFailure(0, Type::Blob, Box::new(error))
                })?;
                Ok(StoredItem {
                    data,
                    ttl: row.get(1)?,
                    timestamp: row.get(2)?,
                })
            })
            .optional()?;
        Ok(item)
    }

    /// Deletes the items that are no longer live at `now`; returns how many.
    pub fn purge_expired(&self, now: f64) -> Result<usize, StateError> {
        let writer = lock(&self.writer);
        let purged = writer
            .prepare_cached("DELETE FROM items WHERE expires_at <= ?1")?
            .execute([now])?;
        if purged > 0 {
            tracing::debug!(purged, "state store purged expired items");
        }
        Ok(purged)
    }

    /// How many items are live at `now` (for `/status`).
    pub fn items(&self, now: f64) -> Result<u64, StateError> {
        let reader = lock(&self.reader);
        let live: i64 = reader
            .prepare_cached("SELECT count(*) FROM items WHERE expires_at > ?1")?
            .query_row([now], |row| row.get(0))?;
        Ok(live as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NOW: f64 = 1_700_000_000.0;

    fn open(directory: &tempfile::TempDir) -> StateStore {
        StateStore::open(&directory.path().join("state.db"), StateLimits::default()).unwrap()
    }

    fn item(data: &str, ttl: i64, timestamp: f64) -> Option<StoredItem> {
        Some(StoredItem {
            data: data.to_owned(),
            ttl,
            timestamp,
        })
    }

    #[test]
    fn is_send_and_sync() {
        fn shared_between_threads<T: Send + Sync>() {}
        shared_between_threads::<StateStore>();
    }

    #[test]
    fn round_trips_data_namespace_and_key_byte_for_byte() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        let data = "{\"état\": \"naïve ☃ 𝄞\", 'q': \"\\\"\"}\0after NUL\r\n\u{10FFFF}";
        let namespace = "ns'; DROP TABLE items; --\0\"";
        let key = "clé ☃\0";
        store.store(namespace, key, data, 900, NOW, NOW).unwrap();
        assert_eq!(
            store.fetch(namespace, key, NOW).unwrap(),
            item(data, 900, NOW)
        );
        // The NUL is part of the key and namespace: their prefixes are other items.
        assert_eq!(
            store.fetch("ns'; DROP TABLE items; --", key, NOW).unwrap(),
            None
        );
        assert_eq!(store.fetch(namespace, "clé ☃", NOW).unwrap(), None);
        // Same key, other namespace: another item.
        store.store("other", key, "", 900, NOW, NOW).unwrap();
        assert_eq!(store.fetch("other", key, NOW).unwrap(), item("", 900, NOW));
        assert_eq!(
            store.fetch(namespace, key, NOW).unwrap(),
            item(data, 900, NOW)
        );
        assert_eq!(store.items(NOW).unwrap(), 2);
    }

    #[test]
    fn is_configured_for_durable_commits() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        let writer = lock(&store.writer);
        let mode: String = writer
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        let synchronous: i64 = writer
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(synchronous, 2, "synchronous must be FULL");
    }

    #[test]
    fn persists_across_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "kept", "data ☃", 900, NOW, NOW).unwrap();
        drop(store);
        let store = open(&directory);
        assert_eq!(
            store.fetch("ns", "kept", NOW + 1.0).unwrap(),
            item("data ☃", 900, NOW)
        );
    }

    /// The child half of `persists_after_the_process_is_killed`: stores, then dies without
    /// running any destructor (no close, no checkpoint), like a `kill -9` right after the 200.
    #[test]
    fn child_store_then_abort() {
        let Some(path) = std::env::var_os("STATE_STORE_CHILD_DB") else {
            return; // Only meaningful when run by the parent test.
        };
        let store = StateStore::open(Path::new(&path), StateLimits::default()).unwrap();
        store.store("ns", "survivor", "☃", 900, NOW, NOW).unwrap();
        std::process::abort();
    }

    #[test]
    fn persists_after_the_process_is_killed() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.db");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            // A filter, not --exact: the module path differs between crates that include it.
            .args(["child_store_then_abort", "--test-threads=1"])
            .env("STATE_STORE_CHILD_DB", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have aborted");
        // The item lives only in the WAL that the dead process left behind.
        assert!(directory.path().join("state.db-wal").exists());
        let store = StateStore::open(&path, StateLimits::default()).unwrap();
        assert_eq!(
            store.fetch("ns", "survivor", NOW).unwrap(),
            item("☃", 900, NOW)
        );
    }

    #[test]
    fn ttl_counts_from_the_timestamp() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        // Stored 100 s ago for 50 s: accepted, but expired at once.
        store.store("ns", "old", "x", 50, NOW - 100.0, NOW).unwrap();
        assert_eq!(store.fetch("ns", "old", NOW).unwrap(), None);
        assert_eq!(store.items(NOW).unwrap(), 0);
        // Stored 100 s ago for 150 s: live for 50 more seconds, not 150.
        store
            .store("ns", "young", "y", 150, NOW - 100.0, NOW)
            .unwrap();
        assert_eq!(
            store.fetch("ns", "young", NOW + 49.0).unwrap(),
            item("y", 150, NOW - 100.0)
        );
        assert_eq!(store.fetch("ns", "young", NOW + 50.0).unwrap(), None);
        assert_eq!(store.items(NOW + 50.0).unwrap(), 0);
    }

    #[test]
    fn an_already_expired_store_removes_the_item() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "k", "live", 900, NOW, NOW).unwrap();
        store
            .store("ns", "k", "dead", 0, NOW + 1.0, NOW + 1.0)
            .unwrap();
        assert_eq!(store.fetch("ns", "k", NOW + 1.0).unwrap(), None);
        assert_eq!(
            store.purge_expired(NOW + 1.0).unwrap(),
            0,
            "no row was left"
        );
    }

    #[test]
    fn older_timestamp_is_a_conflict_and_changes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "k", "new", 900, NOW, NOW).unwrap();
        let refused = store.store("ns", "k", "older", 9000, NOW - 0.5, NOW);
        assert!(
            matches!(refused, Err(StateError::Conflict { stored_timestamp }) if stored_timestamp == NOW),
            "{refused:?}"
        );
        assert_eq!(store.fetch("ns", "k", NOW).unwrap(), item("new", 900, NOW));
        // An already-expired older store is refused too: ordering comes first.
        let refused = store.store("ns", "k", "older", 0, NOW - 0.5, NOW);
        assert!(
            matches!(refused, Err(StateError::Conflict { .. })),
            "{refused:?}"
        );
        assert_eq!(store.fetch("ns", "k", NOW).unwrap(), item("new", 900, NOW));
    }

    #[test]
    fn an_expired_item_does_not_block_an_older_store() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "k", "gone", 10, NOW, NOW).unwrap();
        let later = NOW + 10.0;
        store
            .store("ns", "k", "back", 900, NOW - 1.0, later)
            .unwrap();
        assert_eq!(
            store.fetch("ns", "k", later).unwrap(),
            item("back", 900, NOW - 1.0)
        );
    }

    #[test]
    fn equal_timestamp_the_later_store_wins() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "k", "first", 900, NOW, NOW).unwrap();
        store.store("ns", "k", "second", 60, NOW, NOW).unwrap();
        assert_eq!(
            store.fetch("ns", "k", NOW).unwrap(),
            item("second", 60, NOW)
        );
    }

    #[test]
    fn item_size_limit_is_in_bytes() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        // 8,192 two-byte characters: 16 KiB of UTF-8.
        let at_limit = "é".repeat(8 * 1024);
        store.store("ns", "k", &at_limit, 900, NOW, NOW).unwrap();
        let over = format!("{at_limit}x");
        let refused = store.store("ns", "k", &over, 900, NOW + 1.0, NOW);
        assert!(
            matches!(
                refused,
                Err(StateError::TooLarge {
                    size: 16385,
                    limit: 16384
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            store.fetch("ns", "k", NOW).unwrap(),
            item(&at_limit, 900, NOW)
        );
    }

    #[test]
    fn item_count_limit_counts_live_items_only() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        // Items 0..512 live 10 s, the others 900 s.
        for n in 0..1024 {
            let ttl = if n < 512 { 10 } else { 900 };
            store
                .store("ns", &n.to_string(), "v", ttl, NOW, NOW)
                .unwrap();
        }
        assert_eq!(store.items(NOW).unwrap(), 1024);
        let refused = store.store("ns", "1024", "v", 900, NOW, NOW);
        assert!(
            matches!(refused, Err(StateError::Full { limit: 1024 })),
            "{refused:?}"
        );
        assert_eq!(store.fetch("ns", "1024", NOW).unwrap(), None);
        // Replacing an item that exists needs no new place.
        store
            .store("ns", "1", "replaced", 900, NOW + 1.0, NOW)
            .unwrap();
        assert_eq!(
            store.fetch("ns", "1", NOW).unwrap(),
            item("replaced", 900, NOW + 1.0)
        );
        // Nothing was evicted.
        assert_eq!(store.items(NOW).unwrap(), 1024);
        // Once items 0..512 (but 1) expired, new items fit, without a purge first.
        let later = NOW + 10.0;
        assert_eq!(store.items(later).unwrap(), 513);
        store.store("ns", "1024", "v", 900, later, later).unwrap();
        assert_eq!(
            store.fetch("ns", "1024", later).unwrap(),
            item("v", 900, later)
        );
        // And an expired item does not hold its place either: "0" comes back as new.
        store.store("ns", "0", "again", 900, later, later).unwrap();
        assert_eq!(store.items(later).unwrap(), 515);
    }

    #[test]
    fn purge_removes_only_expired_items() {
        let directory = tempfile::tempdir().unwrap();
        let store = open(&directory);
        store.store("ns", "short", "s", 10, NOW, NOW).unwrap();
        store.store("ns", "exact", "e", 20, NOW, NOW).unwrap();
        store.store("ns", "long", "l", 900, NOW, NOW).unwrap();
        assert_eq!(store.purge_expired(NOW).unwrap(), 0);
        // At NOW + 20 "exact" is no longer live (timestamp + ttl > now is false).
        assert_eq!(store.purge_expired(NOW + 20.0).unwrap(), 2);
        assert_eq!(
            store.items(NOW).unwrap(),
            1,
            "purged rows are gone, not hidden"
        );
        assert_eq!(store.fetch("ns", "long", NOW).unwrap(), item("l", 900, NOW));
        assert_eq!(store.purge_expired(NOW + 20.0).unwrap(), 0);
    }

    #[test]
    fn concurrent_stores_of_one_item_are_serialised() {
        const STORES: u32 = 1000;
        let directory = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&directory));
        let threads: Vec<_> = (0..2u32)
            .map(|thread| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut accepted = 0;
                    for n in 1..=STORES {
                        // Distinct across threads, increasing within each.
                        let timestamp = NOW + f64::from(2 * n + thread);
                        let data = format!("{thread}:{n}");
                        match store.store("ns", "k", &data, 900, timestamp, NOW) {
                            Ok(()) => accepted += 1,
                            Err(StateError::Conflict { stored_timestamp }) => {
                                assert!(stored_timestamp > timestamp)
                            }
                            Err(other) => panic!("store {data}: {other}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let accepted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(accepted > 0);
        // Unserialised, thread 0's last store (2 * STORES) could check before and write after
        // thread 1's (2 * STORES + 1) and end stored.
        let highest = NOW + f64::from(2 * STORES + 1);
        assert_eq!(
            store.fetch("ns", "k", NOW).unwrap(),
            item(&format!("1:{STORES}"), 900, highest)
        );
    }
}
