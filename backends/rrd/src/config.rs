//! The settings of the RRD files perfpipe creates: step, heartbeat and round-robin archives.
//!
//! Owns [`RrdConfig`] and [`ArchiveSpec`]. Guarantees: the defaults are Opsview's (step 300 s,
//! heartbeat 600 s, four `AVERAGE` archives covering about two days, two weeks, two months and
//! two years), and a configuration that [`RrdConfig::validate`] accepts produces `rrdtool
//! create` arguments librrd accepts. Settings only affect files created afterwards; existing
//! files keep the layout they were created with.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The archives Opsview creates, in `rrdtool create` syntax ([`RrdConfig::default`] holds them).
pub const OPSVIEW_RRAS: [&str; 4] = [
    "RRA:AVERAGE:0.5:1:600",
    "RRA:AVERAGE:0.5:6:700",
    "RRA:AVERAGE:0.5:24:775",
    "RRA:AVERAGE:0.5:288:797",
];

/// Opsview's base step in seconds.
pub const OPSVIEW_STEP: u32 = 300;

/// Opsview's heartbeat in seconds: a gap longer than this between two updates is unknown.
pub const OPSVIEW_HEARTBEAT: u32 = 600;

/// How the file layout of new RRD files is chosen. Deserializes from e.g. TOML:
///
/// ```toml
/// step = 300
/// heartbeat = 600
/// rras = ["RRA:AVERAGE:0.5:1:600", "RRA:MAX:0.5:1:600"]
/// ```
///
/// Every field is optional and defaults to Opsview's value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RrdConfig {
    /// Seconds per primary data point.
    pub step: u32,
    /// Longest gap, in seconds, between two updates before the interval counts as unknown.
    pub heartbeat: u32,
    /// The round-robin archives, oldest-first order as given to `rrdtool create`.
    pub rras: Vec<ArchiveSpec>,
}

impl Default for RrdConfig {
    fn default() -> Self {
        RrdConfig {
            step: OPSVIEW_STEP,
            heartbeat: OPSVIEW_HEARTBEAT,
            rras: [(1, 600), (6, 700), (24, 775), (288, 797)]
                .into_iter()
                .map(|(steps, rows)| ArchiveSpec {
                    consolidation: ConsolidationFunction::Average,
                    xff: 0.5,
                    steps,
                    rows,
                })
                .collect(),
        }
    }
}

impl RrdConfig {
    /// Checks what a deserializer cannot: step and heartbeat non-zero and at least one archive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.step == 0 {
            return Err(ConfigError::ZeroStep);
        }
        if self.heartbeat == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.rras.is_empty() {
            return Err(ConfigError::NoArchives);
        }
        Ok(())
    }
}

/// A consolidation function of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsolidationFunction {
    /// `AVERAGE`
    Average,
    /// `MIN`
    Min,
    /// `MAX`
    Max,
    /// `LAST`
    Last,
}

impl ConsolidationFunction {
    /// The name librrd uses.
    pub fn as_rrd_name(self) -> &'static str {
        match self {
            ConsolidationFunction::Average => "AVERAGE",
            ConsolidationFunction::Min => "MIN",
            ConsolidationFunction::Max => "MAX",
            ConsolidationFunction::Last => "LAST",
        }
    }
}

impl From<perfpipe_backend::Consolidation> for ConsolidationFunction {
    fn from(consolidation: perfpipe_backend::Consolidation) -> Self {
        match consolidation {
            perfpipe_backend::Consolidation::Average => ConsolidationFunction::Average,
            perfpipe_backend::Consolidation::Min => ConsolidationFunction::Min,
            perfpipe_backend::Consolidation::Max => ConsolidationFunction::Max,
        }
    }
}

impl fmt::Display for ConsolidationFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_rrd_name())
    }
}

/// One round-robin archive, `RRA:CF:xff:steps:rows` as `rrdtool create` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct ArchiveSpec {
    /// How primary data points are combined into a row.
    pub consolidation: ConsolidationFunction,
    /// Fraction of unknown primary data points a row may have and still be known, in `[0, 1)`.
    pub xff: f64,
    /// Primary data points per row.
    pub steps: u32,
    /// Rows kept.
    pub rows: u32,
}

impl fmt::Display for ArchiveSpec {
    /// The `rrdtool create` argument.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RRA:{}:{}:{}:{}",
            self.consolidation, self.xff, self.steps, self.rows
        )
    }
}

impl FromStr for ArchiveSpec {
    type Err = ConfigError;

    /// Parses `RRA:CF:xff:steps:rows` with CF one of `AVERAGE`, `MIN`, `MAX`, `LAST`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &'static str| ConfigError::InvalidArchive {
            text: text.to_owned(),
            why,
        };
        let fields: Vec<&str> = text.split(':').collect();
        let [tag, cf, xff, steps, rows] = fields[..] else {
            return Err(invalid("expected RRA:CF:xff:steps:rows"));
        };
        if tag != "RRA" {
            return Err(invalid("expected RRA:CF:xff:steps:rows"));
        }
        let consolidation = match cf {
            "AVERAGE" => ConsolidationFunction::Average,
            "MIN" => ConsolidationFunction::Min,
            "MAX" => ConsolidationFunction::Max,
            "LAST" => ConsolidationFunction::Last,
            _ => return Err(invalid("CF must be AVERAGE, MIN, MAX or LAST")),
        };
        let xff: f64 = xff.parse().map_err(|_| invalid("xff must be a number"))?;
        if !(0.0..1.0).contains(&xff) {
            return Err(invalid("xff must be at least 0 and less than 1"));
        }
        let steps: u32 = steps
            .parse()
            .map_err(|_| invalid("steps must be a positive integer"))?;
        let rows: u32 = rows
            .parse()
            .map_err(|_| invalid("rows must be a positive integer"))?;
        if steps == 0 || rows == 0 {
            return Err(invalid("steps and rows must be positive"));
        }
        Ok(ArchiveSpec {
            consolidation,
            xff,
            steps,
            rows,
        })
    }
}

impl TryFrom<String> for ArchiveSpec {
    type Error = ConfigError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// An archive that is not `RRA:CF:xff:steps:rows`.
    #[error("invalid archive {text:?}: {why}")]
    InvalidArchive {
        /// The archive as given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `step = 0`.
    #[error("step must be at least 1 second")]
    ZeroStep,
    /// `heartbeat = 0`.
    #[error("heartbeat must be at least 1 second")]
    ZeroHeartbeat,
    /// `rras = []`.
    #[error("at least one archive (RRA) is needed")]
    NoArchives,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_opsviews() {
        let config = RrdConfig::default();
        assert_eq!(config.step, 300);
        assert_eq!(config.heartbeat, 600);
        let rras: Vec<String> = config.rras.iter().map(ToString::to_string).collect();
        assert_eq!(rras, OPSVIEW_RRAS);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn deserializes_with_defaults_for_missing_fields() {
        let config: RrdConfig = toml::from_str("step = 60\nrras = [\"RRA:MIN:0.5:1:10\"]").unwrap();
        assert_eq!(config.step, 60);
        assert_eq!(config.heartbeat, 600);
        assert_eq!(config.rras, vec!["RRA:MIN:0.5:1:10".parse().unwrap()]);
        let error = toml::from_str::<RrdConfig>("rras = [\"RRA:AVG:0.5:1:10\"]").unwrap_err();
        assert!(error.to_string().contains("CF must be"), "{error}");
        assert!(toml::from_str::<RrdConfig>("stpe = 60").is_err());
        assert_eq!(
            toml::from_str::<RrdConfig>("").unwrap(),
            RrdConfig::default()
        );
    }

    #[test]
    fn archives_parse_and_print_back() {
        let spec: ArchiveSpec = "RRA:MAX:0.25:12:100".parse().unwrap();
        assert_eq!(spec.consolidation, ConsolidationFunction::Max);
        assert_eq!(spec.xff, 0.25);
        assert_eq!((spec.steps, spec.rows), (12, 100));
        assert_eq!(spec.to_string(), "RRA:MAX:0.25:12:100");
    }

    #[test]
    fn bad_archives_are_refused_with_the_reason() {
        for (text, why) in [
            ("RRA:AVERAGE:0.5:1", "expected RRA:CF:xff:steps:rows"),
            ("DS:AVERAGE:0.5:1:600", "expected RRA:CF:xff:steps:rows"),
            ("RRA:MEDIAN:0.5:1:600", "CF must be"),
            ("RRA:AVERAGE:1.0:1:600", "xff must be at least 0"),
            ("RRA:AVERAGE:x:1:600", "xff must be a number"),
            ("RRA:AVERAGE:0.5:0:600", "steps and rows must be positive"),
            ("RRA:AVERAGE:0.5:1:-3", "rows must be a positive integer"),
        ] {
            let error = text.parse::<ArchiveSpec>().unwrap_err();
            assert!(error.to_string().contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn invalid_settings_are_refused() {
        let mut config = RrdConfig {
            step: 0,
            ..RrdConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroStep));
        config.step = 60;
        config.heartbeat = 0;
        assert_eq!(config.validate(), Err(ConfigError::ZeroHeartbeat));
        config.heartbeat = 120;
        config.rras.clear();
        assert_eq!(config.validate(), Err(ConfigError::NoArchives));
    }
}
