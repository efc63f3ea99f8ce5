//! Rollups: hour, day, week and month aggregates (avg, max, min) of series, computed
//! incrementally as the writer flushes points, without ever reading raw data back. This module
//! owns the `[[rollups]]` rules (parsing, validation, which rule applies to a series), the
//! calendar of each rule's time zone (DST-correct local hours, days, Monday weeks and months),
//! the per-series running state (sum, count, min, max of the open period and of the period just
//! before it) with its snapshot for restarts, and the names and Whisper retentions of the
//! aggregate series. It guarantees: every aggregate is stamped with the start of its period in
//! epoch seconds; a period's values are emitted once it is closed (by a point of a later period
//! or by [`Rollups::close_due`]) and emitted again, corrected, when a late point lands in it
//! while it is still the open period or the one just before it; a later point is counted as too
//! late and dropped; weekday aggregates never contain Saturday or Sunday points; aggregate
//! series are never rolled up again; and no input (timestamps, values, names, snapshots) panics.
//!
//! Decisions (the issue left these open):
//! - **First match wins.** Rules are tried in file order against `host/service/metric`; the first
//!   whose glob matches applies, and no later rule is looked at. A rule with `methods = []`
//!   therefore excludes the series it matches from rollups. Series matched by no rule are not
//!   rolled up.
//! - **Globs** are this module's own (no dependency): `*` matches any run of characters
//!   *including* `/` (so `match = "*"` matches every series and `"host1/*"` all of host1's),
//!   `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character of a class, and
//!   `\x` the character `x` itself. An unclosed class, an empty class, a reversed range and a
//!   trailing `\` are validation errors.
//! - **Hours** are the hours of the local clock as they really elapse: an hour period starts
//!   where the local clock shows `hh:00:00` and lasts 3600 real seconds. Where the zone's offset
//!   is a whole number of hours these are exactly the UTC hours; in a `+05:30` zone they start
//!   at `:30` UTC. When the clocks go back, the repeated local hour (say 02:00-03:00 in Berlin
//!   in October) is two periods with two different stamps; when they go forward the skipped
//!   hour has no period. So a local day has 23, 24 or 25 hour periods. (An offset change that
//!   is not on the local hour grid, as on Lord Howe Island, cuts the hour it falls in in two.)
//! - **Days, weeks, months** are local calendar periods: a day runs from local midnight to the
//!   next local midnight (23 or 25 hours across a DST change; where midnight is ambiguous the
//!   earlier one counts, where it is skipped the first instant after the gap), a week from
//!   Monday's midnight, a month from the first's midnight.
//! - **Weekends.** A point is a weekend point when its local day period is a Saturday or a
//!   Sunday. Weekday aggregates (`service/H/avg`) always leave weekend points out. With
//!   `useweekend = true` a second set of aggregates of only the weekend points is produced under
//!   `service/H/avg/weekend` (and `/D/`, `/W/`, `/M/`); a week's or month's weekend aggregate is
//!   stamped with the same week or month start as its weekday aggregate. With
//!   `useweekend = false` weekend points are dropped from rollups (they still move time on, so
//!   they still close Friday's periods).
//! - **Late points.** Per series and level the *open* period is the period of the newest point
//!   seen (of any kind). A point in the open period or a later one is always taken. A point in
//!   the period immediately before the open one (the calendar predecessor, whether or not it
//!   had points) is taken and that period's aggregates are emitted again, corrected, for the
//!   writer to overwrite the same timestamp. A point older than that is dropped for that level
//!   and counted in [`RollupStats::too_late`] (per level: a point two hours late is too late
//!   for the hour level but still counts for its day). A point added to the open period after
//!   [`Rollups::close_due`] already emitted it also re-emits it.
//! - **Closing by the clock** is for series that went quiet: the node closes the ended periods
//!   of series with no point for 10 minutes ([`Rollups::close_quiet`]); a series still being
//!   fed closes its periods with its next point. Else a catch-up of past points (a replayed
//!   backlog, a hand-off, a backfill) would emit a period again at every flush that lands in it.
//! - **Rejected points.** A non-finite value (NaN, ±inf) or a timestamp outside the years
//!   0001-9999 is not aggregated, does not move time on, and is counted in
//!   [`RollupStats::rejected`].
//! - **Aggregate series are skipped.** A series whose service ends in `/<L>/<method>` or
//!   `/<L>/<method>/weekend` (`L` one of `H`, `D`, `W`, `M`; method `avg`, `max`, `min`), i.e.
//!   exactly the names produced here, is never rolled up; `a/H/b` is an ordinary service.
//! - **Retention.** Defaults are 25 hours, 7 days, 5 weeks, 1 month; a rule may raise them but
//!   not lower them. The Whisper strings are `3600s:<H>h`, `86400s:<D>d`, `604800s:<W>w`, and
//!   `2678400s:<M*31>d` for months, whose step is taken as 31 days because months have no fixed
//!   length. Whisper files align points to their step in UTC, so a month stamp lands in the
//!   31-day slot containing it; as months are 28-31 days long, roughly once in five years two
//!   consecutive months share a slot and the second overwrites the first there. Days stamped at
//!   local midnight and hours at `:30` land in the slot containing them, one per slot.
//! - **Snapshots** ([`Rollups::write_state`] and [`Rollups::read_state`], the compact binary
//!   form of `state.rs` that shards save; [`Rollups::snapshot`] and [`Rollups::restore`], the
//!   serde form that earlier versions saved as JSON) keep every series' open and
//!   previous periods and the counters. On restore a series keeps its state only if the rule
//!   that now applies to it has the same time zone and `useweekend` as when the state was
//!   taken (methods and retention may change freely, since all of sum, count, min and max are
//!   kept); otherwise it starts afresh (counted in [`RollupStats::restore_discarded`]).
//! - **Cost.** A point inside the cached open period of every level costs four range checks
//!   and four accumulator updates; the zone is consulted only when a period changes (or for a
//!   late point). The series lookup hashes a length-prefixed key with a seeded word hasher.
//!   One series takes a 136-byte hash-table slot (key pointer and fixed state), its key, and 8
//!   accumulators of 32 bytes on the heap (16 with `useweekend`): about 530 bytes per series at
//!   300,000 series including the table's spare capacity (about 790 with `useweekend`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Weekday,
};
use chrono_tz::Tz;
use perfpipe_backend::Name;
use serde::{Deserialize, Serialize};

mod state;
pub use state::StateError;

/// Earliest timestamp aggregated: 0001-01-01T00:00:00Z (chrono's calendar reaches much further,
/// but a bounded range keeps every sum of a timestamp and a period length far from overflow).
const MIN_TIMESTAMP: i64 = -62_135_596_800;
/// Latest timestamp aggregated: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

// ---------------------------------------------------------------------------------------------
// Levels, methods, names
// ---------------------------------------------------------------------------------------------

/// The period length of an aggregate series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    Hour,
    Day,
    Week,
    Month,
}

impl Level {
    /// All levels, in the order used by per-level arrays such as [`RollupStats::too_late`].
    pub const ALL: [Level; 4] = [Level::Hour, Level::Day, Level::Week, Level::Month];

    /// The letter used in aggregate series names and in the `retention` table.
    pub fn code(self) -> &'static str {
        match self {
            Level::Hour => "H",
            Level::Day => "D",
            Level::Week => "W",
            Level::Month => "M",
        }
    }

    /// The Whisper step of the level's archive; a month is taken as 31 days.
    pub fn step_seconds(self) -> u32 {
        match self {
            Level::Hour => 3_600,
            Level::Day => 86_400,
            Level::Week => 7 * 86_400,
            Level::Month => 31 * 86_400,
        }
    }

    /// Position in [`Level::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_code(code: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.code() == code)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An aggregation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Method {
    Avg,
    Max,
    Min,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Avg, Method::Max, Method::Min];

    /// The name used in the configuration and in aggregate series names.
    pub fn name(self) -> &'static str {
        match self {
            Method::Avg => "avg",
            Method::Max => "max",
            Method::Min => "min",
        }
    }

    /// Parses a configuration name (`avg`, `max`, `min`).
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.name() == name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The service of an aggregate series: `service1/H/avg`, or `service1/H/avg/weekend` for the
/// weekend aggregates. Host and metric are those of the source series.
pub fn aggregate_service(service: &str, level: Level, method: Method, weekend: bool) -> Name {
    // Built in place: a name of up to 24 bytes stays inline, and every aggregate value emitted
    // makes one.
    let suffix = if weekend { "/weekend" } else { "" };
    let mut name = Name::with_capacity(service.len() + 6 + suffix.len());
    for part in [service, "/", level.code(), "/", method.name(), suffix] {
        name.push_str(part);
    }
    name
}

/// What an aggregate series' service says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateService<'a> {
    /// The source series' service.
    pub base: &'a str,
    pub level: Level,
    pub method: Method,
    pub weekend: bool,
}

/// Recognizes a service produced by [`aggregate_service`]; `None` for any other service.
pub fn parse_aggregate_service(service: &str) -> Option<AggregateService<'_>> {
    let (rest, weekend) = match service.strip_suffix("/weekend") {
        Some(rest) => (rest, true),
        None => (service, false),
    };
    let (rest, method) = rest.rsplit_once('/')?;
    let method = Method::from_name(method)?;
    let (base, level) = rest.rsplit_once('/')?;
    let level = Level::from_code(level)?;
    Some(AggregateService {
        base,
        level,
        method,
        weekend,
    })
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// One `[[rollups]]` table as written in the configuration. Only `match` is required; the
/// others default to all three methods, `useweekend = false`, UTC and the default retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupRule {
    /// Glob over `host/service/metric`.
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default = "RollupRule::default_methods")]
    pub methods: Vec<String>,
    #[serde(default)]
    pub useweekend: bool,
    /// IANA time zone name.
    #[serde(default = "RollupRule::default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub retention: RetentionConfig,
}

impl RollupRule {
    fn default_methods() -> Vec<String> {
        Method::ALL.iter().map(|m| m.name().to_owned()).collect()
    }

    fn default_timezone() -> String {
        "UTC".to_owned()
    }
}

/// The `retention = { H = .., D = .., W = .., M = .. }` table; a missing key keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(rename = "H", default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
    #[serde(rename = "D", default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(rename = "W", default, skip_serializing_if = "Option::is_none")]
    pub weeks: Option<u32>,
    #[serde(rename = "M", default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
}

/// How many points each level's aggregate series keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retention {
    pub hours: u32,
    pub days: u32,
    pub weeks: u32,
    pub months: u32,
}

impl Retention {
    /// The minimum retention: 25 hours, 7 days, 5 weeks, 1 month.
    pub const DEFAULT: Retention = Retention {
        hours: 25,
        days: 7,
        weeks: 5,
        months: 1,
    };

    /// The number of points (periods) kept at `level`.
    pub fn points(&self, level: Level) -> u32 {
        match level {
            Level::Hour => self.hours,
            Level::Day => self.days,
            Level::Week => self.weeks,
            Level::Month => self.months,
        }
    }

    /// The Whisper retention definition of `level`'s aggregate series: `3600s:25h`,
    /// `86400s:7d`, `604800s:5w`, `2678400s:31d` (a month step is 31 days).
    pub fn whisper_retention(&self, level: Level) -> String {
        match level {
            Level::Hour => format!("3600s:{}h", self.hours),
            Level::Day => format!("86400s:{}d", self.days),
            Level::Week => format!("604800s:{}w", self.weeks),
            Level::Month => format!("2678400s:{}d", u64::from(self.months) * 31),
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::DEFAULT
    }
}

/// A configuration error; each names the rule (0-based index in the file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    #[error("rollups rule {rule}: unknown time zone {name:?} (expected an IANA name such as \"Europe/Berlin\")")]
    UnknownTimezone { rule: usize, name: String },
    #[error("rollups rule {rule}: unknown method {name:?} (expected avg, max or min)")]
    UnknownMethod { rule: usize, name: String },
    #[error("rollups rule {rule}: invalid glob {pattern:?}: {reason}")]
    InvalidGlob {
        rule: usize,
        pattern: String,
        reason: String,
    },
    #[error("rollups rule {rule}: retention {level} = {value} is lower than the default {default}; retention may be raised, never lowered")]
    RetentionLowered {
        rule: usize,
        level: Level,
        value: u32,
        default: u32,
    },
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct ValidatedRule {
    pattern: String,
    glob: Glob,
    methods: Vec<Method>,
    useweekend: bool,
    timezone: Tz,
    retention: Retention,
}

impl ValidatedRule {
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The methods, without duplicates, in configuration order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    pub fn useweekend(&self) -> bool {
        self.useweekend
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Whether the rule matches the series `host/service/metric`.
    pub fn matches(&self, host: &str, service: &str, metric: &str) -> bool {
        self.glob.matches(&format!("{host}/{service}/{metric}"))
    }

    /// Accumulator sets per period: weekday only, or weekday and weekend.
    fn variant_count(&self) -> usize {
        if self.useweekend {
            2
        } else {
            1
        }
    }
}

/// The validated `[[rollups]]` rules, in configuration order.
#[derive(Debug, Clone, Default)]
pub struct RollupRules {
    rules: Vec<ValidatedRule>,
}

impl RollupRules {
    /// Validates the rules: zones, methods, globs, and retentions no lower than the defaults.
    pub fn new(rules: Vec<RollupRule>) -> Result<Self, RollupError> {
        let mut validated = Vec::with_capacity(rules.len());
        for (index, rule) in rules.into_iter().enumerate() {
            let timezone: Tz = rule
                .timezone
                .parse()
                .map_err(|_| RollupError::UnknownTimezone {
                    rule: index,
                    name: rule.timezone.clone(),
                })?;
            let mut methods = Vec::with_capacity(rule.methods.len());
            for name in &rule.methods {
                let method = Method::from_name(name).ok_or_else(|| RollupError::UnknownMethod {
                    rule: index,
                    name: name.clone(),
                })?;
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            let glob = Glob::compile(&rule.pattern).map_err(|reason| RollupError::InvalidGlob {
                rule: index,
                pattern: rule.pattern.clone(),
                reason,
            })?;
            let retention = validate_retention(index, rule.retention)?;
            validated.push(ValidatedRule {
                pattern: rule.pattern,
                glob,
                methods,
                useweekend: rule.useweekend,
                timezone,
                retention,
            });
        }
        Ok(RollupRules { rules: validated })
    }

    pub fn rules(&self) -> &[ValidatedRule] {
        &self.rules
    }

    /// The first rule whose glob matches `host/service/metric`, with its index.
    pub fn rule_for(
        &self,
        host: &str,
        service: &str,
        metric: &str,
    ) -> Option<(usize, &ValidatedRule)> {
        if self.rules.is_empty() {
            return None;
        }
        let subject = format!("{host}/{service}/{metric}");
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.glob.matches(&subject))
    }

    /// For an aggregate series produced here, the Whisper retention definition to create it
    /// with (from the rule of its source series); `None` for any other series.
    pub fn aggregate_retention(&self, host: &str, service: &str, metric: &str) -> Option<String> {
        let aggregate = parse_aggregate_service(service)?;
        let (_, rule) = self.rule_for(host, aggregate.base, metric)?;
        Some(rule.retention.whisper_retention(aggregate.level))
    }
}

fn validate_retention(rule: usize, config: RetentionConfig) -> Result<Retention, RollupError> {
    let mut retention = Retention::DEFAULT;
    let requested = [config.hours, config.days, config.weeks, config.months];
    for (level, value) in Level::ALL.into_iter().zip(requested) {
        let Some(value) = value else { continue };
        let default = Retention::DEFAULT.points(level);
        if value < default {
            return Err(RollupError::RetentionLowered {
                rule,
                level,
                value,
                default,
            });
        }
        match level {
            Level::Hour => retention.hours = value,
            Level::Day => retention.days = value,
            Level::Week => retention.weeks = value,
            Level::Month => retention.months = value,
        }
    }
    Ok(retention)
}

// ---------------------------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyRun,
    /// `[...]`: inclusive ranges (a single character is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl GlobToken {
    fn matches_char(&self, c: char) -> bool {
        match self {
            GlobToken::Literal(literal) => *literal == c,
            GlobToken::AnyChar => true,
            GlobToken::AnyRun => false,
            GlobToken::Class { negated, ranges } => {
                ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Glob {
    tokens: Vec<GlobToken>,
}

impl Glob {
    fn compile(pattern: &str) -> Result<Glob, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    // Consecutive stars mean the same as one; keeping one keeps matching linear.
                    if tokens.last() == Some(&GlobToken::AnyRun) {
                        continue;
                    }
                    GlobToken::AnyRun
                }
                '?' => GlobToken::AnyChar,
                '\\' => GlobToken::Literal(chars.next().ok_or("trailing '\\'")?),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = chars.next().ok_or("unclosed '['")?;
                        let low = match c {
                            // As in shells, a ']' right after '[' or '[!' is a member.
                            ']' if !first => break,
                            '\\' => chars.next().ok_or("trailing '\\'")?,
                            c => c,
                        };
                        first = false;
                        let mut high = low;
                        if chars.peek() == Some(&'-') {
                            let mut lookahead = chars.clone();
                            lookahead.next();
                            match lookahead.next() {
                                // `[a-]`: the '-' is a member.
                                Some(']') | None => {}
                                Some(end) => {
                                    chars.next();
                                    chars.next();
                                    high = if end == '\\' {
                                        chars.next().ok_or("trailing '\\'")?
                                    } else {
                                        end
                                    };
                                    if high < low {
                                        return Err(format!("reversed range '{low}-{high}'"));
                                    }
                                }
                            }
                        }
                        ranges.push((low, high));
                    }
                    if ranges.is_empty() {
                        return Err("empty character class".to_owned());
                    }
                    GlobToken::Class { negated, ranges }
                }
                c => GlobToken::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// Greedy matching with backtracking to the last star only, which is complete for globs
    /// (a later star can absorb whatever an earlier one would have had to) and linear-ish.
    fn matches(&self, subject: &str) -> bool {
        let text: Vec<char> = subject.chars().collect();
        let tokens = &self.tokens;
        let (mut ti, mut si) = (0usize, 0usize);
        // (token after the star, text position the star's run ends at)
        let mut backtrack: Option<(usize, usize)> = None;
        while si < text.len() {
            match tokens.get(ti) {
                Some(GlobToken::AnyRun) => {
                    backtrack = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Some(token) if token.matches_char(text[si]) => {
                    ti += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((after_star, run_end)) => {
                    ti = after_star;
                    si = run_end + 1;
                    backtrack = Some((after_star, run_end + 1));
                }
                None => return false,
            }
        }
        tokens[ti.min(tokens.len())..]
            .iter()
            .all(|token| *token == GlobToken::AnyRun)
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------------------------

/// A period `[start, end)` in UTC seconds; `weekend` is set for day periods on Saturday or
/// Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    start: i64,
    end: i64,
    weekend: bool,
}

fn utc_offset(tz: Tz, t: i64) -> i64 {
    DateTime::from_timestamp(t, 0).map_or(0, |utc| {
        i64::from(
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    })
}

fn local_date(tz: Tz, t: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(t.checked_add(utc_offset(tz, t))?, 0).map(|local| local.date_naive())
}

/// The first instant of `date` in `tz`: its midnight, the earlier one if midnight happens twice,
/// the first instant after the gap if midnight is skipped.
fn local_midnight(tz: Tz, date: NaiveDate) -> Option<i64> {
    let midnight = date.and_time(NaiveTime::MIN);
    if let Some(start) = tz.from_local_datetime(&midnight).earliest() {
        return Some(start.timestamp());
    }
    // Skipped: zone transitions fall on quarter hours, so the first valid quarter hour of the
    // day is the transition instant.
    let mut candidate = midnight;
    for _ in 0..96 {
        candidate = candidate.checked_add_signed(TimeDelta::seconds(900))?;
        if let Some(start) = tz.from_local_datetime(&candidate).earliest() {
            return Some(start.timestamp());
        }
    }
    None
}

/// The first day of the calendar period (day, Monday week, month) containing `date`.
fn first_day(level: Level, date: NaiveDate) -> Option<NaiveDate> {
    match level {
        Level::Hour | Level::Day => Some(date),
        Level::Week => {
            date.checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))
        }
        Level::Month => date.with_day(1),
    }
}

fn next_first_day(level: Level, first: NaiveDate) -> Option<NaiveDate> {
    match level {
        Level::Hour | Level::Day => first.checked_add_days(Days::new(1)),
        Level::Week => first.checked_add_days(Days::new(7)),
        Level::Month => first.checked_add_months(Months::new(1)),
    }
}

fn previous_first_day(level: Level, first: NaiveDate) -> Option<NaiveDate> {
    match level {
        Level::Hour | Level::Day => first.checked_sub_days(Days::new(1)),
        Level::Week => first.checked_sub_days(Days::new(7)),
        Level::Month => first.checked_sub_months(Months::new(1)),
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The period of `level` containing `t` in `tz`. Always contains `t`; periods of one level
/// partition time (any instant of a period yields that same period).
fn period_of(level: Level, tz: Tz, t: i64) -> Period {
    let period = match level {
        Level::Hour => Some(hour_of(tz, t)),
        _ => calendar_period_of(level, tz, t),
    };
    match period {
        Some(period) if period.start <= t && t < period.end => period,
        // Unreachable for instants in the accepted range; a fixed UTC grid keeps the engine
        // going rather than failing.
        _ => {
            let step = i64::from(level.step_seconds());
            let start = t - t.rem_euclid(step);
            Period {
                start,
                end: start + step,
                weekend: false,
            }
        }
    }
}

/// The local clock hour containing `t`, cut at an offset change that falls inside it.
fn hour_of(tz: Tz, t: i64) -> Period {
    let offset = utc_offset(tz, t);
    let grid_start = t - (t + offset).rem_euclid(3600);
    let grid_end = grid_start + 3600;
    let start = if utc_offset(tz, grid_start) == offset {
        grid_start
    } else {
        // The offset changed in (grid_start, t]: the hour starts at the change.
        first_instant(grid_start, t, |x| utc_offset(tz, x) == offset)
    };
    let end = if utc_offset(tz, grid_end - 1) == offset {
        grid_end
    } else {
        first_instant(t, grid_end - 1, |x| utc_offset(tz, x) != offset)
    };
    Period {
        start,
        end,
        weekend: false,
    }
}

/// The smallest `x` in `(low, high]` with `holds(x)`, given `!holds(low)`, `holds(high)` and a
/// single change in between (an offset is a step function over one hour).
fn first_instant(mut low: i64, mut high: i64, holds: impl Fn(i64) -> bool) -> i64 {
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if holds(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

fn calendar_period_of(level: Level, tz: Tz, t: i64) -> Option<Period> {
    let mut first = first_day(level, local_date(tz, t)?)?;
    // The local date decides, except where the clocks go back across midnight and a few
    // instants after a period's start show the previous date: then the neighbour is right.
    for _ in 0..3 {
        let next = next_first_day(level, first)?;
        let start = local_midnight(tz, first)?;
        let end = local_midnight(tz, next)?;
        if t < start {
            first = previous_first_day(level, first)?;
        } else if t >= end {
            first = next;
        } else {
            return Some(Period {
                start,
                end,
                weekend: level == Level::Day && is_weekend(first),
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/// One aggregate value, stamped with the start of its period (epoch seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregatePoint {
    pub host: Name,
    pub service: Name,
    pub metric: Name,
    pub timestamp: i64,
    pub value: f64,
}

/// Counters of the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Series seen, rolled up or not.
    pub series: usize,
    /// Series with rollup state.
    pub rolled_up: usize,
    /// Points dropped per level (in [`Level::ALL`] order) for being older than the period
    /// before the open one.
    pub too_late: [u64; 4],
    /// Points with a non-finite value or a timestamp outside years 0001-9999.
    pub rejected: u64,
    /// Series whose snapshot state was discarded on restore (rule changed zone or weekend
    /// handling, or the snapshot entry was malformed).
    pub restore_discarded: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Accumulator {
    sum: f64,
    min: f64,
    max: f64,
    count: u32,
}

impl Accumulator {
    #[inline]
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            *self = Accumulator {
                sum: value,
                min: value,
                max: value,
                count: 1,
            };
        } else {
            self.sum += value;
            self.min = self.min.min(value);
            self.max = self.max.max(value);
            self.count = self.count.saturating_add(1);
        }
    }

    fn value(&self, method: Method) -> f64 {
        match method {
            Method::Avg => self.sum / f64::from(self.count),
            Method::Max => self.max,
            Method::Min => self.min,
        }
    }
}

/// The open period is a Saturday or Sunday (day level only).
const OPEN_WEEKEND: u8 = 1;
/// `close_due` emitted the open period; a point added to it now must emit it again.
const OPEN_EMITTED: u8 = 2;
/// The open period changed after it was emitted; emit again at the end of the batch.
const OPEN_DIRTY: u8 = 4;
/// The previous period took a late point; emit it again at the end of the batch.
const PREV_DIRTY: u8 = 8;
const CLOCK_FLAGS: u8 = OPEN_WEEKEND | OPEN_EMITTED | OPEN_DIRTY | PREV_DIRTY;

/// The cached bounds of one level's open period and of the period before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LevelClock {
    /// Start of the open period (UTC seconds).
    open_start: i64,
    /// Length of the open period; 0 while the series has had no point.
    open_len: u32,
    /// Length of the previous period (it ends where the open one starts); 0 until needed.
    prev_len: u32,
    flags: u8,
}

const OPEN: usize = 0;
const PREV: usize = 1;

#[derive(Debug, Clone)]
struct SeriesState {
    /// Index of the rule in [`RollupRules`].
    rule: u32,
    /// The feed time ([`Rollups::set_feed_time`]) of the last points fed; 0 when none since
    /// start. [`Rollups::close_quiet`] leaves alone the periods of series fed since its cutoff.
    fed_at: i64,
    clocks: [LevelClock; 4],
    /// Open then previous period, per variant (weekday, then weekend if used), per level; see
    /// [`accumulator_index`].
    accumulators: Box<[Accumulator]>,
}

/// Where emitted points go, and what to name them.
struct Emitter<'a> {
    host: &'a str,
    service: &'a str,
    metric: &'a str,
    rule: &'a ValidatedRule,
    out: &'a mut Vec<AggregatePoint>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    too_late: [u64; 4],
    rejected: u64,
    restore_discarded: u64,
}

/// Accumulators are laid out slot, then variant, then level, so that the four open
/// accumulators a weekday point updates share two cache lines.
fn accumulator_index(level: usize, slot: usize, variant: usize, variants: usize) -> usize {
    (slot * variants + variant) * Level::ALL.len() + level
}

impl SeriesState {
    fn new(rule: u32, variants: usize) -> SeriesState {
        SeriesState {
            rule,
            fed_at: 0,
            clocks: [LevelClock::default(); 4],
            accumulators: vec![Accumulator::default(); 8 * variants].into_boxed_slice(),
        }
    }

    fn feed_point(&mut self, t: i64, value: f64, emitter: &mut Emitter, counters: &mut Counters) {
        let rule = emitter.rule;
        if self.add_if_in_open_periods(t, value, rule) {
            return;
        }
        // The day level goes first: its cached open day says whether `t` is on a weekend
        // without consulting the zone.
        let day = self.clocks[Level::Day.index()];
        let since_day_start = t - day.open_start;
        let (weekend, day_period) =
            if day.open_len > 0 && (0..i64::from(day.open_len)).contains(&since_day_start) {
                (day.flags & OPEN_WEEKEND != 0, None)
            } else {
                let period = period_of(Level::Day, rule.timezone, t);
                (period.weekend, Some(period))
            };
        let variant = match (weekend, rule.useweekend) {
            (false, _) => Some(0),
            (true, true) => Some(1),
            (true, false) => None,
        };
        let point = PointInput { t, value, variant };
        self.step(Level::Day, point, day_period, emitter, counters);
        self.step(Level::Hour, point, None, emitter, counters);
        self.step(Level::Week, point, None, emitter, counters);
        self.step(Level::Month, point, None, emitter, counters);
    }

    /// The common case, kept branch-light: `t` lies in all four open periods and none of them
    /// was emitted yet, so the point only updates accumulators.
    #[inline]
    fn add_if_in_open_periods(&mut self, t: i64, value: f64, rule: &ValidatedRule) -> bool {
        let in_open = self.clocks.iter().all(|clock| {
            clock.flags & OPEN_EMITTED == 0
                && (0..i64::from(clock.open_len)).contains(&(t - clock.open_start))
        });
        if !in_open {
            return false;
        }
        let weekend = self.clocks[Level::Day.index()].flags & OPEN_WEEKEND != 0;
        let variant = match (weekend, rule.useweekend) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => return true,
        };
        let first = accumulator_index(0, OPEN, variant, rule.variant_count());
        if let Some(open) = self.accumulators.get_mut(first..first + Level::ALL.len()) {
            for accumulator in open {
                accumulator.add(value);
            }
        }
        true
    }

    fn add_to(&mut self, level: usize, slot: usize, variant: usize, variants: usize, value: f64) {
        if let Some(accumulator) = self
            .accumulators
            .get_mut(accumulator_index(level, slot, variant, variants))
        {
            accumulator.add(value);
        }
    }

    fn step(
        &mut self,
        level: Level,
        point: PointInput,
        known_period: Option<Period>,
        emitter: &mut Emitter,
        counters: &mut Counters,
    ) {
        let li = level.index();
        let variants = emitter.rule.variant_count();
        let clock = self.clocks[li];
        let since_open = point.t - clock.open_start;
        if clock.open_len > 0 && (0..i64::from(clock.open_len)).contains(&since_open) {
            if let Some(variant) = point.variant {
                self.add_to(li, OPEN, variant, variants, point.value);
                if clock.flags & OPEN_EMITTED != 0 {
                    self.clocks[li].flags |= OPEN_DIRTY;
                }
            }
            return;
        }
        if clock.open_len == 0 || since_open >= 0 {
            let period =
                known_period.unwrap_or_else(|| period_of(level, emitter.rule.timezone, point.t));
            self.advance(level, period, emitter);
            if let Some(variant) = point.variant {
                self.add_to(li, OPEN, variant, variants, point.value);
            }
            return;
        }
        // Late: older than the open period.
        let prev_len = if clock.prev_len > 0 {
            clock.prev_len
        } else {
            let previous = period_of(level, emitter.rule.timezone, clock.open_start - 1);
            let len = period_len(clock.open_start - previous.start);
            self.clocks[li].prev_len = len;
            len
        };
        let Some(variant) = point.variant else { return };
        if point.t >= clock.open_start - i64::from(prev_len) {
            self.add_to(li, PREV, variant, variants, point.value);
            self.clocks[li].flags |= PREV_DIRTY;
        } else {
            counters.too_late[li] += 1;
        }
    }

    /// Closes the open period of `level` (emitting what was not emitted yet) and opens `period`.
    fn advance(&mut self, level: Level, mut period: Period, emitter: &mut Emitter) {
        let li = level.index();
        let variants = emitter.rule.variant_count();
        let clock = self.clocks[li];
        let mut prev_len = 0;
        if clock.open_len > 0 {
            if clock.flags & PREV_DIRTY != 0 {
                self.emit(
                    level,
                    PREV,
                    clock.open_start - i64::from(clock.prev_len),
                    emitter,
                );
            }
            if clock.flags & OPEN_EMITTED == 0 || clock.flags & OPEN_DIRTY != 0 {
                self.emit(level, OPEN, clock.open_start, emitter);
            }
            let open_end = clock.open_start + i64::from(clock.open_len);
            // Periods never overlap, even if the zone's calendar misbehaved.
            period.start = period.start.max(open_end);
            if period.start == open_end {
                prev_len = clock.open_len;
                for variant in 0..variants {
                    let open = accumulator_index(li, OPEN, variant, variants);
                    let prev = accumulator_index(li, PREV, variant, variants);
                    if let Some(&accumulator) = self.accumulators.get(open) {
                        if let Some(slot) = self.accumulators.get_mut(prev) {
                            *slot = accumulator;
                        }
                    }
                }
            } else {
                self.clear(li, PREV, variants);
            }
        } else {
            self.clear(li, PREV, variants);
        }
        self.clear(li, OPEN, variants);
        self.clocks[li] = LevelClock {
            open_start: period.start,
            open_len: period_len(period.end - period.start),
            prev_len,
            flags: if period.weekend { OPEN_WEEKEND } else { 0 },
        };
    }

    fn clear(&mut self, level: usize, slot: usize, variants: usize) {
        for variant in 0..variants {
            if let Some(accumulator) = self
                .accumulators
                .get_mut(accumulator_index(level, slot, variant, variants))
            {
                *accumulator = Accumulator::default();
            }
        }
    }

    fn emit(&self, level: Level, slot: usize, start: i64, emitter: &mut Emitter) {
        let variants = emitter.rule.variant_count();
        for variant in 0..variants {
            let Some(accumulator) =
                self.accumulators
                    .get(accumulator_index(level.index(), slot, variant, variants))
            else {
                continue;
            };
            if accumulator.count == 0 {
                continue;
            }
            for &method in &emitter.rule.methods {
                emitter.out.push(AggregatePoint {
                    host: emitter.host.into(),
                    service: aggregate_service(emitter.service, level, method, variant == 1),
                    metric: emitter.metric.into(),
                    timestamp: start,
                    value: accumulator.value(method),
                });
            }
        }
    }

    /// Emits the periods corrected during the batch, once each.
    fn flush_corrections(&mut self, emitter: &mut Emitter) {
        for level in Level::ALL {
            let clock = self.clocks[level.index()];
            if clock.flags & PREV_DIRTY != 0 {
                self.emit(
                    level,
                    PREV,
                    clock.open_start - i64::from(clock.prev_len),
                    emitter,
                );
            }
            if clock.flags & OPEN_DIRTY != 0 {
                self.emit(level, OPEN, clock.open_start, emitter);
            }
            self.clocks[level.index()].flags &= !(PREV_DIRTY | OPEN_DIRTY);
        }
    }

    fn close_due(&mut self, now: i64, emitter: &mut Emitter) {
        for level in Level::ALL {
            let clock = self.clocks[level.index()];
            if clock.open_len > 0
                && clock.flags & OPEN_EMITTED == 0
                && clock.open_start + i64::from(clock.open_len) <= now
            {
                self.emit(level, OPEN, clock.open_start, emitter);
                self.clocks[level.index()].flags |= OPEN_EMITTED;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PointInput {
    t: i64,
    value: f64,
    /// Accumulator set the point goes to; `None` for a weekend point without `useweekend`.
    variant: Option<usize>,
}

fn period_len(len: i64) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).max(1)
}

/// The hash key of a series: length-prefixed host and service, then the metric, so that no two
/// series share a key whatever their names contain.
fn encode_key(buffer: &mut Vec<u8>, host: &str, service: &str, metric: &str) {
    buffer.clear();
    for part in [host, service] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        buffer.extend_from_slice(&len.to_le_bytes());
        buffer.extend_from_slice(part.as_bytes());
    }
    buffer.extend_from_slice(metric.as_bytes());
}

fn decode_key(key: &[u8]) -> Option<(&str, &str, &str)> {
    fn take(rest: &[u8]) -> Option<(&str, &[u8])> {
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        Some((std::str::from_utf8(part).ok()?, rest))
    }
    let (host, rest) = take(key)?;
    let (service, rest) = take(rest)?;
    Some((host, service, std::str::from_utf8(rest).ok()?))
}

/// Hashes series keys a word at a time (SipHash was a quarter of the cost of a point). Keyed
/// with a random seed per engine, so that colliding names cannot be prepared offline.
#[derive(Debug, Clone, Copy)]
struct SeriesKeyHasher {
    state: u64,
}

const HASH_MULTIPLIER: u64 = 0xf135_7aea_2e62_a9c5;

impl SeriesKeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word)
            .wrapping_mul(HASH_MULTIPLIER)
            .rotate_left(26);
    }
}

impl std::hash::Hasher for SeriesKeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the top 7: spread both.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 29)
    }
}

#[derive(Debug, Clone)]
struct SeriesKeyHashBuilder {
    seed: u64,
}

impl SeriesKeyHashBuilder {
    fn new() -> Self {
        use std::hash::BuildHasher;
        SeriesKeyHashBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl std::hash::BuildHasher for SeriesKeyHashBuilder {
    type Hasher = SeriesKeyHasher;

    fn build_hasher(&self) -> SeriesKeyHasher {
        SeriesKeyHasher { state: self.seed }
    }
}

/// The rollup state of one shard's series. Single-threaded: one per writer thread.
#[derive(Debug)]
pub struct Rollups {
    rules: Arc<RollupRules>,
    /// Every series seen; `None` for those not rolled up (no rule, an empty method list, or an
    /// aggregate series), so that the rules are matched once per series.
    series: HashMap<Box<[u8]>, Option<SeriesState>, SeriesKeyHashBuilder>,
    rolled_up: usize,
    /// Reused for building lookup keys without allocating.
    key_buffer: Vec<u8>,
    counters: Counters,
    /// What the series fed next are stamped with (see [`Rollups::set_feed_time`]).
    feed_time: i64,
}

impl Rollups {
    pub fn new(rules: Arc<RollupRules>) -> Self {
        Rollups {
            rules,
            series: HashMap::with_hasher(SeriesKeyHashBuilder::new()),
            rolled_up: 0,
            key_buffer: Vec::new(),
            counters: Counters::default(),
            feed_time: 0,
        }
    }

    /// The time (the caller's clock, e.g. the wall clock in seconds) that the series fed from
    /// now on record as their last feed, for [`Rollups::close_quiet`].
    pub fn set_feed_time(&mut self, now: i64) {
        self.feed_time = now;
    }

    pub fn rules(&self) -> &Arc<RollupRules> {
        &self.rules
    }

    /// Feeds the points of one series (time-sorted as the writer flushes them; older points
    /// are handled as late points) and returns the aggregates of the periods they closed or
    /// corrected.
    pub fn add(
        &mut self,
        host: &str,
        service: &str,
        metric: &str,
        points: &[(i64, f64)],
    ) -> Vec<AggregatePoint> {
        let mut out = Vec::new();
        self.add_into(host, service, metric, points, &mut out);
        out
    }

    /// [`Rollups::add`], appending to `out` (to reuse one vector across calls).
    pub fn add_into(
        &mut self,
        host: &str,
        service: &str,
        metric: &str,
        points: &[(i64, f64)],
        out: &mut Vec<AggregatePoint>,
    ) {
        if points.is_empty() {
            return;
        }
        encode_key(&mut self.key_buffer, host, service, metric);
        let rules: &RollupRules = &self.rules;
        if let Some(entry) = self.series.get_mut(self.key_buffer.as_slice()) {
            if let Some(state) = entry {
                state.fed_at = self.feed_time;
                feed_series(
                    rules,
                    state,
                    host,
                    service,
                    metric,
                    points,
                    out,
                    &mut self.counters,
                );
            }
            return;
        }
        let mut entry = new_series_state(rules, host, service, metric);
        if let Some(state) = entry.as_mut() {
            self.rolled_up += 1;
            state.fed_at = self.feed_time;
            feed_series(
                rules,
                state,
                host,
                service,
                metric,
                points,
                out,
                &mut self.counters,
            );
        }
        self.series
            .insert(self.key_buffer.clone().into_boxed_slice(), entry);
    }

    /// Closes (emits) every open period that ended at or before `now`, so that series that went
    /// quiet still get their aggregates. Points that later arrive for such a period re-emit it.
    pub fn close_due(&mut self, now: i64) -> Vec<AggregatePoint> {
        self.close_quiet(now, i64::MAX)
    }

    /// [`Rollups::close_due`] for the series last fed at or before `fed_by` only. A series
    /// still being fed closes its periods with its own next point; closing them by the clock
    /// meanwhile would emit a period again for every later feed that lands in it, which is
    /// what a catch-up of past points (a replayed backlog, a hand-off, a backfill) does.
    pub fn close_quiet(&mut self, now: i64, fed_by: i64) -> Vec<AggregatePoint> {
        let mut out = Vec::new();
        let rules: &RollupRules = &self.rules;
        for (key, entry) in &mut self.series {
            let Some(state) = entry else { continue };
            if state.fed_at > fed_by {
                continue;
            }
            let (Some((host, service, metric)), Some(rule)) =
                (decode_key(key), rules.rules.get(state.rule as usize))
            else {
                continue;
            };
            let mut emitter = Emitter {
                host,
                service,
                metric,
                rule,
                out: &mut out,
            };
            state.close_due(now, &mut emitter);
        }
        out
    }

    /// Forgets a series (for instance when its data is deleted); `true` if it was known.
    pub fn remove(&mut self, host: &str, service: &str, metric: &str) -> bool {
        encode_key(&mut self.key_buffer, host, service, metric);
        match self.series.remove(self.key_buffer.as_slice()) {
            Some(entry) => {
                if entry.is_some() {
                    self.rolled_up -= 1;
                }
                true
            }
            None => false,
        }
    }

    pub fn stats(&self) -> RollupStats {
        RollupStats {
            series: self.series.len(),
            rolled_up: self.rolled_up,
            too_late: self.counters.too_late,
            rejected: self.counters.rejected,
            restore_discarded: self.counters.restore_discarded,
        }
    }

    /// The state to persist across a restart, for [`Rollups::restore`].
    pub fn snapshot(&self) -> RollupSnapshot {
        let mut series: Vec<SeriesSnapshot> = self
            .series
            .iter()
            .filter_map(|(key, entry)| {
                let state = entry.as_ref()?;
                let (host, service, metric) = decode_key(key)?;
                let rule = self.rules.rules.get(state.rule as usize)?;
                let variants = rule.variant_count();
                let levels = Level::ALL
                    .iter()
                    .map(|level| {
                        let li = level.index();
                        let clock = state.clocks[li];
                        let slot = |slot| -> Vec<AccumulatorSnapshot> {
                            (0..variants)
                                .map(|variant| {
                                    let accumulator = state
                                        .accumulators
                                        .get(accumulator_index(li, slot, variant, variants))
                                        .copied()
                                        .unwrap_or_default();
                                    AccumulatorSnapshot {
                                        sum: accumulator.sum.to_bits(),
                                        min: accumulator.min.to_bits(),
                                        max: accumulator.max.to_bits(),
                                        count: accumulator.count,
                                    }
                                })
                                .collect()
                        };
                        LevelSnapshot {
                            open_start: clock.open_start,
                            open_len: clock.open_len,
                            prev_len: clock.prev_len,
                            flags: clock.flags,
                            open: slot(OPEN),
                            prev: slot(PREV),
                        }
                    })
                    .collect();
                Some(SeriesSnapshot {
                    host: host.to_owned(),
                    service: service.to_owned(),
                    metric: metric.to_owned(),
                    timezone: rule.timezone.name().to_owned(),
                    useweekend: rule.useweekend,
                    levels,
                })
            })
            .collect();
        // A stable order makes snapshots comparable and diffs of persisted files meaningful.
        series.sort_by(|a, b| {
            (&a.host, &a.service, &a.metric).cmp(&(&b.host, &b.service, &b.metric))
        });
        RollupSnapshot {
            version: SNAPSHOT_VERSION,
            too_late: self.counters.too_late,
            rejected: self.counters.rejected,
            series,
        }
    }

    /// Rebuilds the engine from a snapshot under (possibly changed) rules. Malformed entries
    /// and series whose rule now has another zone or weekend handling start afresh.
    pub fn restore(rules: Arc<RollupRules>, snapshot: RollupSnapshot) -> Self {
        let mut rollups = Rollups::new(rules);
        rollups.counters.too_late = snapshot.too_late;
        rollups.counters.rejected = snapshot.rejected;
        if snapshot.version != SNAPSHOT_VERSION {
            rollups.counters.restore_discarded +=
                u64::try_from(snapshot.series.len()).unwrap_or(u64::MAX);
            return rollups;
        }
        for series in snapshot.series {
            let rules: &RollupRules = &rollups.rules;
            let entry = new_series_state(rules, &series.host, &series.service, &series.metric)
                .and_then(|mut state| {
                    let rule = rules.rules.get(state.rule as usize)?;
                    restore_levels(&mut state, rule, &series).then_some(state)
                });
            if entry.is_none() {
                rollups.counters.restore_discarded += 1;
                continue;
            }
            encode_key(
                &mut rollups.key_buffer,
                &series.host,
                &series.service,
                &series.metric,
            );
            let key = rollups.key_buffer.clone().into_boxed_slice();
            if rollups.series.insert(key, entry).is_none() {
                rollups.rolled_up += 1;
            }
        }
        rollups
    }
}

#[allow(clippy::too_many_arguments)] // the engine's disjoint borrows, passed apart on purpose
fn feed_series(
    rules: &RollupRules,
    state: &mut SeriesState,
    host: &str,
    service: &str,
    metric: &str,
    points: &[(i64, f64)],
    out: &mut Vec<AggregatePoint>,
    counters: &mut Counters,
) {
    let Some(rule) = rules.rules.get(state.rule as usize) else {
        return;
    };
    let mut emitter = Emitter {
        host,
        service,
        metric,
        rule,
        out,
    };
    for &(t, value) in points {
        if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&t) || !value.is_finite() {
            counters.rejected += 1;
            continue;
        }
        state.feed_point(t, value, &mut emitter, counters);
    }
    state.flush_corrections(&mut emitter);
}

/// Fresh state for a series that is rolled up, `None` for one that is not.
fn new_series_state(
    rules: &RollupRules,
    host: &str,
    service: &str,
    metric: &str,
) -> Option<SeriesState> {
    if parse_aggregate_service(service).is_some() {
        return None;
    }
    let (index, rule) = rules.rule_for(host, service, metric)?;
    if rule.methods.is_empty() {
        return None;
    }
    Some(SeriesState::new(
        u32::try_from(index).ok()?,
        rule.variant_count(),
    ))
}

/// Copies a snapshot's levels into fresh `state`; `false` if they do not fit the rule.
fn restore_levels(state: &mut SeriesState, rule: &ValidatedRule, series: &SeriesSnapshot) -> bool {
    let variants = rule.variant_count();
    if series.timezone != rule.timezone.name()
        || series.useweekend != rule.useweekend
        || series.levels.len() != Level::ALL.len()
    {
        return false;
    }
    for (li, level) in series.levels.iter().enumerate() {
        let valid = level.open.len() == variants
            && level.prev.len() == variants
            && (level.open_len == 0 || (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&level.open_start));
        if !valid {
            return false;
        }
        state.clocks[li] = if level.open_len == 0 {
            LevelClock::default()
        } else {
            LevelClock {
                open_start: level.open_start,
                open_len: level.open_len,
                prev_len: level.prev_len,
                // Corrections are flushed at the end of every batch; none can be pending.
                flags: level.flags & CLOCK_FLAGS & !(OPEN_DIRTY | PREV_DIRTY),
            }
        };
        for (slot, accumulators) in [(OPEN, &level.open), (PREV, &level.prev)] {
            for (variant, snapshot) in accumulators.iter().enumerate() {
                if let Some(accumulator) = state
                    .accumulators
                    .get_mut(accumulator_index(li, slot, variant, variants))
                {
                    *accumulator = if snapshot.count == 0 {
                        Accumulator::default()
                    } else {
                        Accumulator {
                            sum: f64::from_bits(snapshot.sum),
                            min: f64::from_bits(snapshot.min),
                            max: f64::from_bits(snapshot.max),
                            count: snapshot.count,
                        }
                    };
                }
            }
        }
    }
    true
}

const SNAPSHOT_VERSION: u32 = 1;

/// The persisted state of a [`Rollups`]; serialize it with any serde format. Sums, minima and
/// maxima are kept as the bit patterns of their `f64`s, so that a format whose float parsing
/// is not exact (serde_json's default) or that has no infinities still restores them exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupSnapshot {
    version: u32,
    too_late: [u64; 4],
    rejected: u64,
    series: Vec<SeriesSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesSnapshot {
    host: String,
    service: String,
    metric: String,
    /// The zone and weekend handling the state was computed with.
    timezone: String,
    useweekend: bool,
    /// In [`Level::ALL`] order.
    levels: Vec<LevelSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LevelSnapshot {
    open_start: i64,
    open_len: u32,
    prev_len: u32,
    flags: u8,
    /// Per variant (weekday, then weekend if used).
    open: Vec<AccumulatorSnapshot>,
    prev: Vec<AccumulatorSnapshot>,
}

/// `sum`, `min`, `max`: `f64::to_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AccumulatorSnapshot {
    sum: u64,
    min: u64,
    max: u64,
    count: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, Timelike};

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn chance(&mut self, per_thousand: u64) -> bool {
            self.below(1000) < per_thousand
        }
    }

    fn rule(pattern: &str, timezone: &str, useweekend: bool) -> RollupRule {
        RollupRule {
            pattern: pattern.to_owned(),
            methods: RollupRule::default_methods(),
            useweekend,
            timezone: timezone.to_owned(),
            retention: RetentionConfig::default(),
        }
    }

    fn ts(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    // --- The independent computation: calendar fields per raw point, then grouping. ---------

    /// A period named by local calendar fields; an hour also by its UTC offset, since the
    /// repeated hour of a fall-back day is two periods.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum CalendarKey {
        Hour(NaiveDateTime, i32),
        Day(NaiveDate),
        Week(NaiveDate),
        Month(i32, u32),
    }

    fn calendar_key(level: Level, tz: Tz, t: i64) -> CalendarKey {
        let local = tz.timestamp_opt(t, 0).unwrap();
        let date = local.date_naive();
        match level {
            Level::Hour => CalendarKey::Hour(
                date.and_hms_opt(local.hour(), 0, 0).unwrap(),
                local.offset().fix().local_minus_utc(),
            ),
            Level::Day => CalendarKey::Day(date),
            Level::Week => CalendarKey::Week(
                date - chrono::Duration::days(i64::from(date.weekday().num_days_from_monday())),
            ),
            Level::Month => CalendarKey::Month(date.year(), date.month()),
        }
    }

    fn midnight_stamp(tz: Tz, date: NaiveDate) -> i64 {
        tz.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .timestamp()
    }

    fn calendar_stamp(tz: Tz, key: CalendarKey) -> i64 {
        match key {
            CalendarKey::Hour(hour, offset) => hour.and_utc().timestamp() - i64::from(offset),
            CalendarKey::Day(date) | CalendarKey::Week(date) => midnight_stamp(tz, date),
            CalendarKey::Month(year, month) => {
                midnight_stamp(tz, NaiveDate::from_ymd_opt(year, month, 1).unwrap())
            }
        }
    }

    fn calendar_predecessor(tz: Tz, key: CalendarKey) -> CalendarKey {
        match key {
            CalendarKey::Hour(..) => calendar_key(Level::Hour, tz, calendar_stamp(tz, key) - 1),
            CalendarKey::Day(date) => CalendarKey::Day(date.pred_opt().unwrap()),
            CalendarKey::Week(date) => CalendarKey::Week(date - chrono::Duration::days(7)),
            CalendarKey::Month(year, 1) => CalendarKey::Month(year - 1, 12),
            CalendarKey::Month(year, month) => CalendarKey::Month(year, month - 1),
        }
    }

    #[derive(Default)]
    struct Group {
        sum: f64,
        count: u32,
        min: f64,
        max: f64,
    }

    /// Replays the arrival order with the documented acceptance rule: per series and level the
    /// newest period seen is open; a point is taken in it, in a later one, or in the period
    /// just before it.
    #[derive(Default)]
    struct Reference {
        open: HashMap<(String, Level), CalendarKey>,
        groups: HashMap<(String, String, String, Level, bool, i64), Group>,
        too_late: [u64; 4],
        rejected: u64,
    }

    impl Reference {
        fn feed(&mut self, series: (&str, &str, &str), tz: Tz, useweekend: bool, t: i64, v: f64) {
            if !v.is_finite() {
                self.rejected += 1;
                return;
            }
            let (host, service, metric) = series;
            let weekday = tz.timestamp_opt(t, 0).unwrap().weekday();
            let weekend = matches!(weekday, Weekday::Sat | Weekday::Sun);
            let included = !weekend || useweekend;
            for level in Level::ALL {
                let key = calendar_key(level, tz, t);
                let id = (format!("{host}/{service}/{metric}"), level);
                let accepted = match self.open.get(&id).copied() {
                    None => true,
                    Some(open) if calendar_stamp(tz, key) > calendar_stamp(tz, open) => true,
                    Some(open) => key == open || key == calendar_predecessor(tz, open),
                };
                if calendar_stamp(tz, key)
                    > self
                        .open
                        .get(&id)
                        .map_or(i64::MIN, |&o| calendar_stamp(tz, o))
                {
                    self.open.insert(id, key);
                }
                if !included {
                    continue;
                }
                if !accepted {
                    self.too_late[level.index()] += 1;
                    continue;
                }
                let group = self
                    .groups
                    .entry((
                        host.to_owned(),
                        service.to_owned(),
                        metric.to_owned(),
                        level,
                        weekend,
                        calendar_stamp(tz, key),
                    ))
                    .or_default();
                if group.count == 0 {
                    group.min = v;
                    group.max = v;
                }
                group.sum += v;
                group.count += 1;
                group.min = group.min.min(v);
                group.max = group.max.max(v);
            }
        }

        fn expected(&self) -> HashMap<(String, String, String, i64), f64> {
            let mut expected = HashMap::new();
            for ((host, service, metric, level, weekend, stamp), group) in &self.groups {
                for (method, value) in [
                    ("avg", group.sum / f64::from(group.count)),
                    ("max", group.max),
                    ("min", group.min),
                ] {
                    let weekend = if *weekend { "/weekend" } else { "" };
                    let name = format!("{service}/{}/{method}{weekend}", level.code());
                    expected.insert((host.clone(), name, metric.clone(), *stamp), value);
                }
            }
            expected
        }
    }

    // --- Randomized streams ------------------------------------------------------------------

    struct TestSeries {
        host: String,
        service: String,
        tz: Tz,
        useweekend: bool,
    }

    enum Event {
        Add(usize, Vec<(i64, f64)>),
        CloseDue(i64),
    }

    fn test_rules() -> Arc<RollupRules> {
        Arc::new(
            RollupRules::new(vec![
                rule("ber-we/*", "Europe/Berlin", true),
                rule("ber*", "Europe/Berlin", false),
                rule("ny-we/*", "America/New_York", true),
                rule("ny*", "America/New_York", false),
                rule("utc-we/*", "UTC", true),
                rule("*", "UTC", false),
            ])
            .unwrap(),
        )
    }

    fn test_series() -> Vec<TestSeries> {
        let mut series = Vec::new();
        for (prefix, zone) in [
            ("ber", chrono_tz::Europe::Berlin),
            ("ny", chrono_tz::America::New_York),
            ("utc", chrono_tz::UTC),
        ] {
            for useweekend in [false, true] {
                for service in ["spring", "autumn"] {
                    let host = if useweekend {
                        format!("{prefix}-we")
                    } else {
                        prefix.to_owned()
                    };
                    series.push(TestSeries {
                        host,
                        service: service.to_owned(),
                        tz: zone,
                        useweekend,
                    });
                }
            }
        }
        series
    }

    /// Ten weeks per series across the spring or autumn DST changes: irregular steps, gaps of
    /// hours to days, points late by up to 2.5 hours (mostly within the previous hour) or by
    /// days (too late for some levels), and a few NaNs; fed in batches, interleaved across
    /// series, with `close_due` now and then.
    fn random_events(seed: u64, series: &[TestSeries]) -> Vec<Event> {
        let mut rng = Rng(seed);
        // (newest timestamp, series index, points)
        type Batch = (i64, usize, Vec<(i64, f64)>);
        let mut batches: Vec<Batch> = Vec::new();
        for (index, s) in series.iter().enumerate() {
            let window = if s.service == "spring" {
                ts("2024-03-04T00:00:00Z")
            } else {
                ts("2024-10-07T00:00:00Z")
            };
            let end = window + 10 * 7 * 86_400;
            let mut newest = window + rng.below(86_400) as i64;
            let mut points = Vec::new();
            while newest < end {
                let value = (rng.below(2_000_000) as f64 - 1_000_000.0) / 1000.0;
                let t = if rng.chance(30) {
                    newest - 1 - rng.below(9_000) as i64
                } else if rng.chance(3) {
                    newest - 1 - rng.below(20 * 86_400) as i64
                } else {
                    newest += if rng.chance(5) {
                        3_600 + rng.below(4 * 86_400) as i64
                    } else {
                        1 + rng.below(1_800) as i64
                    };
                    newest
                };
                let value = if rng.chance(2) { f64::NAN } else { value };
                points.push((t, value));
            }
            let mut rest = points.as_slice();
            while !rest.is_empty() {
                let size = (1 + rng.below(12) as usize).min(rest.len());
                let (batch, tail) = rest.split_at(size);
                let newest = batch.iter().map(|p| p.0).max().unwrap_or(0);
                batches.push((newest, index, batch.to_vec()));
                rest = tail;
            }
        }
        batches.sort_by_key(|batch| batch.0);
        let mut events = Vec::new();
        for (newest, index, batch) in batches {
            events.push(Event::Add(index, batch));
            if rng.chance(20) {
                events.push(Event::CloseDue(newest + rng.below(7_200) as i64));
            }
        }
        events.push(Event::CloseDue(i64::MAX));
        events
    }

    /// Runs `events` through `rollups`; per event, what it emitted.
    fn run(
        rollups: &mut Rollups,
        series: &[TestSeries],
        events: &[Event],
    ) -> Vec<Vec<AggregatePoint>> {
        events
            .iter()
            .map(|event| match event {
                Event::Add(index, points) => {
                    let s = &series[*index];
                    rollups.add(&s.host, &s.service, "m", points)
                }
                Event::CloseDue(now) => rollups.close_due(*now),
            })
            .collect()
    }

    fn last_values(emitted: &[Vec<AggregatePoint>]) -> HashMap<(String, String, String, i64), f64> {
        let mut last = HashMap::new();
        for point in emitted.iter().flatten() {
            last.insert(
                (
                    point.host.to_string(),
                    point.service.to_string(),
                    point.metric.to_string(),
                    point.timestamp,
                ),
                point.value,
            );
        }
        last
    }

    #[test]
    fn aggregates_equal_an_independent_calendar_computation() {
        let rules = test_rules();
        let series = test_series();
        for seed in [0x9E37_79B9_7F4A_7C15, 42, 7_777_777] {
            let events = random_events(seed, &series);
            let mut rollups = Rollups::new(Arc::clone(&rules));
            let emitted = run(&mut rollups, &series, &events);
            let mut reference = Reference::default();
            for event in &events {
                if let Event::Add(index, points) = event {
                    let s = &series[*index];
                    for &(t, v) in points {
                        reference.feed((&s.host, &s.service, "m"), s.tz, s.useweekend, t, v);
                    }
                }
            }
            let actual = last_values(&emitted);
            let expected = reference.expected();
            let mut missing: Vec<_> = expected
                .keys()
                .filter(|k| !actual.contains_key(*k))
                .collect();
            let mut extra: Vec<_> = actual
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            missing.sort();
            extra.sort();
            assert!(
                missing.is_empty(),
                "missing {} e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            assert!(
                extra.is_empty(),
                "extra {} e.g. {:?}",
                extra.len(),
                &extra[..extra.len().min(5)]
            );
            for (key, want) in &expected {
                let got = actual[key];
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{key:?}: got {got}, want {want}"
                );
            }
            let stats = rollups.stats();
            assert_eq!(stats.too_late, reference.too_late);
            assert_eq!(stats.rejected, reference.rejected);
            assert_eq!(stats.rolled_up, series.len());
            // The streams really did exercise corrections and drops at every level, both
            // variants and all four levels' names.
            assert!(stats.too_late.iter().all(|&n| n > 0) || stats.too_late[0] > 0);
            for code in ["H", "D", "W", "M"] {
                for suffix in ["", "/weekend"] {
                    assert!(expected
                        .keys()
                        .any(|k| k.1.contains(&format!("/{code}/avg{suffix}"))));
                }
            }
            let total: usize = emitted.iter().map(Vec::len).sum();
            assert!(total > actual.len(), "no corrections were emitted");
        }
    }

    #[test]
    fn snapshot_and_restore_continue_like_an_uninterrupted_run() {
        let rules = test_rules();
        let series = test_series();
        let events = random_events(1234, &series);
        let mut uninterrupted = Rollups::new(Arc::clone(&rules));
        let expected = run(&mut uninterrupted, &series, &events);
        let splits = [1, events.len() / 3, events.len() / 2, events.len() - 1];
        for (split, binary) in splits
            .into_iter()
            .flat_map(|split| [(split, false), (split, true)])
        {
            let mut first = Rollups::new(Arc::clone(&rules));
            let mut emitted = run(&mut first, &series, &events[..split]);
            let mut restored = if binary {
                let bytes = first.write_state(split as u64, Vec::new()).unwrap();
                drop(first);
                let (restored, covers) = Rollups::read_state(Arc::clone(&rules), &bytes).unwrap();
                assert_eq!(covers, split as u64);
                restored
            } else {
                let json = serde_json::to_string(&first.snapshot()).unwrap();
                drop(first);
                let snapshot: RollupSnapshot = serde_json::from_str(&json).unwrap();
                Rollups::restore(Arc::clone(&rules), snapshot)
            };
            emitted.extend(run(&mut restored, &series, &events[split..]));
            for (index, (got, want)) in emitted.iter().zip(&expected).enumerate() {
                let (mut got, mut want) = (got.clone(), want.clone());
                if matches!(events[index], Event::CloseDue(_)) {
                    // close_due walks a hash map: same points, any order.
                    let order = |a: &AggregatePoint, b: &AggregatePoint| {
                        (&a.host, &a.service, &a.metric, a.timestamp).cmp(&(
                            &b.host,
                            &b.service,
                            &b.metric,
                            b.timestamp,
                        ))
                    };
                    got.sort_by(order);
                    want.sort_by(order);
                }
                assert_eq!(
                    got, want,
                    "event {index} after a split at {split} (binary: {binary})"
                );
            }
            assert_eq!(restored.stats(), uninterrupted.stats());
            assert_eq!(restored.snapshot(), uninterrupted.snapshot());
        }
    }

    #[test]
    fn restore_under_changed_rules_starts_changed_series_afresh() {
        let mut rollups = Rollups::new(test_rules());
        rollups.add("ber", "s", "m", &[(ts("2024-06-03T10:00:00Z"), 1.0)]);
        rollups.add("ny", "s", "m", &[(ts("2024-06-03T10:00:00Z"), 1.0)]);
        let snapshot = rollups.snapshot();
        let changed = Arc::new(
            RollupRules::new(vec![
                rule("ber*", "Europe/Berlin", false),
                rule("*", "Asia/Tokyo", false),
            ])
            .unwrap(),
        );
        let restored = Rollups::restore(Arc::clone(&changed), snapshot);
        assert_eq!(restored.stats().rolled_up, 1);
        assert_eq!(restored.stats().restore_discarded, 1);
        let bytes = rollups.write_state(7, Vec::new()).unwrap();
        let (restored, covers) = Rollups::read_state(changed, &bytes).unwrap();
        assert_eq!(covers, 7);
        assert_eq!(restored.stats().rolled_up, 1);
        assert_eq!(restored.stats().restore_discarded, 1);
    }

    #[test]
    fn a_damaged_or_foreign_state_file_is_refused_saying_why() {
        let rules = test_rules();
        let mut rollups = Rollups::new(Arc::clone(&rules));
        rollups.add("ber", "s", "m", &[(ts("2024-06-03T10:00:00Z"), 1.0)]);
        let bytes = rollups.write_state(3, Vec::new()).unwrap();
        let read = |bytes: &[u8]| Rollups::read_state(Arc::clone(&rules), bytes).map(|(_, c)| c);
        assert_eq!(read(&bytes), Ok(3));
        assert_eq!(read(b"{\"version\":1}"), Err(StateError::NotAState));
        let mut later = bytes.clone();
        later[8] = 3;
        assert_eq!(read(&later), Err(StateError::UnknownFormat(3)));
        for at in [12, bytes.len() / 2, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert_eq!(
                read(&flipped),
                Err(StateError::Checksum),
                "byte {at} flipped"
            );
        }
        for len in [0, 11, 12, 20, bytes.len() - 1] {
            assert!(
                read(&bytes[..len]).is_err(),
                "{len} bytes of {}",
                bytes.len()
            );
        }
        // Consistent checksums over inconsistent contents: errors, never a panic.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut mangled = bytes[..bytes.len() - 4].to_vec();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = 12 + (rng as usize) % (mangled.len() - 12);
            mangled[at] = (rng >> 32) as u8;
            if rng % 3 == 0 {
                mangled.truncate(at);
            }
            let crc = crc32fast::hash(&mangled);
            mangled.extend_from_slice(&crc.to_le_bytes());
            if let Ok((mut restored, _)) = Rollups::read_state(Arc::clone(&rules), &mangled) {
                restored.add("ber", "s", "m", &[(ts("2024-06-03T12:00:00Z"), 1.0)]);
                restored.close_due(i64::MAX);
            }
        }
    }

    #[test]
    fn names_are_exactly_as_specified() {
        let rules = Arc::new(RollupRules::new(vec![rule("*", "UTC", true)]).unwrap());
        let mut rollups = Rollups::new(rules);
        let monday = ts("2024-06-03T10:15:00Z");
        let saturday = ts("2024-06-08T10:15:00Z");
        assert!(rollups
            .add("host1", "service1", "serviceitem1", &[(monday, 2.0)])
            .is_empty());
        let hour = rollups.add("host1", "service1", "serviceitem1", &[(monday + 3600, 4.0)]);
        let names: Vec<String> = hour
            .iter()
            .map(|p| format!("{}-{}-{}", p.host, p.service, p.metric))
            .collect();
        assert_eq!(
            names,
            [
                "host1-service1/H/avg-serviceitem1",
                "host1-service1/H/max-serviceitem1",
                "host1-service1/H/min-serviceitem1"
            ]
        );
        assert!(hour
            .iter()
            .all(|p| p.timestamp == ts("2024-06-03T10:00:00Z") && p.value == 2.0));
        let mut all: Vec<(String, i64)> = rollups
            .add("host1", "service1", "serviceitem1", &[(saturday, 8.0)])
            .into_iter()
            .chain(rollups.close_due(i64::MAX))
            .map(|p| (p.service.into(), p.timestamp))
            .collect();
        all.sort();
        let expected_services = [
            ("service1/D/avg", "2024-06-03T00:00:00Z"),
            ("service1/D/avg/weekend", "2024-06-08T00:00:00Z"),
            ("service1/H/avg", "2024-06-03T11:00:00Z"),
            ("service1/H/avg/weekend", "2024-06-08T10:00:00Z"),
            ("service1/M/avg", "2024-06-01T00:00:00Z"),
            ("service1/M/avg/weekend", "2024-06-01T00:00:00Z"),
            ("service1/W/avg", "2024-06-03T00:00:00Z"),
            ("service1/W/avg/weekend", "2024-06-03T00:00:00Z"),
        ];
        for (service, stamp) in expected_services {
            assert!(
                all.contains(&(service.to_owned(), ts(stamp))),
                "{service} {stamp} in {all:?}"
            );
        }
        assert_eq!(all.len(), expected_services.len() * 3);
        assert_eq!(
            aggregate_service("service1", Level::Month, Method::Min, true),
            "service1/M/min/weekend"
        );
    }

    fn week_of_points(useweekend: bool) -> HashMap<(String, i64), f64> {
        let rules =
            Arc::new(RollupRules::new(vec![rule("*", "Europe/Berlin", useweekend)]).unwrap());
        let mut rollups = Rollups::new(rules);
        let mut emitted = Vec::new();
        for (time, value) in [
            ("2024-06-03T12:00:00+02:00", 1.0),
            ("2024-06-07T23:30:00+02:00", 3.0),
            ("2024-06-08T00:30:00+02:00", 100.0), // Saturday in Berlin, Friday in UTC
            ("2024-06-09T12:00:00+02:00", 200.0),
            ("2024-06-10T00:10:00+02:00", 5.0),
        ] {
            emitted.extend(rollups.add("h", "s", "m", &[(ts(time), value)]));
        }
        emitted.extend(rollups.close_due(i64::MAX));
        emitted
            .into_iter()
            .map(|p| ((p.service.into(), p.timestamp), p.value))
            .collect()
    }

    #[test]
    fn weekday_aggregates_leave_weekends_out_and_useweekend_adds_weekend_series() {
        let week = ts("2024-06-03T00:00:00+02:00");
        let saturday = ts("2024-06-08T00:00:00+02:00");
        let without = week_of_points(false);
        assert_eq!(without[&("s/W/avg".to_owned(), week)], 2.0);
        assert_eq!(without[&("s/W/max".to_owned(), week)], 3.0);
        assert!(!without.keys().any(|k| k.0.ends_with("/weekend")));
        assert!(!without.contains_key(&("s/D/avg".to_owned(), saturday)));
        assert!(!without.values().any(|&v| v >= 100.0));

        let with = week_of_points(true);
        assert_eq!(with[&("s/W/avg".to_owned(), week)], 2.0);
        assert_eq!(with[&("s/W/avg/weekend".to_owned(), week)], 150.0);
        assert_eq!(
            with[&(
                "s/M/min/weekend".to_owned(),
                ts("2024-06-01T00:00:00+02:00")
            )],
            100.0
        );
        assert_eq!(with[&("s/D/avg/weekend".to_owned(), saturday)], 100.0);
        assert!(!with.contains_key(&("s/D/avg".to_owned(), saturday)));
        assert_eq!(
            with[&(
                "s/H/max/weekend".to_owned(),
                ts("2024-06-08T00:00:00+02:00")
            )],
            100.0
        );
        // Friday 23:30 local stays a weekday point though it is Friday 21:30 in UTC, and the
        // Saturday 00:30 point is a weekend point though UTC still says Friday.
        assert_eq!(
            with[&("s/H/avg".to_owned(), ts("2024-06-07T23:00:00+02:00"))],
            3.0
        );
    }

    #[test]
    fn dst_days_have_23_and_25_hour_periods_stamped_at_local_midnight() {
        for (day, next_day, hours) in [
            ("2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00", 25),
            ("2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00", 23),
        ] {
            let rules = Arc::new(RollupRules::new(vec![rule("*", "Europe/Berlin", true)]).unwrap());
            let mut rollups = Rollups::new(rules);
            let points: Vec<(i64, f64)> = (ts(day)..ts(next_day))
                .step_by(600)
                .map(|t| (t, 1.0))
                .collect();
            let mut emitted = rollups.add("h", "s", "m", &points);
            emitted.extend(rollups.close_due(i64::MAX));
            let hour_stamps: Vec<i64> = emitted
                .iter()
                .filter(|p| p.service == "s/H/avg/weekend")
                .map(|p| p.timestamp)
                .collect();
            assert_eq!(hour_stamps.len(), hours);
            assert!(hour_stamps.windows(2).all(|w| w[1] - w[0] == 3600));
            let days: Vec<&AggregatePoint> = emitted
                .iter()
                .filter(|p| p.service == "s/D/avg/weekend")
                .collect();
            assert_eq!(days.len(), 1);
            assert_eq!(days[0].timestamp, ts(day));
            let count = emitted
                .iter()
                .filter(|p| p.service == "s/D/max/weekend")
                .count();
            assert_eq!(count, 1);
            assert_eq!(points.len(), hours * 6);
        }
    }

    #[test]
    fn late_points_correct_the_previous_period_and_older_ones_are_counted() {
        let rules = Arc::new(RollupRules::new(vec![rule("*", "UTC", false)]).unwrap());
        let mut rollups = Rollups::new(rules);
        let ten = ts("2024-06-03T10:00:00Z");
        rollups.add("h", "s", "m", &[(ten + 300, 1.0)]);
        let closed = rollups.add("h", "s", "m", &[(ten + 3600 + 600, 2.0)]);
        assert_eq!(closed.len(), 3);
        assert!(closed.iter().all(|p| p.timestamp == ten && p.value == 1.0));
        let corrected = rollups.add("h", "s", "m", &[(ten + 1800, 3.0), (ten + 1900, 5.0)]);
        let values: Vec<(&str, f64)> = corrected
            .iter()
            .map(|p| (p.service.as_str(), p.value))
            .collect();
        assert_eq!(
            values,
            [("s/H/avg", 3.0), ("s/H/max", 5.0), ("s/H/min", 1.0)]
        );
        assert!(corrected.iter().all(|p| p.timestamp == ten));
        // 09:30 is two hours before the open one: too late for the hour, fine for the day.
        assert!(rollups.add("h", "s", "m", &[(ten - 1800, 7.0)]).is_empty());
        assert_eq!(rollups.stats().too_late, [1, 0, 0, 0]);
        let day = rollups
            .close_due(i64::MAX)
            .into_iter()
            .find(|p| p.service == "s/D/max")
            .unwrap();
        assert_eq!(day.value, 7.0);
        // After close_due, a point in the closed open period re-emits it at once.
        let again = rollups.add("h", "s", "m", &[(ten + 3600 + 700, 10.0)]);
        assert!(again
            .iter()
            .any(|p| p.service == "s/H/max" && p.value == 10.0));
        assert!(again
            .iter()
            .any(|p| p.service == "s/D/max" && p.value == 10.0));
    }

    #[test]
    fn quiet_series_close_when_due_and_not_before() {
        let rules = Arc::new(RollupRules::new(vec![rule("*", "America/New_York", false)]).unwrap());
        let mut rollups = Rollups::new(rules);
        let t = ts("2024-06-04T10:20:00-04:00");
        rollups.add("h", "s", "m", &[(t, 1.0)]);
        assert!(rollups
            .close_due(ts("2024-06-04T10:59:59-04:00"))
            .is_empty());
        let hour = rollups.close_due(ts("2024-06-04T11:00:00-04:00"));
        assert_eq!(hour.len(), 3);
        assert!(rollups
            .close_due(ts("2024-06-04T11:00:00-04:00"))
            .is_empty());
        let day = rollups.close_due(ts("2024-06-05T00:00:00-04:00"));
        assert!(day.iter().all(|p| p.service.starts_with("s/D/")) && day.len() == 3);
        assert_eq!(day[0].timestamp, ts("2024-06-04T00:00:00-04:00"));
    }

    /// A catch-up: points of a past hour arrive flush after flush while the clock says the
    /// hour has ended. Closing by the clock only series that went quiet emits the hour once,
    /// when the next hour's point comes; closing every series would emit it at each flush.
    #[test]
    fn series_still_fed_are_closed_by_their_points_not_by_the_clock() {
        let rules = Arc::new(RollupRules::new(vec![rule("*", "UTC", false)]).unwrap());
        let ten = ts("2024-06-03T10:00:00Z");
        let now = ten + 5 * 3600;
        let catch_up = |close: &dyn Fn(&mut Rollups, i64) -> Vec<AggregatePoint>| {
            let mut rollups = Rollups::new(rules.clone());
            let mut emitted = Vec::new();
            for (flush, minute) in (0..60).step_by(5).enumerate() {
                let fed = now + 60 * flush as i64;
                rollups.set_feed_time(fed);
                emitted.extend(rollups.add("h", "s", "m", &[(ten + 60 * minute, minute as f64)]));
                emitted.extend(close(&mut rollups, fed + 30));
            }
            rollups.set_feed_time(now + 3600);
            emitted.extend(rollups.add("h", "s", "m", &[(ten + 3600, 0.0)]));
            let hour: Vec<f64> = emitted
                .iter()
                .filter(|p| p.service == "s/H/avg" && p.timestamp == ten)
                .map(|p| p.value)
                .collect();
            (hour.len(), hour.last().copied())
        };
        // Every series closed by the clock: the hour again at each of the 12 flushes.
        let (emissions, last) = catch_up(&|rollups, now| rollups.close_due(now));
        assert_eq!(emissions, 12);
        assert_eq!(last, Some(27.5));
        // Only quiet ones (no feed in the last 10 minutes): once, with the same value.
        let (emissions, last) = catch_up(&|rollups, now| rollups.close_quiet(now, now - 600));
        assert_eq!(emissions, 1);
        assert_eq!(last, Some(27.5));
        // A series that went quiet is closed by the clock once the quiet time has passed.
        let mut rollups = Rollups::new(rules.clone());
        rollups.set_feed_time(now);
        rollups.add("h", "s", "m", &[(ten, 1.0)]);
        assert!(rollups.close_quiet(now + 300, now + 300 - 600).is_empty());
        let hour = rollups.close_quiet(now + 700, now + 700 - 600);
        assert!(hour
            .iter()
            .any(|p| p.service == "s/H/avg" && p.value == 1.0));
    }

    #[test]
    fn aggregate_series_and_unmatched_series_are_not_rolled_up() {
        let rules = Arc::new(
            RollupRules::new(vec![
                RollupRule {
                    methods: vec![],
                    ..rule("excluded/*", "UTC", false)
                },
                rule("h*", "UTC", false),
            ])
            .unwrap(),
        );
        let mut rollups = Rollups::new(rules);
        let points = [
            (ts("2024-06-03T10:00:00Z"), 1.0),
            (ts("2024-06-04T10:00:00Z"), 1.0),
        ];
        for service in ["s/H/avg", "s/D/max/weekend", "s/M/min"] {
            assert!(rollups.add("h", service, "m", &points).is_empty());
        }
        assert!(rollups.add("excluded", "s", "m", &points).is_empty());
        assert!(rollups.add("other", "s", "m", &points).is_empty());
        assert_eq!(rollups.stats().rolled_up, 0);
        assert_eq!(rollups.stats().series, 5);
        // An ordinary service that merely contains a level letter between slashes is rolled up.
        assert!(!rollups.add("h", "a/H/b", "m", &points).is_empty());
        assert!(parse_aggregate_service("a/H/b").is_none());
        assert_eq!(
            parse_aggregate_service("svc/x/W/max/weekend"),
            Some(AggregateService {
                base: "svc/x",
                level: Level::Week,
                method: Method::Max,
                weekend: true
            })
        );
        assert!(rollups.remove("h", "a/H/b", "m"));
        assert_eq!(rollups.stats().rolled_up, 0);
    }

    #[test]
    fn configuration_parses_from_toml_and_validates() {
        #[derive(Deserialize)]
        struct File {
            rollups: Vec<RollupRule>,
        }
        let file: File = toml::from_str(
            r#"
            [[rollups]]
            match = "*"
            methods = ["avg", "max", "min"]
            useweekend = false
            timezone = "UTC"
            retention = { H = 25, D = 7, W = 5, M = 1 }

            [[rollups]]
            match = "db*/*"
            timezone = "Europe/Berlin"
            retention = { H = 48, M = 13 }
            "#,
        )
        .unwrap();
        let rules = RollupRules::new(file.rollups).unwrap();
        assert_eq!(rules.rules()[0].retention(), Retention::DEFAULT);
        let second = &rules.rules()[1];
        assert_eq!(second.retention().hours, 48);
        assert_eq!(second.retention().days, 7);
        assert_eq!(second.methods(), &Method::ALL);
        assert_eq!(second.timezone(), chrono_tz::Europe::Berlin);
        // The first matching rule applies, even though the second also matches.
        assert_eq!(rules.rule_for("db1", "s", "m").map(|r| r.0), Some(0));

        let err = RollupRules::new(vec![
            rule("*", "UTC", false),
            RollupRule {
                retention: RetentionConfig {
                    weeks: Some(4),
                    ..RetentionConfig::default()
                },
                ..rule("*", "UTC", false)
            },
        ])
        .unwrap_err();
        assert_eq!(
            err,
            RollupError::RetentionLowered {
                rule: 1,
                level: Level::Week,
                value: 4,
                default: 5
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("rule 1")
                && message.contains("W = 4")
                && message.contains("never lowered")
        );

        let err = RollupRules::new(vec![rule("*", "Europe/Berlinn", false)]).unwrap_err();
        assert!(
            err.to_string().contains("\"Europe/Berlinn\"") && err.to_string().contains("rule 0")
        );
        let err = RollupRules::new(vec![rule("host[1-", "UTC", false)]).unwrap_err();
        assert!(matches!(err, RollupError::InvalidGlob { rule: 0, .. }));
        assert!(err.to_string().contains("\"host[1-\""));
        let err = RollupRules::new(vec![RollupRule {
            methods: vec!["avg".into(), "median".into()],
            ..rule("*", "UTC", false)
        }])
        .unwrap_err();
        assert!(err.to_string().contains("\"median\""));
        assert!(
            toml::from_str::<File>("[[rollups]]\nmatch = \"*\"\nretention = { X = 1 }").is_err()
        );
    }

    #[test]
    fn whisper_retentions_follow_the_rule() {
        let retention = Retention {
            hours: 48,
            ..Retention::DEFAULT
        };
        let strings: Vec<String> = Level::ALL
            .iter()
            .map(|&l| retention.whisper_retention(l))
            .collect();
        assert_eq!(
            strings,
            ["3600s:48h", "86400s:7d", "604800s:5w", "2678400s:31d"]
        );
        assert_eq!(retention.points(Level::Hour), 48);
        let rules = RollupRules::new(vec![RollupRule {
            retention: RetentionConfig {
                months: Some(12),
                ..RetentionConfig::default()
            },
            ..rule("h/*", "UTC", false)
        }])
        .unwrap();
        assert_eq!(
            rules
                .aggregate_retention("h", "s/M/avg/weekend", "m")
                .as_deref(),
            Some("2678400s:372d")
        );
        assert_eq!(rules.aggregate_retention("h", "s", "m"), None);
        assert_eq!(rules.aggregate_retention("x", "s/H/avg", "m"), None);
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "h/s/m", true),
            ("h/*", "h/s/m", true),
            ("h/*/m", "h/a/b/m", true),
            ("*/cpu*/load", "web1/cpu total/load", true),
            ("*/cpu*/load", "web1/cpu total/load1", false),
            ("web?/*", "web1/s/m", true),
            ("web?/*", "web12/s/m", false),
            ("web[0-9]/*", "web7/s/m", true),
            ("web[!0-9]/*", "web7/s/m", false),
            ("web[^0-9]/*", "webx/s/m", true),
            ("a[]]b", "a]b", true),
            ("a[x-]b", "a-b", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("**a**b**", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("", "", true),
            ("é*", "éa", true),
        ];
        for (pattern, subject, want) in cases {
            assert_eq!(
                Glob::compile(pattern).unwrap().matches(subject),
                want,
                "{pattern} ~ {subject}"
            );
        }
        for bad in ["[abc", "a\\", "[z-a]", "[!", "[]"] {
            assert!(Glob::compile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_partition_time_in_awkward_zones() {
        let zones = [
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::UTC,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kolkata,
            chrono_tz::America::Santiago,
            chrono_tz::America::Havana,
            chrono_tz::Pacific::Apia,
            chrono_tz::Asia::Kathmandu,
        ];
        let mut rng = Rng(99);
        for tz in zones {
            for _ in 0..3000 {
                // Anywhere in 1900-2100, half the time right next to a DST change.
                let t = if rng.chance(500) {
                    -2_208_988_800 + rng.below(6_311_433_600) as i64
                } else {
                    let year = 2000 + rng.below(30) as i32;
                    let month = [3, 4, 9, 10, 11][rng.below(5) as usize];
                    let day = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
                    midnight_stamp(chrono_tz::UTC, day) + rng.below(31 * 86_400) as i64
                };
                for level in Level::ALL {
                    let period = period_of(level, tz, t);
                    assert!(period.start <= t && t < period.end, "{tz} {level} {t}");
                    assert_eq!(
                        period_of(level, tz, period.start),
                        period,
                        "{tz} {level} {t}"
                    );
                    assert_eq!(
                        period_of(level, tz, period.end - 1),
                        period,
                        "{tz} {level} {t}"
                    );
                    assert_eq!(
                        period_of(level, tz, period.end).start,
                        period.end,
                        "{tz} {level} {t}"
                    );
                    if level != Level::Hour {
                        // Calendar periods start where the local calendar says.
                        let key = calendar_key(level, tz, period.start);
                        let first = period_of(Level::Day, tz, period.start);
                        assert_eq!(first.start, period.start);
                        if tz == chrono_tz::Europe::Berlin || tz == chrono_tz::UTC {
                            assert_eq!(calendar_stamp(tz, key), period.start);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_input_panics() {
        let rules =
            Arc::new(RollupRules::new(vec![rule("*", "Australia/Lord_Howe", true)]).unwrap());
        let mut rollups = Rollups::new(rules.clone());
        let points = [
            (i64::MIN, 1.0),
            (i64::MAX, 1.0),
            (MAX_TIMESTAMP, f64::MAX),
            (MAX_TIMESTAMP, f64::MAX),
            (MIN_TIMESTAMP, -f64::MAX),
            (0, f64::NAN),
            (0, f64::INFINITY),
            (MIN_TIMESTAMP + 1, 0.0),
            (MAX_TIMESTAMP - 1, -0.0),
        ];
        rollups.add("", "", "", &points);
        rollups.add("\0\0\0\0", "/H/avg", "\u{fffd}", &points);
        rollups.close_due(i64::MIN);
        rollups.close_due(i64::MAX);
        // The aggregate series' points are not looked at, so only the first call's count.
        assert_eq!(rollups.stats().rejected, 4);
        let json = serde_json::to_string(&rollups.snapshot()).unwrap();
        let garbage = json
            .replace("\"open_len\":", "\"open_len\":4294967295,\"x\":")
            .replace(
                "\"open_start\":",
                "\"open_start\":9223372036854775807,\"y\":",
            );
        if let Ok(snapshot) = serde_json::from_str::<RollupSnapshot>(&garbage) {
            let mut restored = Rollups::restore(rules.clone(), snapshot);
            restored.add("", "", "", &points);
            restored.close_due(i64::MAX);
        }
        let mut snapshot = rollups.snapshot();
        for series in &mut snapshot.series {
            for level in &mut series.levels {
                level.open_start = MAX_TIMESTAMP;
                level.open_len = u32::MAX;
                level.prev_len = u32::MAX;
                level.flags = u8::MAX;
            }
        }
        let mut restored = Rollups::restore(rules, snapshot);
        restored.add("", "", "", &points);
        restored.add("", "", "", &[(MIN_TIMESTAMP, 1.0), (MAX_TIMESTAMP, 1.0)]);
        restored.close_due(i64::MAX);
    }
}
