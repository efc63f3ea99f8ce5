//! Graphite's time forms (graphite-web's `attime.py`), in UTC: epoch seconds, `now`,
//! offsets (`-1h`, `-7d`, `+30min`, `-2w3d`; units `s`, `min`, `h`, `d`, `w`, `mon` = 30 days,
//! `y` = 365 days), clock times (`HH:MM`, `9am`, `noon`, `midnight`, `teatime`) and dates
//! (`YYYYMMDD`, `MM/DD/YY`, `today`, `yesterday`, `tomorrow`, `jan12`, `monday`), combined as
//! `HH:MM_YYYYMMDD` or `noon+1d`. As in graphite, `5m` is not a unit (ambiguous between minutes
//! and months): it is refused rather than guessed.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// A time text that is not one of Graphite's forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a time: {reason}")]
pub struct TimeError {
    text: String,
    reason: String,
}

fn error(text: &str, reason: impl Into<String>) -> TimeError {
    TimeError {
        text: text.to_string(),
        reason: reason.into(),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The epoch second `text` names, relative to `now` (epoch seconds).
pub fn parse_at_time(text: &str, now: i64) -> Result<i64, TimeError> {
    let cleaned: String = text
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !matches!(c, '_' | ',' | ' '))
        .collect();
    if !cleaned.is_empty() && cleaned.bytes().all(|b| b.is_ascii_digit()) {
        let looks_like_date = cleaned.len() == 8
            && cleaned[..4].parse::<u32>().is_ok_and(|y| y > 1900)
            && cleaned[4..6].parse::<u32>().is_ok_and(|m| m < 13)
            && cleaned[6..].parse::<u32>().is_ok_and(|d| d < 32);
        if !looks_like_date {
            return cleaned
                .parse::<i64>()
                .map_err(|_| error(text, "epoch seconds out of range"));
        }
    }
    let (reference, offset) = match cleaned.find(['+', '-']) {
        Some(at) => cleaned.split_at(at),
        None => (cleaned.as_str(), ""),
    };
    let base = parse_reference(reference, now).map_err(|reason| error(text, reason))?;
    let shift = parse_time_offset(offset).map_err(|e| error(text, e.reason))?;
    base.checked_add(shift)
        .ok_or_else(|| error(text, "out of range"))
}

fn parse_reference(reference: &str, now: i64) -> Result<i64, String> {
    if reference.is_empty() || reference == "now" {
        return Ok(now);
    }
    let now_time = chrono::DateTime::from_timestamp(now, 0)
        .ok_or("now out of range")?
        .naive_utc();
    let mut rest = reference;
    let (mut hour, mut minute) = (0u32, 0u32);
    if let Some(colon) = rest.find(':').filter(|&i| i > 0 && i < 3) {
        hour = rest[..colon].parse().map_err(|_| "bad hour")?;
        let minutes = rest.get(colon + 1..colon + 3).ok_or("bad minutes")?;
        minute = minutes.parse().map_err(|_| "bad minutes")?;
        rest = &rest[colon + 3..];
        if let Some(after) = rest.strip_prefix("am") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix("pm") {
            hour = (hour + 12) % 24;
            rest = after;
        }
    }
    if let Some(at) = rest.find("am").filter(|&i| i > 0 && i < 3) {
        hour = rest[..at].parse().map_err(|_| "bad hour")?;
        rest = &rest[at + 2..];
    }
    if let Some(at) = rest.find("pm").filter(|&i| i > 0 && i < 3) {
        hour = (rest[..at].parse::<u32>().map_err(|_| "bad hour")? + 12) % 24;
        rest = &rest[at + 2..];
    }
    if let Some(after) = rest.strip_prefix("noon") {
        (hour, minute) = (12, 0);
        rest = after;
    } else if let Some(after) = rest.strip_prefix("midnight") {
        (hour, minute) = (0, 0);
        rest = after;
    } else if let Some(after) = rest.strip_prefix("teatime") {
        (hour, minute) = (16, 0);
        rest = after;
    }
    let time = NaiveTime::from_hms_opt(hour, minute, 0).ok_or("no such time of day")?;
    let today = now_time.date();
    let date = match rest {
        "" | "today" => today,
        "yesterday" => today - Duration::days(1),
        "tomorrow" => today + Duration::days(1),
        _ if rest.matches('/').count() == 2 => {
            let mut parts = rest.split('/').map(|p| p.parse::<i32>());
            let (Some(Ok(m)), Some(Ok(d)), Some(Ok(mut y))) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err("a date is MM/DD/YY".into());
            };
            if y < 1900 {
                y += 1900;
            }
            if y < 1970 {
                y += 100;
            }
            NaiveDate::from_ymd_opt(y, m as u32, d as u32).ok_or("no such date")?
        }
        _ if rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_digit()) => {
            NaiveDate::from_ymd_opt(
                rest[..4].parse().map_err(|_| "bad year")?,
                rest[4..6].parse().map_err(|_| "bad month")?,
                rest[6..].parse().map_err(|_| "bad day")?,
            )
            .ok_or("no such date")?
        }
        _ if rest.len() >= 3 && MONTHS.contains(&&rest[..3]) => {
            let month = MONTHS.iter().position(|m| *m == &rest[..3]).unwrap_or(0) as u32 + 1;
            let digits: String = rest
                .chars()
                .rev()
                .take(2)
                .filter(char::is_ascii_digit)
                .collect();
            let digits: String = digits.chars().rev().collect();
            if digits.is_empty() || !rest.ends_with(|c: char| c.is_ascii_digit()) {
                return Err("day of month required after month name".into());
            }
            let day = if rest[rest.len() - 2..].bytes().all(|b| b.is_ascii_digit()) {
                rest[rest.len() - 2..].parse::<u32>()
            } else {
                rest[rest.len() - 1..].parse::<u32>()
            }
            .map_err(|_| "bad day")?;
            NaiveDate::from_ymd_opt(today.year(), month, day).ok_or("no such date")?
        }
        _ if rest.len() >= 3 && WEEKDAYS.contains(&&rest[..3]) => {
            let wanted = WEEKDAYS.iter().position(|d| *d == &rest[..3]).unwrap_or(0) as i64;
            let current = i64::from(today.weekday().num_days_from_sunday());
            let back = (current - wanted).rem_euclid(7);
            today - Duration::days(back)
        }
        other => return Err(format!("unknown day reference {other:?}")),
    };
    Ok(NaiveDateTime::new(date, time).and_utc().timestamp())
}

/// Seconds in an offset such as `-1h`, `+30min`, `2d` (sign optional), `-1w2d`; `""` is 0.
pub fn parse_time_offset(offset: &str) -> Result<i64, TimeError> {
    if offset.is_empty() {
        return Ok(0);
    }
    let (sign, mut rest) = match offset.as_bytes()[0] {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        b'0'..=b'9' => (1, offset),
        _ => return Err(error(offset, "an offset starts with +, - or a digit")),
    };
    let mut total = 0i64;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| error(offset, "a number is expected before each unit"))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let seconds = unit_seconds(unit).ok_or_else(|| {
            error(
                offset,
                format!("unit {unit:?}: s, min, h, d, w, mon or y (m alone is ambiguous)"),
            )
        })?;
        total = number
            .checked_mul(seconds)
            .and_then(|span| total.checked_add(span))
            .ok_or_else(|| error(offset, "more seconds than a time can hold"))?;
    }
    Ok(sign * total)
}

fn unit_seconds(unit: &str) -> Option<i64> {
    Some(if unit.starts_with('s') {
        1
    } else if unit.starts_with("min") {
        60
    } else if unit.starts_with('h') {
        3_600
    } else if unit.starts_with('d') {
        86_400
    } else if unit.starts_with('w') {
        7 * 86_400
    } else if unit.starts_with("mon") {
        30 * 86_400
    } else if unit.starts_with('y') {
        365 * 86_400
    } else {
        return None;
    })
}

/// Midnight, hour or minute before `at` (for `hitcount(…, alignToInterval)`).
pub(crate) fn truncate(at: i64, interval: i64) -> i64 {
    let Some(time) = chrono::DateTime::from_timestamp(at, 0) else {
        return at;
    };
    let time = time.naive_utc();
    let truncated = if interval >= 86_400 {
        time.date().and_hms_opt(0, 0, 0)
    } else if interval >= 3_600 {
        time.date().and_hms_opt(time.hour(), 0, 0)
    } else if interval >= 60 {
        time.date().and_hms_opt(time.hour(), time.minute(), 0)
    } else {
        Some(time)
    };
    truncated.map_or(at, |t| t.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC, a Tuesday

    #[test]
    fn graphite_forms() {
        assert_eq!(parse_at_time("now", NOW), Ok(NOW));
        assert_eq!(parse_at_time("-1h", NOW), Ok(NOW - 3_600));
        assert_eq!(parse_at_time("-7d", NOW), Ok(NOW - 7 * 86_400));
        assert_eq!(parse_at_time("-30min", NOW), Ok(NOW - 1_800));
        assert_eq!(parse_at_time("now-1w2d", NOW), Ok(NOW - 9 * 86_400));
        assert_eq!(parse_at_time("1699990000", NOW), Ok(1_699_990_000));
        assert_eq!(parse_at_time("12:30_20231110", NOW), Ok(1_699_619_400));
        assert_eq!(parse_at_time("20231110", NOW), Ok(1_699_574_400));
        assert_eq!(parse_at_time("midnight", NOW), Ok(1_699_920_000));
        assert_eq!(parse_at_time("noon yesterday", NOW), Ok(1_699_876_800));
        assert_eq!(parse_at_time("11/10/23", NOW), Ok(1_699_574_400));
        assert_eq!(parse_at_time("monday", NOW), Ok(1_699_920_000 - 86_400));
        assert_eq!(parse_at_time("-1mon", NOW), Ok(NOW - 30 * 86_400));
    }

    #[test]
    fn refusals_name_the_problem() {
        let refused = parse_at_time("-5m", NOW).unwrap_err().to_string();
        assert!(refused.contains("ambiguous"), "{refused}");
        assert!(parse_at_time("sometime", NOW).is_err());
        assert!(parse_at_time("-1x", NOW).is_err());
    }
}
