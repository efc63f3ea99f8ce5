//! Archive specifications: parsing whisper's retention syntax and the rules of
//! `validateArchiveList` that every archive list of a file obeys.
//!
//! Syntax (as whisper's `parseRetentionDef`): `precision:points`, where `precision` is a count of
//! seconds (`60`) or a number with a unit (`60s`, `5m`, `1h`), and `points` is a count (`1440`) or
//! a duration with a unit (`1d`, `30d`, `3y`) divided by the precision. A unit is any prefix of
//! `seconds`, `minutes`, `hours`, `days`, `weeks`, `years` (so `m` is minutes, `y` is 365 days).

use crate::error::WhisperError;

/// One archive: a point every `seconds_per_point` seconds, `points` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveSpec {
    /// Seconds between two points (the precision).
    pub seconds_per_point: u32,
    /// How many points the archive holds.
    pub points: u32,
}

impl ArchiveSpec {
    /// Seconds covered by the archive.
    pub fn retention(&self) -> u64 {
        u64::from(self.seconds_per_point) * u64::from(self.points)
    }
}

/// Whisper's unit names, each with its length in seconds; a unit is matched by prefix, first
/// name first.
const UNITS: [(&str, u64); 6] = [
    ("seconds", 1),
    ("minutes", 60),
    ("hours", 3600),
    ("days", 86_400),
    ("weeks", 86_400 * 7),
    ("years", 86_400 * 365),
];

/// Parses a comma-separated list of retention definitions, e.g. `60s:1d,5m:30d,1h:3y`, and
/// validates it as `whisper.create` would. The result is sorted by precision.
pub fn parse_retentions(retentions: &str) -> Result<Vec<ArchiveSpec>, WhisperError> {
    let mut archives = retentions
        .split(',')
        .map(parse_retention_def)
        .collect::<Result<Vec<_>, _>>()?;
    validate_archive_list(&mut archives)?;
    Ok(archives)
}

/// Parses one retention definition such as `60s:1d` or `60:1440`.
pub fn parse_retention_def(definition: &str) -> Result<ArchiveSpec, WhisperError> {
    let invalid = |reason: &str| WhisperError::InvalidRetention {
        definition: definition.to_owned(),
        reason: reason.to_owned(),
    };
    let (precision, points) = definition
        .trim()
        .split_once(':')
        .ok_or_else(|| invalid("expected precision:points"))?;
    let precision =
        parse_quantity(precision).ok_or_else(|| invalid("invalid precision specification"))?;
    let points = match parse_quantity(points) {
        Some((count, None)) => Some(count),
        Some((count, Some(unit_seconds))) => {
            let seconds_per_point = precision.0.checked_mul(precision.1.unwrap_or(1));
            match seconds_per_point {
                Some(0) | None => None,
                Some(seconds_per_point) => count
                    .checked_mul(unit_seconds)
                    .map(|seconds| seconds / seconds_per_point),
            }
        }
        None => return Err(invalid("invalid retention specification")),
    };
    let seconds_per_point = precision
        .0
        .checked_mul(precision.1.unwrap_or(1))
        .and_then(|seconds| u32::try_from(seconds).ok())
        .filter(|&seconds| seconds > 0)
        .ok_or_else(|| invalid("precision must be between 1 and 2^32-1 seconds"))?;
    let points = points
        .and_then(|points| u32::try_from(points).ok())
        .filter(|&points| points > 0)
        .ok_or_else(|| invalid("an archive needs between 1 and 2^32-1 points"))?;
    Ok(ArchiveSpec {
        seconds_per_point,
        points,
    })
}

/// `digits` or `digits unit` (whisper's `^(\d+)([a-z]+)$`): the number and, if a unit was
/// given, the unit's length in seconds.
fn parse_quantity(text: &str) -> Option<(u64, Option<u64>)> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let number: u64 = text[..digits_end].parse().ok()?;
    let unit = &text[digits_end..];
    if unit.is_empty() {
        return Some((number, None));
    }
    if !unit.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    UNITS
        .iter()
        .find(|(name, _)| name.starts_with(unit))
        .map(|&(_, seconds)| (number, Some(seconds)))
}

/// Sorts `archives` by precision and applies whisper's `validateArchiveList` rules: at least one
/// archive; no two with the same precision; each precision divides the next coarser one; each
/// coarser archive covers a longer time; each archive has at least as many points as the next
/// one consolidates. Additionally (whisper would fail later, while packing the header), the
/// file's size must fit whisper's unsigned 32-bit offsets and no archive may be empty.
pub fn validate_archive_list(archives: &mut [ArchiveSpec]) -> Result<(), WhisperError> {
    if archives.is_empty() {
        return Err(WhisperError::InvalidConfiguration(
            "You must specify at least one archive configuration!".to_owned(),
        ));
    }
    archives.sort_by_key(|archive| archive.seconds_per_point);
    check_archive_order(archives).map_err(WhisperError::InvalidConfiguration)
}

/// The rules of `validateArchiveList` on an already sorted list, as a message on failure.
pub(crate) fn check_archive_order(archives: &[ArchiveSpec]) -> Result<(), String> {
    if let Some(empty) = archives
        .iter()
        .find(|archive| archive.seconds_per_point == 0 || archive.points == 0)
    {
        return Err(format!(
            "archive {}:{} has no seconds per point or no points",
            empty.seconds_per_point, empty.points
        ));
    }
    for (i, pair) in archives.windows(2).enumerate() {
        let (archive, next) = (pair[0], pair[1]);
        if archive.seconds_per_point >= next.seconds_per_point {
            return Err(format!(
                "A Whisper database may not be configured having two archives with the same \
                 precision (archive{i}: {}, archive{}: {})",
                archive.seconds_per_point,
                i + 1,
                next.seconds_per_point
            ));
        }
        if next.seconds_per_point % archive.seconds_per_point != 0 {
            return Err(format!(
                "Higher precision archives' precision must evenly divide all lower precision \
                 archives' precision (archive{i}: {}, archive{}: {})",
                archive.seconds_per_point,
                i + 1,
                next.seconds_per_point
            ));
        }
        if next.retention() <= archive.retention() {
            return Err(format!(
                "Lower precision archives must cover larger time intervals than higher \
                 precision archives (archive{i}: {} seconds, archive{}: {} seconds)",
                archive.retention(),
                i + 1,
                next.retention()
            ));
        }
        let points_per_consolidation = next.seconds_per_point / archive.seconds_per_point;
        if archive.points < points_per_consolidation {
            return Err(format!(
                "Each archive must have at least enough points to consolidate to the next \
                 archive (archive{} consolidates {points_per_consolidation} of archive{i}'s \
                 points but it has only {} total points)",
                i + 1,
                archive.points
            ));
        }
    }
    let data_bytes: u64 = archives
        .iter()
        .map(|archive| u64::from(archive.points) * 12)
        .sum();
    let header_bytes = 16 + 12 * archives.len() as u64;
    let max_retention = archives.iter().map(ArchiveSpec::retention).max();
    if header_bytes + data_bytes > u64::from(u32::MAX)
        || max_retention.is_some_and(|retention| retention > u64::from(u32::MAX))
    {
        return Err("file too large for whisper's 32-bit header fields".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seconds_per_point: u32, points: u32) -> ArchiveSpec {
        ArchiveSpec {
            seconds_per_point,
            points,
        }
    }

    #[test]
    fn parses_whisper_syntax() {
        assert_eq!(
            parse_retentions("60s:1d,5m:30d,1h:3y").unwrap(),
            vec![spec(60, 1440), spec(300, 8640), spec(3600, 26280)]
        );
        assert_eq!(parse_retention_def("60:1440").unwrap(), spec(60, 1440));
        assert_eq!(
            parse_retention_def(" 10sec:2w ").unwrap(),
            spec(10, 120_960)
        );
        assert_eq!(
            parse_retention_def("1minutes:1hours").unwrap(),
            spec(60, 60)
        );
        assert_eq!(parse_retention_def("7:1m").unwrap(), spec(7, 8));
        for bad in [
            "60", "60s", ":1d", "60x:1d", "60S:1d", "s:1d", "60s:", "60s:1mo", "0:10",
        ] {
            assert!(parse_retention_def(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn validation_follows_whisper() {
        let mut unsorted = vec![spec(300, 10), spec(60, 10)];
        validate_archive_list(&mut unsorted).unwrap();
        assert_eq!(unsorted, vec![spec(60, 10), spec(300, 10)]);
        for mut bad in [
            vec![],
            vec![spec(60, 10), spec(60, 20)],
            vec![spec(60, 10), spec(90, 100)],
            vec![spec(60, 100), spec(120, 50)],
            vec![spec(60, 4), spec(300, 100)],
        ] {
            assert!(validate_archive_list(&mut bad).is_err(), "{bad:?} accepted");
        }
    }
}
