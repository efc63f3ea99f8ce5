//! The Graphite render language over perfpipe's series: target expressions
//! (`sumSeries(web*.HTTP.time)`), path patterns (`*`, `?`, `[abc]`, `{a,b}`), Graphite's time
//! forms (`-1h`, `now`, `HH:MM_YYYYMMDD`, epoch) and the functions Grafana dashboards use, each
//! with graphite-web 1.1's semantics: null handling, consolidation of mixed steps by the least
//! common multiple, step alignment and the naming of result series. graphite-web is the
//! reference: `tests/graphite_web.rs` compares the answers of both over the same Whisper files.
//!
//! This module is pure: it reads series through the [`Store`] trait and never blocks on
//! anything else, so the API layer (`crate::api::graphite`) decides where data comes from (the
//! node's backends, its peers). A series' Graphite path is `host.service.metric` with each part
//! encoded as on disk (every byte outside `[A-Za-z0-9_]` as `%XX`), so the names are those
//! graphite-web shows over perfpipe's Whisper tree and dashboards move between the two as is.

mod attime;
mod eval;
mod functions;
mod glob;
mod parse;
mod path;
mod pyfmt;
#[cfg(test)]
mod robustness;
mod series;

pub use attime::{parse_at_time, parse_time_offset, TimeError};
pub use eval::{evaluate_targets, EvalError, Request, Store};
pub use functions::FUNCTION_NAMES;
pub use glob::PathPattern;
pub use parse::{parse_target, Arg, Expr, ParseError};
pub use path::{
    decode as decode_component, decode_path, encode as encode_component, graphite_path,
};
pub use pyfmt::float_str as python_float;
pub use series::{apply_max_data_points, Consolidation, Series};
