//! perfpipe's settings: the TOML file of `--config`, with a default for every key, so a node
//! runs with no file at all. Key names are fixed by the design (outside tests write them).
//!
//! Sizes accept units (`10MB` = 10^7 bytes, `10MiB` = 10 × 2^20), durations too (`30s`,
//! `10ms`, `5m`). Unknown keys are errors that name the key and list the known ones, so a
//! misspelt key never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use perfpipe_influxdb::InfluxConfig;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: String,
    /// Directory for everything stored locally unless a section names its own.
    pub data_dir: PathBuf,
    /// Storage backends that receive every point: any of `whisper`, `rrd`, `influxdb`.
    pub backends: Vec<BackendKind>,
    /// Largest request body the HTTP API takes (413 beyond).
    pub max_body_size: ByteSize,
    /// How long deleted data stays in `<data_dir>/trash` before it is purged (also spelt
    /// `trash_keep`).
    #[serde(with = "humantime_serde", alias = "trash_keep")]
    pub trash_retention: Duration,
    /// A series not updated for this long is stale (`GET /api/v1/stale`).
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Move stale series to the trash (checked hourly).
    pub purge_stale: bool,
    pub whisper: WhisperConfig,
    pub rrd: RrdConfig,
    /// The InfluxDB backend's own settings (see `perfpipe_influxdb::InfluxConfig`).
    pub influxdb: InfluxConfig,
    pub cluster: ClusterConfig,
    pub enqueuer: EnqueuerConfig,
    pub wal: WalConfig,
    pub auth: AuthConfig,
    pub tls: ListenerTlsConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub state: StateConfig,
    /// Graphite's plaintext protocol on TCP and UDP (off by default).
    pub graphite: GraphiteConfig,
    /// How InfluxDB line protocol written to `/write` and `/api/v2/write` maps onto series.
    pub line_protocol: LineProtocolConfig,
    /// How many values of which series the last-values cache keeps.
    pub last_values: Vec<crate::lastvalues::LastValuesRule>,
    /// Hour, day, week and month aggregates per series pattern (none by default).
    pub rollups: Vec<crate::rollup::RollupRule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8480".into(),
            data_dir: PathBuf::from("./data"),
            backends: vec![BackendKind::Whisper],
            max_body_size: ByteSize::mb(32),
            trash_retention: Duration::from_secs(7 * 86_400),
            stale_after: Duration::from_secs(30 * 86_400),
            purge_stale: false,
            whisper: WhisperConfig::default(),
            rrd: RrdConfig::default(),
            influxdb: InfluxConfig::default(),
            cluster: ClusterConfig::default(),
            enqueuer: EnqueuerConfig::default(),
            wal: WalConfig::default(),
            auth: AuthConfig::default(),
            tls: ListenerTlsConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            state: StateConfig::default(),
            graphite: GraphiteConfig::default(),
            line_protocol: LineProtocolConfig::default(),
            last_values: vec![crate::lastvalues::LastValuesRule::default()],
            rollups: Vec::new(),
        }
    }
}

/// A storage backend by its config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Whisper,
    Rrd,
    Influxdb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// Default `<data_dir>/whisper`.
    pub dir: Option<PathBuf>,
    /// Archives, finest first: `precision:retention` pairs.
    pub retentions: String,
    /// average, sum, last, max, min, avg_zero, absmax, absmin.
    pub aggregation: String,
    /// Fraction of known points needed to propagate to a coarser archive.
    pub xff: f64,
    /// Create files sparse (no zeros written; same bytes when read) instead of zero-filled.
    pub sparse: bool,
    /// Files each shard keeps open between writes (within the open-file limit): a write to
    /// an open file is a memory copy, to a closed one an open, a header read and a close.
    pub max_open_files: usize,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            dir: None,
            retentions: "60s:1d,5m:30d,1h:3y".into(),
            aggregation: "average".into(),
            xff: 0.5,
            sparse: false,
            max_open_files: perfpipe_whisper::MAX_OPEN_FILES,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrdConfig {
    /// Default `<data_dir>/rrd`.
    pub dir: Option<PathBuf>,
    /// Seconds between primary data points.
    pub step: u32,
    /// Seconds without an update before a slot is unknown.
    pub heartbeat: u32,
    /// Round-robin archives, `RRA:CF:xff:steps:rows`.
    pub rras: Vec<String>,
}

impl Default for RrdConfig {
    fn default() -> Self {
        RrdConfig {
            dir: None,
            step: 300,
            heartbeat: 600,
            rras: [
                "RRA:AVERAGE:0.5:1:600",
                "RRA:AVERAGE:0.5:6:700",
                "RRA:AVERAGE:0.5:24:775",
                "RRA:AVERAGE:0.5:288:797",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Every node's base URL, in the same order on every node; empty = single node.
    pub nodes: Vec<String>,
    /// This node's entry in `nodes`.
    #[serde(rename = "self")]
    pub self_node: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnqueuerConfig {
    pub shards: usize,
    pub max_batch_points: usize,
    #[serde(with = "humantime_serde")]
    pub max_batch_age: Duration,
    pub max_queued_points: usize,
    /// How long points a peer delivers from its hint log are held before being written.
    #[serde(with = "humantime_serde")]
    pub handoff_hold: Duration,
    /// The shortest time between two saves of a shard's rollup state (its checkpoints).
    #[serde(with = "humantime_serde")]
    pub rollup_checkpoint: Duration,
}

impl Default for EnqueuerConfig {
    fn default() -> Self {
        EnqueuerConfig {
            shards: 2,
            max_batch_points: 1000,
            max_batch_age: Duration::from_secs(5),
            max_queued_points: 10_000_000,
            handoff_hold: Duration::from_secs(30),
            rollup_checkpoint: Duration::from_secs(60),
        }
    }
}

/// Bearer tokens of the node's API, per scope (see `crate::api::auth`); a scope with none is
/// open.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens that may write (`POST /api/v1/write`).
    pub write_tokens: Vec<String>,
    /// Tokens that may read: queries, the catalogue, expressions, `/status`, `/metrics`.
    pub query_tokens: Vec<String>,
    /// Tokens that may delete and rename.
    pub admin_tokens: Vec<String>,
}

impl AuthConfig {
    /// Whether any scope is behind tokens.
    pub fn any(&self) -> bool {
        !(self.write_tokens.is_empty()
            && self.query_tokens.is_empty()
            && self.admin_tokens.is_empty())
    }
}

/// TLS on the main listener, and how this node calls its peers over it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTlsConfig {
    /// The server's certificate chain (PEM); with `key`, `listen` serves HTTPS only.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// A CA (PEM): clients, peers included, must present a certificate it signed (mutual
    /// TLS). Peers present this node's `cert` and `key`.
    pub client_ca: Option<PathBuf>,
    /// The CA (PEM) that peers' certificates are checked against when calling `https://`
    /// nodes (default: the web's public roots).
    pub peer_ca: Option<PathBuf>,
}

impl ListenerTlsConfig {
    /// Whether the main listener serves HTTPS.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// Graphite's plaintext protocol (`path value timestamp` lines), see
/// `crate::protocols::graphite` for the templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteConfig {
    /// Address for TCP (and UDP, with `udp`): `ip:port`, or an IP alone for carbon's port
    /// 2003; empty (the default) for no listener.
    pub listen: String,
    /// Also read datagrams on the same address and port over UDP.
    pub udp: bool,
    /// Path templates, first whose filter matches wins (`[filter ]host.service.metric*`).
    pub templates: Vec<String>,
    /// The service of paths whose template names none.
    pub service: String,
}

/// Carbon's port for plaintext lines.
pub const GRAPHITE_PORT: u16 = 2003;

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            listen: String::new(),
            udp: true,
            templates: vec!["host.service.metric*".into()],
            service: "graphite".into(),
        }
    }
}

impl GraphiteConfig {
    /// The address to listen on, or `None` when off; an IP without a port gets 2003.
    pub fn address(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        if let Ok(address) = listen.parse::<std::net::SocketAddr>() {
            return Ok(Some(address));
        }
        let ip = listen.trim_start_matches('[').trim_end_matches(']');
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(Some(std::net::SocketAddr::new(ip, GRAPHITE_PORT))),
            Err(_) => anyhow::bail!(
                "graphite.listen = {:?} is not an address (ip:port, or an ip for port {GRAPHITE_PORT})",
                self.listen
            ),
        }
    }
}

/// InfluxDB line protocol onto series (see `crate::protocols::line_protocol`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineProtocolConfig {
    /// The tag naming the host.
    pub host_tag: String,
    /// The measurement of nagflux's schema (tags `service`, `performanceLabel`, `unit`).
    pub nagflux_measurement: String,
}

impl Default for LineProtocolConfig {
    fn default() -> Self {
        LineProtocolConfig {
            host_tag: "host".into(),
            nagflux_measurement: "metrics".into(),
        }
    }
}

/// What a client may ask of a node at most; each is answered with a clear 4xx beyond.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Check results in one write request (413 beyond).
    pub max_results_per_request: usize,
    /// Metrics in one check result (the rest refused with an error).
    pub max_metrics_per_result: usize,
    /// Bytes of a host, service or metric name (refused with an error).
    pub max_name_length: usize,
    /// Longest span a query may ask for (400 beyond).
    #[serde(with = "humantime_serde")]
    pub max_query_span: Duration,
    /// Values one query may answer, all series together (400 beyond).
    pub max_query_points: usize,
    /// Queries (and expression evaluations) served at once (429 beyond).
    pub max_concurrent_queries: usize,
    /// Requests in progress at once on the node's listener (429 beyond).
    pub max_requests_in_flight: usize,
    /// Client connections open at once, over all the node's listeners (429 beyond).
    pub max_connections: usize,
    /// How long a request (head and body) may take to arrive once its first byte has; beyond,
    /// 408 and the connection is closed, so a client that trickles cannot hold it.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let intake = crate::intake::Limits::default();
        LimitsConfig {
            max_results_per_request: intake.max_results,
            max_metrics_per_result: intake.max_metrics_per_result,
            max_name_length: intake.max_name_length,
            max_query_span: Duration::from_secs(1_830 * 86_400),
            max_query_points: 10_000_000,
            max_concurrent_queries: 64,
            max_requests_in_flight: 4_096,
            max_connections: 2_048,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl LimitsConfig {
    /// The limits of a write body.
    pub fn intake(&self) -> crate::intake::Limits {
        crate::intake::Limits {
            max_results: self.max_results_per_request,
            max_metrics_per_result: self.max_metrics_per_result,
            max_name_length: self.max_name_length,
        }
    }
}

/// The write-ahead log (see `crate::wal`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Log writes before acknowledging them. Off, a node killed loses what its queues held.
    pub enabled: bool,
    /// Default `<data_dir>/wal`.
    pub dir: Option<PathBuf>,
    /// Group commit: writes arriving within this of each other share one `fdatasync`, and
    /// each waits for it.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// A segment is sealed at this size...
    pub segment_size: ByteSize,
    /// ...or at this age, and deleted once its points are in every backend.
    #[serde(with = "humantime_serde")]
    pub segment_age: Duration,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            enabled: true,
            dir: None,
            sync_interval: Duration::from_millis(10),
            segment_size: ByteSize::mb(64),
            segment_age: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    #[serde(with = "humantime_serde")]
    pub worker_timeout: Duration,
    pub max_cache_size: ByteSize,
    pub max_item_size: ByteSize,
    #[serde(with = "humantime_serde")]
    pub peer_refresh_time: Duration,
    #[serde(with = "humantime_serde")]
    pub peer_connection_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timestamp_error_margin: Duration,
    #[serde(with = "humantime_serde")]
    pub cache_purge_time: Duration,
    /// Default: `cluster.nodes`.
    pub peer_nodes: Vec<String>,
    /// Shared secret that peers present to each other (header `X-Perfpipe-Peer`); empty =
    /// peer calls are not authenticated (a warning at start).
    pub peer_secret: String,
    /// 64 hex digits (32 bytes) sealing namespace tokens; empty = none.
    pub namespace_key: String,
    /// The cache and state API on the node's own listener.
    pub http_server: HttpServerConfig,
    /// A second listener, HTTPS, for the same API.
    pub https_server: HttpsServerConfig,
}

/// The HTTPS listener (rustls): off while `listen` is empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsServerConfig {
    /// Address, e.g. `0.0.0.0:8443`; empty = no HTTPS listener.
    pub listen: String,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// A CA (PEM); when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// Namespaces must be tokens sealed with `cache.namespace_key`.
    pub encrypted_namespaces: bool,
}

/// The plugins' API on the node's HTTP listener (`listen`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// Namespaces must be tokens sealed with `cache.namespace_key`.
    pub encrypted_namespaces: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            worker_timeout: Duration::from_secs(30),
            max_cache_size: ByteSize::gb(1),
            max_item_size: ByteSize::mb(10),
            peer_refresh_time: Duration::from_secs(30),
            peer_connection_timeout: Duration::from_secs(2),
            timestamp_error_margin: Duration::from_secs(60),
            cache_purge_time: Duration::from_secs(60),
            peer_nodes: Vec::new(),
            peer_secret: String::new(),
            namespace_key: String::new(),
            http_server: HttpServerConfig::default(),
            https_server: HttpsServerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub max_persistent_data_item_size: ByteSize,
    pub max_persistent_data_items: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            max_persistent_data_item_size: ByteSize::kb(16),
            max_persistent_data_items: 1024,
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses config text and checks what the types alone cannot. An unknown key's error
    /// names the nearest known key when one is close.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|error| {
            let message = error.to_string();
            match nearest_known_key(&message) {
                Some(nearest) => anyhow::anyhow!("{message}(did you mean `{nearest}`?)"),
                None => anyhow::anyhow!(message),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.whisper.xff),
            "whisper.xff must be between 0 and 1, not {}",
            self.whisper.xff
        );
        if self.backends.contains(&BackendKind::Influxdb) {
            self.influxdb.validate()?;
        }
        anyhow::ensure!(self.rrd.step > 0, "rrd.step must be positive");
        anyhow::ensure!(self.enqueuer.shards > 0, "enqueuer.shards must be positive");
        let limits = &self.limits;
        for (name, value) in [
            ("max_results_per_request", limits.max_results_per_request),
            ("max_metrics_per_result", limits.max_metrics_per_result),
            ("max_name_length", limits.max_name_length),
            ("max_query_points", limits.max_query_points),
            ("max_concurrent_queries", limits.max_concurrent_queries),
            ("max_requests_in_flight", limits.max_requests_in_flight),
            ("max_connections", limits.max_connections),
        ] {
            anyhow::ensure!(value > 0, "limits.{name} must be positive");
        }
        anyhow::ensure!(
            !limits.request_timeout.is_zero(),
            "limits.request_timeout must be positive"
        );
        if !self.cache.namespace_key.is_empty() {
            crate::cachemanager::token::NamespaceKey::from_hex(&self.cache.namespace_key)
                .context("cache.namespace_key")?;
        }
        for (endpoint, encrypted) in [
            ("http_server", self.cache.http_server.encrypted_namespaces),
            ("https_server", self.cache.https_server.encrypted_namespaces),
        ] {
            anyhow::ensure!(
                !encrypted || !self.cache.namespace_key.is_empty(),
                "cache.{endpoint}.encrypted_namespaces needs cache.namespace_key"
            );
        }
        let https = &self.cache.https_server;
        if !https.listen.is_empty() {
            https
                .listen
                .parse::<std::net::SocketAddr>()
                .with_context(|| {
                    format!(
                        "cache.https_server.listen = {:?} is not an address",
                        https.listen
                    )
                })?;
            anyhow::ensure!(
                !https.cert.as_os_str().is_empty() && !https.key.as_os_str().is_empty(),
                "cache.https_server needs cert and key files to listen"
            );
        }
        if self.tls.enabled() || !self.tls.key.as_os_str().is_empty() {
            anyhow::ensure!(
                self.tls.enabled() && !self.tls.key.as_os_str().is_empty(),
                "tls needs both cert and key"
            );
        }
        anyhow::ensure!(
            self.tls.client_ca.is_none() || self.tls.enabled(),
            "tls.client_ca needs tls.cert and tls.key (peers present them)"
        );
        self.graphite.address()?;
        crate::protocols::graphite::Templates::new(
            &self.graphite.templates,
            &self.graphite.service,
            self.limits.max_name_length,
        )?;
        anyhow::ensure!(
            !self.graphite.service.is_empty(),
            "graphite.service must not be empty"
        );
        anyhow::ensure!(
            !self.line_protocol.host_tag.is_empty(),
            "line_protocol.host_tag must not be empty"
        );
        crate::lastvalues::LastValuesRules::new(&self.last_values)?;
        crate::rollup::RollupRules::new(self.rollups.clone())?;
        anyhow::ensure!(
            self.state.max_persistent_data_items > 0,
            "state.max_persistent_data_items must be positive"
        );
        Ok(())
    }

    /// Where Whisper files live.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("wal"))
    }

    pub fn whisper_dir(&self) -> PathBuf {
        self.whisper
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("whisper"))
    }

    /// Where RRD files live.
    pub fn rrd_dir(&self) -> PathBuf {
        self.rrd
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("rrd"))
    }

    /// The series catalogue's database file.
    pub fn catalogue_path(&self) -> PathBuf {
        self.data_dir.join("catalogue.sqlite")
    }

    /// The aggregate store: rollup aggregates of the file backends (see `aggregate_store`).
    pub fn aggregates_path(&self) -> PathBuf {
        self.data_dir.join("aggregates.sqlite")
    }
}

/// From serde's "unknown field `x`, expected one of `a`, `b`", the known key nearest `x`.
fn nearest_known_key(message: &str) -> Option<String> {
    let unknown = message.split("unknown field `").nth(1)?.split('`').next()?;
    let expected = message.split("expected one of ").nth(1)?;
    expected
        .split(',')
        .filter_map(|candidate| candidate.trim().trim_matches('`').split('`').next())
        .map(|candidate| (strsim::levenshtein(unknown, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 3.max(candidate.len() / 3))
        .min()
        .map(|(_, candidate)| candidate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_the_defaults() {
        let shipped = include_str!("../config/perfpipe.toml");
        let config = Config::parse(shipped).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn units_and_errors() {
        let config = Config::parse(
            "backends = [\"whisper\", \"rrd\"]\n[cache]\nmax_item_size = \"2MiB\"\nworker_timeout = \"1500ms\"\n",
        )
        .unwrap();
        assert_eq!(config.backends, [BackendKind::Whisper, BackendKind::Rrd]);
        assert_eq!(config.cache.max_item_size.as_u64(), 2 << 20);
        assert_eq!(config.cache.worker_timeout, Duration::from_millis(1500));

        let error = Config::parse("[whisper]\nretention = \"1m:1d\"\n").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("unknown field `retention`"), "{message}");
        assert!(message.contains("did you mean `retentions`?"), "{message}");
        let error = Config::parse("[enqueuer]\nmax_batch_point = 5\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("did you mean `max_batch_points`?"),
            "{error:#}"
        );
        let error = Config::parse("zzzzzzzz = 1\n").unwrap_err();
        assert!(!format!("{error:#}").contains("did you mean"), "{error:#}");

        let error = Config::parse("backends = [\"mysql\"]").unwrap_err();
        assert!(format!("{error:#}").contains("mysql"), "{error:#}");
        let error = Config::parse("[graphite]\nlisten = \"nowhere\"").unwrap_err();
        assert!(
            format!("{error:#}").contains("graphite.listen"),
            "{error:#}"
        );
        let error = Config::parse("[graphite]\ntemplates = [\"host.srvice.metric\"]").unwrap_err();
        assert!(format!("{error:#}").contains("\"srvice\""), "{error:#}");
        let config = Config::parse("[graphite]\nlisten = \"127.0.0.1\"").unwrap();
        assert_eq!(
            config.graphite.address().unwrap(),
            Some("127.0.0.1:2003".parse().unwrap())
        );
        let config = Config::parse("[graphite]\nlisten = \"[::1]\"").unwrap();
        assert_eq!(
            config.graphite.address().unwrap(),
            Some("[::1]:2003".parse().unwrap())
        );
        assert_eq!(Config::default().graphite.address().unwrap(), None);
        let error = Config::parse("[whisper]\nxff = 2.0").unwrap_err();
        assert!(format!("{error:#}").contains("whisper.xff"), "{error:#}");
    }
}
