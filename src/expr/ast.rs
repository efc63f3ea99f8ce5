//! The parsed form of a threshold expression and its canonical text. `Display` writes an
//! expression back in a form that `parse` reads to the same tree (binary operations fully
//! parenthesized, names quoted where needed, ranges newest first); evaluation uses it to name
//! the part of an expression a missing value comes from.

use std::fmt;

/// A parsed expression. Built by `parse`, which guarantees ranges appear only as function
/// arguments or as the whole expression and bounds the nesting; `evaluate` copes with
/// hand-built trees that break these rules by answering `Missing`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    /// One value of a series: `host-service-item[3]` or `host-service-item[-30M]`.
    Value {
        series: SeriesName,
        pick: Pick,
    },
    /// Several values of a series, newest first: `[0:9]` or `[-10M:-60M]`.
    Range {
        series: SeriesName,
        range: RangeSelector,
    },
    Negate(Box<Expr>),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `avg`, `max`, `min`, `sum` or `count` over its arguments' values, flattened.
    Aggregate {
        function: Aggregate,
        arguments: Vec<Expr>,
    },
    /// The average of the values at now's time of day on previous days.
    Baseline {
        series: SeriesName,
        weeks: u32,
        /// Only the same weekday (7, 14, … days ago) rather than every day.
        same_weekday: bool,
    },
}

/// The three-part name of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesName {
    pub host: String,
    pub service: String,
    pub item: String,
}

impl SeriesName {
    pub fn new(
        host: impl Into<String>,
        service: impl Into<String>,
        item: impl Into<String>,
    ) -> Self {
        SeriesName {
            host: host.into(),
            service: service.into(),
            item: item.into(),
        }
    }
}

/// A selector that picks one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The n-th newest value, 0 being the latest.
    Index(usize),
    /// The value nearest to now minus this offset, within half a step.
    Ago(TimeOffset),
}

/// A selector that picks several values; both bounds inclusive. `parse` stores the newer
/// bound first; evaluation accepts either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSelector {
    Indexes {
        newest: usize,
        oldest: usize,
    },
    Ago {
        newest: TimeOffset,
        oldest: TimeOffset,
    },
}

/// A duration into the past as written (`30M`), kept in its unit for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOffset {
    pub amount: u64,
    pub unit: TimeUnit,
}

impl TimeOffset {
    /// The offset in seconds, or `None` when it does not fit an `i64` (`parse` rejects those).
    pub fn seconds(self) -> Option<i64> {
        i64::try_from(self.amount)
            .ok()?
            .checked_mul(self.unit.seconds())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl TimeUnit {
    pub fn seconds(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1,
            TimeUnit::Minutes => 60,
            TimeUnit::Hours => 3600,
            TimeUnit::Days => 86_400,
            TimeUnit::Weeks => 7 * 86_400,
        }
    }

    pub fn letter(self) -> char {
        match self {
            TimeUnit::Seconds => 'S',
            TimeUnit::Minutes => 'M',
            TimeUnit::Hours => 'H',
            TimeUnit::Days => 'D',
            TimeUnit::Weeks => 'W',
        }
    }

    pub fn from_letter(letter: char) -> Option<TimeUnit> {
        Some(match letter {
            'S' => TimeUnit::Seconds,
            'M' => TimeUnit::Minutes,
            'H' => TimeUnit::Hours,
            'D' => TimeUnit::Days,
            'W' => TimeUnit::Weeks,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

impl BinaryOp {
    pub fn symbol(self) -> char {
        match self {
            BinaryOp::Add => '+',
            BinaryOp::Subtract => '-',
            BinaryOp::Multiply => '*',
            BinaryOp::Divide => '/',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Avg,
    Max,
    Min,
    Sum,
    Count,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
        }
    }

    pub fn from_name(name: &str) -> Option<Aggregate> {
        Some(match name {
            "avg" => Aggregate::Avg,
            "max" => Aggregate::Max,
            "min" => Aggregate::Min,
            "sum" => Aggregate::Sum,
            "count" => Aggregate::Count,
            _ => return None,
        })
    }
}

/// Whether `c` may appear in an unquoted name.
pub(crate) fn is_name_char(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '-' | '+' | '*' | '/' | '[' | ']' | '(' | ')' | '{' | '}' | '"' | '\'' | ','
        ))
}

impl Expr {
    /// The series the expression reads, in order of appearance (repeats included): lets a
    /// caller check names or prefetch before evaluating.
    pub fn series(&self) -> Vec<&SeriesName> {
        let mut found = Vec::new();
        self.collect_series(&mut found);
        found
    }

    fn collect_series<'a>(&'a self, found: &mut Vec<&'a SeriesName>) {
        match self {
            Expr::Number(_) => {}
            Expr::Value { series, .. }
            | Expr::Range { series, .. }
            | Expr::Baseline { series, .. } => found.push(series),
            Expr::Negate(inner) => inner.collect_series(found),
            Expr::Binary { left, right, .. } => {
                left.collect_series(found);
                right.collect_series(found);
            }
            Expr::Aggregate { arguments, .. } => {
                for argument in arguments {
                    argument.collect_series(found);
                }
            }
        }
    }
}

/// Writes a number so that it reads back exactly: whole numbers without `.0`, others in
/// Rust's shortest round-trip form (exponent for very large or small magnitudes).
pub(crate) fn write_number(f: &mut fmt::Formatter<'_>, value: f64) -> fmt::Result {
    if value.fract() == 0.0 && value.abs() < 1e16 {
        write!(f, "{value}")
    } else {
        write!(f, "{value:?}")
    }
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if !name.is_empty() && name.chars().all(is_name_char) {
        return f.write_str(name);
    }
    f.write_str("\"")?;
    for c in name.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for SeriesName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.host)?;
        f.write_str("-")?;
        write_name(f, &self.service)?;
        f.write_str("-")?;
        write_name(f, &self.item)
    }
}

impl fmt::Display for TimeOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{}{}", self.amount, self.unit.letter())
    }
}

/// Without the brackets.
impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::Index(index) => write!(f, "{index}"),
            Pick::Ago(offset) => write!(f, "{offset}"),
        }
    }
}

/// Without the brackets.
impl fmt::Display for RangeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeSelector::Indexes { newest, oldest } => write!(f, "{newest}:{oldest}"),
            RangeSelector::Ago { newest, oldest } => write!(f, "{newest}:{oldest}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(value) => write_number(f, *value),
            Expr::Value { series, pick } => write!(f, "{series}[{pick}]"),
            Expr::Range { series, range } => write!(f, "{series}[{range}]"),
            Expr::Negate(inner) => write!(f, "-{inner}"),
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Aggregate {
                function,
                arguments,
            } => {
                write!(f, "{}(", function.name())?;
                for (position, argument) in arguments.iter().enumerate() {
                    if position > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{argument}")?;
                }
                f.write_str(")")
            }
            Expr::Baseline {
                series,
                weeks,
                same_weekday,
            } => {
                write!(f, "baseline({series}, {weeks}W")?;
                if *same_weekday {
                    f.write_str(", weekday")?;
                }
                f.write_str(")")
            }
        }
    }
}
