//! A deterministic generator of Graphite target expressions over a given set of series paths
//! (`h1.svc.m1` …), for comparing render APIs: series patterns with every kind of wildcard
//! (`*`, `?`, `[12]`, `{a,b}`) that match at least one of the paths, under the functions of
//! `FUNCTIONS` nested 2 to 3 deep with realistic arguments. Seeded (splitmix64), so a seed
//! always gives the same list; every function is the outermost one of some targets.

/// The functions the generator uses; each is the outermost call of about
/// `count / FUNCTIONS.len()` targets.
pub const FUNCTIONS: &[&str] = &[
    "sumSeries",
    "averageSeries",
    "minSeries",
    "maxSeries",
    "diffSeries",
    "divideSeries",
    "multiplySeries",
    "scale",
    "offset",
    "absolute",
    "alias",
    "aliasByNode",
    "aliasSub",
    "movingAverage",
    "summarize",
    "hitcount",
    "nonNegativeDerivative",
    "derivative",
    "perSecond",
    "integral",
    "asPercent",
    "timeShift",
    "highestMax",
    "highestCurrent",
    "lowestCurrent",
    "sortByMaxima",
    "limit",
    "keepLastValue",
    "transformNull",
    "removeBelowValue",
    "removeAboveValue",
    "groupByNode",
    "consolidateBy",
];

/// splitmix64: small, seeded, good enough to pick arguments.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Whether a Graphite path pattern (nodes split on `.`; `*`, `?`, `[...]` with ranges,
/// `{a,b}` alternatives within a node) matches `path`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('.').collect();
    let nodes: Vec<&str> = path.split('.').collect();
    patterns.len() == nodes.len()
        && patterns.iter().zip(&nodes).all(|(p, n)| {
            expand_braces(p)
                .iter()
                .any(|p| node_match(p.as_bytes(), n.as_bytes()))
        })
}

/// `a{b,c}d` → `abd`, `acd` (nested braces are not Graphite's).
fn expand_braces(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if open < close => {
            let (head, rest) = (&pattern[..open], &pattern[close + 1..]);
            pattern[open + 1..close]
                .split(',')
                .flat_map(|alt| expand_braces(&format!("{head}{alt}{rest}")))
                .collect()
        }
        _ => vec![pattern.to_string()],
    }
}

fn node_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| node_match(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && node_match(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let Some(&c) = s.first() else { return false };
            let class = &p[1..end];
            let mut i = 0;
            let mut hit = false;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit && node_match(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && node_match(&p[1..], &s[1..]),
    }
}

/// A series pattern, how many of the paths it matches, and how many of its nodes have
/// wildcards (0 for a plain path).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    pub matches: usize,
    pub wildcards: usize,
}

/// Patterns over `paths`: each path itself; for every node the node replaced by `*`, by its
/// first character and `*`, by its stem and `?`, by its stem and a `[..]` class of its siblings' last characters, by `{a,b}`
/// of two sibling values; and every pair of nodes replaced by two of those (`{h1,h2}.svc.*`,
/// `h[12].svc.m?`). Only those matching at least one path, without duplicates, in a stable
/// order.
pub fn series_patterns(paths: &[&str]) -> Vec<Pattern> {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
    let mut texts: Vec<(String, usize)> = paths.iter().map(|p| (p.to_string(), 0)).collect();
    for nodes in &split {
        // The wildcard forms of each node of this path.
        let variants: Vec<Vec<String>> = (0..nodes.len())
            .map(|i| {
                let mut siblings: Vec<&str> = split
                    .iter()
                    .filter(|other| {
                        other.len() == nodes.len()
                            && (0..nodes.len()).all(|k| k == i || other[k] == nodes[k])
                    })
                    .map(|other| other[i])
                    .collect();
                siblings.sort_unstable();
                siblings.dedup();
                let node = nodes[i];
                let mut forms = vec!["*".to_string()];
                if let Some(first) = node.chars().next().filter(|_| node.chars().count() > 1) {
                    forms.push(format!("{first}*"));
                }
                if let Some(last) = node.chars().last() {
                    let stem = &node[..node.len() - last.len_utf8()];
                    forms.push(format!("{stem}?"));
                    let lasts: Vec<char> = siblings
                        .iter()
                        .filter(|s| s.starts_with(stem) && s.len() == node.len())
                        .filter_map(|s| s.chars().last())
                        .collect();
                    if lasts.len() >= 2 {
                        let class: String = lasts.iter().take(2).collect();
                        forms.push(format!("{stem}[{class}]"));
                    }
                }
                if let Some(other) = siblings.iter().find(|s| **s != node) {
                    forms.push(format!("{{{node},{other}}}"));
                }
                forms
            })
            .collect();
        for i in 0..nodes.len() {
            for form in &variants[i] {
                let mut copy = nodes.clone();
                copy[i] = form;
                texts.push((copy.join("."), 1));
            }
            for j in i + 1..nodes.len() {
                for a in &variants[i] {
                    for b in &variants[j] {
                        let mut copy = nodes.clone();
                        copy[i] = a;
                        copy[j] = b;
                        texts.push((copy.join("."), 2));
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    texts
        .into_iter()
        .filter(|(t, _)| seen.insert(t.clone()))
        .filter_map(|(text, wildcards)| {
            let matches = paths.iter().filter(|p| glob_match(&text, p)).count();
            (matches > 0).then_some(Pattern {
                text,
                matches,
                wildcards,
            })
        })
        .collect()
}

/// A generated expression: its text, whether it always yields exactly one series, and whether
/// its series' names still start from a metric path (so `aliasByNode`/`groupByNode` can take
/// nodes of them).
#[derive(Clone, Debug)]
struct Expr {
    text: String,
    single: bool,
    pathy: bool,
}

/// Generates targets over a fixed set of paths.
pub struct TargetGenerator {
    rng: Rng,
    patterns: Vec<Pattern>,
    /// Nodes in the paths (all paths have the same depth).
    depth: usize,
}

impl TargetGenerator {
    pub fn new(paths: &[&str], seed: u64) -> TargetGenerator {
        assert!(!paths.is_empty(), "no paths to generate targets over");
        let depth = paths[0].split('.').count();
        assert!(
            paths.iter().all(|p| p.split('.').count() == depth),
            "all paths must have the same number of nodes"
        );
        TargetGenerator {
            rng: Rng::new(seed),
            patterns: series_patterns(paths),
            depth,
        }
    }

    /// `count` targets; target `i` has `FUNCTIONS[i % FUNCTIONS.len()]` outermost, nested
    /// 2 or 3 calls deep.
    pub fn targets(&mut self, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                let function = FUNCTIONS[i % FUNCTIONS.len()];
                let depth = 2 + self.rng.below(2);
                self.call(function, depth, false).text
            })
            .collect()
    }

    /// A plain series pattern (one series if `single`).
    fn pattern(&mut self, single: bool) -> Expr {
        // A plain path a quarter of the time, one wildcard node 40 %, two 35 %.
        let roll = self.rng.below(100);
        let wildcards = if roll < 25 {
            0
        } else if roll < 65 {
            1
        } else {
            2
        };
        let mut candidates: Vec<&Pattern> = self
            .patterns
            .iter()
            .filter(|p| (!single || p.matches == 1) && p.wildcards == wildcards)
            .collect();
        if candidates.is_empty() {
            candidates = self
                .patterns
                .iter()
                .filter(|p| !single || p.matches == 1)
                .collect();
        }
        let text = self.rng.pick(&candidates).text.clone();
        Expr {
            text,
            single,
            pathy: true,
        }
    }

    /// An argument series expression `depth` calls deep (0: a pattern).
    fn series(&mut self, depth: usize, single: bool) -> Expr {
        if depth == 0 {
            return self.pattern(single);
        }
        loop {
            let function = *self.rng.pick(FUNCTIONS);
            // Nested aliases make unreadable names; keep them outermost mostly.
            if matches!(function, "alias" | "aliasSub") && self.rng.chance(70) {
                continue;
            }
            if single && !produces_single(function) {
                continue;
            }
            return self.call(function, depth, single);
        }
    }

    /// One call of `function` whose series arguments are `depth - 1` deep.
    fn call(&mut self, function: &str, depth: usize, single: bool) -> Expr {
        let inner = depth.saturating_sub(1);
        let node = |r: &mut Rng, depth: usize| -> i64 {
            if r.chance(15) {
                -1
            } else {
                r.below(depth) as i64
            }
        };
        let (text, out_single, pathy) = match function {
            "sumSeries" | "averageSeries" | "minSeries" | "maxSeries" | "multiplySeries" => {
                let first = self.series(inner, false);
                let text = if self.rng.chance(25) {
                    let second = self.series(inner.saturating_sub(1), false);
                    format!("{function}({},{})", first.text, second.text)
                } else {
                    format!("{function}({})", first.text)
                };
                (text, true, true)
            }
            "diffSeries" => {
                let text = if self.rng.chance(50) {
                    let first = self.series(inner, true);
                    let second = self.series(inner.saturating_sub(1), false);
                    format!("diffSeries({},{})", first.text, second.text)
                } else {
                    format!("diffSeries({})", self.series(inner, false).text)
                };
                (text, true, true)
            }
            "divideSeries" => {
                let dividend = self.series(inner, single);
                let divisor = self.series(inner.saturating_sub(1), true);
                (
                    format!("divideSeries({},{})", dividend.text, divisor.text),
                    dividend.single,
                    dividend.pathy,
                )
            }
            _ => {
                let arg = match function {
                    "aliasByNode" | "groupByNode" => self.pathy_series(inner, single),
                    _ => self.series(inner, single),
                };
                let r = &mut self.rng;
                let s = &arg.text;
                let mut pathy = arg.pathy;
                let mut out_single = arg.single;
                let text = match function {
                    "scale" => format!(
                        "scale({s},{})",
                        r.pick(&["2", "0.5", "-1", "1000", "0.001"])
                    ),
                    "offset" => format!("offset({s},{})", r.pick(&["10", "-5", "0.25", "-100"])),
                    "absolute" => format!("absolute({s})"),
                    "alias" => {
                        pathy = false;
                        format!(
                            "alias({s},'{}')",
                            r.pick(&["total", "load_avg", "Requests per second"])
                        )
                    }
                    "aliasByNode" => {
                        pathy = false;
                        let n = self.depth;
                        if r.chance(30) {
                            format!("aliasByNode({s},0,{})", n - 1)
                        } else {
                            format!("aliasByNode({s},{})", node(r, n))
                        }
                    }
                    "aliasSub" => {
                        pathy = false;
                        let (search, replace) = *r.pick(&[
                            ("svc", "service"),
                            (r"^(\w+)\.(\w+)\.(\w+)$", r"\3 on \1"),
                            (r"\.", "_"),
                            ("m([0-9])", r"metric\1"),
                        ]);
                        format!("aliasSub({s},'{search}','{replace}')")
                    }
                    "movingAverage" => {
                        let window = *r.pick(&["5", "10", "'5min'", "'1h'", "\"10min\""]);
                        format!("movingAverage({s},{window})")
                    }
                    "summarize" => {
                        let interval = r.pick(&["'1h'", "'10min'"]);
                        let func = r.pick(&["'sum'", "'avg'", "'max'", "'min'", "'last'"]);
                        match r.below(3) {
                            0 => format!("summarize({s},{interval})"),
                            1 => format!("summarize({s},{interval},{func})"),
                            _ => format!(
                                "summarize({s},{interval},{func},{})",
                                r.pick(&["true", "false"])
                            ),
                        }
                    }
                    "hitcount" => {
                        let interval = r.pick(&["'10min'", "'1h'", "'5min'"]);
                        if r.chance(30) {
                            format!("hitcount({s},{interval},true)")
                        } else {
                            format!("hitcount({s},{interval})")
                        }
                    }
                    "nonNegativeDerivative" => {
                        if r.chance(50) {
                            format!(
                                "nonNegativeDerivative({s},{})",
                                r.pick(&["1000", "4294967295", "255"])
                            )
                        } else {
                            format!("nonNegativeDerivative({s})")
                        }
                    }
                    "derivative" => format!("derivative({s})"),
                    "perSecond" => {
                        if r.chance(30) {
                            format!("perSecond({s},1000)")
                        } else {
                            format!("perSecond({s})")
                        }
                    }
                    "integral" => format!("integral({s})"),
                    "asPercent" => match r.below(3) {
                        0 => format!("asPercent({s})"),
                        1 => format!("asPercent({s},{})", r.pick(&["100", "1500", "0.5"])),
                        _ => {
                            let total = self.series(inner.saturating_sub(1), true);
                            format!("asPercent({s},{})", total.text)
                        }
                    },
                    "timeShift" => {
                        let shift = r.pick(&["'1h'", "'-1d'", "'+30min'", "'-2h'"]);
                        format!("timeShift({s},{shift})")
                    }
                    "highestMax" | "highestCurrent" | "lowestCurrent" | "limit" => {
                        let n = *r.pick(&[1usize, 2, 3, 5]);
                        out_single = n == 1 && single;
                        format!("{function}({s},{n})")
                    }
                    "sortByMaxima" => format!("sortByMaxima({s})"),
                    "keepLastValue" => {
                        if r.chance(50) {
                            format!("keepLastValue({s},{})", r.pick(&["3", "10", "1"]))
                        } else {
                            format!("keepLastValue({s})")
                        }
                    }
                    "transformNull" => {
                        if r.chance(60) {
                            format!("transformNull({s},{})", r.pick(&["0", "-1", "42.5"]))
                        } else {
                            format!("transformNull({s})")
                        }
                    }
                    "removeBelowValue" => {
                        format!(
                            "removeBelowValue({s},{})",
                            r.pick(&["0", "10", "50.5", "-3"])
                        )
                    }
                    "removeAboveValue" => {
                        format!(
                            "removeAboveValue({s},{})",
                            r.pick(&["0", "10", "50.5", "90"])
                        )
                    }
                    "groupByNode" => {
                        out_single = false;
                        pathy = false;
                        let n = r.below(self.depth);
                        format!(
                            "groupByNode({s},{n},{})",
                            r.pick(&["'sum'", "'avg'", "'max'", "'sumSeries'", "'average'"])
                        )
                    }
                    "consolidateBy" => format!(
                        "consolidateBy({s},{})",
                        r.pick(&["'max'", "'min'", "'sum'", "'average'"])
                    ),
                    other => panic!("no arguments for {other}"),
                };
                (text, out_single, pathy)
            }
        };
        Expr {
            text,
            single: out_single,
            pathy,
        }
    }

    /// A series expression whose names still start from a metric path.
    fn pathy_series(&mut self, depth: usize, single: bool) -> Expr {
        for _ in 0..100 {
            let expr = self.series(depth, single);
            if expr.pathy {
                return expr;
            }
        }
        self.pattern(single)
    }
}

/// Whether `function` (over a single-series argument where it takes one) yields one series.
fn produces_single(function: &str) -> bool {
    !matches!(function, "groupByNode")
}

/// `count` targets over `paths` from `seed` (see `TargetGenerator`).
pub fn generate_targets(paths: &[&str], count: usize, seed: u64) -> Vec<String> {
    TargetGenerator::new(paths, seed).targets(count)
}

/// Whether parentheses and braces are balanced outside quotes, and quotes closed.
pub fn is_balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let opener = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if stack.pop() != Some(opener) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && quote.is_none()
}

/// The names of the functions called in `expr` (identifiers followed by `(`, outside quotes).
pub fn function_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut quote: Option<char> = None;
    let mut word = String::new();
    for c in expr.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            word.clear();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if c == '(' && !word.is_empty() {
                names.push(word.clone());
            }
            word.clear();
        }
    }
    names
}

/// Every call in `expr` with its number of top-level arguments, outermost first
/// (`scale(a.b,2)` → `("scale", 2)`, `f()` → `("f", 0)`).
pub fn calls(expr: &str) -> Vec<(String, usize)> {
    let mut found: Vec<(String, usize)> = Vec::new();
    // Per open parenthesis: its index in `found` (None for a group that is no call) and
    // whether the current argument has anything in it yet.
    let mut open: Vec<(Option<usize>, bool)> = Vec::new();
    let mut braces = 0usize;
    let mut quote: Option<char> = None;
    let mut word = String::new();
    for c in expr.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if !c.is_whitespace() && !matches!(c, '(' | ')' | ',') {
            if let Some(top) = open.last_mut() {
                top.1 = true;
            }
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                word.clear();
            }
            '(' => {
                if let Some(top) = open.last_mut() {
                    top.1 = true;
                }
                if word.is_empty() {
                    open.push((None, false));
                } else {
                    found.push((word.clone(), 0));
                    open.push((Some(found.len() - 1), false));
                }
                word.clear();
            }
            ')' => {
                if let Some((Some(i), true)) = open.pop() {
                    found[i].1 += 1;
                }
                word.clear();
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            ',' if braces == 0 => {
                if let Some((Some(i), content)) = open.last_mut() {
                    found[*i].1 += 1;
                    *content = false;
                }
                word.clear();
            }
            c if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
            _ => word.clear(),
        }
    }
    found
}

/// How deep calls nest in `expr` (0 for a plain path).
pub fn nesting_depth(expr: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
