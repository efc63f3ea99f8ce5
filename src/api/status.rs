//! `GET /health` (for load balancers), `GET /status` (for people and scripts) and
//! `GET /metrics` (Prometheus text format): the node's own counters.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::Node;

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let counters = node.enqueuer.counters();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let backends: Vec<Value> = counters
        .backends
        .iter()
        .map(|backend| {
            json!({
                "name": backend.name,
                "written": load(&backend.written),
                "late": load(&backend.late),
                "failed": load(&backend.failed),
                "retries": load(&backend.retries),
            })
        })
        .collect();
    let state = node.plugins.state.clone();
    let state_items =
        tokio::task::spawn_blocking(move || state.items(crate::cachemanager::now_seconds()))
            .await
            .ok()
            .and_then(Result::ok);
    let (available_peer_refs, peers) = node.plugins.peers.status();
    let wal = node.wal.as_ref().map(|wal| {
        let wal = wal.counters();
        json!({
            "records": load(&wal.records),
            "bytes": load(&wal.bytes),
            "syncs": load(&wal.syncs),
            "failures": load(&wal.failures),
            "segments": load(&wal.segments),
            "bytes_on_disk": load(&wal.bytes_on_disk),
        })
    });
    Json(json!({
        // The cache manager's fixed fields first (Opsview's shape), then the node's own.
        "ref": node.plugins.node_ref,
        "uptime": node.started.elapsed().as_secs(),
        "cache_items": node.plugins.cache.items(),
        "available_peer_refs": available_peer_refs,
        "peers": peers,
        "cache_bytes": node.plugins.cache.bytes(),
        "state_items": state_items,
        "node": node.config.cluster.self_node,
        "uptime_seconds": node.started.elapsed().as_secs(),
        "shards": node.enqueuer.shards(),
        "queued_points": node.enqueuer.queued(),
        "max_queued_points": node.config.enqueuer.max_queued_points,
        "points": {
            "accepted": load(&counters.accepted),
            "refused": load(&counters.refused),
            "duplicates": load(&counters.duplicates),
        },
        "flushes": load(&counters.flushes),
        "backends": backends,
        "wal": wal,
        "handoff": node.handoff.as_ref().map(|handoff| handoff.backlog()),
        "protocols": protocols_status(&node.protocols),
    }))
}

/// What the Graphite listeners and the InfluxDB write endpoints received.
fn protocols_status(protocols: &crate::protocols::Counters) -> Value {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let receiver = |counters: &crate::protocols::ReceiverCounters| {
        json!({
            "lines": load(&counters.lines),
            "points": load(&counters.points),
            "bad_lines": load(&counters.bad_lines),
            "dropped": load(&counters.dropped),
        })
    };
    json!({
        "graphite_tcp": receiver(&protocols.graphite_tcp),
        "graphite_udp": receiver(&protocols.graphite_udp),
        "graphite_connections": load(&protocols.graphite_connections),
        "line_protocol": receiver(&protocols.line_protocol),
        "line_protocol_ignored_fields": load(&protocols.line_protocol_ignored_fields),
    })
}

pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let counters = node.enqueuer.counters();
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let plain = |value: u64| vec![(String::new(), value)];
    metric(
        "perfpipe_points_accepted_total",
        "counter",
        "Points taken into the queues.",
        &plain(counters.accepted.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_points_refused_total",
        "counter",
        "Points refused because the queues were full (503).",
        &plain(counters.refused.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_points_duplicate_total",
        "counter",
        "Points dropped for a duplicate timestamp in their series.",
        &plain(counters.duplicates.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_points_queued",
        "gauge",
        "Points queued and not yet written.",
        &plain(node.enqueuer.queued() as u64),
    );
    metric(
        "perfpipe_flushes_total",
        "counter",
        "Flushes of series queues to the backends.",
        &plain(counters.flushes.load(Ordering::Relaxed)),
    );
    let per_backend = |pick: fn(&crate::enqueuer::BackendCounters) -> u64| -> Vec<(String, u64)> {
        counters
            .backends
            .iter()
            .map(|backend| (format!("{{backend=\"{}\"}}", backend.name), pick(backend)))
            .collect()
    };
    metric(
        "perfpipe_points_written_total",
        "counter",
        "Points stored, per backend.",
        &per_backend(|b| b.written.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_points_late_total",
        "counter",
        "Points a backend refused as older than its data, per backend.",
        &per_backend(|b| b.late.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_points_failed_total",
        "counter",
        "Points of series a backend could not write, per backend.",
        &per_backend(|b| b.failed.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_backend_retries_total",
        "counter",
        "Backend calls that failed as a whole and were retried.",
        &per_backend(|b| b.retries.load(Ordering::Relaxed)),
    );
    let protocols = &node.protocols;
    let per_protocol =
        |pick: fn(&crate::protocols::ReceiverCounters) -> &std::sync::atomic::AtomicU64| {
            [
                ("graphite_tcp", &protocols.graphite_tcp),
                ("graphite_udp", &protocols.graphite_udp),
                ("line_protocol", &protocols.line_protocol),
            ]
            .into_iter()
            .map(|(name, counters)| {
                (
                    format!("{{protocol=\"{name}\"}}"),
                    pick(counters).load(Ordering::Relaxed),
                )
            })
            .collect::<Vec<_>>()
        };
    metric(
        "perfpipe_ingest_lines_total",
        "counter",
        "Lines received by the Graphite listeners and the InfluxDB write endpoints, per protocol.",
        &per_protocol(|c| &c.lines),
    );
    metric(
        "perfpipe_ingest_points_total",
        "counter",
        "Points of those lines logged by their owner, per protocol.",
        &per_protocol(|c| &c.points),
    );
    metric(
        "perfpipe_ingest_bad_lines_total",
        "counter",
        "Lines not taken because they could not be read or mapped, per protocol.",
        &per_protocol(|c| &c.bad_lines),
    );
    metric(
        "perfpipe_ingest_dropped_points_total",
        "counter",
        "Points read but not taken (queues full, a log or owner refused), per protocol.",
        &per_protocol(|c| &c.dropped),
    );
    metric(
        "perfpipe_graphite_connections_total",
        "counter",
        "TCP connections accepted by the Graphite listener.",
        &plain(protocols.graphite_connections.load(Ordering::Relaxed)),
    );
    metric(
        "perfpipe_line_protocol_ignored_fields_total",
        "counter",
        "Line protocol fields not stored (string fields).",
        &plain(
            protocols
                .line_protocol_ignored_fields
                .load(Ordering::Relaxed),
        ),
    );
    if let Some(wal) = &node.wal {
        let wal = wal.counters();
        for (name, kind, help, counter) in [
            (
                "perfpipe_wal_records_total",
                "counter",
                "Requests logged in the write-ahead log.",
                &wal.records,
            ),
            (
                "perfpipe_wal_bytes_total",
                "counter",
                "Bytes appended to the write-ahead log.",
                &wal.bytes,
            ),
            (
                "perfpipe_wal_syncs_total",
                "counter",
                "fdatasync calls of the write-ahead log (one per group commit).",
                &wal.syncs,
            ),
            (
                "perfpipe_wal_failures_total",
                "counter",
                "Requests the write-ahead log could not take (answered 503).",
                &wal.failures,
            ),
            (
                "perfpipe_wal_segments",
                "gauge",
                "Write-ahead log segments on disk.",
                &wal.segments,
            ),
            (
                "perfpipe_wal_bytes_on_disk",
                "gauge",
                "Bytes of write-ahead log segments on disk.",
                &wal.bytes_on_disk,
            ),
        ] {
            metric(name, kind, help, &plain(counter.load(Ordering::Relaxed)));
        }
    }
    if let Some(handoff) = &node.handoff {
        let backlog = handoff.backlog();
        let per_peer = |pick: fn(&crate::handoff::Backlog) -> u64| -> Vec<(String, u64)> {
            backlog
                .iter()
                .map(|peer| (format!("{{peer=\"{}\"}}", peer.peer), pick(peer)))
                .collect()
        };
        metric(
            "perfpipe_handoff_segments",
            "gauge",
            "Hinted-handoff segments on disk waiting for their peer, per peer.",
            &per_peer(|peer| peer.segments),
        );
        metric(
            "perfpipe_handoff_bytes",
            "gauge",
            "Bytes of hinted points waiting for their peer, per peer.",
            &per_peer(|peer| peer.bytes),
        );
        metric(
            "perfpipe_handoff_delivered_total",
            "counter",
            "Hinted requests delivered to their peer, per peer.",
            &per_peer(|peer| peer.delivered),
        );
        metric(
            "perfpipe_handoff_refused_total",
            "counter",
            "Hinted requests their peer refused (4xx) and that were passed over, per peer.",
            &per_peer(|peer| peer.refused),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
