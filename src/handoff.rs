//! Hinted handoff: points for a peer that cannot take them now (down, or answering 5xx) are
//! kept in a log of their own on this node, and the write is acknowledged; they are delivered
//! in order when the peer is back.
//!
//! Each peer has a [`Wal`] under `<data_dir>/hints/<encoded peer URL>/` whose segments are
//! sealed after a quarter of a second. Its reaper delivers each sealed segment's records to the peer in
//! order (`POST /internal/v1/points?hinted=1`, consecutive records together up to about 20,000
//! points a request, retried with backoff until the peer has logged them),
//! records how far it got in `<segment>.sent` so that a restart resumes there rather than
//! sending a record twice, and deletes the segment once all of it is delivered. While a peer
//! has hints on disk, new points for it are appended behind them instead of being sent
//! directly, so a client's points reach their owner in the order the client sent them. A
//! record the peer refuses with a 4xx can never be delivered: it is logged as an error,
//! counted, and passed over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, ForwardError};
use crate::config::Config;
use crate::enqueuer::SeriesPoints;
use crate::wal::{self, Wal, WalError, WalSettings};

/// How long a hint segment stays open for appends before it is sealed for delivery.
const SEGMENT_AGE: Duration = Duration::from_millis(250);
/// Longest wait between delivery attempts to a peer that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Points sent to a peer in one delivery request, about (whole records are sent).
const DELIVERY_POINTS: usize = 20_000;

/// How sending points to a peer ended.
enum Sent {
    Delivered,
    /// Refused for good (a 4xx): counted, logged, passed over.
    Refused,
    /// The node is stopping; not sent.
    Stopped,
}

/// The hint logs of every peer.
pub struct Handoff {
    /// By node index; `None` for this node.
    peers: Vec<Option<PeerHints>>,
    stopping: Arc<AtomicBool>,
}

struct PeerHints {
    url: String,
    wal: Wal,
    counters: Arc<DeliveryCounters>,
}

/// What was delivered to one peer.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Records (each the points of one forwarding request) delivered.
    pub delivered: AtomicU64,
    /// Records the peer refused with a 4xx and that were passed over.
    pub refused: AtomicU64,
}

/// One peer's backlog, for `/status` and `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backlog {
    pub peer: String,
    /// Hint segments on disk (the one still taking appends included).
    pub segments: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub refused: u64,
}

impl Handoff {
    /// Opens every peer's hint log; what earlier runs left is delivered first.
    pub fn open(config: &Config) -> anyhow::Result<Handoff> {
        let cluster = Arc::new(Cluster::new(config)?);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut peers: Vec<Option<PeerHints>> = Vec::new();
        let nodes = config.cluster.nodes.len();
        for index in 0..nodes {
            if !cluster.peers().any(|peer| peer == index) {
                peers.push(None);
                continue;
            }
            let url = cluster.node_url(index).to_owned();
            let dir = hints_dir(config, &url)?;
            let replayed =
                wal::replay(&dir, |_, _| {}).with_context(|| format!("reading hints for {url}"))?;
            if replayed.points > 0 {
                info!(peer = %url, points = replayed.points, "hinted points left to deliver");
            }
            let counters = Arc::new(DeliveryCounters::default());
            let mut deliverer = Deliverer {
                cluster: cluster.clone(),
                index,
                url: url.clone(),
                stopping: stopping.clone(),
                counters: counters.clone(),
            };
            let settings = WalSettings {
                dir,
                sync_interval: config.wal.sync_interval,
                segment_size: config.wal.segment_size.as_u64(),
                segment_age: SEGMENT_AGE,
            };
            let wal = Wal::start(
                settings,
                replayed,
                Box::new(move |segments| deliverer.deliver(segments)),
            )?;
            peers.push(Some(PeerHints { url, wal, counters }));
        }
        Ok(Handoff { peers, stopping })
    }

    /// Whether points for `peer` are waiting here: new ones must queue behind them.
    pub fn has_backlog(&self, peer: usize) -> bool {
        self.peer(peer)
            .is_some_and(|hints| hints.wal.has_segments())
    }

    /// Logs `series` for `peer`; resolves once synced, after which they will be delivered.
    pub async fn hint(&self, peer: usize, series: &[SeriesPoints]) -> Result<(), WalError> {
        let Some(hints) = self.peer(peer) else {
            return Err(WalError::Stopped);
        };
        hints.wal.append(wal::encode(series)).await
    }

    /// Every peer's backlog.
    pub fn backlog(&self) -> Vec<Backlog> {
        self.peers
            .iter()
            .flatten()
            .map(|hints| {
                let wal = hints.wal.counters();
                Backlog {
                    peer: hints.url.clone(),
                    segments: wal.segments.load(Ordering::Relaxed),
                    bytes: wal.bytes_on_disk.load(Ordering::Relaxed),
                    delivered: hints.counters.delivered.load(Ordering::Relaxed),
                    refused: hints.counters.refused.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Stops taking hints and stops delivering (what is left is delivered after the next
    /// start).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for hints in self.peers.iter().flatten() {
            hints.wal.stop();
        }
    }

    fn peer(&self, peer: usize) -> Option<&PeerHints> {
        self.peers.get(peer).and_then(Option::as_ref)
    }
}

/// `<data_dir>/hints/<peer URL, encoded as the storage layouts encode names>`.
fn hints_dir(config: &Config, url: &str) -> anyhow::Result<PathBuf> {
    let name = perfpipe_backend::encode_name(url, 0)
        .with_context(|| format!("peer URL {url:?} as a directory name"))?;
    Ok(config.data_dir.join("hints").join(name))
}

/// Delivers one peer's sealed hint segments.
struct Deliverer {
    cluster: Arc<Cluster>,
    index: usize,
    url: String,
    stopping: Arc<AtomicBool>,
    counters: Arc<DeliveryCounters>,
}

impl Deliverer {
    /// Delivers every record of `segments` in order, deleting each segment once done; `false`
    /// when the node stops first.
    fn deliver(&mut self, segments: &[PathBuf]) -> bool {
        for segment in segments {
            match self.deliver_segment(segment) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(failure) => {
                    // Unreadable here (not a segment, a record that does not decode, a disk
                    // error): set aside under a name the log never reads or deletes, for a
                    // person to look at, rather than lost or retried forever.
                    let aside = segment.with_extension("undelivered");
                    error!(failure = %format!("{failure:#}"), aside = %aside.display(), "hint segment not delivered; set aside");
                    let _ = std::fs::rename(segment, &aside);
                }
            }
        }
        true
    }

    fn deliver_segment(&mut self, segment: &Path) -> anyhow::Result<bool> {
        let bytes =
            std::fs::read(segment).with_context(|| format!("reading {}", segment.display()))?;
        let cursor = segment.with_extension("sent");
        let from = std::fs::read_to_string(&cursor)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let records = wal::records_from(&bytes, from)
            .with_context(|| format!("{} is not a log segment", segment.display()))?;
        // Consecutive records go out together, up to DELIVERY_POINTS points a request: a
        // backlog arrives in seconds rather than at one round trip (and one log sync on the
        // peer) per record, so the peer's hold (`enqueuer.handoff_hold`) covers all of it.
        let mut chunk: Vec<SeriesPoints> = Vec::new();
        let mut chunk_records: Vec<&[u8]> = Vec::new();
        let mut chunk_points = 0;
        let count = records.len();
        for (position, (payload, next)) in records.into_iter().enumerate() {
            let Some(series) = wal::decode(payload) else {
                anyhow::bail!("{}: a record that does not decode", segment.display());
            };
            chunk_points += series.iter().map(|one| one.points.len()).sum::<usize>();
            chunk.extend(series);
            chunk_records.push(payload);
            if chunk_points < DELIVERY_POINTS && position + 1 < count {
                continue;
            }
            let delivered = match self.send(&chunk) {
                Sent::Delivered => {
                    self.counters
                        .delivered
                        .fetch_add(chunk_records.len() as u64, Ordering::Relaxed);
                    true
                }
                // One bad record must not take the others with it: one by one, so that only
                // the one the peer refuses is passed over.
                Sent::Refused if chunk_records.len() > 1 => chunk_records.iter().all(|record| {
                    let series = wal::decode(record).expect("decoded above");
                    match self.send(&series) {
                        Sent::Delivered => {
                            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                            true
                        }
                        Sent::Refused => {
                            self.counters.refused.fetch_add(1, Ordering::Relaxed);
                            true
                        }
                        Sent::Stopped => false,
                    }
                }),
                Sent::Refused => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Sent::Stopped => false,
            };
            if !delivered {
                return Ok(false);
            }
            std::fs::write(&cursor, next.to_string())
                .with_context(|| format!("writing {}", cursor.display()))?;
            chunk.clear();
            chunk_records.clear();
            chunk_points = 0;
        }
        std::fs::remove_file(segment).with_context(|| format!("deleting {}", segment.display()))?;
        let _ = std::fs::remove_file(&cursor);
        Ok(true)
    }

    /// Sends points until the peer takes them (or refuses them for good).
    fn send(&mut self, series: &[SeriesPoints]) -> Sent {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Sent::Stopped;
            }
            match self.cluster.forward(self.index, series, true) {
                Ok(()) => return Sent::Delivered,
                Err(refused @ ForwardError::Refused { .. }) => {
                    error!(%refused, "hinted points refused by their owner");
                    return Sent::Refused;
                }
                Err(unreachable) => {
                    warn!(peer = %self.url, %unreachable, retry_in = ?backoff, "hinted points not delivered yet");
                    let until = std::time::Instant::now() + backoff;
                    while std::time::Instant::now() < until {
                        if self.stopping.load(Ordering::Acquire) {
                            return Sent::Stopped;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
