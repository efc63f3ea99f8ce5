//! The cluster as one node sees it: who owns each host, and the calls to peers.
//!
//! `cluster.nodes` lists every node's base URL in the same order on every node; `cluster.self`
//! is this node's entry. The owner of a host is `routing::owner_of_host` over that list. With
//! no nodes listed, this node owns everything. Points for other owners are forwarded, one
//! request per peer, in a compact encoding of parsed points (never perfdata to parse again),
//! to `POST /internal/v1/points`, which always takes them locally: a node never forwards what a
//! peer sent it, so a point makes at most one hop. Queries for other owners' series go to
//! `GET /api/v1/query?…&local=true` on the owner, which answers from its own stores only; the
//! host list is gathered from every node the same way, and a host's metrics are asked of its
//! owner.

use std::time::Duration;

use anyhow::Context;
use perfpipe_backend::{Levels, Point, SeriesKey, ThresholdRange};
use serde::{Deserialize, Serialize};

use crate::cachemanager::peers::PEER_HEADER;
use crate::config::Config;
use crate::enqueuer::SeriesPoints;
use crate::routing::owner_of_host;

/// `name` encoded for one path segment of a peer's URL. (`form_urlencoded` writes a space as
/// `+`, which in a path is a plus, so spaces become `%20`.)
pub fn path_segment(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// This node's view of the cluster.
pub struct Cluster {
    nodes: Vec<String>,
    self_index: usize,
    agent: ureq::Agent,
    /// `cache.peer_secret`, sent with every call to a peer (empty: none sent).
    secret: String,
}

/// Points of one series as they travel between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireSeries {
    /// host, service, metric, unit.
    pub h: perfpipe_backend::Name,
    pub s: perfpipe_backend::Name,
    pub m: perfpipe_backend::Name,
    pub u: perfpipe_backend::Name,
    /// `[timestamp, value]` pairs.
    pub p: Vec<(i64, f64)>,
    /// `[timestamp, levels]` where the levels changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l: Vec<(i64, WireLevels)>,
}

/// [`Levels`] on the wire: JSON has no infinity, so a missing bound is `null`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireLevels {
    /// warn and crit as `[inside, start or null for -inf, end or null for +inf]`.
    pub w: Option<(bool, Option<f64>, Option<f64>)>,
    pub c: Option<(bool, Option<f64>, Option<f64>)>,
    /// min and max.
    pub n: Option<f64>,
    pub x: Option<f64>,
}

impl From<Levels> for WireLevels {
    fn from(levels: Levels) -> Self {
        let range = |range: ThresholdRange| {
            let finite = |bound: f64| bound.is_finite().then_some(bound);
            (range.inside, finite(range.start), finite(range.end))
        };
        WireLevels {
            w: levels.warn.map(range),
            c: levels.crit.map(range),
            n: levels.min,
            x: levels.max,
        }
    }
}

impl From<WireLevels> for Levels {
    fn from(wire: WireLevels) -> Self {
        let range = |(inside, start, end): (bool, Option<f64>, Option<f64>)| ThresholdRange {
            start: start.unwrap_or(f64::NEG_INFINITY),
            end: end.unwrap_or(f64::INFINITY),
            inside,
        };
        Levels {
            warn: wire.w.map(range),
            crit: wire.c.map(range),
            min: wire.n,
            max: wire.x,
        }
    }
}

/// How this node calls peers over HTTPS (`[tls]`): their certificates checked against
/// `peer_ca` when set, and, when this node requires client certificates (`client_ca`, mutual
/// TLS), its own certificate and key presented to them.
fn peer_tls(config: &Config) -> anyhow::Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let certificates = |path: &std::path::Path| -> anyhow::Result<Vec<Certificate<'static>>> {
        let pem = read(path)?;
        let found: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(Ok(certificate)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("certificates in {}", path.display()))?;
        anyhow::ensure!(!found.is_empty(), "{} holds no certificate", path.display());
        Ok(found)
    };
    let tls = &config.tls;
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &tls.peer_ca {
        builder = builder.root_certs(RootCerts::new_with_certs(&certificates(ca)?));
    }
    if tls.client_ca.is_some() {
        let key = PrivateKey::from_pem(&read(&tls.key)?)
            .with_context(|| format!("the private key {}", tls.key.display()))?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(
            &certificates(&tls.cert)?,
            key,
        )));
    }
    Ok(builder.build())
}

/// Longest wait for a peer's answer to a read (queries, the catalogue): a peer that is frozen
/// rather than down (it takes the connection, never answers) makes the answer partial after
/// this, never hangs it. Forwarded writes keep the agent's 30 s.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a peer did not take forwarded points.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Not reached, or it answered 5xx: worth handing off and retrying later.
    #[error("forwarding to {node}: {message}")]
    Unreachable { node: String, message: String },
    /// It refused them (4xx): retrying the same points will not help.
    #[error("forwarding to {node}: {status} {message}")]
    Refused {
        node: String,
        status: u16,
        message: String,
    },
}

/// A forwarding request body.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireBatch {
    pub series: Vec<WireSeries>,
}

impl From<&SeriesPoints> for WireSeries {
    fn from(series: &SeriesPoints) -> Self {
        WireSeries {
            h: series.key.host.clone(),
            s: series.key.service.clone(),
            m: series.key.metric.clone(),
            u: series.uom.clone(),
            p: series
                .points
                .iter()
                .map(|p| (p.timestamp, p.value))
                .collect(),
            l: series
                .levels
                .iter()
                .map(|(timestamp, levels)| (*timestamp, (*levels).into()))
                .collect(),
        }
    }
}

impl From<WireSeries> for SeriesPoints {
    fn from(wire: WireSeries) -> Self {
        SeriesPoints {
            key: SeriesKey::new(wire.h, wire.s, wire.m),
            uom: wire.u,
            points: wire
                .p
                .into_iter()
                .map(|(timestamp, value)| Point { timestamp, value })
                .collect(),
            levels: wire
                .l
                .into_iter()
                .map(|(timestamp, levels)| (timestamp, levels.into()))
                .collect(),
        }
    }
}

impl Cluster {
    /// The cluster of `config`; checks that `cluster.self` is one of `cluster.nodes`.
    pub fn new(config: &Config) -> anyhow::Result<Cluster> {
        let nodes: Vec<String> = config
            .cluster
            .nodes
            .iter()
            .map(|node| node.trim_end_matches('/').to_string())
            .collect();
        let self_index = if nodes.is_empty() {
            0
        } else {
            let me = config.cluster.self_node.trim_end_matches('/');
            nodes.iter().position(|node| node == me).with_context(|| {
                format!(
                    "cluster.self = {:?} is not one of cluster.nodes {:?}",
                    config.cluster.self_node, nodes
                )
            })?
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(peer_tls(config)?)
            .http_status_as_error(false)
            .timeout_connect(Some(config.cache.peer_connection_timeout))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Cluster {
            nodes,
            self_index,
            agent,
            secret: config.cache.peer_secret.clone(),
        })
    }

    /// The node that owns `host`: `None` for this node.
    pub fn owner(&self, host: &str) -> Option<usize> {
        if self.nodes.len() <= 1 {
            return None;
        }
        let owner = owner_of_host(host, self.nodes.len());
        (owner != self.self_index).then_some(owner)
    }

    /// A peer's base URL.
    pub fn node_url(&self, index: usize) -> &str {
        &self.nodes[index]
    }

    /// Sends `series` to peer `index`, answered once the peer has logged them; an error names
    /// the peer and what it answered. `hinted`: the points come from this node's hint log for
    /// the peer (`crate::handoff`), which the peer holds back longer before writing
    /// (`enqueuer.handoff_hold`).
    pub fn forward(
        &self,
        index: usize,
        series: &[SeriesPoints],
        hinted: bool,
    ) -> Result<(), ForwardError> {
        let node = || self.nodes[index].clone();
        let url = format!(
            "{}/internal/v1/points{}",
            self.nodes[index],
            if hinted { "?hinted=1" } else { "" }
        );
        let body = WireBatch {
            series: series.iter().map(WireSeries::from).collect(),
        };
        let body = serde_json::to_vec(&body).map_err(|error| ForwardError::Unreachable {
            node: node(),
            message: error.to_string(),
        })?;
        let mut answer = self
            .as_peer(self.agent.post(&url))
            .content_type("application/json")
            .send(&body[..])
            .map_err(|error| ForwardError::Unreachable {
                node: node(),
                message: error.to_string(),
            })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let message = answer.body_mut().read_to_string().unwrap_or_default();
        if status.is_client_error() {
            Err(ForwardError::Refused {
                node: node(),
                status: status.as_u16(),
                message,
            })
        } else {
            Err(ForwardError::Unreachable {
                node: node(),
                message: format!("{status} {message}"),
            })
        }
    }

    /// `request` marked as a call between nodes: `X-Perfpipe-Peer` with `cache.peer_secret`,
    /// when there is one.
    fn as_peer<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if self.secret.is_empty() {
            request
        } else {
            request.header(PEER_HEADER, &self.secret)
        }
    }

    /// Every peer's index (not this node's).
    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |&index| index != self.self_index)
    }

    /// `GET path_and_query` on peer `index`: its status and JSON answer.
    pub fn get(
        &self,
        index: usize,
        path_and_query: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}{path_and_query}", self.nodes[index]);
        let answer = self
            .as_peer(self.agent.get(&url))
            .config()
            .timeout_global(Some(READ_TIMEOUT))
            .build()
            .call();
        self.json_answer(index, answer)
    }

    /// `POST path_and_query` (no body) on peer `index`: its status and JSON answer.
    pub fn post(
        &self,
        index: usize,
        path_and_query: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}{path_and_query}", self.nodes[index]);
        let answer = self.as_peer(self.agent.post(&url)).send_empty();
        self.json_answer(index, answer)
    }

    /// A peer's answer as status and JSON; errors name the peer.
    fn json_answer(
        &self,
        index: usize,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut answer = answer.with_context(|| format!("asking {}", self.nodes[index]))?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {}", self.nodes[index]))?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{} answered {status}: {text}", self.nodes[index]))?;
        Ok((status, json))
    }

    /// Passes a `DELETE` of `path_and_query` to peer `index`; returns its answer.
    pub fn delete(&self, index: usize, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path_and_query}", self.nodes[index]);
        let mut answer = self
            .as_peer(self.agent.delete(&url))
            .call()
            .with_context(|| format!("deleting on {}", self.nodes[index]))?;
        let status = answer.status();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "{}: {status} {text}",
            self.nodes[index]
        );
        Ok(serde_json::from_str(&text)?)
    }

    /// Runs a query on peer `index` with the raw query string, asking it to answer from its
    /// own stores (`local=true`); returns its `series` array.
    pub fn query(&self, index: usize, raw_query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!("{}/api/v1/query?{raw_query}&local=true", self.nodes[index]);
        let mut answer = self
            .as_peer(self.agent.get(&url))
            .config()
            .timeout_global(Some(READ_TIMEOUT))
            .build()
            .call()
            .with_context(|| format!("querying {}", self.nodes[index]))?;
        let status = answer.status();
        let text = answer
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {}", self.nodes[index]))?;
        anyhow::ensure!(
            status.is_success(),
            "{}: {status} {text}",
            self.nodes[index]
        );
        let json: serde_json::Value = serde_json::from_str(&text)?;
        Ok(json["series"].as_array().cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cross_the_wire_with_their_infinite_bounds() {
        let levels = Levels {
            warn: Some(ThresholdRange {
                start: f64::NEG_INFINITY,
                end: 5.0,
                inside: true,
            }),
            crit: Some(ThresholdRange {
                start: 10.0,
                end: f64::INFINITY,
                inside: false,
            }),
            min: Some(-1.5),
            max: None,
        };
        let series = SeriesPoints {
            key: SeriesKey::new("h", "s", "m"),
            uom: "B".into(),
            points: smallvec::smallvec![Point {
                timestamp: 7,
                value: 1.0,
            }],
            levels: smallvec::smallvec![(7, levels)],
        };
        let json = serde_json::to_string(&WireSeries::from(&series)).unwrap();
        let back: WireSeries = serde_json::from_str(&json).unwrap();
        assert_eq!(SeriesPoints::from(back), series, "{json}");
    }

    #[test]
    fn names_in_peer_paths_stay_one_segment() {
        assert_eq!(path_segment("my host"), "my%20host");
        assert_eq!(path_segment("a+b/c"), "a%2Bb%2Fc");
    }
}
