//! The cache manager's in-memory store. It owns the cached items (each the pair namespace and
//! key, with opaque string data and its own expiry), their order of expiry, the byte accounting
//! against [`CacheLimits`], and the per-item lock of `get_data` with its queue of waiting askers;
//! it knows nothing of HTTP, peers or configuration. It guarantees that an expired item is never
//! returned, whether or not [`Cache::purge_expired`] has run; that a set never fails because the
//! cache is full (the items nearest to expiry make room); that N concurrent askers for a missing
//! item cause exactly one computation (one gets the lock, the others wait for its set, and when a
//! lock expires unanswered exactly one waiter, the longest waiting, inherits it); and that a
//! waiter holds no thread, only a queue entry and a one-shot channel, so thousands of waiters
//! cost only memory, while a waiter dropped at any point (client gone) leaves no entry behind and
//! does not wedge the lock. The state is split into shards by hash so that concurrent requests
//! rarely meet on one mutex, and no mutex is ever held across an await. Time is `tokio::time`, so
//! tests can pause the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::Mutex;
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::time::Instant;

pub use super::item_data::ItemData;

/// Enough shards that two cores (and a few more) rarely meet on one mutex, few enough that an
/// eviction, which looks at the head of every shard's expiry order, stays cheap.
const SHARD_COUNT: usize = 64;

/// Expired items removed per mutex acquisition by the purge, so that a large backlog of expired
/// items never stalls the requests of a shard for more than about a millisecond.
const PURGE_BATCH: usize = 1024;

/// Size bounds of the cache, in bytes of item data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheLimits {
    /// Largest `data` accepted by a set; 0 = no limit.
    pub max_item_size: u64,
    /// Bound on the sum of the stored items' data sizes; 0 = no limit.
    pub max_cache_size: u64,
}

impl CacheLimits {
    /// The largest item that can be stored. An item larger than the whole cache could only be
    /// kept by breaking the cache's bound (and evicting everything else for nothing), so it is
    /// refused like one over `max_item_size`.
    fn largest_storable_item(&self) -> Option<u64> {
        [self.max_item_size, self.max_cache_size]
            .into_iter()
            .filter(|&limit| limit > 0)
            .min()
    }
}

/// Why a set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The data is larger than `max_item_size`, or than the whole `max_cache_size`.
    #[error("data is {size} bytes, more than the {limit} bytes allowed for one cache item")]
    ItemTooLarge { size: u64, limit: u64 },
}

/// The answer to `get_data`: the item's data if it was (or became) available, and whether the
/// caller now holds the item's lock and is expected to compute the data and set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOutcome {
    pub data: Option<ItemData>,
    pub lock: bool,
    /// How long the data has left before it expires (`Some` exactly when `data` is): what an
    /// owner tells a peer that forwarded the get, so that the peer's kept copy ends with it.
    pub remaining_ttl: Option<Duration>,
}

impl GetOutcome {
    const MISSING: GetOutcome = GetOutcome {
        data: None,
        lock: false,
        remaining_ttl: None,
    };
    const LOCK_GRANTED: GetOutcome = GetOutcome {
        data: None,
        lock: true,
        remaining_ttl: None,
    };

    fn found(data: ItemData, expires_at: Tick, now: Tick) -> GetOutcome {
        GetOutcome {
            data: Some(data),
            lock: false,
            remaining_ttl: Some(Duration::from_nanos(expires_at.0.saturating_sub(now.0))),
        }
    }
}

/// The in-memory cache; `Send + Sync`, shared behind an `Arc` by all request handlers.
pub struct Cache {
    limits: CacheLimits,
    hasher: DefaultHashBuilder,
    clock_origin: Instant,
    shards: Box<[Mutex<Shard>]>,
    /// Sum of the data sizes of all stored items, expired or not; changed only under the mutex
    /// of the shard whose item changed, so it never drifts from the items.
    stored_bytes: AtomicU64,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("limits", &self.limits)
            .field("stored_bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Cache {
        let hasher = DefaultHashBuilder::default();
        let shards = (0..SHARD_COUNT)
            .map(|_| Mutex::new(Shard::new(hasher)))
            .collect();
        Cache {
            limits,
            hasher,
            clock_origin: Instant::now(),
            shards,
            stored_bytes: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The protocol's `get_data`. With `max_wait` zero it only reads. Otherwise: a live item is
    /// returned at once; when there is none and nobody holds the item's lock, the caller takes
    /// the lock for `max_wait` and is answered at once `{None, lock: true}`; when someone holds
    /// it, the caller waits for the set (answered with the data the moment it arrives), for the
    /// lock to pass to it (the longest waiter inherits an expired lock), or for its own
    /// `max_wait` to end (answered `{None, lock: false}`).
    pub async fn get(&self, namespace: &str, key: &str, max_wait: Duration) -> GetOutcome {
        let (hash, shard) = self.locate(namespace, key);
        let mut now = self.now();
        if max_wait.is_zero() {
            let live = shard.lock().live_data(hash, namespace, key, now);
            return live.map_or(GetOutcome::MISSING, |(data, expires_at)| {
                GetOutcome::found(data, expires_at, now)
            });
        }
        let deadline = now.after(max_wait);
        let mut ticket: Option<WaitTicket<'_>> = None;
        loop {
            let settled = {
                let mut shard = shard.lock();
                let ticket = match &mut ticket {
                    Some(ticket) => ticket,
                    None => {
                        if let Some((data, expires_at)) = shard.live_data(hash, namespace, key, now)
                        {
                            return GetOutcome::found(data, expires_at, now);
                        }
                        let (waiter_id, wake) =
                            shard.enqueue_waiter(hash, namespace, key, max_wait);
                        ticket.insert(WaitTicket {
                            cache: self,
                            hash,
                            namespace,
                            key,
                            waiter_id,
                            wake,
                            answered: false,
                        })
                    }
                };
                shard.settle_waiter(ticket, now, deadline)
            };
            // Only a ticket that was just created or re-checked reaches here.
            let Some(ticket) = ticket.as_mut() else {
                return GetOutcome::MISSING;
            };
            let wake_at = match settled {
                Settled::Answer(outcome) => {
                    ticket.answered = true;
                    return outcome;
                }
                Settled::WaitUntil(wake_at) => wake_at,
            };
            tokio::select! {
                biased;
                wake = &mut ticket.wake => {
                    // A message means the sender already took this waiter off the queue.
                    ticket.answered = true;
                    return match wake {
                        Ok(Wake::Data(data, expires_at)) => {
                            GetOutcome::found(data, expires_at, self.now())
                        }
                        Ok(Wake::Lock) => GetOutcome::LOCK_GRANTED,
                        Err(_) => GetOutcome::MISSING,
                    };
                }
                () = tokio::time::sleep_until(self.instant_of(wake_at)) => {}
            }
            now = self.now();
        }
    }

    /// The protocol's `set_data`: stores `data` for `ttl` (the caller has checked that ttl > 0
    /// and the names hold no `|`), releases the item's lock, and answers every waiter of the
    /// item at once with the data. Makes room by evicting the items nearest to expiry when the
    /// cache would exceed `max_cache_size`.
    pub fn set(
        &self,
        namespace: &str,
        key: &str,
        data: &str,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let size = data.len() as u64;
        if let Some(limit) = self
            .limits
            .largest_storable_item()
            .filter(|&limit| size > limit)
        {
            return Err(CacheError::ItemTooLarge { size, limit });
        }
        // One allocation, sized to the data: the item's only copy.
        self.store(namespace, key, ItemData::new(data), ttl);
        Ok(())
    }

    /// Keeps a local copy of an item read from its remote owner until `remaining` (the rest of
    /// the owner's lifetime for it) ends. It is stored like a set, so any local waiter for the
    /// item (there are normally none, the lock living on the owner) gets the data, which is the
    /// item's genuine value. A copy that could not be stored (too large, already expired) is
    /// simply not kept: the caller already has the data to answer with.
    pub fn keep_copy(&self, namespace: &str, key: &str, data: ItemData, remaining: Duration) {
        let size = data.len() as u64;
        if remaining.is_zero() {
            return;
        }
        if let Some(limit) = self
            .limits
            .largest_storable_item()
            .filter(|&limit| size > limit)
        {
            tracing::debug!(
                namespace,
                key,
                size,
                limit,
                "remote item too large to keep a local copy of"
            );
            return;
        }
        self.store(namespace, key, data, remaining);
    }

    /// Removes the expired items and the locks that nobody holds or waits for any more; returns
    /// how many items it removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        let mut purged = 0;
        for shard in self.shards.iter() {
            loop {
                let mut shard = shard.lock();
                let batch = shard.purge_expired(now, PURGE_BATCH);
                self.stored_bytes
                    .fetch_sub(batch.freed_bytes, Ordering::Relaxed);
                purged += batch.items;
                if !batch.more {
                    shard.forget_abandoned_locks(now);
                    break;
                }
            }
        }
        purged
    }

    /// Number of live (unexpired) items.
    pub fn items(&self) -> usize {
        let now = self.now();
        self.shards
            .iter()
            .map(|shard| shard.lock().live_items(now))
            .sum()
    }

    /// Sum of the data sizes of the stored items, including expired ones not purged yet.
    pub fn bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    fn store(&self, namespace: &str, key: &str, data: ItemData, lifetime: Duration) {
        let (hash, shard) = self.locate(namespace, key);
        let expires_at = self.now().after(lifetime);
        let size = data.len() as u64;
        {
            let mut shard = shard.lock();
            let replaced_size = shard.store(hash, namespace, key, data, expires_at);
            if size >= replaced_size {
                self.stored_bytes
                    .fetch_add(size - replaced_size, Ordering::Relaxed);
            } else {
                self.stored_bytes
                    .fetch_sub(replaced_size - size, Ordering::Relaxed);
            }
        }
        let max_cache_size = self.limits.max_cache_size;
        if max_cache_size > 0 && self.bytes() > max_cache_size {
            self.evict_until_within(max_cache_size, namespace, key);
        }
    }

    /// Evicts the items nearest to expiry (across all shards) until the stored bytes fit in
    /// `limit`, sparing the item just stored: evicting it would make its set pointless.
    fn evict_until_within(&self, limit: u64, spared_namespace: &str, spared_key: &str) {
        let mut evicted = 0usize;
        while self.bytes() > limit {
            let mut earliest: Option<(Tick, &Mutex<Shard>)> = None;
            for shard in self.shards.iter() {
                let head = shard
                    .lock()
                    .earliest_expiry_except(spared_namespace, spared_key);
                if let Some(expires_at) = head {
                    if earliest.is_none_or(|(earliest_at, _)| expires_at < earliest_at) {
                        earliest = Some((expires_at, shard));
                    }
                }
            }
            let Some((_, shard)) = earliest else {
                break;
            };
            let mut shard = shard.lock();
            // Another set may have made room meanwhile; evicting more would be for nothing.
            if self.bytes() <= limit {
                break;
            }
            if let Some(freed) = shard.evict_earliest_except(spared_namespace, spared_key) {
                self.stored_bytes.fetch_sub(freed, Ordering::Relaxed);
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::debug!(
                evicted,
                limit,
                "cache full: evicted the items nearest to expiry"
            );
        }
    }

    fn locate(&self, namespace: &str, key: &str) -> (u64, &Mutex<Shard>) {
        let hash = hash_item(&self.hasher, namespace, key);
        // The item tables use the low bits and the top seven, so the shard takes middle ones.
        let shard = (hash >> 32) as usize % SHARD_COUNT;
        (hash, &self.shards[shard])
    }

    fn now(&self) -> Tick {
        let since_origin = Instant::now().saturating_duration_since(self.clock_origin);
        Tick(u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant_of(&self, tick: Tick) -> Instant {
        self.clock_origin
            .checked_add(Duration::from_nanos(tick.0))
            // Only for absurd waits; a year is the same as for ever to a waiting client.
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }
}

fn hash_item(hasher: &DefaultHashBuilder, namespace: &str, key: &str) -> u64 {
    hasher.hash_one((namespace, key))
}

/// Nanoseconds since the cache was created: 8 bytes per item where an `Instant` takes 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(u64);

impl Tick {
    /// Earlier than any real moment; the expiry of a released lock.
    const ORIGIN: Tick = Tick(0);

    fn after(self, span: Duration) -> Tick {
        let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Tick(self.0.saturating_add(span))
    }
}

/// Namespace and key in one allocation, shared by an item's table entry and its expiry entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ItemKey {
    namespace_then_key: Arc<str>,
    namespace_len: usize,
}

impl ItemKey {
    fn new(namespace: &str, key: &str) -> ItemKey {
        let mut text = String::with_capacity(namespace.len() + key.len());
        text.push_str(namespace);
        text.push_str(key);
        ItemKey {
            namespace_then_key: Arc::from(text),
            namespace_len: namespace.len(),
        }
    }

    fn parts(&self) -> (&str, &str) {
        self.namespace_then_key.split_at(self.namespace_len)
    }

    fn is(&self, namespace: &str, key: &str) -> bool {
        self.parts() == (namespace, key)
    }

    fn hash(&self, hasher: &DefaultHashBuilder) -> u64 {
        let (namespace, key) = self.parts();
        hash_item(hasher, namespace, key)
    }
}

struct StoredItem {
    key: ItemKey,
    data: ItemData,
    expires_at: Tick,
}

/// What a waiting asker is told, once.
enum Wake {
    /// The item was set: answer with its data, which expires at the given moment.
    Data(ItemData, Tick),
    /// The lock passed to this asker: answer `{None, lock: true}`.
    Lock,
}

struct Waiter {
    max_wait: Duration,
    wake: oneshot::Sender<Wake>,
}

/// The lock of one missing item and the askers waiting for it. It exists only while someone
/// holds the lock or waits, so its cost is paid only for items being computed.
struct ItemLock {
    key: ItemKey,
    /// The holder's lock ends here; [`Tick::ORIGIN`] once released.
    held_until: Tick,
    /// Waiters by arrival (ids only grow), so the longest waiter inherits an expired lock.
    waiters: BTreeMap<u64, Waiter>,
}

impl ItemLock {
    /// Passes an expired lock to the longest waiter, which answers its client with the lock.
    fn hand_over_if_expired(&mut self, now: Tick) {
        while self.held_until <= now {
            let Some((_, waiter)) = self.waiters.pop_first() else {
                return;
            };
            self.held_until = now.after(waiter.max_wait);
            if waiter.wake.send(Wake::Lock).is_err() {
                // Its future is gone without having left the queue; try the next one.
                self.held_until = Tick::ORIGIN;
            }
        }
    }

    fn is_abandoned(&self, now: Tick) -> bool {
        self.waiters.is_empty() && self.held_until <= now
    }
}

/// A `get` that is queued for an item. Dropping it unanswered (the client went away) takes it
/// off the queue, and gives back the lock if the lock had just been passed to it.
struct WaitTicket<'a> {
    cache: &'a Cache,
    hash: u64,
    namespace: &'a str,
    key: &'a str,
    waiter_id: u64,
    wake: oneshot::Receiver<Wake>,
    answered: bool,
}

impl Drop for WaitTicket<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let (_, shard) = self.cache.locate(self.namespace, self.key);
        let now = self.cache.now();
        shard.lock().abandon_waiter(self, now);
    }
}

enum Settled {
    Answer(GetOutcome),
    WaitUntil(Tick),
}

struct PurgedBatch {
    items: usize,
    freed_bytes: u64,
    more: bool,
}

struct Shard {
    hasher: DefaultHashBuilder,
    items: HashTable<StoredItem>,
    /// Every item, by expiry: the purge takes expired ones from the front, eviction the
    /// nearest to expiry.
    by_expiry: BTreeSet<(Tick, ItemKey)>,
    locks: HashTable<ItemLock>,
    next_waiter_id: u64,
}

impl Shard {
    fn new(hasher: DefaultHashBuilder) -> Shard {
        Shard {
            hasher,
            items: HashTable::new(),
            by_expiry: BTreeSet::new(),
            locks: HashTable::new(),
            next_waiter_id: 0,
        }
    }

    /// The item's data and expiry, unless it is missing or expired.
    fn live_data(
        &self,
        hash: u64,
        namespace: &str,
        key: &str,
        now: Tick,
    ) -> Option<(ItemData, Tick)> {
        self.items
            .find(hash, |item| item.key.is(namespace, key))
            .filter(|item| item.expires_at > now)
            .map(|item| (item.data.clone(), item.expires_at))
    }

    fn live_items(&self, now: Tick) -> usize {
        let expired = self
            .by_expiry
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .count();
        self.items.len() - expired
    }

    /// Stores the item, then releases its lock and answers its waiters with the data; returns
    /// the data size of the item it replaced (0 if none).
    fn store(
        &mut self,
        hash: u64,
        namespace: &str,
        key: &str,
        data: ItemData,
        expires_at: Tick,
    ) -> u64 {
        let hasher = &self.hasher;
        let entry = self.items.entry(
            hash,
            |item| item.key.is(namespace, key),
            |item| item.key.hash(hasher),
        );
        let replaced_size = match entry {
            Entry::Occupied(mut occupied) => {
                let item = occupied.get_mut();
                self.by_expiry.remove(&(item.expires_at, item.key.clone()));
                self.by_expiry.insert((expires_at, item.key.clone()));
                item.expires_at = expires_at;
                let replaced = std::mem::replace(&mut item.data, data.clone());
                replaced.len() as u64
            }
            Entry::Vacant(vacant) => {
                let item_key = ItemKey::new(namespace, key);
                self.by_expiry.insert((expires_at, item_key.clone()));
                vacant.insert(StoredItem {
                    key: item_key,
                    data: data.clone(),
                    expires_at,
                });
                0
            }
        };
        if let Ok(lock) = self
            .locks
            .find_entry(hash, |lock| lock.key.is(namespace, key))
        {
            let (lock, _) = lock.remove();
            for waiter in lock.waiters.into_values() {
                // Sent under the mutex so that a waiter re-checking the queue either is still
                // in it or finds its answer; a failed send has nobody left to tell.
                let _ = waiter.wake.send(Wake::Data(data.clone(), expires_at));
            }
        }
        replaced_size
    }

    fn enqueue_waiter(
        &mut self,
        hash: u64,
        namespace: &str,
        key: &str,
        max_wait: Duration,
    ) -> (u64, oneshot::Receiver<Wake>) {
        let waiter_id = self.next_waiter_id;
        self.next_waiter_id += 1;
        let (sender, receiver) = oneshot::channel();
        let hasher = &self.hasher;
        let lock = self
            .locks
            .entry(
                hash,
                |lock| lock.key.is(namespace, key),
                |lock| lock.key.hash(hasher),
            )
            .or_insert_with(|| ItemLock {
                key: ItemKey::new(namespace, key),
                held_until: Tick::ORIGIN,
                waiters: BTreeMap::new(),
            })
            .into_mut();
        lock.waiters.insert(
            waiter_id,
            Waiter {
                max_wait,
                wake: sender,
            },
        );
        (waiter_id, receiver)
    }

    /// Decides a queued waiter's fate now: answered (data set, lock inherited, or its own wait
    /// over), or when to look again (its deadline or the lock's expiry, whichever is first).
    fn settle_waiter(&mut self, ticket: &mut WaitTicket<'_>, now: Tick, deadline: Tick) -> Settled {
        if let Some(answer) = take_answer(&mut ticket.wake, now) {
            return Settled::Answer(answer);
        }
        let Some(lock) = self.lock_mut(ticket.hash, ticket.namespace, ticket.key) else {
            // Cannot happen: a lock entry lives as long as it has waiters. Never wait for nothing.
            return Settled::Answer(GetOutcome::MISSING);
        };
        lock.hand_over_if_expired(now);
        let lock_expiry = lock.held_until;
        if let Some(answer) = take_answer(&mut ticket.wake, now) {
            return Settled::Answer(answer);
        }
        if now >= deadline {
            lock.waiters.remove(&ticket.waiter_id);
            self.forget_lock_if_abandoned(ticket.hash, ticket.namespace, ticket.key, now);
            return Settled::Answer(GetOutcome::MISSING);
        }
        Settled::WaitUntil(deadline.min(lock_expiry))
    }

    fn abandon_waiter(&mut self, ticket: &mut WaitTicket<'_>, now: Tick) {
        let (hash, namespace, key) = (ticket.hash, ticket.namespace, ticket.key);
        match ticket.wake.try_recv() {
            Ok(Wake::Lock) => {
                // The lock was passed to an asker that is gone, so nobody will compute: the next
                // waiter inherits it now rather than after the gone asker's max_wait.
                if let Some(lock) = self.lock_mut(hash, namespace, key) {
                    lock.held_until = Tick::ORIGIN;
                    lock.hand_over_if_expired(now);
                }
            }
            Ok(Wake::Data(..)) | Err(TryRecvError::Closed) => return,
            Err(TryRecvError::Empty) => {
                if let Some(lock) = self.lock_mut(hash, namespace, key) {
                    lock.waiters.remove(&ticket.waiter_id);
                }
            }
        }
        self.forget_lock_if_abandoned(hash, namespace, key, now);
    }

    fn lock_mut(&mut self, hash: u64, namespace: &str, key: &str) -> Option<&mut ItemLock> {
        self.locks
            .find_mut(hash, |lock| lock.key.is(namespace, key))
    }

    fn forget_lock_if_abandoned(&mut self, hash: u64, namespace: &str, key: &str, now: Tick) {
        if let Ok(lock) = self
            .locks
            .find_entry(hash, |lock| lock.key.is(namespace, key))
        {
            if lock.get().is_abandoned(now) {
                lock.remove();
            }
        }
    }

    fn forget_abandoned_locks(&mut self, now: Tick) {
        self.locks.retain(|lock| !lock.is_abandoned(now));
    }

    fn purge_expired(&mut self, now: Tick, batch: usize) -> PurgedBatch {
        let mut purged = PurgedBatch {
            items: 0,
            freed_bytes: 0,
            more: true,
        };
        while purged.items < batch {
            if !matches!(self.by_expiry.first(), Some((expires_at, _)) if *expires_at <= now) {
                purged.more = false;
                break;
            }
            let Some((_, item_key)) = self.by_expiry.pop_first() else {
                break;
            };
            purged.freed_bytes += self.remove_item(&item_key);
            purged.items += 1;
        }
        purged
    }

    fn earliest_expiry_except(&self, namespace: &str, key: &str) -> Option<Tick> {
        self.by_expiry
            .iter()
            .find(|(_, item_key)| !item_key.is(namespace, key))
            .map(|(expires_at, _)| *expires_at)
    }

    /// Evicts the item nearest to expiry other than the given one; returns its data size.
    fn evict_earliest_except(&mut self, namespace: &str, key: &str) -> Option<u64> {
        let victim = self
            .by_expiry
            .iter()
            .find(|(_, item_key)| !item_key.is(namespace, key))
            .cloned()?;
        self.by_expiry.remove(&victim);
        Some(self.remove_item(&victim.1))
    }

    /// Removes an item from the table (its expiry entry is the caller's business); returns its
    /// data size.
    fn remove_item(&mut self, item_key: &ItemKey) -> u64 {
        let hash = item_key.hash(&self.hasher);
        match self.items.find_entry(hash, |item| item.key == *item_key) {
            Ok(item) => item.remove().0.data.len() as u64,
            Err(_) => 0,
        }
    }
}

fn take_answer(wake: &mut oneshot::Receiver<Wake>, now: Tick) -> Option<GetOutcome> {
    match wake.try_recv() {
        Ok(Wake::Data(data, expires_at)) => Some(GetOutcome::found(data, expires_at, now)),
        Ok(Wake::Lock) => Some(GetOutcome::LOCK_GRANTED),
        Err(TryRecvError::Empty) => None,
        // The sender went away unanswered, which the queue never does; never wait for nothing.
        Err(TryRecvError::Closed) => Some(GetOutcome::MISSING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Instant as RealInstant;
    use tokio::task::JoinSet;

    const NS: &str = "plugin";
    const KEY: &str = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";

    fn unlimited() -> Cache {
        Cache::new(CacheLimits::default())
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// Polls a future once, as a server does before the client goes away.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        tokio::time::timeout(Duration::ZERO, future).await.ok()
    }

    fn waiters_of(cache: &Cache, namespace: &str, key: &str) -> Option<usize> {
        let (hash, shard) = cache.locate(namespace, key);
        let mut shard = shard.lock();
        shard
            .lock_mut(hash, namespace, key)
            .map(|lock| lock.waiters.len())
    }

    #[test]
    fn cache_and_its_get_future_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let cache = unlimited();
        assert_send_sync(&cache);
        let get = cache.get(NS, KEY, secs(1));
        assert_send(&get);
    }

    #[tokio::test(start_paused = true)]
    async fn set_then_get_returns_the_data_byte_for_byte() {
        let cache = unlimited();
        let unicode = "héllo ✓ 𝄞 \u{0} \"quoted\" \\ {\"json\": [1, 2]}\n";
        cache.set(NS, KEY, unicode, secs(60)).unwrap();
        let plain = cache.get(NS, KEY, Duration::ZERO).await;
        assert_eq!(plain.data.as_deref(), Some(unicode));
        assert!(!plain.lock);
        assert_eq!(plain.remaining_ttl, Some(secs(60)));
        let waiting = cache.get(NS, KEY, secs(5)).await;
        assert_eq!(waiting, plain);

        let megabyte: String = (0..1 << 20)
            .map(|i| char::from(b' ' + (i * 7 % 95) as u8))
            .collect();
        assert_eq!(megabyte.len(), 1 << 20);
        cache.set(NS, "big", &megabyte, secs(60)).unwrap();
        let got = cache.get(NS, "big", Duration::ZERO).await.data.unwrap();
        assert_eq!(got.as_bytes(), megabyte.as_bytes());
        assert_eq!(cache.items(), 2);
        assert_eq!(cache.bytes(), (unicode.len() + megabyte.len()) as u64);
    }

    #[tokio::test]
    async fn namespace_and_key_are_distinct_parts_of_the_item() {
        let cache = unlimited();
        cache.set("ab", "c", "first", secs(60)).unwrap();
        cache.set("a", "bc", "second", secs(60)).unwrap();
        let first = cache.get("ab", "c", Duration::ZERO).await;
        let second = cache.get("a", "bc", Duration::ZERO).await;
        assert_eq!(first.data.as_deref(), Some("first"));
        assert_eq!(second.data.as_deref(), Some("second"));
        assert_eq!(
            cache.get("abc", "", Duration::ZERO).await,
            GetOutcome::MISSING
        );
    }

    #[tokio::test]
    async fn replacing_an_item_keeps_the_byte_count_exact() {
        let cache = unlimited();
        cache.set(NS, KEY, &"x".repeat(100), secs(60)).unwrap();
        cache.set(NS, KEY, &"y".repeat(30), secs(10)).unwrap();
        assert_eq!(cache.bytes(), 30);
        assert_eq!(cache.items(), 1);
        let got = cache.get(NS, KEY, Duration::ZERO).await;
        assert_eq!(got.data.as_deref(), Some("y".repeat(30).as_str()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_item_is_never_returned_even_before_the_purge() {
        let cache = unlimited();
        cache.set(NS, KEY, "data", secs(10)).unwrap();
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await.data.as_deref(),
            Some("data")
        );
        assert_eq!(cache.items(), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await,
            GetOutcome::MISSING
        );
        assert_eq!(cache.items(), 0);
        // Still stored until the purge, and a waiting get treats it as missing: takes the lock.
        assert_eq!(cache.bytes(), 4);
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
    }

    #[tokio::test(start_paused = true)]
    async fn purge_removes_and_counts_only_expired_items() {
        let cache = unlimited();
        for i in 0..3 {
            cache
                .set(NS, &format!("short{i}"), "12345", secs(5))
                .unwrap();
        }
        for i in 0..2 {
            cache.set(NS, &format!("long{i}"), "123", secs(20)).unwrap();
        }
        assert_eq!(cache.purge_expired(), 0);
        tokio::time::advance(secs(10)).await;
        assert_eq!(cache.items(), 2);
        assert_eq!(cache.bytes(), 21);
        assert_eq!(cache.purge_expired(), 3);
        assert_eq!(cache.bytes(), 6);
        assert_eq!(cache.items(), 2);
        assert_eq!(cache.purge_expired(), 0);
        tokio::time::advance(secs(10)).await;
        assert_eq!(cache.purge_expired(), 2);
        assert_eq!((cache.items(), cache.bytes()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn purge_works_through_more_than_one_batch() {
        let cache = unlimited();
        let count = PURGE_BATCH * 3 + 7;
        for i in 0..count {
            cache.set(NS, &i.to_string(), "x", secs(1)).unwrap();
        }
        tokio::time::advance(secs(2)).await;
        assert_eq!(cache.purge_expired(), count);
        assert_eq!(cache.bytes(), 0);
    }

    #[tokio::test]
    async fn data_over_max_item_size_is_refused() {
        let cache = Cache::new(CacheLimits {
            max_item_size: 10,
            max_cache_size: 0,
        });
        // 'é' is two bytes: the limit counts bytes, not characters.
        let eleven_bytes = "é".repeat(5) + "x";
        assert_eq!(
            cache.set(NS, KEY, &eleven_bytes, secs(60)),
            Err(CacheError::ItemTooLarge {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await,
            GetOutcome::MISSING
        );
        assert_eq!(cache.bytes(), 0);
        cache.set(NS, KEY, &"é".repeat(5), secs(60)).unwrap();
        assert_eq!(cache.bytes(), 10);
    }

    #[tokio::test]
    async fn an_item_larger_than_the_whole_cache_is_refused() {
        let cache = Cache::new(CacheLimits {
            max_item_size: 0,
            max_cache_size: 100,
        });
        cache.set(NS, "kept", &"k".repeat(60), secs(60)).unwrap();
        let refused = cache.set(NS, KEY, &"x".repeat(101), secs(60));
        assert_eq!(
            refused,
            Err(CacheError::ItemTooLarge {
                size: 101,
                limit: 100
            })
        );
        // Nothing was evicted for it.
        assert_eq!(cache.bytes(), 60);
        assert!(cache.get(NS, "kept", Duration::ZERO).await.data.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_evicts_the_items_nearest_to_expiry_first() {
        let cache = Cache::new(CacheLimits {
            max_item_size: 0,
            max_cache_size: 300,
        });
        let hundred = || "h".repeat(100);
        cache.set(NS, "ttl50", &hundred(), secs(50)).unwrap();
        cache.set(NS, "ttl10", &hundred(), secs(10)).unwrap();
        cache.set(NS, "ttl30", &hundred(), secs(30)).unwrap();
        assert_eq!(cache.bytes(), 300);

        cache.set(NS, "ttl40", &hundred(), secs(40)).unwrap();
        let present = |key: &'static str| {
            let cache = &cache;
            async move { cache.get(NS, key, Duration::ZERO).await.data.is_some() }
        };
        assert!(!present("ttl10").await);
        assert!(present("ttl30").await && present("ttl40").await && present("ttl50").await);
        assert_eq!(cache.bytes(), 300);

        // The new item is the nearest to expiry, yet its own set does not evict it.
        cache.set(NS, "ttl5", &hundred(), secs(5)).unwrap();
        assert!(present("ttl5").await);
        assert!(!present("ttl30").await);
        assert!(present("ttl40").await && present("ttl50").await);

        // One large item makes room by evicting several, still nearest to expiry first.
        cache.set(NS, "large", &"l".repeat(250), secs(100)).unwrap();
        assert!(present("large").await && !present("ttl50").await);
        assert_eq!((cache.items(), cache.bytes()), (1, 250));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_items_are_evicted_before_live_ones() {
        let cache = Cache::new(CacheLimits {
            max_item_size: 0,
            max_cache_size: 20,
        });
        cache.set(NS, "expires", &"e".repeat(10), secs(1)).unwrap();
        cache.set(NS, "lives", &"l".repeat(10), secs(100)).unwrap();
        tokio::time::advance(secs(2)).await;
        cache.set(NS, "new", &"n".repeat(10), secs(50)).unwrap();
        assert_eq!(cache.bytes(), 20);
        assert!(cache.get(NS, "lives", Duration::ZERO).await.data.is_some());
        assert_eq!(cache.purge_expired(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_plain_read_never_takes_the_lock() {
        let cache = unlimited();
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await,
            GetOutcome::MISSING
        );
        assert_eq!(waiters_of(&cache, NS, KEY), None);
        // Nobody holds the lock, so the first waiting get takes it.
        assert_eq!(cache.get(NS, KEY, secs(30)).await, GetOutcome::LOCK_GRANTED);
        // While it is held, a plain read answers at once, without waiting or queueing.
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await,
            GetOutcome::MISSING
        );
        assert_eq!(waiters_of(&cache, NS, KEY), Some(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_getters_cause_one_computation_and_get_the_data_at_once() {
        let cache = Arc::new(unlimited());
        let (lock_taken, mut lock_taken_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut getters = JoinSet::new();
        for _ in 0..50 {
            let cache = Arc::clone(&cache);
            let lock_taken = lock_taken.clone();
            getters.spawn(async move {
                let outcome = cache.get(NS, KEY, secs(10)).await;
                if outcome.lock {
                    lock_taken.send(()).unwrap();
                }
                (outcome, RealInstant::now())
            });
        }
        lock_taken_rx.recv().await.unwrap();
        // Let the other getters queue up, so that they really wait for the set.
        while waiters_of(&cache, NS, KEY) != Some(49) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let set_at = RealInstant::now();
        cache.set(NS, KEY, "computed", secs(60)).unwrap();
        let outcomes = getters.join_all().await;
        let locks = outcomes.iter().filter(|(outcome, _)| outcome.lock).count();
        assert_eq!(locks, 1);
        let mut slowest = Duration::ZERO;
        for (outcome, answered_at) in outcomes.iter().filter(|(outcome, _)| !outcome.lock) {
            assert_eq!(outcome.data.as_deref(), Some("computed"));
            slowest = slowest.max(answered_at.saturating_duration_since(set_at));
        }
        assert!(
            slowest < Duration::from_millis(100),
            "slowest waiter answered after {slowest:?}"
        );
        assert_eq!(waiters_of(&cache, NS, KEY), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lock_passes_to_exactly_one_waiter_the_longest_waiting() {
        let cache = Arc::new(unlimited());
        let started = Instant::now();
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
        let mut waiters = Vec::new();
        for name in ["first", "second", "third"] {
            let cache = Arc::clone(&cache);
            waiters.push(tokio::spawn(async move {
                (name, cache.get(NS, KEY, secs(30)).await, Instant::now())
            }));
            // Arrivals one millisecond apart fix the order of the queue.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(waiters_of(&cache, NS, KEY), Some(3));
        // Past the holder's lock: the first waiter inherits it, the others keep waiting.
        tokio::time::sleep(secs(6)).await;
        assert_eq!(waiters_of(&cache, NS, KEY), Some(2));
        let first = waiters.remove(0).await.unwrap();
        assert_eq!(first.0, "first");
        assert_eq!(first.1, GetOutcome::LOCK_GRANTED);
        assert_eq!(first.2 - started, secs(5));
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
        cache.set(NS, KEY, "at last", secs(60)).unwrap();
        for waiter in waiters {
            let (_, outcome, _) = waiter.await.unwrap();
            assert_eq!(outcome.data.as_deref(), Some("at last"));
            assert!(!outcome.lock);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_inherited_lock_lasts_for_the_inheritor_s_max_wait() {
        let cache = Arc::new(unlimited());
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
        let inheritor = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, secs(20)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let late = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { (cache.get(NS, KEY, secs(60)).await, Instant::now()) })
        };
        let started = Instant::now();
        assert_eq!(inheritor.await.unwrap(), GetOutcome::LOCK_GRANTED);
        // The late waiter inherits in turn when the inheritor's 20 s lock ends.
        let (outcome, answered_at) = late.await.unwrap();
        assert_eq!(outcome, GetOutcome::LOCK_GRANTED);
        let held = answered_at - started;
        assert!(held >= secs(24) && held <= secs(25), "held {held:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_whose_own_wait_ends_first_gets_nothing_and_no_lock() {
        let cache = Arc::new(unlimited());
        assert_eq!(cache.get(NS, KEY, secs(60)).await, GetOutcome::LOCK_GRANTED);
        let started = Instant::now();
        assert_eq!(cache.get(NS, KEY, secs(2)).await, GetOutcome::MISSING);
        assert_eq!(Instant::now() - started, secs(2));
        // It left the queue, and the holder still holds the lock.
        assert_eq!(waiters_of(&cache, NS, KEY), Some(0));
        let another = cache.get(NS, KEY, secs(1)).await;
        assert_eq!(another, GetOutcome::MISSING);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue_and_the_others_still_get_the_data() {
        let cache = Arc::new(unlimited());
        assert_eq!(cache.get(NS, KEY, secs(30)).await, GetOutcome::LOCK_GRANTED);
        let cancelled = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, secs(30)).await })
        };
        let patient = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(waiters_of(&cache, NS, KEY), Some(2));
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        assert_eq!(waiters_of(&cache, NS, KEY), Some(1));
        cache.set(NS, KEY, "data", secs(60)).unwrap();
        assert_eq!(patient.await.unwrap().data.as_deref(), Some("data"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_cancelled_after_inheriting_the_lock_passes_it_on_at_once() {
        let cache = unlimited();
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
        let mut gone = Box::pin(cache.get(NS, KEY, secs(30)));
        let mut next = Box::pin(cache.get(NS, KEY, secs(30)));
        assert_eq!(poll_once(&mut gone).await, None);
        assert_eq!(poll_once(&mut next).await, None);
        tokio::time::advance(secs(5)).await;
        // `next` notices the expiry first and passes the lock to `gone`, the longest waiter,
        // which never collects it: its client went away.
        assert_eq!(poll_once(&mut next).await, None);
        assert_eq!(waiters_of(&cache, NS, KEY), Some(1));
        drop(gone);
        assert_eq!(poll_once(&mut next).await, Some(GetOutcome::LOCK_GRANTED));
        // Once every asker is gone, nothing is left behind but the held lock.
        assert_eq!(waiters_of(&cache, NS, KEY), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_locks_are_forgotten() {
        let cache = unlimited();
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
        let mut gone = Box::pin(cache.get(NS, KEY, secs(30)));
        assert_eq!(poll_once(&mut gone).await, None);
        drop(gone);
        assert_eq!(waiters_of(&cache, NS, KEY), Some(0));
        cache.purge_expired();
        assert_eq!(
            waiters_of(&cache, NS, KEY),
            Some(0),
            "the lock is still held"
        );
        tokio::time::advance(secs(5)).await;
        cache.purge_expired();
        assert_eq!(waiters_of(&cache, NS, KEY), None);
        // A new asker after an abandoned lock takes it.
        assert_eq!(cache.get(NS, KEY, secs(5)).await, GetOutcome::LOCK_GRANTED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_copy_is_served_until_its_remaining_lifetime_ends() {
        let cache = Cache::new(CacheLimits {
            max_item_size: 8,
            max_cache_size: 0,
        });
        cache.keep_copy(NS, KEY, ItemData::from("remote"), secs(3));
        cache.keep_copy(NS, "too large", ItemData::from("123456789"), secs(3));
        cache.keep_copy(NS, "expired", ItemData::from("old"), Duration::ZERO);
        assert_eq!(
            cache.get(NS, KEY, secs(1)).await.data.as_deref(),
            Some("remote")
        );
        assert_eq!(cache.items(), 1);
        tokio::time::advance(secs(3)).await;
        assert_eq!(
            cache.get(NS, KEY, Duration::ZERO).await,
            GetOutcome::MISSING
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_copy_answers_local_waiters() {
        let cache = Arc::new(unlimited());
        assert_eq!(cache.get(NS, KEY, secs(30)).await, GetOutcome::LOCK_GRANTED);
        let waiter = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        cache.keep_copy(NS, KEY, ItemData::from("remote"), secs(10));
        assert_eq!(waiter.await.unwrap().data.as_deref(), Some("remote"));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_tell_how_long_the_data_has_left() {
        let cache = Arc::new(unlimited());
        cache.set(NS, "old", "data", secs(60)).unwrap();
        tokio::time::advance(secs(10)).await;
        let read = cache.get(NS, "old", Duration::ZERO).await;
        assert_eq!(read.remaining_ttl, Some(secs(50)));
        assert_eq!(
            cache.get(NS, "old", secs(5)).await.remaining_ttl,
            Some(secs(50))
        );

        assert_eq!(cache.get(NS, KEY, secs(30)).await, GetOutcome::LOCK_GRANTED);
        let waiter = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, secs(30)).await })
        };
        tokio::time::sleep(secs(3)).await;
        cache.set(NS, KEY, "new", secs(20)).unwrap();
        let answer = waiter.await.unwrap();
        assert_eq!(answer.data.as_deref(), Some("new"));
        assert_eq!(answer.remaining_ttl, Some(secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_max_wait_neither_overflows_nor_stops_the_set_reaching_it() {
        let cache = Arc::new(unlimited());
        assert_eq!(
            cache.get(NS, KEY, Duration::MAX).await,
            GetOutcome::LOCK_GRANTED
        );
        let waiter = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get(NS, KEY, Duration::MAX).await })
        };
        tokio::time::sleep(secs(3600)).await;
        assert!(!waiter.is_finished());
        cache.set(NS, KEY, "data", Duration::MAX).unwrap();
        assert_eq!(waiter.await.unwrap().data.as_deref(), Some("data"));
    }

    /// Many askers on a few items, with short waits, clients that go away at random moments and
    /// lock holders that die without setting: no answer is wrong, nothing is left queued, and
    /// the byte count matches the items.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn askers_that_come_and_go_at_random_leave_nothing_behind() {
        let cache = Arc::new(unlimited());
        let keys = ["a", "b", "c", "d"];
        let mut askers = JoinSet::new();
        for asker in 0..200u64 {
            let cache = Arc::clone(&cache);
            askers.spawn(async move {
                let mut state = asker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut random = move |below: u64| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % below
                };
                for _ in 0..20 {
                    let key = keys[random(4) as usize];
                    let max_wait = Duration::from_millis(1 + random(20));
                    let patience = Duration::from_millis(random(25));
                    let asked = tokio::time::timeout(patience, cache.get(NS, key, max_wait)).await;
                    match asked {
                        Ok(GetOutcome {
                            lock: true, data, ..
                        }) => {
                            assert_eq!(data, None);
                            if random(3) > 0 {
                                let ttl = Duration::from_millis(1 + random(10));
                                cache.set(NS, key, &key.repeat(3), ttl).unwrap();
                            }
                        }
                        Ok(GetOutcome {
                            data: Some(data), ..
                        }) => assert_eq!(*data, key.repeat(3)),
                        Ok(_) | Err(_) => {}
                    }
                }
            });
        }
        askers.join_all().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(cache.purge_expired() <= keys.len());
        for key in keys {
            assert_eq!(
                waiters_of(&cache, NS, key),
                None,
                "lock of {key} left behind"
            );
        }
        assert_eq!(cache.items(), 0);
        assert_eq!(cache.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_waiters_are_all_answered_by_one_set() {
        let cache = Arc::new(unlimited());
        assert_eq!(cache.get(NS, KEY, secs(30)).await, GetOutcome::LOCK_GRANTED);
        let mut waiters = JoinSet::new();
        for _ in 0..10_000 {
            let cache = Arc::clone(&cache);
            waiters.spawn(async move { cache.get(NS, KEY, secs(30)).await });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(waiters_of(&cache, NS, KEY), Some(10_000));
        cache.set(NS, KEY, "data", secs(60)).unwrap();
        let started = Instant::now();
        for outcome in waiters.join_all().await {
            assert_eq!(outcome.data.as_deref(), Some("data"));
        }
        assert_eq!(Instant::now(), started, "answered without any wait");
    }
}
