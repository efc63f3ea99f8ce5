//! Target expressions as graphite-web's grammar reads them: a path expression
//! (`web*.{HTTP,SSH}.time`, with `\(`-style escapes) or a call `name(arg, …, kw=arg)` whose
//! arguments are expressions, numbers (`5`, `-0.5`, `1e3`), strings in single or double
//! quotes, `true`/`false`, `None` and `inf`. Whitespace between tokens is ignored. Errors give
//! the byte offset and what was expected there.

/// A parsed target.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A path expression, as written.
    Path(String),
    /// A function call.
    Call {
        name: String,
        args: Vec<Arg>,
        kwargs: Vec<(String, Arg)>,
    },
}

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Expr(Expr),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
}

/// A target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {target:?}, at byte {offset}: {expected}")]
pub struct ParseError {
    pub target: String,
    pub offset: usize,
    pub expected: String,
}

/// Characters that end a path element (graphite's `symbols`) besides whitespace.
const SYMBOLS: &[u8] = b"(){},.'\"\\|";

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

/// Parses one target.
pub fn parse_target(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser { text, at: 0 };
    let expr = parser.expression()?;
    parser.skip_space();
    if parser.at != text.len() {
        return Err(parser.error("the end of the target"));
    }
    Ok(expr)
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> ParseError {
        ParseError {
            target: self.text.to_string(),
            offset: self.at,
            expected: format!("expected {expected}"),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn identifier_len(&self) -> usize {
        let bytes = self.rest().as_bytes();
        if !bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            return 0;
        }
        bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count()
    }

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.skip_space();
        let name_len = self.identifier_len();
        if name_len > 0 {
            let after = self.text[self.at + name_len..].trim_start();
            if after.starts_with('(') {
                let name = self.text[self.at..self.at + name_len].to_string();
                self.at += name_len;
                self.skip_space();
                self.at += 1; // '('
                return self.call(name);
            }
        }
        self.path()
    }

    fn call(&mut self, name: String) -> Result<Expr, ParseError> {
        let (mut args, mut kwargs) = (Vec::new(), Vec::new());
        self.skip_space();
        if self.peek() == Some(b')') {
            self.at += 1;
            return Ok(Expr::Call { name, args, kwargs });
        }
        loop {
            self.skip_space();
            let name_len = self.identifier_len();
            let keyword = name_len > 0 && {
                let after = self.text[self.at + name_len..].trim_start();
                after.starts_with('=') && !after.starts_with("==")
            };
            if keyword {
                let key = self.text[self.at..self.at + name_len].to_string();
                self.at += name_len;
                self.skip_space();
                self.at += 1; // '='
                kwargs.push((key, self.argument()?));
            } else if !kwargs.is_empty() {
                return Err(self.error("a keyword argument (name=value) after keyword arguments"));
            } else {
                args.push(self.argument()?);
            }
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b')') => {
                    self.at += 1;
                    return Ok(Expr::Call { name, args, kwargs });
                }
                _ => return Err(self.error("',' or ')'")),
            }
        }
    }

    fn argument(&mut self) -> Result<Arg, ParseError> {
        self.skip_space();
        let ends_here = |text: &str, len: usize| {
            text[len..]
                .trim_start()
                .bytes()
                .next()
                .is_none_or(|b| b == b',' || b == b')')
        };
        let text = self.text;
        let rest = &text[self.at..];
        if let Some(quote @ (b'\'' | b'"')) = self.peek() {
            let bytes = rest.as_bytes();
            let mut end = 1;
            while end < bytes.len() && bytes[end] != quote {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            if end >= bytes.len() {
                return Err(self.error("the closing quote of the string"));
            }
            let text = rest[1..end].to_string();
            self.at += end + 1;
            return Ok(Arg::Str(text));
        }
        let number_len = number_len(rest);
        if number_len > 0 && ends_here(rest, number_len) {
            let text = &rest[..number_len];
            self.at += number_len;
            return Ok(if text.contains(['.', 'e', 'E']) {
                Arg::Float(text.parse().map_err(|_| self.error("a number"))?)
            } else {
                match text.parse::<i64>() {
                    Ok(int) => Arg::Int(int),
                    Err(_) => Arg::Float(text.parse().map_err(|_| self.error("a number"))?),
                }
            });
        }
        let word_len = self.identifier_len();
        if word_len > 0 && ends_here(rest, word_len) {
            let word = rest[..word_len].to_ascii_lowercase();
            let constant = match word.as_str() {
                "true" => Some(Arg::Bool(true)),
                "false" => Some(Arg::Bool(false)),
                "none" => Some(Arg::None),
                "inf" => Some(Arg::Float(f64::INFINITY)),
                _ => None,
            };
            if let Some(constant) = constant {
                self.at += word_len;
                return Ok(constant);
            }
        }
        Ok(Arg::Expr(self.expression()?))
    }

    fn path(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        while let Some(&b) = bytes.get(self.at) {
            match b {
                b'\\' if self.at + 1 < bytes.len() => self.at += 2,
                b'{' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' if depth > 0 => self.at += 1,
                b'.' => self.at += 1,
                _ if b.is_ascii_whitespace() || SYMBOLS.contains(&b) => break,
                _ => {
                    // One UTF-8 character.
                    let len = self.text[self.at..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    self.at += len;
                }
            }
        }
        if depth > 0 {
            return Err(self.error("'}' closing the alternatives"));
        }
        if self.at == start {
            return Err(self.error("a path or a function call"));
        }
        Ok(Expr::Path(self.text[start..self.at].to_string()))
    }
}

/// Length of a number at the start of `text` (`-12`, `0.5`, `.5`, `1e-3`), 0 if none.
fn number_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    if bytes.first().is_some_and(|b| *b == b'-' || *b == b'+') {
        i += 1;
    }
    let digits_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - digits_start;
    if bytes.get(i) == Some(&b'.') {
        let fraction_start = i + 1;
        let mut j = fraction_start;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > fraction_start || digits > 0 {
            digits += j - fraction_start;
            i = j;
        }
    }
    if digits == 0 {
        return 0;
    }
    if bytes.get(i).is_some_and(|b| *b == b'e' || *b == b'E') {
        let mut j = i + 1;
        if bytes.get(j).is_some_and(|b| *b == b'-' || *b == b'+') {
            j += 1;
        }
        let exponent_start = j;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exponent_start {
            i = j;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Arg>) -> Expr {
        Expr::Call {
            name: name.into(),
            args,
            kwargs: Vec::new(),
        }
    }

    fn path(text: &str) -> Arg {
        Arg::Expr(Expr::Path(text.into()))
    }

    #[test]
    fn nested_calls_and_literals() {
        assert_eq!(
            parse_target("sumSeries(scale(h*.s.m, 0.5), {a,b}.s.m)").unwrap(),
            call(
                "sumSeries",
                vec![
                    Arg::Expr(call("scale", vec![path("h*.s.m"), Arg::Float(0.5)])),
                    path("{a,b}.s.m"),
                ]
            )
        );
        assert_eq!(
            parse_target("summarize(a.b.c, '1h', \"max\", true)").unwrap(),
            call(
                "summarize",
                vec![
                    path("a.b.c"),
                    Arg::Str("1h".into()),
                    Arg::Str("max".into()),
                    Arg::Bool(true)
                ]
            )
        );
        assert_eq!(
            parse_target("limit(a.b.c,-3)").unwrap(),
            call("limit", vec![path("a.b.c"), Arg::Int(-3)])
        );
        assert_eq!(
            parse_target("transformNull(a.b.c, default=1e3)").unwrap(),
            Expr::Call {
                name: "transformNull".into(),
                args: vec![path("a.b.c")],
                kwargs: vec![("default".into(), Arg::Float(1000.0))],
            }
        );
        assert_eq!(
            parse_target(" web%2D01.HTTP.time ").unwrap(),
            Expr::Path("web%2D01.HTTP.time".into())
        );
        assert_eq!(
            parse_target("alias(h1.s.m,None)").unwrap(),
            call("alias", vec![path("h1.s.m"), Arg::None])
        );
    }

    #[test]
    fn errors_say_where() {
        let error = parse_target("sumSeries(a.b.c").unwrap_err();
        assert_eq!(error.offset, 15);
        assert!(error.expected.contains("')'"), "{error}");
        assert!(parse_target("a.b.c)").is_err());
        assert!(parse_target("{a,b.c").is_err());
        assert!(parse_target("f(x=1, 2)").is_err());
        assert!(parse_target("").is_err());
    }
}
