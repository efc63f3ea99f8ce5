//! Nagios threshold ranges, `[@][start:][end]`, as step 7 of the reading defines them.
//!
//! `start` is a number, `~` (negative infinity) or empty (zero); an empty `end` after `:` is
//! positive infinity; without `:` the whole text is the end and the start is zero; `@` means
//! the range alerts when the value lies inside it rather than outside. Bounds must be finite
//! numbers that fill their part entirely, and `start <= end`; anything else is not a range.

use crate::number;

/// A parsed threshold range. Infinite bounds are `f64::NEG_INFINITY` / `f64::INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// `@` was given: alert when `start <= value <= end`.
    pub inside: bool,
    /// Lower bound, `-inf` for `~`.
    pub start: f64,
    /// Upper bound, `+inf` when missing after `:`.
    pub end: f64,
}

impl Range {
    /// Reads a range; `None` when `text` is not a range under the reading.
    ///
    /// One pass: the first part is read as `~`, nothing, or a number, and what follows it
    /// decides the form (end of text: that number was the end; `:`: an end follows).
    pub fn parse(text: &str) -> Option<Range> {
        let (inside, body) = match text.as_bytes() {
            [b'@', rest @ ..] => (true, rest),
            body => (false, body),
        };
        let (first, rest) = match body {
            [b'~', rest @ ..] => (f64::NEG_INFINITY, rest),
            [b':', ..] => (0.0, body),
            _ => match number::scan(body)? {
                (value, len) if value.is_finite() => (value, &body[len..]),
                _ => return None, // overflow
            },
        };
        let (start, end) = match rest {
            // Without `:` the text is the end, and it must be a number (not `~`).
            [] if first.is_finite() => (0.0, first),
            [b':'] => (first, f64::INFINITY),
            [b':', end @ ..] => (first, number::parse_whole(end)?),
            _ => return None,
        };
        (start <= end).then_some(Range { inside, start, end })
    }

    /// Whether `value` raises an alert for this range (the Nagios plugin rule: outside the range
    /// alerts, or inside it with `@`).
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(inside: bool, start: f64, end: f64) -> Option<Range> {
        Some(Range { inside, start, end })
    }

    #[test]
    fn forms_of_the_reading() {
        let inf = f64::INFINITY;
        assert_eq!(Range::parse("10"), range(false, 0.0, 10.0));
        assert_eq!(Range::parse("10:"), range(false, 10.0, inf));
        assert_eq!(Range::parse("~:10"), range(false, -inf, 10.0));
        assert_eq!(Range::parse("10:20"), range(false, 10.0, 20.0));
        assert_eq!(Range::parse("@10:20"), range(true, 10.0, 20.0));
        assert_eq!(Range::parse(":"), range(false, 0.0, inf));
        assert_eq!(Range::parse("2,0:"), range(false, 2.0, inf));
        assert_eq!(Range::parse("@~:5"), range(true, -inf, 5.0));
    }

    #[test]
    fn non_ranges() {
        for text in [
            "", "@", "10:~", "10:20:30", "-5", "20:10", "foo", "1-10", "0..5", "90%", "U", "~",
            "1e999", "@@1", "~5", "-1e999:5", "1e999:", "1:1e999", ":~",
        ] {
            assert_eq!(Range::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn alert_rule() {
        let outside = Range::parse("10:20").unwrap();
        assert!(outside.alerts(9.0) && outside.alerts(21.0) && !outside.alerts(15.0));
        let inside = Range::parse("@10:20").unwrap();
        assert!(!inside.alerts(9.0) && inside.alerts(10.0) && inside.alerts(20.0));
    }
}
