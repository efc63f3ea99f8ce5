//! The cache manager's peers: who owns a plugin item, which peers are up, and the calls to
//! them.
//!
//! The peers are `cache.peer_nodes` (default `cluster.nodes`), this node being the entry equal
//! to `cluster.self`. An item's owner is `routing::owner_of_item` over that list. A peer that
//! does not answer a request within `peer_connection_timeout` is marked down (`deactivated` =
//! the epoch second it was marked) and no request waits for it again until a probe, once
//! `peer_refresh_time` has passed, finds it answering; while it is down its items go to the next node in
//! list order that is up ([`Peers::route`]), which is also where the state manager keeps its
//! copy of an item ([`Peers::next_up_after`]). Calls carry the shared secret in
//! [`PEER_HEADER`]; a node answers a call bearing it from its own stores and never forwards it
//! again, so an item is at most one hop away.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::Value;

use crate::config::Config;
use crate::routing::owner_of_item;

/// Marks a call between peers; its value is `cache.peer_secret`.
pub const PEER_HEADER: &str = "x-perfpipe-peer";
/// Marks a state manager call that reads or writes the copy kept for the owner.
pub const REPLICA_HEADER: &str = "x-perfpipe-replica";

/// Where a request for an item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This node answers from its own stores.
    Local,
    /// The peer at this index in the list.
    Peer(usize),
}

/// A call to a peer failed: the peer is now marked down.
#[derive(Debug, thiserror::Error)]
#[error("cache peer {url} did not answer: {reason}")]
pub struct PeerDown {
    pub url: String,
    pub reason: String,
}

#[derive(Debug, Default, Clone)]
struct PeerHealth {
    /// The peer's `ref`, once a probe has read it.
    node_ref: Option<String>,
    /// When it was marked down (epoch seconds), or `None` while up.
    deactivated: Option<u64>,
    /// When it was marked down, for the refresh period.
    down_at: Option<Instant>,
}

/// How cache peers are called over HTTPS, as the cluster calls its peers (`[tls]`): their
/// certificates checked against `peer_ca` (only), and this node's own certificate presented
/// when nodes require client certificates (`client_ca`). Plain `http://` peers are unaffected.
fn peer_tls(
    mut builder: reqwest::ClientBuilder,
    config: &Config,
) -> anyhow::Result<reqwest::ClientBuilder> {
    use anyhow::Context as _;
    let tls = &config.tls;
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    builder = builder.use_rustls_tls();
    if let Some(ca) = &tls.peer_ca {
        let roots = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .with_context(|| format!("certificates in {}", ca.display()))?;
        anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
        builder = builder.tls_built_in_root_certs(false);
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    if tls.client_ca.is_some() {
        let mut identity = read(&tls.cert)?;
        identity.push(b'\n');
        identity.extend(read(&tls.key)?);
        builder = builder.identity(
            reqwest::Identity::from_pem(&identity)
                .with_context(|| format!("tls.cert {} and tls.key", tls.cert.display()))?,
        );
    }
    Ok(builder)
}

/// This node's view of its cache peers.
pub struct Peers {
    nodes: Vec<String>,
    self_index: usize,
    health: Vec<Mutex<PeerHealth>>,
    client: reqwest::Client,
    secret: String,
    connection_timeout: Duration,
    refresh_time: Duration,
}

impl Peers {
    /// The peers of `config`; a single node (no peers listed) owns every item.
    pub fn new(config: &Config) -> anyhow::Result<Peers> {
        let listed = if config.cache.peer_nodes.is_empty() {
            &config.cluster.nodes
        } else {
            &config.cache.peer_nodes
        };
        let nodes: Vec<String> = listed
            .iter()
            .map(|node| node.trim_end_matches('/').to_owned())
            .collect();
        let self_index = if nodes.len() <= 1 {
            0
        } else {
            let me = config.cluster.self_node.trim_end_matches('/');
            nodes.iter().position(|node| node == me).ok_or_else(|| {
                anyhow::anyhow!(
                    "cluster.self = {:?} is not one of the cache peers {nodes:?}",
                    config.cluster.self_node
                )
            })?
        };
        if nodes.len() > 1 && config.cache.peer_secret.is_empty() {
            tracing::warn!(
                "cache.peer_secret is empty: calls between cache peers are not authenticated"
            );
        }
        let client = peer_tls(
            reqwest::Client::builder()
                .connect_timeout(config.cache.peer_connection_timeout)
                .pool_idle_timeout(Duration::from_secs(60)),
            config,
        )?
        .build()?;
        Ok(Peers {
            health: nodes.iter().map(|_| Mutex::default()).collect(),
            nodes,
            self_index,
            client,
            secret: config.cache.peer_secret.clone(),
            connection_timeout: config.cache.peer_connection_timeout,
            refresh_time: config.cache.peer_refresh_time,
        })
    }

    /// How many nodes the cache has (1 when this node is alone).
    pub fn count(&self) -> usize {
        self.nodes.len().max(1)
    }

    /// Whether a request's peer header is this cluster's: `None` when it carries none (a
    /// client), `Some(false)` when it carries a wrong one.
    pub fn authenticates(&self, header: Option<&[u8]>) -> Option<bool> {
        header.map(|given| constant_time_eq(given, self.secret.as_bytes()))
    }

    /// Where a request for `(namespace, key)` goes: its owner, or while the owner is down the
    /// next node after it that is up (this node always counts as up).
    pub fn route(&self, namespace: &str, key: &str) -> Route {
        if self.nodes.len() <= 1 {
            return Route::Local;
        }
        let owner = owner_of_item(namespace, key, self.nodes.len());
        self.first_up_from(owner)
    }

    /// The node after `index` in list order that is up and is not `index`, for the state
    /// manager's copy; `None` when no other node is up.
    pub fn next_up_after(&self, index: Route) -> Option<Route> {
        if self.nodes.len() <= 1 {
            return None;
        }
        let from = match index {
            Route::Local => self.self_index,
            Route::Peer(index) => index,
        };
        let next = self.first_up_from((from + 1) % self.nodes.len());
        (next != index).then_some(next)
    }

    fn first_up_from(&self, start: usize) -> Route {
        (0..self.nodes.len())
            .map(|step| (start + step) % self.nodes.len())
            .find_map(|index| {
                if index == self.self_index {
                    Some(Route::Local)
                } else {
                    self.is_up(index).then_some(Route::Peer(index))
                }
            })
            .unwrap_or(Route::Local)
    }

    fn is_up(&self, index: usize) -> bool {
        self.health[index].lock().deactivated.is_none()
    }

    fn mark_down(&self, index: usize, reason: &str) {
        let mut health = self.health[index].lock();
        if health.deactivated.is_none() {
            tracing::warn!(peer = %self.nodes[index], reason, "cache peer marked down");
            health.deactivated = Some(epoch_seconds());
            health.down_at = Some(Instant::now());
        }
    }

    /// POSTs `body` to `path` of peer `index` as a peer call (`replica` adds the replica
    /// mark). `wait` is how long the peer may legitimately take (a `get_data` waiting for a
    /// lock); the connection and the rest get `peer_connection_timeout`. A peer that fails to
    /// connect or to answer in time is marked down.
    pub async fn call(
        &self,
        index: usize,
        path: &str,
        body: &Value,
        wait: Duration,
        replica: bool,
    ) -> Result<(u16, Value), PeerDown> {
        let url = format!("{}/{path}", self.nodes[index]);
        let mut request = self
            .client
            .post(&url)
            .header(PEER_HEADER, &self.secret)
            .timeout(wait + self.connection_timeout)
            .json(body);
        if replica {
            request = request.header(REPLICA_HEADER, "1");
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        match outcome {
            Ok((status, bytes)) => {
                let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Ok((status, value))
            }
            Err(error) => {
                let reason = error.to_string();
                self.mark_down(index, &reason);
                Err(PeerDown { url, reason })
            }
        }
    }

    /// Probes peers' `/status`: a peer marked down once `peer_refresh_time` has passed (it is
    /// up again when it answers), and every second a peer whose ref is not known yet. A probe
    /// never marks a peer down: only a request that went unanswered does, so nodes starting
    /// one after another do not take each other for dead and split the items between them.
    pub async fn probe_forever(self: Arc<Self>) {
        if self.nodes.len() <= 1 {
            return;
        }
        let mut every = tokio::time::interval(
            self.refresh_time
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(100)),
        );
        loop {
            every.tick().await;
            for index in (0..self.nodes.len()).filter(|&index| index != self.self_index) {
                let due = {
                    let health = self.health[index].lock();
                    match health.down_at {
                        Some(at) => at.elapsed() >= self.refresh_time,
                        None => health.node_ref.is_none(),
                    }
                };
                if due {
                    self.probe(index).await;
                }
            }
        }
    }

    async fn probe(&self, index: usize) {
        let answer = self
            .client
            .get(format!("{}/status", self.nodes[index]))
            .header(PEER_HEADER, &self.secret)
            .timeout(self.connection_timeout)
            .send()
            .await;
        let Ok(response) = answer else {
            // Still down, or not started yet: looked at again next time.
            if let Some(at) = self.health[index].lock().down_at.as_mut() {
                *at = Instant::now();
            }
            return;
        };
        let node_ref = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|status| status["ref"].as_str().map(str::to_owned));
        let mut health = self.health[index].lock();
        if health.deactivated.is_some() {
            tracing::info!(peer = %self.nodes[index], "cache peer is up again");
        }
        health.deactivated = None;
        health.down_at = None;
        if node_ref.is_some() {
            health.node_ref = node_ref;
        }
    }

    /// `/status`'s `available_peer_refs` (refs of the peers up) and `peers`.
    pub fn status(&self) -> (Vec<String>, Vec<Value>) {
        let mut available = Vec::new();
        let mut peers = Vec::new();
        for (index, url) in self.nodes.iter().enumerate() {
            if index == self.self_index {
                continue;
            }
            let health = self.health[index].lock().clone();
            let node_ref = health.node_ref.unwrap_or_default();
            if health.deactivated.is_none() && !node_ref.is_empty() {
                available.push(node_ref.clone());
            }
            peers.push(serde_json::json!({
                "ref": node_ref,
                "url": url,
                "deactivated": health.deactivated.unwrap_or(0),
            }));
        }
        (available, peers)
    }
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Compares secrets without leaking how long a prefix matched through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
