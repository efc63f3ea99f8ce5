//! Opsview's RRD layout: where a series' file lives and what `rrdtool create` / `rrdtool update`
//! arguments describe it. Pure code, no librrd: it compiles without the `rrd` feature.
//!
//! Owns the path rule `<rrd_dir>/<enc host>/<enc service>/<enc metric>/value.rrd` (enc =
//! [`perfpipe_backend::encode_name`]), the one data source `value`, and the text of update
//! arguments. Guarantees: a path it returns is `rrd_dir` plus exactly four components, none of
//! which is `.`, `..` or contains `/`, so any host, service or metric name stays inside
//! `rrd_dir`; a name too long for one file-name component is refused, never truncated.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use perfpipe_backend::{encode_name, BackendError, DataSourceType, SeriesKey};

use crate::config::RrdConfig;

/// The file name of every series' RRD file inside its metric directory.
pub const FILE_NAME: &str = "value.rrd";

/// The name of the one data source of every file.
pub const DS_NAME: &str = "value";

/// The RRD file of a series: `<rrd_dir>/<enc host>/<enc service>/<enc metric>/value.rrd`.
pub fn series_path(rrd_dir: &Path, key: &SeriesKey) -> Result<PathBuf, BackendError> {
    let mut path = rrd_dir.to_path_buf();
    path.push(encode_name(&key.host, 0)?);
    path.push(encode_name(&key.service, 0)?);
    path.push(encode_name(&key.metric, 0)?);
    path.push(FILE_NAME);
    Ok(path)
}

/// The librrd type name of a data source type.
pub fn ds_type_name(ds_type: DataSourceType) -> &'static str {
    match ds_type {
        DataSourceType::Gauge => "GAUGE",
        DataSourceType::Counter => "COUNTER",
    }
}

/// The `DS:` and `RRA:` arguments of `rrdtool create` for a series (step and start are separate
/// parameters of `rrd_create_r2`): `DS:value:GAUGE:600:U:U` (or `COUNTER`), then the archives.
pub fn create_arguments(config: &RrdConfig, ds_type: DataSourceType) -> Vec<String> {
    let mut arguments = Vec::with_capacity(1 + config.rras.len());
    arguments.push(format!(
        "DS:{DS_NAME}:{}:{}:U:U",
        ds_type_name(ds_type),
        config.heartbeat
    ));
    arguments.extend(config.rras.iter().map(ToString::to_string));
    arguments
}

/// Appends the `rrdtool update` argument `T:V` for one point to `out`.
///
/// A gauge value is written in Rust's shortest round-trip form (`0.1`, `1e300`), which C's
/// `strtod` reads back exactly. librrd only accepts a counter value written as a plain unsigned
/// integer, so a counter value must be a whole number in `0..2^64`; anything else, and any
/// infinite value, is refused rather than rounded.
pub fn push_update_argument(
    out: &mut String,
    timestamp: i64,
    value: f64,
    ds_type: DataSourceType,
) -> Result<(), ValueError> {
    if !value.is_finite() {
        return Err(ValueError::NonFinite { timestamp, value });
    }
    // Writing into a String cannot fail.
    let _ = write!(out, "{timestamp}:");
    match ds_type {
        DataSourceType::Gauge => {
            let _ = write!(out, "{value:?}");
        }
        DataSourceType::Counter => {
            // 2^64 as f64 is exact; every whole f64 below it converts to u64 without loss.
            if value < 0.0 || value.fract() != 0.0 || value >= 18_446_744_073_709_551_616.0 {
                return Err(ValueError::InvalidCounter { timestamp, value });
            }
            let _ = write!(out, "{}", value as u64);
        }
    }
    Ok(())
}

/// A point value an RRD file cannot store.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// An infinite or NaN value.
    #[error("value {value} at {timestamp} is not a finite number")]
    NonFinite {
        /// The point's time.
        timestamp: i64,
        /// The value.
        value: f64,
    },
    /// A counter value that is not a whole number in `0..2^64`.
    #[error(
        "counter value {value} at {timestamp} is not a whole number in 0..2^64, \
         which is all an RRD COUNTER stores"
    )]
    InvalidCounter {
        /// The point's time.
        timestamp: i64,
        /// The value.
        value: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    fn key(host: &str, service: &str, metric: &str) -> SeriesKey {
        SeriesKey {
            host: host.into(),
            service: service.into(),
            metric: metric.into(),
        }
    }

    #[test]
    fn path_is_opsviews() {
        let path = series_path(Path::new("/var/rrd"), &key("web 1", "HTTP", "time")).unwrap();
        assert_eq!(path, Path::new("/var/rrd/web%201/HTTP/time/value.rrd"));
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        let path = series_path(Path::new("/d"), &key("../../etc", "a/b", "..")).unwrap();
        assert_eq!(
            path,
            Path::new("/d/%2E%2E%2F%2E%2E%2Fetc/a%2Fb/%2E%2E/value.rrd")
        );
        let components: Vec<Component> = path.components().collect();
        assert_eq!(components.len(), 6, "{path:?}");
        assert!(components
            .iter()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
    }

    #[test]
    fn too_long_names_are_refused_not_truncated() {
        let error = series_path(Path::new("/d"), &key("h", "s", &"m".repeat(300))).unwrap_err();
        assert!(
            matches!(
                error,
                BackendError::NameTooLong {
                    encoded_len: 300,
                    limit: 255,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(matches!(
            series_path(Path::new("/d"), &key("", "s", "m")),
            Err(BackendError::EmptyName)
        ));
    }

    #[test]
    fn create_arguments_are_opsviews() {
        let config = RrdConfig::default();
        assert_eq!(
            create_arguments(&config, DataSourceType::Gauge),
            [
                "DS:value:GAUGE:600:U:U",
                "RRA:AVERAGE:0.5:1:600",
                "RRA:AVERAGE:0.5:6:700",
                "RRA:AVERAGE:0.5:24:775",
                "RRA:AVERAGE:0.5:288:797"
            ]
        );
        assert_eq!(
            create_arguments(&config, DataSourceType::Counter)[0],
            "DS:value:COUNTER:600:U:U"
        );
    }

    fn argument(timestamp: i64, value: f64, ds_type: DataSourceType) -> Result<String, ValueError> {
        let mut out = String::new();
        push_update_argument(&mut out, timestamp, value, ds_type).map(|()| out)
    }

    #[test]
    fn gauge_values_round_trip_through_their_text() {
        for value in [0.1, -2.5, 1e300, 5e-324, 123456789.125, 0.0] {
            let text = argument(1_700_000_100, value, DataSourceType::Gauge).unwrap();
            let (time, number) = text.split_once(':').unwrap();
            assert_eq!(time, "1700000100");
            assert_eq!(number.parse::<f64>().unwrap(), value, "{text}");
        }
    }

    #[test]
    fn counter_values_must_be_unsigned_integers() {
        assert_eq!(
            argument(10, 12345.0, DataSourceType::Counter).unwrap(),
            "10:12345"
        );
        assert_eq!(
            argument(10, 9007199254740992.0, DataSourceType::Counter).unwrap(),
            "10:9007199254740992"
        );
        for bad in [1.5, -1.0, 1.9e19] {
            assert!(matches!(
                argument(10, bad, DataSourceType::Counter),
                Err(ValueError::InvalidCounter { .. })
            ));
        }
        assert!(matches!(
            argument(10, f64::INFINITY, DataSourceType::Gauge),
            Err(ValueError::NonFinite { .. })
        ));
        assert!(matches!(
            argument(10, f64::NAN, DataSourceType::Gauge),
            Err(ValueError::NonFinite { .. })
        ));
    }
}
