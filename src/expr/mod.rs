//! The expression language of dynamic thresholds (modelled on bischeck's): `parse` turns a
//! text such as `avg(web-http-time[0:9]) * 1.2` or `baseline(web-http-time, 4W)` into an
//! [`Expr`], and `evaluate` computes it against a [`Series`] data source at a given `now`.
//! Parsing never panics and reports typed errors with the byte offset and what was expected;
//! evaluation never panics and never turns missing data into 0: the whole expression's
//! [`Outcome`] is then `Missing` with a reason naming the part and why.
//!
//! # The language
//! - A reference is `host-service-item` followed by a selector; a name is any run of
//!   characters other than `-`, whitespace, control characters, `+ * /`, brackets, parentheses,
//!   braces, quotes and commas, or a double-quoted string where `\"` and `\\` escape (so
//!   `"web-01"-"http"-"time"[0]`). No whitespace between the three parts; whitespace is
//!   allowed anywhere else, including before `[` and inside the brackets. A word that can be
//!   read as a reference is one: `1-2-3[0]` is host `1`, while `1-2-3` is arithmetic (-4).
//! - Selectors: `[3]` the fourth newest value; `[-30M]` the value nearest to now minus 30
//!   minutes, within half the series' step (units `S`, `M`, `H`, `D`, `W`, upper case only;
//!   `[-0M]` is now); `[0:9]` indexes 0 to 9; `[-10M:-60M]` every value stamped between
//!   now-60min and now-10min inclusive. Ranges may be written either way round and are always
//!   newest first. An index range reaching past the stored values yields what is stored.
//! - `+ - * /` with the usual precedence, left associative; unary minus; parentheses;
//!   numbers such as `12`, `1.5`, `.5`, `2e-3`.
//! - `avg`, `max`, `min`, `sum`, `count` take one or more arguments, each a scalar expression
//!   or a range, flattened together. A range may only be a function argument or the whole
//!   expression (whose value is then the list of values); using one in arithmetic is a
//!   parse error.
//! - `baseline(host-service-item, 4W)` averages the values at now's time of day on each of
//!   the previous 28 days (7 per week asked for); `baseline(…, 4W, weekday)` only on the
//!   days 7, 14, 21, 28 days ago. The series is written without selector or with `[0]`
//!   (which means the same). Weeks are 1 to 520. Each sample is the value nearest to
//!   `now - d*86400` within half the step; days without one are skipped, and the baseline is
//!   missing only when every sampled day is.
//!
//! # Decisions on missing data
//! A missing series, an index beyond the stored values, an offset with no value within half
//! a step, division by zero, a non-finite result, and `avg`/`max`/`min`/`sum` of no values
//! all make the whole expression missing. `sum` of nothing is missing rather than 0 (as in
//! bischeck: a threshold of 0 from absent data would alarm falsely); `count` of nothing is
//! 0 because that count is a fact, not a missing value. `count` of a series that does not
//! exist is missing. A bare empty range is `{"values": []}`.
//!
//! # The step
//! "Half a step" uses `Series::step` at the sampled time when the source knows it, else the
//! median gap between the newest 257 stored values; with neither (fewer than two values)
//! only an exact timestamp matches.

mod ast;
mod eval;
mod outcome;
mod parser;
mod source;

#[cfg(test)]
mod tests;

pub use ast::{Aggregate, BinaryOp, Expr, Pick, RangeSelector, SeriesName, TimeOffset, TimeUnit};
pub use eval::evaluate;
pub use outcome::Outcome;
pub use parser::{parse, ParseError, MAX_DEPTH, MAX_WEEKS};
pub use source::{MemorySeries, Sample, Series};
