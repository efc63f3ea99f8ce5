//! perfpipe's InfluxDB backend: series written as line protocol in nagflux's schema to InfluxDB
//! 1.x/2.x or VictoriaMetrics over the v1 (`/write`) or v2 (`/api/v2/write`) API, and read back
//! with InfluxQL (v1).
//!
//! Owns the line protocol ([`line`]: schema, escaping, the reversible mapping of tag values
//! InfluxDB cannot hold), the HTTP client ([`client`]: gzip, timeouts, retries), its errors
//! ([`error`]), the `[influxdb]` configuration ([`config`]) and [`InfluxBackend`]. Guarantees:
//! no label loses a batch (a value InfluxDB cannot hold is mapped, a series that cannot be
//! written at all is reported alone), the server's refusal reaches the caller with its message,
//! and the value read back for a name is the value written for it.
//!
//! Why not the `influxdb2` crate: it speaks only the v2 API (InfluxDB 1.x has none), pulls in
//! reqwest 0.11 with OpenSSL and an async runtime, escapes incompletely and cannot map the tag
//! values InfluxDB 1.x refuses. Line protocol is small and its escaping is the part that must be
//! exactly right, so it is written here; HTTP is `ureq` (blocking, rustls, a small tree) and gzip
//! is `flate2`.

pub mod backend;
pub mod client;
pub mod config;
pub mod error;
pub mod line;

pub use backend::InfluxBackend;
pub use config::{Api, ConfigError, InfluxConfig};
pub use error::InfluxError;
pub use line::{map_tag_value, unmap_tag_value, LineError, TagEscaping};
