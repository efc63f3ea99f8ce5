//! Graphite path patterns: a pattern is split on `.` into nodes, and each node matches one
//! path component with the shell's rules as graphite-web applies them (`fnmatch` after brace
//! expansion): `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[!abc]`, and
//! `{a,b}` alternatives (which may hold wildcards). Matching is case-sensitive and never
//! crosses a `.`. A node without wildcards matches only itself, which lets a store look it up
//! directly instead of listing.

/// One node of a pattern, with its brace alternatives expanded.
#[derive(Debug, Clone)]
struct NodePattern {
    alternatives: Vec<Vec<Token>>,
    literal: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    AnyRun,
    AnyOne,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled path pattern such as `web*.{HTTP,SSH}.time`.
#[derive(Debug, Clone)]
pub struct PathPattern {
    nodes: Vec<NodePattern>,
}

impl PathPattern {
    /// Compiles `pattern`; backslash-escaped symbols (`\(`) stand for themselves.
    pub fn new(pattern: &str) -> PathPattern {
        let nodes = split_nodes(pattern)
            .into_iter()
            .map(|node| {
                let alternatives: Vec<Vec<Token>> =
                    expand_braces(&node).iter().map(|alt| tokens(alt)).collect();
                let literal = match alternatives.as_slice() {
                    [only] if only.iter().all(|t| matches!(t, Token::Char(_))) => Some(
                        only.iter()
                            .map(|t| match t {
                                Token::Char(c) => *c,
                                _ => unreachable!(),
                            })
                            .collect(),
                    ),
                    _ => None,
                };
                NodePattern {
                    alternatives,
                    literal,
                }
            })
            .collect();
        PathPattern { nodes }
    }

    /// How many nodes the pattern has.
    pub fn depth(&self) -> usize {
        self.nodes.len()
    }

    /// The node's text when it has no wildcard (so it matches only that text).
    pub fn literal(&self, node: usize) -> Option<&str> {
        self.nodes.get(node)?.literal.as_deref()
    }

    /// Whether node `node` of the pattern matches the path component `name`. Names starting
    /// with `.` (hidden) match only a pattern node that starts with `.` too.
    pub fn node_matches(&self, node: usize, name: &str) -> bool {
        let Some(pattern) = self.nodes.get(node) else {
            return false;
        };
        let chars: Vec<char> = name.chars().collect();
        pattern
            .alternatives
            .iter()
            .any(|alternative| matches(alternative, &chars))
    }

    /// Whether the whole path (components joined by `.`) matches.
    pub fn matches_path(&self, components: &[&str]) -> bool {
        components.len() == self.nodes.len()
            && components
                .iter()
                .enumerate()
                .all(|(node, name)| self.node_matches(node, name))
    }
}

/// Splits on `.` outside braces.
fn split_nodes(pattern: &str) -> Vec<String> {
    let mut nodes = vec![String::new()];
    let mut depth = 0usize;
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            nodes.last_mut().expect("never empty").push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                nodes.push(String::new());
                continue;
            }
            _ => {}
        }
        if c != '\\' {
            nodes.last_mut().expect("never empty").push(c);
        }
    }
    nodes
}

/// `a{b,c}d{e,f}` → `abde`, `abdf`, `acde`, `acdf` (nested braces too).
fn expand_braces(text: &str) -> Vec<String> {
    let Some(open) = text.find('{') else {
        return vec![text.to_string()];
    };
    let mut depth = 0;
    let mut close = None;
    let mut splits = Vec::new();
    for (at, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + at);
                    break;
                }
            }
            ',' if depth == 1 => splits.push(open + at),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![text.to_string()];
    };
    let mut bounds = vec![open];
    bounds.extend(&splits);
    bounds.push(close);
    let (prefix, suffix) = (&text[..open], &text[close + 1..]);
    let mut expanded = Vec::new();
    for pair in bounds.windows(2) {
        let choice = &text[pair[0] + 1..pair[1]];
        expanded.extend(expand_braces(&format!("{prefix}{choice}{suffix}")));
    }
    expanded.dedup();
    expanded
}

fn tokens(node: &str) -> Vec<Token> {
    let chars: Vec<char> = node.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if out.last() != Some(&Token::AnyRun) {
                    out.push(Token::AnyRun);
                }
            }
            '?' => out.push(Token::AnyOne),
            '[' => {
                // fnmatch: `[` without a closing `]` is a literal.
                let mut j = i + 1;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push(Token::Char('['));
                } else {
                    let mut k = i + 1;
                    let negated = chars[k] == '!';
                    if negated {
                        k += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    while k < j {
                        let low = chars[k];
                        if !first && low == ']' {
                            break;
                        }
                        first = false;
                        if k + 2 < j && chars[k + 1] == '-' {
                            ranges.push((low, chars[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((low, low));
                            k += 1;
                        }
                    }
                    out.push(Token::Class { negated, ranges });
                    i = j;
                }
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

fn matches(pattern: &[Token], name: &[char]) -> bool {
    // Iterative wildcard matching with one backtrack point for the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(Token::Char(c)) => *c == name[n],
            Some(Token::AnyOne) => true,
            Some(Token::Class { negated, ranges }) => {
                ranges
                    .iter()
                    .any(|&(lo, hi)| lo <= name[n] && name[n] <= hi)
                    != *negated
            }
            Some(Token::AnyRun) => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            None => false,
        };
        if step {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|t| *t == Token::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(pattern: &str, path: &str) -> bool {
        let components: Vec<&str> = path.split('.').collect();
        PathPattern::new(pattern).matches_path(&components)
    }

    #[test]
    fn shell_rules_per_node() {
        assert!(hits("web*.HTTP.time", "web01.HTTP.time"));
        assert!(!hits("web*.HTTP.time", "db01.HTTP.time"));
        assert!(!hits("*", "a.b"), "a star never crosses a dot");
        assert!(hits("h?.s.m", "h1.s.m"));
        assert!(!hits("h?.s.m", "h12.s.m"));
        assert!(hits("h[12].s.m", "h2.s.m"));
        assert!(!hits("h[12].s.m", "h3.s.m"));
        assert!(hits("h[!12].s.m", "h3.s.m"));
        assert!(hits("h[a-c].s.m", "hb.s.m"));
        assert!(hits("{h1,h2}.s.m", "h2.s.m"));
        assert!(hits("h{1,x*}.s.m", "hxyz.s.m"));
        assert!(!hits("{h1,h2}.s.m", "h3.s.m"));
        assert!(hits("web%2D*.s.m", "web%2D01.s.m"));
        assert!(hits("a*b*c.s.m", "aXbYbc.s.m"));
    }

    #[test]
    fn literals_are_known() {
        let pattern = PathPattern::new("host.{a,b}.*");
        assert_eq!(pattern.literal(0), Some("host"));
        assert_eq!(pattern.literal(1), None);
        assert_eq!(pattern.literal(2), None);
        assert_eq!(pattern.depth(), 3);
    }
}
