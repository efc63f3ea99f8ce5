//! Text to [`Expr`]: a recursive-descent parser working directly on the text (the meaning of
//! `-` and `:` depends on where they stand, so there is no separate token pass). It never
//! panics on any input, runs in time linear in the text, and bounds nesting at
//! [`MAX_DEPTH`] so that neither it nor evaluation can exhaust the stack. Errors carry the
//! byte offset where reading stopped and what would have been accepted there.

use super::ast::{
    is_name_char, Aggregate, BinaryOp, Expr, Pick, RangeSelector, SeriesName, TimeOffset, TimeUnit,
};

/// How deep expressions may nest (parentheses, unary minus, function calls, and chains of
/// binary operations, which form one level per operator).
pub const MAX_DEPTH: usize = 100;

/// The most weeks `baseline` may look back (ten years).
pub const MAX_WEEKS: u32 = 520;

/// Why a text is not an expression; every variant carries the byte offset in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected {expected} at {offset}")]
    Expected {
        expected: &'static str,
        offset: usize,
    },
    #[error("unterminated quoted name starting at {offset}")]
    UnterminatedQuote { offset: usize },
    #[error("unknown escape in quoted name at {offset} (only \\\" and \\\\ escape)")]
    UnknownEscape { offset: usize },
    #[error("unknown function '{name}' at {offset} (known: avg, max, min, sum, count, baseline)")]
    UnknownFunction { name: String, offset: usize },
    #[error("{problem} at {offset}")]
    Invalid {
        problem: &'static str,
        offset: usize,
    },
    #[error("a range can only be a function argument or the whole expression, at {offset}")]
    RangeInArithmetic { offset: usize },
    #[error("expression nested deeper than {MAX_DEPTH} levels at {offset}")]
    TooDeep { offset: usize },
}

impl ParseError {
    /// The byte offset in the text where the problem is.
    pub fn offset(&self) -> usize {
        match self {
            ParseError::Expected { offset, .. }
            | ParseError::UnterminatedQuote { offset }
            | ParseError::UnknownEscape { offset }
            | ParseError::UnknownFunction { offset, .. }
            | ParseError::Invalid { offset, .. }
            | ParseError::RangeInArithmetic { offset }
            | ParseError::TooDeep { offset } => *offset,
        }
    }
}

/// Parses a whole threshold expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        text,
        pos: 0,
        nesting: 0,
        bound_start: 0,
    };
    let parsed = parser.expression()?;
    parser.skip_whitespace();
    if parser.pos < text.len() {
        return Err(expected(
            "an operator or the end of the expression",
            parser.pos,
        ));
    }
    Ok(parsed.expr)
}

fn expected(expected: &'static str, offset: usize) -> ParseError {
    ParseError::Expected { expected, offset }
}

fn invalid(problem: &'static str, offset: usize) -> ParseError {
    ParseError::Invalid { problem, offset }
}

/// A parsed operand with what the enclosing rules need to check it.
struct Parsed {
    expr: Expr,
    /// Levels of the tree below and including this node.
    depth: usize,
    /// Where its text starts, for errors about it as a whole.
    start: usize,
}

impl Parsed {
    fn leaf(expr: Expr, start: usize) -> Parsed {
        Parsed {
            expr,
            depth: 1,
            start,
        }
    }

    fn reject_range(&self) -> Result<(), ParseError> {
        match self.expr {
            Expr::Range { .. } => Err(ParseError::RangeInArithmetic { offset: self.start }),
            _ => Ok(()),
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
    /// Current recursion depth of the parser itself.
    nesting: usize,
    /// Where the selector bound read last starts, for errors about a range's second bound.
    bound_start: usize,
}

impl<'t> Parser<'t> {
    fn peek_at(&self, at: usize) -> Option<char> {
        self.text.get(at..)?.chars().next()
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(self.pos)
    }

    fn whitespace_end(&self, from: usize) -> usize {
        let mut at = from;
        while let Some(c) = self.peek_at(at) {
            if !c.is_whitespace() {
                break;
            }
            at += c.len_utf8();
        }
        at
    }

    fn skip_whitespace(&mut self) {
        self.pos = self.whitespace_end(self.pos);
    }

    /// Skips whitespace, then consumes `wanted` or reports `what` was expected.
    fn expect(&mut self, wanted: char, what: &'static str) -> Result<(), ParseError> {
        self.skip_whitespace();
        if self.peek() == Some(wanted) {
            self.pos += wanted.len_utf8();
            Ok(())
        } else {
            Err(expected(what, self.pos))
        }
    }

    fn enter(&mut self, offset: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(ParseError::TooDeep { offset });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// `term (('+' | '-') term)*`; may return a bare range, which the caller checks.
    fn expression(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.term()?;
        loop {
            self.skip_whitespace();
            let op = match self.peek() {
                Some('+') => BinaryOp::Add,
                Some('-') => BinaryOp::Subtract,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.term()?;
            left = combine(op, left, right)?;
        }
    }

    /// `unary (('*' | '/') unary)*`
    fn term(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.unary()?;
        loop {
            self.skip_whitespace();
            let op = match self.peek() {
                Some('*') => BinaryOp::Multiply,
                Some('/') => BinaryOp::Divide,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = combine(op, left, right)?;
        }
    }

    /// `'-' unary | primary`
    fn unary(&mut self) -> Result<Parsed, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        if self.peek() != Some('-') {
            return self.primary();
        }
        self.pos += 1;
        self.enter(start)?;
        let inner = self.unary()?;
        self.leave();
        inner.reject_range()?;
        let depth = inner.depth + 1;
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep { offset: start });
        }
        Ok(Parsed {
            expr: Expr::Negate(Box::new(inner.expr)),
            depth,
            start,
        })
    }

    /// A number, a parenthesized expression, a function call or a reference.
    fn primary(&mut self) -> Result<Parsed, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                self.enter(start)?;
                let inner = self.expression()?;
                self.leave();
                self.expect(')', "')'")?;
                // The parentheses' start is the operand's start, for errors about it.
                Ok(Parsed { start, ..inner })
            }
            Some('"') => self.reference(start),
            Some(c) if is_name_char(c) => {
                let word_end = self.word_end(start);
                let word = &self.text[start..word_end];
                let after_word = self.whitespace_end(word_end);
                if self.peek_at(after_word) == Some('(') {
                    return self.call(word, start, after_word + 1);
                }
                if is_number_syntax(word) && !self.reference_follows(start) {
                    let value: f64 = word
                        .parse()
                        .map_err(|_| invalid("malformed number", start))?;
                    if !value.is_finite() {
                        return Err(invalid("number out of range", start));
                    }
                    self.pos = word_end;
                    return Ok(Parsed::leaf(Expr::Number(value), start));
                }
                self.reference(start)
            }
            _ => Err(expected("an expression", start)),
        }
    }

    /// The end of the unquoted word at `start`. A word that reads as a number ending in an
    /// exponent marker (`1e`, `2.5E`) takes the sign and digits after it, so `1e-5` is one
    /// number rather than `1e` minus 5.
    fn word_end(&self, start: usize) -> usize {
        let mut at = self.name_end(start);
        let so_far = &self.text[start..at];
        let sign = self.peek_at(at);
        if matches!(sign, Some('+') | Some('-'))
            && so_far.len() > 1
            && so_far.ends_with(['e', 'E'])
            && is_number_syntax(&so_far[..so_far.len() - 1])
            && self.peek_at(at + 1).is_some_and(|c| c.is_ascii_digit())
        {
            at = self.name_end(at + 1);
        }
        at
    }

    /// The end of the run of unquoted-name characters at `start`.
    fn name_end(&self, start: usize) -> usize {
        let mut at = start;
        while let Some(c) = self.peek_at(at) {
            if !is_name_char(c) {
                break;
            }
            at += c.len_utf8();
        }
        at
    }

    /// Whether a full `host-service-item [` starts at `start`: decides whether a word that
    /// is also a number begins a reference.
    fn reference_follows(&self, start: usize) -> bool {
        match self.series_name(start) {
            Ok((_, end)) => self.peek_at(self.whitespace_end(end)) == Some('['),
            Err(_) => false,
        }
    }

    /// Reads one name part (quoted or not) at `at`; returns it and where it ends.
    fn name_part(&self, at: usize, what: &'static str) -> Result<(String, usize), ParseError> {
        match self.peek_at(at) {
            Some('"') => self.quoted(at),
            Some(c) if is_name_char(c) => {
                let end = self.name_end(at);
                Ok((self.text[at..end].to_string(), end))
            }
            _ => Err(expected(what, at)),
        }
    }

    /// Reads a double-quoted name at `start` (which holds the opening quote).
    fn quoted(&self, start: usize) -> Result<(String, usize), ParseError> {
        let mut name = String::new();
        let mut at = start + 1;
        loop {
            let Some(c) = self.peek_at(at) else {
                return Err(ParseError::UnterminatedQuote { offset: start });
            };
            at += c.len_utf8();
            match c {
                '"' => return Ok((name, at)),
                '\\' => match self.peek_at(at) {
                    Some(escaped @ ('"' | '\\')) => {
                        name.push(escaped);
                        at += 1;
                    }
                    None => return Err(ParseError::UnterminatedQuote { offset: start }),
                    Some(_) => return Err(ParseError::UnknownEscape { offset: at - 1 }),
                },
                other => name.push(other),
            }
        }
    }

    /// Reads `host-service-item` (no whitespace inside) at `start`.
    fn series_name(&self, start: usize) -> Result<(SeriesName, usize), ParseError> {
        let (host, at) = self.name_part(start, "a host name")?;
        if self.peek_at(at) != Some('-') {
            return Err(expected(
                "'-' and a service name (a reference is host-service-item)",
                at,
            ));
        }
        let (service, at) = self.name_part(at + 1, "a service name")?;
        if self.peek_at(at) != Some('-') {
            return Err(expected(
                "'-' and an item name (a reference is host-service-item)",
                at,
            ));
        }
        let (item, at) = self.name_part(at + 1, "an item name")?;
        Ok((
            SeriesName {
                host,
                service,
                item,
            },
            at,
        ))
    }

    /// A reference with its selector, starting at `start`.
    fn reference(&mut self, start: usize) -> Result<Parsed, ParseError> {
        let (series, end) = self.series_name(start)?;
        self.pos = end;
        self.expect(
            '[',
            "'[' and a selector (names containing '-' must be quoted)",
        )?;
        let first = self.bound()?;
        self.skip_whitespace();
        if self.peek() != Some(':') {
            self.expect(']', "']' or ':'")?;
            let pick = match first {
                Bound::Index(index) => Pick::Index(index),
                Bound::Ago(offset, _) => Pick::Ago(offset),
            };
            return Ok(Parsed::leaf(Expr::Value { series, pick }, start));
        }
        self.pos += 1;
        let second = self.bound()?;
        let range = match (first, second) {
            (Bound::Index(a), Bound::Index(b)) => RangeSelector::Indexes {
                newest: a.min(b),
                oldest: a.max(b),
            },
            (Bound::Ago(a, a_seconds), Bound::Ago(b, b_seconds)) => {
                let (newest, oldest) = if a_seconds <= b_seconds {
                    (a, b)
                } else {
                    (b, a)
                };
                RangeSelector::Ago { newest, oldest }
            }
            (Bound::Index(_), Bound::Ago(..)) => {
                return Err(expected(
                    "an index, as the range starts with one",
                    self.bound_start,
                ))
            }
            (Bound::Ago(..), Bound::Index(_)) => {
                return Err(expected(
                    "a time offset such as -60M, as the range starts with one",
                    self.bound_start,
                ))
            }
        };
        self.expect(']', "']'")?;
        Ok(Parsed::leaf(Expr::Range { series, range }, start))
    }
}

/// One side of a selector.
#[derive(Clone, Copy)]
enum Bound {
    Index(usize),
    /// The offset and its length in seconds.
    Ago(TimeOffset, i64),
}

impl<'t> Parser<'t> {
    /// Reads an index (`3`) or a time offset (`-30M`) inside a selector.
    fn bound(&mut self) -> Result<Bound, ParseError> {
        self.skip_whitespace();
        self.bound_start = self.pos;
        let start = self.pos;
        if self.peek() == Some('-') {
            let digits_start = start + 1;
            let digits_end = self.digits_end(digits_start);
            if digits_end == digits_start {
                return Err(expected("a number of time units, as in -30M", digits_start));
            }
            let amount: u64 = self.text[digits_start..digits_end]
                .parse()
                .map_err(|_| invalid("time offset out of range", start))?;
            let unit = self
                .peek_at(digits_end)
                .and_then(TimeUnit::from_letter)
                .ok_or_else(|| expected("a time unit (S, M, H, D or W)", digits_end))?;
            let offset = TimeOffset { amount, unit };
            let seconds = offset
                .seconds()
                .ok_or_else(|| invalid("time offset out of range", start))?;
            self.pos = digits_end + 1;
            return Ok(Bound::Ago(offset, seconds));
        }
        let digits_end = self.digits_end(start);
        if digits_end == start {
            return Err(expected(
                "an index such as 0 or a time offset such as -30M",
                start,
            ));
        }
        let index: usize = self.text[start..digits_end]
            .parse()
            .map_err(|_| invalid("index out of range", start))?;
        if self
            .peek_at(digits_end)
            .and_then(TimeUnit::from_letter)
            .is_some()
        {
            return Err(invalid(
                "time offsets point into the past and are written with '-', as in -30M",
                start,
            ));
        }
        self.pos = digits_end;
        Ok(Bound::Index(index))
    }

    fn digits_end(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = start;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    }

    /// A function call; `open` is just past the `(`.
    fn call(&mut self, name: &str, start: usize, open: usize) -> Result<Parsed, ParseError> {
        self.pos = open;
        if name == "baseline" {
            return self.baseline(start);
        }
        let Some(function) = Aggregate::from_name(name) else {
            return Err(ParseError::UnknownFunction {
                name: name.to_string(),
                offset: start,
            });
        };
        self.enter(start)?;
        let mut arguments = Vec::new();
        let mut depth = 0;
        loop {
            let argument = self.expression()?;
            depth = depth.max(argument.depth);
            arguments.push(argument.expr);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(expected("',' or ')'", self.pos)),
            }
        }
        self.leave();
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep { offset: start });
        }
        Ok(Parsed {
            expr: Expr::Aggregate {
                function,
                arguments,
            },
            depth,
            start,
        })
    }

    /// `baseline(host-service-item[0]?, NW (, weekday)?)`; the position is past the `(`.
    fn baseline(&mut self, start: usize) -> Result<Parsed, ParseError> {
        self.skip_whitespace();
        let (series, end) = self.series_name(self.pos)?;
        self.pos = end;
        self.skip_whitespace();
        if self.peek() == Some('[') {
            self.pos += 1;
            self.skip_whitespace();
            let selector_start = self.pos;
            match self.bound()? {
                Bound::Index(0) => {}
                _ => {
                    return Err(invalid(
                        "baseline takes the series without selector or with [0]",
                        selector_start,
                    ))
                }
            }
            self.expect(']', "']'")?;
        }
        self.expect(',', "',' and a number of weeks such as 4W")?;
        self.skip_whitespace();
        let weeks_start = self.pos;
        let weeks_end = self.name_end(weeks_start);
        let weeks_word = &self.text[weeks_start..weeks_end];
        let weeks = weeks_word
            .strip_suffix('W')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| expected("a number of weeks such as 4W", weeks_start))?;
        let weeks: u32 = weeks
            .parse()
            .ok()
            .filter(|weeks| (1..=MAX_WEEKS).contains(weeks))
            .ok_or_else(|| invalid("baseline weeks must be 1 to 520", weeks_start))?;
        self.pos = weeks_end;
        self.skip_whitespace();
        let mut same_weekday = false;
        if self.peek() == Some(',') {
            self.pos += 1;
            self.skip_whitespace();
            let word_end = self.name_end(self.pos);
            if &self.text[self.pos..word_end] != "weekday" {
                return Err(expected("'weekday'", self.pos));
            }
            self.pos = word_end;
            same_weekday = true;
            self.expect(')', "')'")?;
        } else {
            self.expect(')', "',' or ')'")?;
        }
        Ok(Parsed::leaf(
            Expr::Baseline {
                series,
                weeks,
                same_weekday,
            },
            start,
        ))
    }
}

fn combine(op: BinaryOp, left: Parsed, right: Parsed) -> Result<Parsed, ParseError> {
    left.reject_range()?;
    right.reject_range()?;
    let depth = 1 + left.depth.max(right.depth);
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep {
            offset: right.start,
        });
    }
    Ok(Parsed {
        expr: Expr::Binary {
            op,
            left: Box::new(left.expr),
            right: Box::new(right.expr),
        },
        depth,
        start: left.start,
    })
}

/// `digits ('.' digits?)? | '.' digits`, then optionally `[eE] [+-]? digits`.
fn is_number_syntax(word: &str) -> bool {
    let bytes = word.as_bytes();
    let mut at = 0;
    let digits = |at: &mut usize| {
        let from = *at;
        while *at < bytes.len() && bytes[*at].is_ascii_digit() {
            *at += 1;
        }
        *at - from
    };
    let whole = digits(&mut at);
    let mut fraction = 0;
    if at < bytes.len() && bytes[at] == b'.' {
        at += 1;
        fraction = digits(&mut at);
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if at < bytes.len() && (bytes[at] == b'e' || bytes[at] == b'E') {
        at += 1;
        if at < bytes.len() && (bytes[at] == b'+' || bytes[at] == b'-') {
            at += 1;
        }
        if digits(&mut at) == 0 {
            return false;
        }
    }
    at == bytes.len()
}
