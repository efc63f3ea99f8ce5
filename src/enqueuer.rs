//! The enqueuer: per-series queues in `shards` worker threads, each of which owns its backends'
//! files and writes them in batches.
//!
//! A series always goes to the same shard (`fnv1a_64(host \0 service \0 metric) % shards`), and
//! each shard is one OS thread that alone holds its `Backend`s and its catalogue connection, so
//! no two threads ever write one file. A shard flushes a series when its queue reaches
//! `max_batch_points` or its oldest point has waited `max_batch_age`; a flush sorts the points
//! by time, drops duplicate timestamps (the first received is kept, the rest counted), writes
//! all due series to every backend in one call each, and records them in the catalogue.
//!
//! Points a peer delivers from its hint log (`crate::handoff`: they waited there while this
//! node was down) during the node's first `handoff_hold` (`enqueuer.handoff_hold`, 30 s by
//! default) are held longer: a queue that received such points is written only once its oldest
//! point has waited `handoff_hold`, whatever its length. Behind a load balancer one
//! host's points reach several front nodes, each of which keeps its own hint log and delivers it
//! in its own order; the hold gives every peer's backlog time to arrive, so the flush sorts them
//! together and a store that cannot take points older than its last one (RRD) is written in
//! time order. It is a window, not a proof: a backlog that takes longer than the hold to arrive
//! can still meet a newer point written before it.
//!
//! Memory is bounded: [`Enqueuer::enqueue`] reserves room for its points against
//! `max_queued_points` before handing them over and refuses the whole request when it does not
//! fit ([`EnqueueError`]); the front end answers that with 503 and `Retry-After`, never by growing
//! or dropping. A backend call that fails as a whole (a server down) does not hold the other
//! backends: that backend's flushes wait in order and are retried with backoff (100 ms doubling
//! to 5 s) while the others go on, and their points stay counted as queued until every backend
//! has them, so a long outage ends in 503s, not in memory growth. Per-series failures are logged
//! with the series and counted.
//! [`Enqueuer::shutdown`] flushes every queue and joins the threads.

// hashbrown's map (foldhash, seeded at random per process) for the per-series maps of the hot
// path: std's SipHash took about 5% of the node's CPU under load, and the keys (series names
// from the outside) still get a seed an attacker cannot know.
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use perfpipe_backend::{Backend, Levels, Name, Point, SeriesBatch, SeriesKey};
use perfpipe_sqlite::{Catalogue, SeriesInfo, SeriesUpdate};
use smallvec::SmallVec;
use tracing::{error, info, warn};

use crate::rollup::{AggregatePoint, RollupRules, Rollups};

use crate::routing::fnv1a_64_of_parts;

/// Points of one series on their way to its shard. A request holds one point of a series as a
/// rule (one result a check), so one point and one set of levels are kept inline: the intake
/// allocates nothing for them, and the shard thread, which takes them into its queue, frees
/// nothing another thread allocated and reads them without following a pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    pub key: SeriesKey,
    pub uom: Name,
    pub points: SmallVec<[Point; 1]>,
    /// `(timestamp, levels)` where the levels changed, in arrival order (see
    /// [`SeriesBatch::levels`]); the first point's levels always start it.
    pub levels: SmallVec<[(i64, Levels); 1]>,
}

/// Why points were not taken (none of the request was).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queues are full now; later they may not be.
    #[error("queues full: {queued} points queued, {wanted} more would pass the limit of {limit}")]
    Full {
        queued: usize,
        wanted: usize,
        limit: usize,
    },
    /// More points than the queues can ever hold at once.
    #[error("{wanted} points in one request, more than max_queued_points ({limit}): send smaller requests")]
    TooLarge { wanted: usize, limit: usize },
    /// A shard thread is gone (it panicked); the node needs a restart.
    #[error("a writer thread has stopped; see the node's log")]
    ShardGone,
}

/// Counters of the whole node, shared by the front end and the shards.
#[derive(Debug, Default)]
pub struct Counters {
    /// Points taken into the queues.
    pub accepted: AtomicU64,
    /// Points refused because the queues were full.
    pub refused: AtomicU64,
    /// Points dropped because an earlier point of the same series had the same timestamp.
    pub duplicates: AtomicU64,
    /// Flushes done.
    pub flushes: AtomicU64,
    /// Points given up at shutdown because a backend stayed down (still in the write-ahead
    /// log, which keeps them for the next start).
    pub abandoned: AtomicU64,
    /// Per backend, in config order.
    pub backends: Vec<BackendCounters>,
}

/// What one backend did with the points handed to it.
#[derive(Debug)]
pub struct BackendCounters {
    pub name: &'static str,
    pub written: AtomicU64,
    pub late: AtomicU64,
    /// Points of series the backend refused (bad names, corrupt files).
    pub failed: AtomicU64,
    /// Whole calls that failed and were retried.
    pub retries: AtomicU64,
}

/// Queue limits and flush policy.
#[derive(Debug, Clone)]
pub struct EnqueuerSettings {
    pub shards: usize,
    pub max_batch_points: usize,
    pub max_batch_age: Duration,
    pub max_queued_points: usize,
    /// How long a queue holding points delivered from a peer's hint log waits before it is
    /// written, instead of `max_batch_age` and `max_batch_points` (see the module doc).
    pub handoff_hold: Duration,
    /// Where flushed points are also kept for expressions, if anywhere.
    pub last_values: Option<Arc<crate::lastvalues::LastValues>>,
    /// Aggregates to compute, and where each shard keeps its state across restarts.
    pub rollups: Option<RollupSettings>,
}

/// The rollup rules and the directory of the shards' rollup state files.
///
/// Rollup state lives in memory and is saved at each write-ahead log barrier (a checkpoint:
/// [`Shard::checkpoint_rollups`]) and at a clean stop, with the sequence number of the last
/// request it holds. Every request gets a number when it is queued, and its log record carries
/// it; after a crash the state saved last is restored and only the replayed records numbered
/// above it are aggregated again, so aggregates come out as if the node had never stopped.
#[derive(Clone)]
pub struct RollupSettings {
    pub rules: Arc<RollupRules>,
    pub state_dir: std::path::PathBuf,
    /// The shortest time between two checkpoints of a shard (`enqueuer.rollup_checkpoint`).
    pub checkpoint_every: Duration,
}

impl std::fmt::Debug for RollupSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupSettings")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl RollupSettings {
    /// Shard `shard`'s state file, in the binary form of [`Rollups::write_state`].
    fn state_file(&self, shard: usize) -> std::path::PathBuf {
        self.state_dir.join(format!("rollups-{shard}.state"))
    }

    /// Where versions before the binary form kept a shard's state, as JSON.
    fn json_state_file(&self, shard: usize) -> std::path::PathBuf {
        self.state_dir.join(format!("rollups-{shard}.json"))
    }

    /// Shard `shard`'s engine, continuing from its saved state when there is one (a JSON state
    /// of an earlier version is read when no binary one exists), and the sequence number up to
    /// which that state holds every point (0 without one).
    fn open(&self, shard: usize) -> anyhow::Result<(Rollups, u64)> {
        let path = self.state_file(shard);
        match std::fs::read(&path) {
            Ok(bytes) => {
                return Rollups::read_state(self.rules.clone(), &bytes)
                    .with_context(|| format!("reading rollup state {}", path.display()));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", path.display()));
            }
        }
        let json = self.json_state_file(shard);
        match std::fs::read(&json) {
            Ok(bytes) => {
                let saved: SavedRollups = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading rollup state {}", json.display()))?;
                Ok((
                    Rollups::restore(self.rules.clone(), saved.state),
                    saved.covers_sequence,
                ))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok((Rollups::new(self.rules.clone()), 0))
            }
            Err(error) => Err(error).with_context(|| format!("reading {}", json.display())),
        }
    }

    /// Saves a shard's engine, which holds every point of the requests numbered up to
    /// `covers_sequence`: written whole, synced, renamed over the old state, and the rename
    /// synced, since the write-ahead log deletes segments on the strength of it. A JSON state of
    /// an earlier version is removed once the new one is safe.
    fn save(&self, shard: usize, rollups: &Rollups, covers_sequence: u64) -> anyhow::Result<()> {
        let path = self.state_file(shard);
        let partial = path.with_extension("partial");
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&partial)?;
            let file = std::io::BufWriter::with_capacity(1 << 20, file);
            let file = rollups
                .write_state(covers_sequence, file)?
                .into_inner()
                .map_err(|error| error.into_error())?;
            file.sync_data()?;
            std::fs::rename(&partial, &path)?;
            std::fs::File::open(&self.state_dir)?.sync_all()?;
            match std::fs::remove_file(self.json_state_file(shard)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            }
        };
        write().with_context(|| format!("saving rollup state {}", path.display()))
    }
}

/// A shard's rollup state file as versions before the binary form wrote it: the engine's
/// snapshot and the sequence number up to which it holds every point (absent, so 0, in the
/// files of earlier versions still).
#[derive(serde::Deserialize)]
struct SavedRollups {
    #[serde(default)]
    covers_sequence: u64,
    #[serde(flatten)]
    state: crate::rollup::RollupSnapshot,
}

enum Command {
    /// Points, whether they come from a peer's hint log, and their request's sequence number
    /// (0: none, a record of an earlier version replayed).
    Points(Vec<SeriesPoints>, bool, u64),
    Flush(Sender<()>),
    /// Asks for the queued points of some series (see [`Enqueuer::queued_points`]): their
    /// positions in the question and keys, answered with the positions and points.
    Peek {
        keys: Vec<(usize, SeriesKey)>,
        reply: Sender<Vec<(usize, Vec<Point>)>>,
    },
    /// Asks for the queued series the catalogue does not list yet (see
    /// [`Enqueuer::queued_new_series`]).
    ListQueued(Sender<Vec<SeriesInfo>>),
    /// Answered once every point received before it is written.
    Barrier(Sender<()>),
    Forget {
        host: String,
        series: Option<(String, String)>,
        done: Sender<Vec<std::path::PathBuf>>,
    },
    Pause {
        hosts: Vec<String>,
        paused: Sender<()>,
        resume: Receiver<()>,
    },
}

/// Every shard held still (see [`Enqueuer::pause`]) until this is dropped.
pub struct PausedShards {
    /// Dropping these lets the shards go on.
    _resume: Vec<Sender<()>>,
}

/// Waits until every shard has written the points it was given before the wait began (the
/// write-ahead log's cue to delete a segment). It holds the shards weakly, so it never keeps
/// the enqueuer from shutting down: once it has, [`Barrier::wait`] answers `false`.
pub struct Barrier(BarrierKind);

enum BarrierKind {
    Shards(std::sync::Weak<Vec<Sender<Command>>>),
    #[cfg(test)]
    Manual(std::sync::Mutex<Receiver<()>>),
}

impl Barrier {
    /// Blocks until every shard has written what it held when this was called: `true`, or
    /// `false` when the shards stopped first. Points are not flushed early for it; they go
    /// out on their own count or age, so this takes up to `max_batch_age` (longer while a
    /// backend is down and being retried, which is the point).
    pub fn wait(&self) -> bool {
        match &self.0 {
            BarrierKind::Shards(senders) => {
                let Some(senders) = senders.upgrade() else {
                    return false;
                };
                let mut passed = Vec::with_capacity(senders.len());
                for sender in senders.iter() {
                    let (ack, answer) = mpsc::channel();
                    if sender.send(Command::Barrier(ack)).is_err() {
                        return false;
                    }
                    passed.push(answer);
                }
                drop(senders);
                passed.into_iter().all(|answer| answer.recv().is_ok())
            }
            #[cfg(test)]
            BarrierKind::Manual(passes) => passes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv()
                .is_ok(),
        }
    }

    /// A barrier that passes once per `()` sent, and fails when the sender is dropped.
    #[cfg(test)]
    pub fn manual() -> (Barrier, Sender<()>) {
        let (pass, passes) = mpsc::channel();
        (
            Barrier(BarrierKind::Manual(std::sync::Mutex::new(passes))),
            pass,
        )
    }
}

/// The front end's handle on the shards.
pub struct Enqueuer {
    /// Shared only weakly, with [`Barrier`]s.
    senders: Arc<Vec<Sender<Command>>>,
    threads: Vec<JoinHandle<()>>,
    /// Set by [`Enqueuer::shutdown`]: a shard retrying a down backend gives up after a few
    /// more tries instead of retrying forever, so shutdown cannot hang on it.
    stopping: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    max_queued_points: usize,
    counters: Arc<Counters>,
    /// The sequence number of the next request taken. Numbers are handed out and the request's
    /// points sent to the shards under this lock, so every shard receives them in number order
    /// (which the rollup checkpoints rely on; see [`RollupSettings`]).
    next_sequence: std::sync::Mutex<u64>,
}

/// What [`Enqueuer::enqueue_from`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub points: usize,
    /// The request's sequence number, for its write-ahead log record.
    pub sequence: u64,
}

/// Opens one shard's backends and catalogue (called on the shard's own thread's behalf).
pub type OpenStores =
    dyn Fn() -> anyhow::Result<(Vec<Box<dyn Backend>>, Catalogue)> + Send + Sync + 'static;

impl Enqueuer {
    /// Starts `settings.shards` shard threads, each with stores from `open_stores`.
    pub fn start(
        settings: EnqueuerSettings,
        open_stores: Arc<OpenStores>,
    ) -> anyhow::Result<Enqueuer> {
        let shards = settings.shards.max(1);
        let mut opened = Vec::with_capacity(shards);
        for _ in 0..shards {
            opened.push(open_stores()?);
        }
        let names: Vec<&'static str> = opened[0].0.iter().map(|b| b.name()).collect();
        let counters = Arc::new(Counters {
            backends: names
                .iter()
                .map(|&name| BackendCounters {
                    name,
                    written: AtomicU64::new(0),
                    late: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                })
                .collect(),
            ..Counters::default()
        });
        let queued = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        // Numbers continue above every number a saved rollup state already holds (and above
        // the clock in nanoseconds, should a state file be lost); replay raises them further.
        let mut next_sequence = perfpipe_backend::unix_now().max(0) as u64 * 1_000_000_000;
        for (index, (backends, catalogue)) in opened.into_iter().enumerate() {
            let (sender, receiver) = mpsc::channel();
            let (rollups, rollups_cover) = match &settings.rollups {
                Some(rollups) => {
                    let (engine, cover) = rollups.open(index)?;
                    (Some(engine), cover)
                }
                None => (None, 0),
            };
            next_sequence = next_sequence.max(rollups_cover + 1);
            let shard = Shard {
                backends,
                catalogue,
                queues: HashMap::new(),
                settings: settings.clone(),
                queued: queued.clone(),
                counters: counters.clone(),
                stopping: stopping.clone(),
                index,
                epoch: 0,
                barriers: Vec::new(),
                stalled: (0..names.len()).map(|_| Stalled::new()).collect(),
                owed: HashMap::new(),
                next_flush: 0,
                started: Instant::now(),
                rollups,
                rollups_cover,
                taken_sequence: 0,
                checkpoints: Vec::new(),
                checkpoint_retry_at: None,
                last_checkpoint: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || shard.run(receiver))?;
            senders.push(sender);
            threads.push(thread);
        }
        Ok(Enqueuer {
            senders: Arc::new(senders),
            threads,
            stopping,
            queued,
            max_queued_points: settings.max_queued_points,
            counters,
            next_sequence: std::sync::Mutex::new(next_sequence),
        })
    }

    /// The node's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Points queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A barrier over every shard, for the write-ahead log.
    pub fn barrier(&self) -> Barrier {
        Barrier(BarrierKind::Shards(Arc::downgrade(&self.senders)))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Takes `series` into the queues, or refuses all of it when it does not fit.
    pub fn enqueue(&self, series: Vec<SeriesPoints>) -> Result<usize, EnqueueError> {
        self.take_numbered(series, false, None)
            .map(|enqueued| enqueued.points)
    }

    /// [`Enqueuer::enqueue`] of a record replayed from the write-ahead log, with the sequence
    /// number it was logged with (`None` for records of earlier versions): points that a saved
    /// rollup state already holds are written but not aggregated again.
    pub fn enqueue_replayed(
        &self,
        series: Vec<SeriesPoints>,
        sequence: Option<u64>,
    ) -> Result<usize, EnqueueError> {
        self.take_numbered(series, false, Some(sequence.unwrap_or(0)))
            .map(|enqueued| enqueued.points)
    }

    /// [`Enqueuer::enqueue`] of points a peer delivered from its hint log (`hinted`), which are
    /// held for [`EnqueuerSettings::handoff_hold`].
    pub fn enqueue_from(
        &self,
        series: Vec<SeriesPoints>,
        hinted: bool,
    ) -> Result<Enqueued, EnqueueError> {
        self.take_numbered(series, hinted, None)
    }

    /// Reserves room, numbers the request (a new number, or `replayed`'s: 0 for none) and sends
    /// its points to their shards.
    fn take_numbered(
        &self,
        series: Vec<SeriesPoints>,
        hinted: bool,
        replayed: Option<u64>,
    ) -> Result<Enqueued, EnqueueError> {
        let wanted: usize = series.iter().map(|s| s.points.len()).sum();
        if wanted > self.max_queued_points {
            return Err(EnqueueError::TooLarge {
                wanted,
                limit: self.max_queued_points,
            });
        }
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + wanted <= self.max_queued_points).then_some(queued + wanted)
            });
        if let Err(queued) = reserved {
            self.counters
                .refused
                .fetch_add(wanted as u64, Ordering::Relaxed);
            return Err(EnqueueError::Full {
                queued,
                wanted,
                limit: self.max_queued_points,
            });
        }
        // Each shard's vector sized from a first pass: pushing into empty ones grew them by
        // doubling, moving every series (about 150 bytes each) again at each step.
        let shards = self.senders.len();
        let per_shard: Vec<Vec<SeriesPoints>> = if shards == 1 {
            vec![series]
        } else {
            let shard_of_each: Vec<usize> =
                series.iter().map(|s| shard_of(&s.key, shards)).collect();
            let mut counts = vec![0usize; shards];
            for &shard in &shard_of_each {
                counts[shard] += 1;
            }
            let mut per_shard: Vec<Vec<SeriesPoints>> =
                counts.into_iter().map(Vec::with_capacity).collect();
            for (series, shard) in series.into_iter().zip(shard_of_each) {
                per_shard[shard].push(series);
            }
            per_shard
        };
        let mut lost = 0;
        let mut next_sequence = self
            .next_sequence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sequence = match replayed {
            None => *next_sequence,
            Some(logged) => logged,
        };
        *next_sequence = next_sequence.max(sequence.saturating_add(1));
        for (sender, series) in self.senders.iter().zip(per_shard) {
            if !series.is_empty() {
                // Fails only when the shard thread is gone (it panicked): give the room back
                // and say so rather than acknowledge points nobody will write.
                if let Err(mpsc::SendError(Command::Points(series, ..))) =
                    sender.send(Command::Points(series, hinted, sequence))
                {
                    lost += series.iter().map(|s| s.points.len()).sum::<usize>();
                }
            }
        }
        drop(next_sequence);
        if lost > 0 {
            self.queued.fetch_sub(lost, Ordering::AcqRel);
            return Err(EnqueueError::ShardGone);
        }
        self.counters
            .accepted
            .fetch_add(wanted as u64, Ordering::Relaxed);
        Ok(Enqueued {
            points: wanted,
            sequence,
        })
    }

    /// The points of `keys` that are queued and not yet in the first backend (the one queries
    /// read), per key in the order of `keys`, in arrival order: what a query adds to what the
    /// store answers, so that a graph shows points within `max_batch_age` of their arrival.
    /// A shard busy writing answers after its current flush; shards that have not answered
    /// within `within` are left out (their points show once written).
    pub fn queued_points(&self, keys: &[SeriesKey], within: Duration) -> Vec<Vec<Point>> {
        let mut found = vec![Vec::new(); keys.len()];
        let shards = self.senders.len();
        let mut asked: Vec<Vec<(usize, SeriesKey)>> = vec![Vec::new(); shards];
        for (position, key) in keys.iter().enumerate() {
            asked[shard_of(key, shards)].push((position, key.clone()));
        }
        let (reply, replies) = mpsc::channel();
        let mut waiting = 0;
        for (sender, keys) in self.senders.iter().zip(asked) {
            if !keys.is_empty()
                && sender
                    .send(Command::Peek {
                        keys,
                        reply: reply.clone(),
                    })
                    .is_ok()
            {
                waiting += 1;
            }
        }
        for (position, points) in answers_within(&replies, waiting, within)
            .into_iter()
            .flatten()
        {
            found[position] = points;
        }
        found
    }

    /// The series with points queued that the catalogue does not list yet, as the catalogue
    /// will once they are written (from their queued points), from the shards that answer
    /// `within`: for listings, so that a series shows before its first write.
    pub fn queued_new_series(&self, within: Duration) -> Vec<SeriesInfo> {
        let (reply, replies) = mpsc::channel();
        let waiting = self
            .senders
            .iter()
            .filter(|sender| sender.send(Command::ListQueued(reply.clone())).is_ok())
            .count();
        answers_within(&replies, waiting, within)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Writes every queue now and waits until every shard has done so.
    pub fn flush(&self) {
        let acks: Vec<Receiver<()>> = self
            .senders
            .iter()
            .map(|sender| {
                let (ack, done) = mpsc::channel();
                let _ = sender.send(Command::Flush(ack));
                done
            })
            .collect();
        for done in acks {
            let _ = done.recv();
        }
    }

    /// Holds every shard still, after it has written everything queued and closed the files
    /// its backends keep open for `hosts`, until the returned guard is dropped: the files of
    /// those hosts can then be moved or merged with no shard writing into them. Points that
    /// arrive meanwhile wait in the shards' channels (their memory is already reserved).
    pub fn pause(&self, hosts: &[String]) -> PausedShards {
        let mut resume = Vec::with_capacity(self.senders.len());
        let mut acks = Vec::with_capacity(self.senders.len());
        for sender in self.senders.iter() {
            let (paused, paused_ack) = mpsc::channel();
            let (release, held) = mpsc::channel();
            if sender
                .send(Command::Pause {
                    hosts: hosts.to_vec(),
                    paused,
                    resume: held,
                })
                .is_ok()
            {
                acks.push(paused_ack);
                resume.push(release);
            }
        }
        for ack in acks {
            let _ = ack.recv();
        }
        PausedShards { _resume: resume }
    }

    /// Makes every shard drop the queued points of `host` (or of its one series) and forget
    /// what its backends keep open for them; returns where their data lies on disk, once every
    /// shard is done, so it can be moved away without a shard writing into it.
    pub fn forget(&self, host: &str, series: Option<(&str, &str)>) -> Vec<std::path::PathBuf> {
        let replies: Vec<Receiver<Vec<std::path::PathBuf>>> = self
            .senders
            .iter()
            .map(|sender| {
                let (done, reply) = mpsc::channel();
                let _ = sender.send(Command::Forget {
                    host: host.to_string(),
                    series: series.map(|(s, m)| (s.to_string(), m.to_string())),
                    done,
                });
                reply
            })
            .collect();
        let mut paths: Vec<std::path::PathBuf> = replies
            .into_iter()
            .filter_map(|reply| reply.recv().ok())
            .flatten()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Flushes every queue and stops the shards. Commands already sent are handled first; a
    /// backend that stays down is tried three more times per flush, then its points are counted
    /// as failed, so shutdown cannot hang on it. Answers whether every queued point was
    /// written (no backend given up on, no shard thread lost).
    pub fn shutdown(self) -> bool {
        self.stopping.store(true, Ordering::Release);
        drop(self.senders);
        let mut joined = true;
        for thread in self.threads {
            joined &= thread.join().is_ok();
        }
        joined && self.counters.abandoned.load(Ordering::Acquire) == 0
    }
}

/// The answers of the `waiting` shards asked, as many as arrive `within` (a shard busy writing
/// answers after its current flush; one that has not answered by then is left out).
fn answers_within<T>(replies: &Receiver<T>, waiting: usize, within: Duration) -> Vec<T> {
    let deadline = Instant::now() + within;
    let mut answers = Vec::with_capacity(waiting);
    while answers.len() < waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        match replies.recv_timeout(left) {
            Ok(answer) => answers.push(answer),
            Err(_) => break,
        }
    }
    answers
}

/// The shard of a series.
pub fn shard_of(key: &SeriesKey, shards: usize) -> usize {
    // Hashed part by part: the same hash as the joined bytes, without a buffer per series.
    let hash = fnv1a_64_of_parts(&[
        key.host.as_bytes(),
        b"\0",
        key.service.as_bytes(),
        b"\0",
        key.metric.as_bytes(),
    ]);
    (hash % shards as u64) as usize
}

struct SeriesQueue {
    uom: Name,
    points: Vec<Point>,
    levels: Vec<(i64, Levels)>,
    oldest: Instant,
    /// The shard's barrier epoch when this queue began: a barrier of a later epoch waits for
    /// it to be written.
    epoch: u64,
    /// Whether points from a peer's hint log are in it: then it is held for `handoff_hold`.
    hinted: bool,
    /// How many of its first points (in arrival order) the rollups hold already: replayed
    /// ones that the restored rollup state holds, and those a rollup checkpoint fed them
    /// ([`Shard::aggregate_queued`]). Its flush feeds the rollups the rest.
    aggregated: usize,
}

impl SeriesQueue {
    /// What the catalogue will say of the series once these points are written; `None` for
    /// a queue without points.
    fn as_series_info(&self, key: &SeriesKey) -> Option<SeriesInfo> {
        let first_seen = self.points.iter().map(|point| point.timestamp).min()?;
        // Of points with equal timestamps the first that arrived is kept.
        let newest = self
            .points
            .iter()
            .rev()
            .max_by_key(|point| point.timestamp)?;
        let levels = self
            .levels
            .iter()
            .rev()
            .max_by_key(|(timestamp, _)| *timestamp)
            .map(|(_, levels)| *levels);
        Some(SeriesInfo {
            key: key.clone(),
            uom: self.uom.to_string(),
            ds_type: perfpipe_backend::DataSourceType::for_unit(&self.uom),
            first_seen,
            last_seen: newest.timestamp,
            last_value: Some(newest.value),
            warn: levels.and_then(|levels| levels.warn),
            crit: levels.and_then(|levels| levels.crit),
        })
    }

    /// Adds one request's points of the series; returns whether the queue reached
    /// `max_batch_points`.
    fn add(
        &mut self,
        uom: Name,
        points: SmallVec<[Point; 1]>,
        levels: SmallVec<[(i64, Levels); 1]>,
        max_batch_points: usize,
    ) -> bool {
        self.uom = uom;
        // Many points of a series arrive together only from a replay or a peer: their vector
        // is taken as it is; the one inline point of a check's result is copied.
        if self.points.is_empty() && points.spilled() {
            self.points = points.into_vec();
        } else {
            self.points.extend_from_slice(&points);
        }
        // Each request starts its series' levels afresh; only changes are worth keeping.
        let unchanged = match (self.levels.last(), levels.first()) {
            (Some((_, queued)), Some((_, arriving))) => queued == arriving,
            _ => false,
        };
        if self.levels.is_empty() && levels.spilled() {
            self.levels = levels.into_vec();
        } else {
            self.levels
                .extend_from_slice(&levels[usize::from(unchanged)..]);
        }
        !self.hinted && self.points.len() >= max_batch_points
    }
}

struct Shard {
    backends: Vec<Box<dyn Backend>>,
    catalogue: Catalogue,
    queues: HashMap<SeriesKey, SeriesQueue>,
    settings: EnqueuerSettings,
    queued: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
    index: usize,
    /// This shard's aggregates of its own series, when rollups are configured.
    rollups: Option<Rollups>,
    /// The sequence number up to which the rollup state restored at start holds every point:
    /// replayed points numbered up to it are written but not aggregated again.
    rollups_cover: u64,
    /// The highest sequence number received (requests reach a shard in number order).
    taken_sequence: u64,
    /// Barriers waiting for a rollup checkpoint (see [`Shard::checkpoint_rollups`]).
    checkpoints: Vec<Sender<()>>,
    /// When a failed or deferred checkpoint is tried again.
    checkpoint_retry_at: Option<Instant>,
    /// When the rollup state was last saved, and `taken_sequence` then.
    last_checkpoint: Option<(Instant, u64)>,
    /// Barriers received so far; queues begun before barrier `n` have an epoch below `n`.
    epoch: u64,
    /// Barriers not yet passed, with their epochs, oldest first.
    barriers: Vec<(u64, Sender<()>)>,
    /// Per backend (config order), the flushes it could not take yet, to retry in order while
    /// the other backends go on.
    stalled: Vec<Stalled>,
    /// Flushes some backend still owes, by number: their points stay counted as queued (so the
    /// front end's limit still holds) and their epoch holds barriers back.
    owed: HashMap<u64, OwedFlush>,
    /// The number of the next flush.
    next_flush: u64,
    /// When the shard started: delivered hints are held only in the node's first
    /// `handoff_hold` (see the module documentation).
    started: Instant,
}

/// A backend's flushes not written yet because its store failed as a whole (down, 5xx).
struct Stalled {
    /// Oldest first: `(flush number, its batches)`.
    flushes: std::collections::VecDeque<(u64, Arc<Vec<SeriesBatch>>)>,
    retry_at: Instant,
    backoff: Duration,
}

impl Stalled {
    fn new() -> Stalled {
        Stalled {
            flushes: std::collections::VecDeque::new(),
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }
}

/// A flush written by some backends and owed by others.
struct OwedFlush {
    backends_left: usize,
    points: usize,
    epoch: u64,
}

/// The first wait before a failed store is tried again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often quiet series' ended periods are closed.
const ROLLUP_CLOSE_EVERY: Duration = Duration::from_secs(60);

/// How long a series must have had no point before the clock closes its ended periods (see
/// [`Rollups::close_quiet`]): longer than the usual check interval, so a series fed in real
/// time is closed by its next point, and a catch-up's series, fed flush after flush, are
/// emitted once per period.
const ROLLUP_QUIET: i64 = 600;

/// How far (seconds of data time) an aggregate series' catalogue row may trail its values
/// ([`SeriesUpdate::may_lag`]). A row update costs as much as the aggregate's value itself; an
/// hour series' row is written every sixth value, a day's, week's or month's at each one. Its
/// `last_seen` and `last_value` are read from the last-values cache (the metrics listing, the
/// stale listing and purge), so only a series the cache keeps (a `[[last_values]]` rule
/// matches it) has a trailing row; a deletion or rename makes the shard write every row again
/// at its next update.
pub const AGGREGATE_ROW_LAG: i64 = 6 * 3_600;

/// How soon a rollup checkpoint that could not be taken is tried again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// One base series' aggregate points as batches, one per aggregate series, appended to
/// `batches`; `points` is left empty. A period corrected by a late point is emitted again; the
/// last emission is the right one, so the points are taken newest emission first into
/// [`SeriesBatch::from_unordered`], which keeps the first of equal timestamps. Aggregates
/// carry their base series' unit and are gauges whatever it is: an average of a counter's
/// readings is not a counter. A base series has a dozen aggregate series at most, so they are
/// grouped with a short scan rather than a map keyed by three names.
fn push_aggregate_batches(
    points: &mut Vec<AggregatePoint>,
    uom: &str,
    batches: &mut Vec<SeriesBatch>,
) {
    let mut series: Vec<(SeriesKey, Vec<Point>)> = Vec::new();
    for point in points.drain(..).rev() {
        let value = Point {
            timestamp: point.timestamp,
            value: point.value,
        };
        match series
            .iter_mut()
            .find(|(key, _)| key.service == point.service)
        {
            Some((_, values)) => values.push(value),
            None => series.push((
                SeriesKey::new(point.host, point.service, point.metric),
                vec![value],
            )),
        }
    }
    for (key, values) in series {
        let mut batch = SeriesBatch::from_unordered(key, uom.into(), values, Vec::new()).0;
        batch.ds_type = perfpipe_backend::DataSourceType::Gauge;
        batches.push(batch);
    }
}

/// [`push_aggregate_batches`] for the aggregates of many series, as [`Rollups::close_quiet`]
/// emits them (each series' together), with each base series' unit from `unit_of`.
fn push_closed_aggregate_batches(
    closed: Vec<AggregatePoint>,
    mut unit_of: impl FnMut(&SeriesKey) -> String,
    batches: &mut Vec<SeriesBatch>,
) {
    let mut run: Vec<AggregatePoint> = Vec::new();
    let mut closed = closed.into_iter().peekable();
    while let Some(point) = closed.next() {
        let run_ends = closed.peek().is_none_or(|next| {
            next.host != point.host
                || next.metric != point.metric
                || base_of(&next.service) != base_of(&point.service)
        });
        run.push(point);
        if run_ends {
            let first = &run[0];
            let uom = base_of(&first.service)
                .map(|base| {
                    unit_of(&SeriesKey::new(
                        first.host.as_str(),
                        base,
                        first.metric.as_str(),
                    ))
                })
                .unwrap_or_default();
            push_aggregate_batches(&mut run, &uom, batches);
        }
    }
}

/// What a flush feeds the rollups of one queue.
enum RollupFeed {
    /// Every point (the batch's, sorted and without duplicates).
    Whole,
    /// Points after those the rollups hold, sorted, the first of equal times kept.
    Tail(Vec<(i64, f64)>),
    /// None: the rollups hold them all.
    Nothing,
}

/// `points` as `(timestamp, value)` in time order, the first arrived of equal times kept (as
/// [`SeriesBatch::from_unordered`] keeps it).
fn sorted_pairs(points: &[Point]) -> Vec<(i64, f64)> {
    let mut pairs: Vec<(i64, f64)> = points
        .iter()
        .map(|point| (point.timestamp, point.value))
        .collect();
    pairs.sort_by_key(|&(timestamp, _)| timestamp);
    pairs.dedup_by_key(|&mut (timestamp, _)| timestamp);
    pairs
}

/// The service an aggregate service name was made from.
fn base_of(aggregate_service: &str) -> Option<&str> {
    crate::rollup::parse_aggregate_service(aggregate_service).map(|aggregate| aggregate.base)
}

impl Shard {
    fn run(mut self, commands: Receiver<Command>) {
        let tick = (self.settings.max_batch_age / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut last_age_check = Instant::now();
        let mut last_rollup_close = Instant::now();
        loop {
            match commands.recv_timeout(tick) {
                Ok(Command::Points(series, hinted, sequence)) => {
                    let due = self.take(series, hinted, sequence);
                    if !due.is_empty() {
                        self.flush(due, false);
                    }
                }
                Ok(Command::Peek { keys, reply }) => {
                    let _ = reply.send(self.peek(keys));
                }
                Ok(Command::ListQueued(reply)) => {
                    // Flushes that a stalled backend owes are in the catalogue already.
                    let new_series = self
                        .queues
                        .iter()
                        .filter(|(key, _)| !self.catalogue.has_series(key).unwrap_or(false))
                        .filter_map(|(key, queue)| queue.as_series_info(key))
                        .collect();
                    let _ = reply.send(new_series);
                }
                Ok(Command::Flush(ack)) => {
                    let all: Vec<SeriesKey> = self.queues.keys().cloned().collect();
                    self.flush(all, false);
                    let _ = ack.send(());
                }
                Ok(Command::Barrier(ack)) => {
                    if self.rollups.is_some() {
                        self.checkpoints.push(ack);
                        self.checkpoint_rollups();
                    } else {
                        self.add_barrier(ack);
                    }
                }
                Ok(Command::Forget { host, series, done }) => {
                    // Another connection marks the rows deleted next: a lagging row must not
                    // stay so once the series is written again.
                    self.catalogue.write_lagging_rows_again();
                    let _ = done.send(self.forget(&host, series));
                }
                Ok(Command::Pause {
                    hosts,
                    paused,
                    resume,
                }) => {
                    let all: Vec<SeriesKey> = self.queues.keys().cloned().collect();
                    self.flush(all, false);
                    for backend in &mut self.backends {
                        for host in &hosts {
                            backend.forget(host, None);
                        }
                    }
                    let _ = paused.send(());
                    // Held until the guard's sender is dropped (recv then fails).
                    let _ = resume.recv();
                    // A rename moved rows this shard may let lag.
                    self.catalogue.write_lagging_rows_again();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let all: Vec<SeriesKey> = self.queues.keys().cloned().collect();
                    self.flush(all, true);
                    self.settle_stalled_at_shutdown();
                    if let (Some(settings), Some(rollups)) = (&self.settings.rollups, &self.rollups)
                    {
                        if let Err(failure) =
                            settings.save(self.index, rollups, self.taken_sequence)
                        {
                            error!(failure = %format!("{failure:#}"), "rollup state not saved");
                        }
                    }
                    return;
                }
            }
            self.retry_stalled();
            if self
                .checkpoint_retry_at
                .is_some_and(|at| Instant::now() >= at)
            {
                self.checkpoint_rollups();
            }
            if self.rollups.is_some() && last_rollup_close.elapsed() >= ROLLUP_CLOSE_EVERY {
                last_rollup_close = Instant::now();
                self.close_rollups();
            }
            if last_age_check.elapsed() >= tick {
                last_age_check = Instant::now();
                let max_age = self.settings.max_batch_age;
                let hold = self.settings.handoff_hold;
                // One clock read for the whole scan, not one per queue.
                let now = Instant::now();
                let old: Vec<SeriesKey> = self
                    .queues
                    .iter()
                    .filter(|(_, queue)| {
                        let age = now.saturating_duration_since(queue.oldest);
                        age >= max_age && (!queue.hinted || age >= hold)
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                if !old.is_empty() {
                    self.flush(old, false);
                }
                self.pass_barriers();
            }
        }
    }

    /// The points of `keys` not yet in the first backend: queued, or in flushes it still owes.
    fn peek(&self, keys: Vec<(usize, SeriesKey)>) -> Vec<(usize, Vec<Point>)> {
        keys.into_iter()
            .filter_map(|(position, key)| {
                let mut points: Vec<Point> = Vec::new();
                if let Some(stalled) = self.stalled.first() {
                    for (_, batches) in &stalled.flushes {
                        for batch in batches.iter().filter(|batch| batch.key == key) {
                            points.extend_from_slice(&batch.points);
                        }
                    }
                }
                if let Some(queue) = self.queues.get(&key) {
                    points.extend_from_slice(&queue.points);
                }
                (!points.is_empty()).then_some((position, points))
            })
            .collect()
    }

    /// Answers `ack` once every point received so far is written.
    fn add_barrier(&mut self, ack: Sender<()>) {
        if self.queues.is_empty() && self.owed.is_empty() {
            let _ = ack.send(());
        } else {
            self.epoch += 1;
            self.barriers.push((self.epoch, ack));
        }
    }

    /// Saves the rollup state for the barriers waiting in `checkpoints`, then lets them go on
    /// as barriers. A barrier is the write-ahead log's cue to delete segments, and rollup state
    /// lives only in memory between saves, so a segment may go only once a saved state holds
    /// its points: the log replays the rest after a crash.
    ///
    /// Every queue's points are fed to the rollups first ([`Self::aggregate_queued`]; they stay
    /// queued, and the barriers wait for their write as always), so the state holds exactly
    /// the points received so far, that is every request numbered up to `taken_sequence` that
    /// has points in this shard (requests reach a shard in number order); the number is saved
    /// with it. Replay then aggregates only the records numbered above it, and no point is
    /// counted twice or lost. While queues of delivered hints are held (see the module doc)
    /// the checkpoint waits for them, since aggregating them before the hold ends would feed
    /// the rollups the peers' backlogs out of time order; a failed save is tried again every
    /// [`CHECKPOINT_RETRY`], and the segments wait meanwhile. Saving costs time in proportion
    /// to the series (the whole state is written), so a checkpoint is taken at most every
    /// `checkpoint_every` (a barrier in between waits, and so do its segments), and not at
    /// all when no point arrived since the last one (the state saved then holds them all).
    fn checkpoint_rollups(&mut self) {
        self.checkpoint_retry_at = None;
        let (Some(settings), Some(_)) = (self.settings.rollups.clone(), &self.rollups) else {
            for ack in std::mem::take(&mut self.checkpoints) {
                self.add_barrier(ack);
            }
            return;
        };
        if self.checkpoints.is_empty() {
            return;
        }
        if let Some((at, sequence)) = self.last_checkpoint {
            let all_held = self
                .queues
                .values()
                .all(|queue| queue.aggregated == queue.points.len());
            if sequence == self.taken_sequence && all_held {
                for ack in std::mem::take(&mut self.checkpoints) {
                    self.add_barrier(ack);
                }
                return;
            }
            if at.elapsed() < settings.checkpoint_every {
                self.checkpoint_retry_at = Some(at + settings.checkpoint_every);
                return;
            }
        }
        if self.queues.values().any(|queue| queue.hinted) {
            self.checkpoint_retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
            return;
        }
        self.aggregate_queued();
        let rollups = self.rollups.as_ref().expect("checked above");
        if let Err(failure) = settings.save(self.index, rollups, self.taken_sequence) {
            error!(
                failure = %format!("{failure:#}"),
                "rollup state not saved: the write-ahead log keeps its segments until it is"
            );
            self.checkpoint_retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
            return;
        }
        self.last_checkpoint = Some((Instant::now(), self.taken_sequence));
        for ack in std::mem::take(&mut self.checkpoints) {
            self.add_barrier(ack);
        }
    }

    /// Answers the barriers that no queue still waiting to be written began before.
    fn pass_barriers(&mut self) {
        if self.barriers.is_empty() {
            return;
        }
        let oldest = self
            .queues
            .values()
            .map(|queue| queue.epoch)
            .chain(self.owed.values().map(|owed| owed.epoch))
            .min();
        let passed = self
            .barriers
            .iter()
            .take_while(|(epoch, _)| oldest.is_none_or(|oldest| oldest >= *epoch))
            .count();
        for (_, ack) in self.barriers.drain(..passed) {
            let _ = ack.send(());
        }
    }

    /// Drops the queues of `host` (or of its one series) and has the backends forget it;
    /// returns where the backends keep its data.
    fn forget(&mut self, host: &str, series: Option<(String, String)>) -> Vec<std::path::PathBuf> {
        let series_ref = series.as_ref().map(|(s, m)| (s.as_str(), m.as_str()));
        let matches = |key: &SeriesKey| {
            key.host == host
                && series_ref
                    .is_none_or(|(service, metric)| key.service == service && key.metric == metric)
        };
        let mut dropped = 0;
        self.queues.retain(|key, queue| {
            let keep = !matches(key);
            if !keep {
                dropped += queue.points.len();
            }
            keep
        });
        self.queued.fetch_sub(dropped, Ordering::AcqRel);
        // Flushes a stalled backend still owes lose the forgotten series too, or they would be
        // written back once the store returns. Their points stay counted in their flush, which
        // completes (and releases its count) as before.
        for stalled in &mut self.stalled {
            for (_, batches) in stalled.flushes.iter_mut() {
                if batches.iter().any(|batch| matches(&batch.key)) {
                    let kept: Vec<SeriesBatch> = batches
                        .iter()
                        .filter(|batch| !matches(&batch.key))
                        .cloned()
                        .collect();
                    *batches = Arc::new(kept);
                }
            }
        }
        let mut paths = Vec::new();
        for backend in &mut self.backends {
            backend.forget(host, series_ref);
            if let Err(failure) = backend.delete_held(host, series_ref) {
                warn!(backend = backend.name(), %failure, host, "could not delete what the store holds");
            }
            match backend.stored_at(host, series_ref) {
                Ok(Some(path)) => paths.push(path),
                Ok(None) => {}
                Err(failure) => {
                    warn!(backend = backend.name(), %failure, host, "no path to delete")
                }
            }
        }
        paths
    }

    /// Queues `series`; returns the series that reached `max_batch_points`.
    fn take(&mut self, series: Vec<SeriesPoints>, hinted: bool, sequence: u64) -> Vec<SeriesKey> {
        self.taken_sequence = self.taken_sequence.max(sequence);
        // Replayed points that the restored rollup state already holds.
        let held = sequence != 0 && sequence <= self.rollups_cover;
        // Only backlogs that waited for this node while it was down are worth holding; what
        // a front node keeps sending through its hint log afterwards (under steady load, until
        // a pause empties the log) is written as usual.
        let hinted = hinted && self.started.elapsed() < self.settings.handoff_hold;
        let mut due = Vec::new();
        for series in series {
            let SeriesPoints {
                key,
                uom,
                points,
                levels,
            } = series;
            let new_queue = |epoch| SeriesQueue {
                uom: Name::default(),
                points: Vec::new(),
                levels: Vec::new(),
                oldest: Instant::now(),
                epoch,
                hinted,
                aggregated: 0,
            };
            // One lookup: a series already queued is found by reference, a new one moves its
            // key into the map; either way its key is copied only when the queue is due.
            let max_points = self.settings.max_batch_points;
            let mixed = match self.queues.entry(key) {
                Entry::Occupied(mut queued)
                    if !held || queued.get().aggregated == queued.get().points.len() =>
                {
                    let queue = queued.get_mut();
                    queue.hinted |= hinted;
                    let is_due = queue.add(uom, points, levels, max_points);
                    if held {
                        queue.aggregated = queue.points.len();
                    }
                    if is_due {
                        due.push(queued.key().clone());
                    }
                    continue;
                }
                Entry::Occupied(queued) => queued.key().clone(),
                Entry::Vacant(vacant) => {
                    let mut queue = new_queue(self.epoch);
                    let is_due = queue.add(uom, points, levels, max_points);
                    if held {
                        queue.aggregated = queue.points.len();
                    }
                    if is_due {
                        due.push(vacant.key().clone());
                    }
                    vacant.insert(queue);
                    continue;
                }
            };
            // The rollups hold the first points of a queue: held points do not follow points
            // still to be aggregated (this happens only during replay), so the queue is
            // written first and the held points start a new one.
            self.flush(vec![mixed.clone()], false);
            let mut queue = new_queue(self.epoch);
            if queue.add(uom, points, levels, max_points) {
                due.push(mixed.clone());
            }
            queue.aggregated = queue.points.len();
            self.queues.insert(mixed, queue);
        }
        due
    }

    /// Feeds the rollups every queued point they do not hold yet and writes the aggregates
    /// that closes, leaving the points queued for their flush. A checkpoint's state then holds
    /// every point received without a write of every series' file ahead of its time: an extra
    /// pass over every file once a checkpoint (a minute), which cost more than the rollups
    /// themselves at a million points a second (docs/performance.md).
    fn aggregate_queued(&mut self) {
        let Some(rollups) = &mut self.rollups else {
            return;
        };
        rollups.set_feed_time(perfpipe_backend::unix_now());
        let mut aggregates = Vec::new();
        let mut batches = Vec::new();
        for (key, queue) in &mut self.queues {
            if queue.aggregated == queue.points.len() {
                continue;
            }
            let points = sorted_pairs(&queue.points[queue.aggregated..]);
            rollups.add_into(
                &key.host,
                &key.service,
                &key.metric,
                &points,
                &mut aggregates,
            );
            push_aggregate_batches(&mut aggregates, &queue.uom, &mut batches);
            queue.aggregated = queue.points.len();
        }
        // Aggregates are not in the write-ahead log: they hold no barrier.
        self.write(batches, 0, 0, u64::MAX, false);
    }

    /// Closes the ended periods of quiet series and writes their aggregates.
    fn close_rollups(&mut self) {
        let Some(rollups) = &mut self.rollups else {
            return;
        };
        let now = perfpipe_backend::unix_now();
        let closed = rollups.close_quiet(now, now - ROLLUP_QUIET);
        // A quiet series has been written: the catalogue has its unit.
        let catalogue = &self.catalogue;
        let unit_of = |base: &SeriesKey| {
            catalogue
                .series(base)
                .ok()
                .flatten()
                .map(|info| info.uom)
                .unwrap_or_default()
        };
        let mut batches = Vec::new();
        push_closed_aggregate_batches(closed, unit_of, &mut batches);
        // Aggregates are not in the write-ahead log: they hold no barrier.
        self.write(batches, 0, 0, u64::MAX, false);
    }

    /// Writes the queues of `keys` to every backend and the catalogue.
    fn flush(&mut self, keys: Vec<SeriesKey>, shutting_down: bool) {
        let mut taken = 0usize;
        let mut epoch = u64::MAX;
        let mut batches = Vec::with_capacity(keys.len());
        let mut feeds = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(queue) = self.queues.remove(&key) else {
                continue;
            };
            feeds.push(match queue.aggregated {
                0 => RollupFeed::Whole,
                held if held == queue.points.len() => RollupFeed::Nothing,
                held => RollupFeed::Tail(sorted_pairs(&queue.points[held..])),
            });
            taken += queue.points.len();
            epoch = epoch.min(queue.epoch);
            let (batch, duplicates) =
                SeriesBatch::from_unordered(key, queue.uom, queue.points, queue.levels);
            self.counters
                .duplicates
                .fetch_add(duplicates as u64, Ordering::Relaxed);
            batches.push(batch);
        }
        if batches.is_empty() {
            return;
        }
        let raw_batches = batches.len();
        if let Some(rollups) = &mut self.rollups {
            rollups.set_feed_time(perfpipe_backend::unix_now());
            let mut aggregates = Vec::new();
            let mut points: Vec<(i64, f64)> = Vec::new();
            // Aggregate batches go straight after the raw ones: gathered apart and then moved
            // over, they grew a vector of whole batches a push at a time.
            for (index, feed) in feeds.iter().enumerate() {
                let batch = &batches[index];
                let points = match feed {
                    RollupFeed::Whole => {
                        batch.copy_pairs_into(&mut points);
                        &points
                    }
                    RollupFeed::Tail(tail) => tail,
                    RollupFeed::Nothing => continue,
                };
                let key = &batch.key;
                rollups.add_into(
                    &key.host,
                    &key.service,
                    &key.metric,
                    points,
                    &mut aggregates,
                );
                if !aggregates.is_empty() {
                    let uom = batch.uom.clone();
                    push_aggregate_batches(&mut aggregates, &uom, &mut batches);
                }
            }
        }
        self.write(batches, raw_batches, taken, epoch, shutting_down);
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes `batches` (holding `points` queued points whose oldest queue began in `epoch`;
    /// those from `aggregates_from` on are rollup aggregates) to every backend, the last-values
    /// cache and the catalogue. A backend whose store fails as a whole, or that still owes
    /// earlier flushes, keeps these for later ([`Stalled`]) and the others go on; the points
    /// stay counted as queued until every backend has them.
    fn write(
        &mut self,
        batches: Vec<SeriesBatch>,
        aggregates_from: usize,
        points: usize,
        epoch: u64,
        shutting_down: bool,
    ) {
        if batches.is_empty() {
            return;
        }
        let batches = Arc::new(batches);
        let flush = self.next_flush;
        self.next_flush += 1;
        let mut backends_left = 0;
        for (index, backend) in self.backends.iter_mut().enumerate() {
            let stalled = &mut self.stalled[index];
            if !stalled.flushes.is_empty() {
                stalled.flushes.push_back((flush, batches.clone()));
                backends_left += 1;
                continue;
            }
            let counters = &self.counters.backends[index];
            let giving_up = shutting_down || self.stopping.load(Ordering::Acquire);
            if let Err(failure) = write_once(
                backend.as_mut(),
                &batches,
                counters,
                giving_up,
                &self.counters.abandoned,
            ) {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                warn!(
                    backend = backend.name(),
                    %failure,
                    "store failed: its writes wait and are retried, the other stores go on"
                );
                stalled.flushes.push_back((flush, batches.clone()));
                stalled.backoff = FIRST_BACKOFF;
                stalled.retry_at = Instant::now() + FIRST_BACKOFF;
                backends_left += 1;
            }
        }
        let last_values = self.settings.last_values.as_deref();
        // Sized once: a flush may hold hundreds of thousands of series (a backfill), and
        // growing by doubling moved every update made so far into fresh memory each time.
        let mut updates: Vec<SeriesUpdate> = Vec::with_capacity(batches.len());
        updates.extend(batches.iter().enumerate().filter_map(|(index, batch)| {
            let cached = last_values.is_some_and(|cache| cache.record(&batch.key, &batch.points));
            let mut update = SeriesUpdate::from_batch(batch)?;
            // The listings read an aggregate's newest value from the last-values cache, so its
            // row may trail only where the cache keeps the series.
            if index >= aggregates_from && cached {
                update.may_lag = AGGREGATE_ROW_LAG;
            }
            Some(update)
        }));
        if let Err(failure) = self.catalogue.record(&updates) {
            error!(%failure, series = updates.len(), "catalogue update failed");
        }
        if backends_left == 0 {
            self.queued.fetch_sub(points, Ordering::AcqRel);
        } else {
            self.owed.insert(
                flush,
                OwedFlush {
                    backends_left,
                    points,
                    epoch,
                },
            );
        }
    }

    /// Tries again, in order, the flushes of backends whose retry time has come.
    fn retry_stalled(&mut self) {
        let now = Instant::now();
        for index in 0..self.backends.len() {
            if self.stalled[index].flushes.is_empty() || self.stalled[index].retry_at > now {
                continue;
            }
            while let Some((flush, batches)) = self.stalled[index].flushes.front().cloned() {
                let counters = &self.counters.backends[index];
                let backend = self.backends[index].as_mut();
                match write_once(backend, &batches, counters, false, &self.counters.abandoned) {
                    Ok(()) => {
                        self.stalled[index].flushes.pop_front();
                        self.stalled[index].backoff = FIRST_BACKOFF;
                        if self.stalled[index].flushes.is_empty() {
                            info!(
                                backend = backend.name(),
                                "store back: its waiting writes are done"
                            );
                        }
                        self.settle(flush);
                    }
                    Err(failure) => {
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        let stalled = &mut self.stalled[index];
                        stalled.backoff = (stalled.backoff * 2).min(MAX_BACKOFF);
                        stalled.retry_at = Instant::now() + stalled.backoff;
                        tracing::debug!(backend = backend.name(), %failure, retry_in = ?stalled.backoff, "store still failing");
                        break;
                    }
                }
            }
        }
    }

    /// One backend has written flush `flush`: once all have, its points leave the queue count.
    fn settle(&mut self, flush: u64) {
        if let Some(owed) = self.owed.get_mut(&flush) {
            owed.backends_left -= 1;
            if owed.backends_left == 0 {
                self.queued.fetch_sub(owed.points, Ordering::AcqRel);
                self.owed.remove(&flush);
            }
        }
    }

    /// At shutdown: each stalled backend's flushes are tried three more times, then given up
    /// (counted as failed and abandoned: they stay in the write-ahead log for the next start).
    fn settle_stalled_at_shutdown(&mut self) {
        for index in 0..self.backends.len() {
            let mut attempts = 0;
            while let Some((flush, batches)) = self.stalled[index].flushes.front().cloned() {
                let counters = &self.counters.backends[index];
                let backend = self.backends[index].as_mut();
                match write_once(backend, &batches, counters, true, &self.counters.abandoned) {
                    Ok(()) => {
                        self.stalled[index].flushes.pop_front();
                        self.settle(flush);
                    }
                    Err(failure) if attempts >= 2 => {
                        let points: usize = self.stalled[index]
                            .flushes
                            .drain(..)
                            .map(|(_, batches)| {
                                batches
                                    .iter()
                                    .map(|batch| batch.points.len())
                                    .sum::<usize>()
                            })
                            .sum();
                        counters.failed.fetch_add(points as u64, Ordering::Relaxed);
                        self.counters
                            .abandoned
                            .fetch_add(points as u64, Ordering::AcqRel);
                        error!(backend = backend.name(), %failure, points, "giving up at shutdown");
                    }
                    Err(_) => {
                        attempts += 1;
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(FIRST_BACKOFF * (1 << attempts));
                    }
                }
            }
        }
    }
}

/// One backend call for the batches: `Err` when the call fails as a whole (the store is down;
/// the caller keeps the batches for a later try). Series that failed because the disk is full
/// are retried alone, with backoff, until space returns (unless `giving_up`): writes to that
/// backend pause (one log line when they pause, one when they resume), and meanwhile the
/// queues fill and the front end answers 503. Other per-series failures are counted and logged.
fn write_once(
    backend: &mut dyn Backend,
    batches: &[SeriesBatch],
    counters: &BackendCounters,
    giving_up: bool,
    abandoned: &AtomicU64,
) -> Result<(), perfpipe_backend::BackendError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    // The series still to write once the disk had no room for them.
    let mut disk_full: Option<Vec<SeriesBatch>> = None;
    loop {
        attempts += 1;
        let give_up_now = giving_up && attempts >= 3;
        let current = disk_full.as_deref().unwrap_or(batches);
        let report = backend.write(current)?;
        counters
            .written
            .fetch_add(report.written, Ordering::Relaxed);
        counters.late.fetch_add(report.late, Ordering::Relaxed);
        let points_of = |key: &SeriesKey| {
            current
                .iter()
                .find(|batch| &batch.key == key)
                .map_or(0, |batch| batch.points.len())
        };
        let mut no_room = Vec::new();
        for (key, failure) in &report.failed {
            if failure.is_disk_full() && !give_up_now {
                no_room.push(key);
                continue;
            }
            let points = points_of(key);
            counters.failed.fetch_add(points as u64, Ordering::Relaxed);
            if failure.is_disk_full() {
                abandoned.fetch_add(points as u64, Ordering::AcqRel);
            }
            warn!(backend = backend.name(), series = %key, %failure, "series not written");
        }
        if no_room.is_empty() {
            if disk_full.is_some() {
                info!(backend = backend.name(), "disk space back: writes resumed");
            }
            return Ok(());
        }
        if disk_full.is_none() {
            error!(
                backend = backend.name(),
                series = no_room.len(),
                "disk full: writes paused until space returns"
            );
        }
        counters.retries.fetch_add(1, Ordering::Relaxed);
        let retry: Vec<SeriesBatch> = current
            .iter()
            .filter(|batch| no_room.contains(&&batch.key))
            .cloned()
            .collect();
        disk_full = Some(retry);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::RollupRule;

    fn aggregate(host: &str, service: &str, timestamp: i64, value: f64) -> AggregatePoint {
        AggregatePoint {
            host: host.into(),
            service: service.into(),
            metric: "time".into(),
            timestamp,
            value,
        }
    }

    #[test]
    fn a_series_shard_is_fnv1a_of_its_joined_names() {
        // Rollup state files are per shard: the assignment must not move between versions.
        for (host, service, metric) in [
            ("web-01", "HTTP", "time"),
            ("", "", ""),
            ("h", "s/H/avg", "é"),
        ] {
            let joined = format!("{host}\0{service}\0{metric}");
            let expected = crate::routing::fnv1a_64(joined.as_bytes());
            for shards in [1, 2, 3, 8] {
                let key = SeriesKey::new(host, service, metric);
                assert_eq!(shard_of(&key, shards), (expected % shards as u64) as usize);
            }
        }
        assert_eq!(
            shard_of(&SeriesKey::new("web-01", "HTTP", "time"), 1 << 20),
            0xcac0e
        );
    }

    #[test]
    fn aggregate_batches_keep_each_periods_last_emission_and_carry_the_base_unit_as_gauges() {
        let closed = vec![
            aggregate("web", "http/H/avg", 3_600, 1.0),
            aggregate("web", "http/H/max", 3_600, 2.0),
            // A late point corrected the hour: emitted again, the later values are right.
            aggregate("web", "http/H/avg", 3_600, 1.5),
            aggregate("web", "http/H/max", 3_600, 4.0),
            aggregate("web", "http/H/avg", 7_200, 3.0),
            aggregate("db", "http/H/avg", 3_600, 9.0),
            aggregate("db", "disk/H/avg", 3_600, 8.0),
        ];
        let mut asked = Vec::new();
        let mut batches = Vec::new();
        push_closed_aggregate_batches(
            closed,
            |base| {
                asked.push(base.to_string());
                format!("{}-unit", base.host)
            },
            &mut batches,
        );
        /// A batch as `(series, unit, points)`.
        type Written = (String, String, Vec<(i64, f64)>);
        let mut got: Vec<Written> = batches
            .iter()
            .map(|batch| {
                assert_eq!(batch.ds_type, perfpipe_backend::DataSourceType::Gauge);
                let mut pairs = Vec::new();
                batch.copy_pairs_into(&mut pairs);
                (batch.key.to_string(), batch.uom.to_string(), pairs)
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want = [
            ("db::disk/H/avg::time", "db-unit", vec![(3_600, 8.0)]),
            ("db::http/H/avg::time", "db-unit", vec![(3_600, 9.0)]),
            (
                "web::http/H/avg::time",
                "web-unit",
                vec![(3_600, 1.5), (7_200, 3.0)],
            ),
            ("web::http/H/max::time", "web-unit", vec![(3_600, 4.0)]),
        ];
        let want: Vec<Written> = want
            .into_iter()
            .map(|(key, uom, pairs)| (key.to_string(), uom.to_string(), pairs))
            .collect();
        assert_eq!(got, want);
        asked.sort();
        assert_eq!(
            asked,
            ["db::disk::time", "db::http::time", "web::http::time"]
        );
    }

    fn settings(state_dir: &std::path::Path) -> RollupSettings {
        let rule: RollupRule = serde_json::from_value(serde_json::json!({"match": "*"})).unwrap();
        RollupSettings {
            rules: Arc::new(RollupRules::new(vec![rule]).unwrap()),
            state_dir: state_dir.to_owned(),
            checkpoint_every: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_json_rollup_state_of_an_earlier_version_is_read_then_replaced_by_the_binary_one() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut rollups = Rollups::new(settings.rules.clone());
        let hour = 1_717_408_800; // 2024-06-03T10:00:00Z, a Monday
        rollups.add("web", "http", "time", &[(hour, 1.0), (hour + 60, 3.0)]);
        let mut json = serde_json::to_value(rollups.snapshot()).unwrap();
        json["covers_sequence"] = 41.into();
        std::fs::write(dir.path().join("rollups-1.json"), json.to_string()).unwrap();

        let (mut restored, covers) = settings.open(1).unwrap();
        assert_eq!(covers, 41);
        assert_eq!(restored.snapshot(), rollups.snapshot());
        settings.save(1, &restored, 42).unwrap();
        assert!(!dir.path().join("rollups-1.json").exists());
        assert!(dir.path().join("rollups-1.state").exists());

        let (mut reopened, covers) = settings.open(1).unwrap();
        assert_eq!(covers, 42);
        let next_hour = [(hour + 3_600, 5.0)];
        let want = restored.add("web", "http", "time", &next_hour);
        assert_eq!(reopened.add("web", "http", "time", &next_hour), want);
        assert_eq!(
            want.len(),
            3,
            "the hour closed with avg, max, min: {want:?}"
        );
        assert_eq!(want[0].value, 2.0);

        std::fs::write(
            dir.path().join("rollups-1.state"),
            b"pprollup\x02\0\0\0 cut",
        )
        .unwrap();
        let refused = settings.open(1).unwrap_err();
        assert!(
            format!("{refused:#}").contains("rollups-1.state"),
            "{refused:#}"
        );
    }
}
