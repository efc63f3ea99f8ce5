//! Graphite's plaintext protocol (`path value timestamp`, one a line, as carbon reads it) and
//! the templates that turn a dotted Graphite path into perfpipe's host, service and metric.
//!
//! Owns the reading of one line ([`Templates::read_line`]) and the template language; knows
//! nothing of sockets (`crate::carbon` listens). Guarantees: every node of a path is
//! percent-decoded before it is mapped (`%2D` → `-`), so a name read from perfpipe's own
//! Graphite names (file names: every byte outside `[A-Za-z0-9_]` as `%XX`) lands in the same
//! series when written back; a `%` not followed by two hex digits stays as it is. A line that
//! cannot be read is a [`LineError`] saying why; nothing here panics on any input.
//!
//! A template is `[filter ]parts`, InfluxDB's graphite templates made small:
//!
//! - `parts` are the path's nodes in order, separated by `.`: `host`, `service`, `metric`, or
//!   nothing (or `skip`) for a node to drop. A part may repeat (its nodes are joined with `.`),
//!   and one part may end in `*` to take as many nodes as the other parts leave
//!   (`host.service.metric*`: first node the host, second the service, the rest the metric).
//!   Without a `*` part the path must have exactly as many nodes as there are parts. Every
//!   template names a host and a metric; without a service part the service is
//!   `graphite.service`.
//! - `filter` (optional) is a dotted pattern whose nodes match the path's first nodes, `*`
//!   standing for any run of characters within a node: `collectd.* .host.service.metric*` maps
//!   collectd's `collectd.<host>.<plugin>.<type>` and drops the `collectd` node.
//!
//! The first template whose filter matches the path (no filter matches every path) maps it; a
//! path no template matches is refused.

use perfpipe_backend::{Point, SeriesKey};

/// Why a template was refused (at start, by `perfpipe check-config`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("graphite template {template:?}: unknown part {part:?} (host, service, metric, skip or empty, one of them ending in *)")]
    UnknownPart { template: String, part: String },
    #[error("graphite template {template:?}: more than one part ends in *")]
    TwoGreedy { template: String },
    #[error("graphite template {template:?} names no {missing} part")]
    Missing {
        template: String,
        missing: &'static str,
    },
    #[error("graphite template {template:?}: more than a filter and a template")]
    TooManyWords { template: String },
    #[error("graphite templates: none given")]
    Empty,
}

/// Why a line was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("{fields} fields, expected 3: path value timestamp")]
    Fields { fields: usize },
    #[error("path {path:?} has an empty node")]
    EmptyNode { path: String },
    #[error("value {value:?} is not a number")]
    Value { value: String },
    #[error("value {value:?} is not finite")]
    NotFinite { value: String },
    #[error("timestamp {timestamp:?} is not epoch seconds")]
    Timestamp { timestamp: String },
    #[error("path {path:?}: node {node:?} is not UTF-8 once percent-decoded")]
    NotUtf8 { path: String, node: String },
    #[error("path {path:?} has {nodes} nodes; template {template:?} takes {wanted}")]
    Nodes {
        path: String,
        nodes: usize,
        template: String,
        wanted: String,
    },
    #[error("path {path:?} matches the filter of no template (graphite.templates)")]
    NoTemplate { path: String },
    #[error("path {path:?}: {part} name longer than {limit} bytes")]
    TooLong {
        path: String,
        part: &'static str,
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Skip,
    Host,
    Service,
    Metric,
}

#[derive(Debug, Clone)]
struct Template {
    text: String,
    filter: Option<Vec<String>>,
    parts: Vec<Part>,
    /// Index of the part that takes the nodes the others leave.
    greedy: Option<usize>,
}

/// The configured templates, in order.
#[derive(Debug, Clone)]
pub struct Templates {
    templates: Vec<Template>,
    service: String,
    max_name_length: usize,
}

impl Template {
    fn new(text: &str) -> Result<Template, TemplateError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (filter, pattern) = match words[..] {
            [pattern] => (None, pattern),
            [filter, pattern] => (
                Some(filter.split('.').map(str::to_owned).collect()),
                pattern,
            ),
            [] => (None, ""),
            _ => {
                return Err(TemplateError::TooManyWords {
                    template: text.into(),
                })
            }
        };
        let mut parts = Vec::new();
        let mut greedy = None;
        for (index, word) in pattern.split('.').enumerate() {
            let (name, star) = match word.strip_suffix('*') {
                Some(name) => (name, true),
                None => (word, false),
            };
            let part = match name {
                "" | "skip" => Part::Skip,
                "host" => Part::Host,
                "service" => Part::Service,
                "metric" => Part::Metric,
                _ => {
                    return Err(TemplateError::UnknownPart {
                        template: text.into(),
                        part: word.into(),
                    })
                }
            };
            if star {
                if greedy.is_some() {
                    return Err(TemplateError::TwoGreedy {
                        template: text.into(),
                    });
                }
                greedy = Some(index);
            }
            parts.push(part);
        }
        for (part, missing) in [(Part::Host, "host"), (Part::Metric, "metric")] {
            if !parts.contains(&part) {
                return Err(TemplateError::Missing {
                    template: text.into(),
                    missing,
                });
            }
        }
        Ok(Template {
            text: text.into(),
            filter,
            parts,
            greedy,
        })
    }

    fn applies_to(&self, nodes: &[&str]) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => {
                filter.len() <= nodes.len()
                    && filter
                        .iter()
                        .zip(nodes)
                        .all(|(pattern, node)| crate::api::wildcard_match(pattern, node, '*'))
            }
        }
    }

    /// Which part each node goes to, or `None` when the count does not fit.
    fn assign(&self, nodes: usize) -> Option<Vec<Part>> {
        let parts = self.parts.len();
        match self.greedy {
            None => (nodes == parts).then(|| self.parts.clone()),
            Some(greedy) => {
                if nodes < parts {
                    return None;
                }
                let taken = nodes - parts + 1;
                let mut assigned = Vec::with_capacity(nodes);
                for (index, &part) in self.parts.iter().enumerate() {
                    let count = if index == greedy { taken } else { 1 };
                    assigned.extend(std::iter::repeat_n(part, count));
                }
                Some(assigned)
            }
        }
    }

    fn wanted(&self) -> String {
        match self.greedy {
            None => format!("exactly {}", self.parts.len()),
            Some(_) => format!("at least {}", self.parts.len()),
        }
    }
}

/// `%XX` (either case) decoded; other bytes, and a `%` without two hex digits, as they are.
pub fn percent_decode(node: &str) -> Result<String, Vec<u8>> {
    if !node.contains('%') {
        return Ok(node.to_owned());
    }
    let bytes = node.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|error| error.into_bytes())
}

impl Templates {
    /// Reads `templates` (in order of preference); `service` names the service of paths whose
    /// template has no service part; names longer than `max_name_length` bytes are refused.
    pub fn new(
        templates: &[String],
        service: &str,
        max_name_length: usize,
    ) -> Result<Templates, TemplateError> {
        if templates.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(Templates {
            templates: templates
                .iter()
                .map(|text| Template::new(text))
                .collect::<Result<_, _>>()?,
            service: service.to_owned(),
            max_name_length,
        })
    }

    /// The series of a dotted Graphite path.
    pub fn series_of(&self, path: &str) -> Result<SeriesKey, LineError> {
        let nodes: Vec<&str> = path.split('.').collect();
        if nodes.iter().any(|node| node.is_empty()) {
            return Err(LineError::EmptyNode { path: path.into() });
        }
        let template = self
            .templates
            .iter()
            .find(|template| template.applies_to(&nodes))
            .ok_or_else(|| LineError::NoTemplate { path: path.into() })?;
        let assigned = template
            .assign(nodes.len())
            .ok_or_else(|| LineError::Nodes {
                path: path.into(),
                nodes: nodes.len(),
                template: template.text.clone(),
                wanted: template.wanted(),
            })?;
        let (mut host, mut service, mut metric) = (Vec::new(), Vec::new(), Vec::new());
        for (node, part) in nodes.iter().zip(assigned) {
            let into = match part {
                Part::Skip => continue,
                Part::Host => &mut host,
                Part::Service => &mut service,
                Part::Metric => &mut metric,
            };
            let decoded = percent_decode(node).map_err(|_| LineError::NotUtf8 {
                path: path.into(),
                node: (*node).into(),
            })?;
            into.push(decoded);
        }
        let service = if service.is_empty() {
            self.service.clone()
        } else {
            service.join(".")
        };
        let key = SeriesKey::new(host.join("."), service, metric.join("."));
        for (part, name) in [
            ("host", &key.host),
            ("service", &key.service),
            ("metric", &key.metric),
        ] {
            if name.len() > self.max_name_length {
                return Err(LineError::TooLong {
                    path: path.into(),
                    part,
                    limit: self.max_name_length,
                });
            }
        }
        Ok(key)
    }

    /// One line, `path value timestamp` separated by spaces or tabs (no line end).
    pub fn read_line(&self, line: &str) -> Result<(SeriesKey, Point), LineError> {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [path, value, timestamp] = fields[..] else {
            return Err(LineError::Fields {
                fields: fields.len(),
            });
        };
        let number: f64 = value.parse().map_err(|_| LineError::Value {
            value: value.into(),
        })?;
        if !number.is_finite() {
            return Err(LineError::NotFinite {
                value: value.into(),
            });
        }
        let timestamp = read_timestamp(timestamp).ok_or_else(|| LineError::Timestamp {
            timestamp: timestamp.into(),
        })?;
        let key = self.series_of(path)?;
        Ok((
            key,
            Point {
                timestamp,
                value: number,
            },
        ))
    }
}

/// Whole or fractional epoch seconds (carbon takes `1700000000.5`), not negative; fractions
/// are cut off.
fn read_timestamp(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return (seconds >= 0).then_some(seconds);
    }
    let seconds: f64 = text.parse().ok()?;
    (0.0..9.0e15)
        .contains(&seconds)
        .then(|| seconds.floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(list: &[&str]) -> Templates {
        let list: Vec<String> = list.iter().map(|t| t.to_string()).collect();
        Templates::new(&list, "graphite", 1024).unwrap()
    }

    fn key(host: &str, service: &str, metric: &str) -> SeriesKey {
        SeriesKey::new(host, service, metric)
    }

    #[test]
    fn the_default_template() {
        let t = templates(&["host.service.metric*"]);
        assert_eq!(
            t.series_of("web01.cpu.idle"),
            Ok(key("web01", "cpu", "idle"))
        );
        assert_eq!(
            t.series_of("web01.interface.eth0.rx"),
            Ok(key("web01", "interface", "eth0.rx"))
        );
        assert!(matches!(
            t.series_of("web01.cpu"),
            Err(LineError::Nodes { nodes: 2, .. })
        ));
        assert!(matches!(
            t.series_of("web01..idle"),
            Err(LineError::EmptyNode { .. })
        ));
    }

    #[test]
    fn percent_encoded_nodes_are_perfpipes_own_names() {
        let t = templates(&["host.service.metric*"]);
        assert_eq!(
            t.series_of("web%2D01.TCP%2FIP%20%2D%20LAN.rta"),
            Ok(key("web-01", "TCP/IP - LAN", "rta"))
        );
        assert_eq!(
            t.series_of("h.s.a%2Eb"),
            Ok(key("h", "s", "a.b")),
            "an encoded dot stays in its node"
        );
        assert_eq!(t.series_of("h.s.%idle"), Ok(key("h", "s", "%idle")));
        assert_eq!(t.series_of("h.s.x%2"), Ok(key("h", "s", "x%2")));
        assert_eq!(t.series_of("h.s.%e2%82%ac"), Ok(key("h", "s", "€")));
        assert!(matches!(
            t.series_of("h.s.%FF"),
            Err(LineError::NotUtf8 { .. })
        ));
        // Every name perfpipe encodes comes back as itself.
        for name in ["web-01", "a.b", "100%", "é tè", "x/y\\z", "_A1"] {
            let encoded = perfpipe_backend::encode_name(name, 0).unwrap();
            assert_eq!(percent_decode(&encoded).unwrap(), name);
        }
    }

    #[test]
    fn filters_skips_and_repeats() {
        let t = templates(&[
            "collectd.* .host.service.metric*",
            "servers.*.*.* .host.host.metric",
            "host.metric*",
        ]);
        assert_eq!(
            t.series_of("collectd.web01.cpu-0.cpu-idle"),
            Ok(key("web01", "cpu-0", "cpu-idle"))
        );
        assert_eq!(
            t.series_of("collectd.web01.interface-eth0.if_octets.rx"),
            Ok(key("web01", "interface-eth0", "if_octets.rx"))
        );
        assert_eq!(
            t.series_of("servers.web01.example.load"),
            Ok(key("web01.example", "graphite", "load"))
        );
        assert_eq!(
            t.series_of("db01.disk.used"),
            Ok(key("db01", "graphite", "disk.used"))
        );
        let filtered = templates(&["collectd.* .host.service.metric*"]);
        assert!(matches!(
            filtered.series_of("other.web01.cpu.idle"),
            Err(LineError::NoTemplate { .. })
        ));
        let skip = templates(&["skip.host.skip.metric*"]);
        assert_eq!(
            skip.series_of("dc1.web01.rack4.load.1m"),
            Ok(key("web01", "graphite", "load.1m"))
        );
        let greedy_service = templates(&["host.service*.metric"]);
        assert_eq!(
            greedy_service.series_of("h.a.b.c.m"),
            Ok(key("h", "a.b.c", "m"))
        );
        let exact = templates(&["host.service.metric"]);
        assert!(matches!(
            exact.series_of("h.s.m.x"),
            Err(LineError::Nodes { nodes: 4, .. })
        ));
    }

    #[test]
    fn bad_templates_are_named() {
        let new = |t: &str| Templates::new(&[t.to_string()], "graphite", 1024).unwrap_err();
        assert!(matches!(
            new("host.srvice.metric"),
            TemplateError::UnknownPart { part, .. } if part == "srvice"
        ));
        assert!(matches!(
            new("host*.metric*"),
            TemplateError::TwoGreedy { .. }
        ));
        assert!(matches!(
            new("service.metric"),
            TemplateError::Missing {
                missing: "host",
                ..
            }
        ));
        assert!(matches!(
            new("host.service"),
            TemplateError::Missing {
                missing: "metric",
                ..
            }
        ));
        assert!(matches!(new("a.* b c"), TemplateError::TooManyWords { .. }));
        assert_eq!(
            Templates::new(&[], "graphite", 1024).unwrap_err(),
            TemplateError::Empty
        );
    }

    #[test]
    fn lines() {
        let t = templates(&["host.service.metric*"]);
        assert_eq!(
            t.read_line("web01.cpu.idle 98.5 1700000000"),
            Ok((
                key("web01", "cpu", "idle"),
                Point {
                    timestamp: 1_700_000_000,
                    value: 98.5
                }
            ))
        );
        assert_eq!(
            t.read_line("web01.cpu.idle\t-2e3\t1700000000.75")
                .unwrap()
                .1,
            Point {
                timestamp: 1_700_000_000,
                value: -2000.0
            }
        );
        assert_eq!(
            t.read_line("web01.cpu.idle 1"),
            Err(LineError::Fields { fields: 2 })
        );
        assert_eq!(
            t.read_line("web01.cpu.idle 1 2 3"),
            Err(LineError::Fields { fields: 4 })
        );
        assert!(matches!(
            t.read_line("web01.cpu.idle abc 1700000000"),
            Err(LineError::Value { .. })
        ));
        assert!(matches!(
            t.read_line("web01.cpu.idle nan 1700000000"),
            Err(LineError::NotFinite { .. })
        ));
        assert!(matches!(
            t.read_line("web01.cpu.idle 1 -5"),
            Err(LineError::Timestamp { .. })
        ));
        assert!(matches!(
            t.read_line("web01.cpu.idle 1 soon"),
            Err(LineError::Timestamp { .. })
        ));
        let long = format!("{}.s.m 1 1", "h".repeat(1025));
        assert!(matches!(
            t.read_line(&long),
            Err(LineError::TooLong { part: "host", .. })
        ));
    }
}
