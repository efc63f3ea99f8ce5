//! Evaluation of targets: path expressions are fetched through the [`Store`], calls are
//! dispatched to `functions`, and the series of each target are appended in order, as
//! graphite-web's `evaluateTarget` does. Functions that need other times (`timeShift`,
//! `movingAverage`'s look-back, `hitcount`'s alignment) evaluate their first argument again over
//! a shifted window.

use super::functions;
use super::parse::{parse_target, Arg, Expr, ParseError};
use super::series::Series;

/// Where series come from.
pub trait Store {
    /// The series matching a path pattern over `start..end` as read at `now`, sorted by name,
    /// each with `name` = its path. A series with nothing stored in the window is left out.
    fn fetch(
        &mut self,
        pattern: &str,
        start: i64,
        end: i64,
        now: i64,
    ) -> Result<Vec<Series>, String>;
}

/// The window and options of one render.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub start: i64,
    pub end: i64,
    pub now: i64,
    /// Default xFilesFactor of aggregations (graphite's `xFilesFactor` parameter, 0).
    pub x_files_factor: f64,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A function's arguments are wrong (400).
    #[error("{function}: {message}")]
    BadArgument { function: String, message: String },
    #[error("unknown function {0:?} (GET /functions lists those perfpipe has)")]
    UnknownFunction(String),
    /// The store could not answer (500/502).
    #[error("reading series: {0}")]
    Store(String),
}

/// A value an argument evaluates to.
#[derive(Debug, Clone)]
pub enum Value {
    Series(Vec<Series>),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
}

pub(crate) struct Context<'a> {
    pub store: &'a mut dyn Store,
    pub request: Request,
}

/// Evaluates every target in order; series of all targets in one list.
pub fn evaluate_targets(
    store: &mut dyn Store,
    request: Request,
    targets: &[String],
) -> Result<Vec<Series>, EvalError> {
    let mut context = Context { store, request };
    let mut out = Vec::new();
    for target in targets {
        if target.trim().is_empty() {
            continue;
        }
        let expr = parse_target(target)?;
        out.extend(context.series_of(&expr)?);
    }
    Ok(out)
}

impl Context<'_> {
    /// The series of an expression over the request's window.
    pub fn series_of(&mut self, expr: &Expr) -> Result<Vec<Series>, EvalError> {
        match expr {
            Expr::Path(pattern) => {
                let Request {
                    start, end, now, ..
                } = self.request;
                let mut series = self
                    .store
                    .fetch(pattern, start, end, now)
                    .map_err(EvalError::Store)?;
                for one in &mut series {
                    one.path_expression = pattern.clone();
                    one.x_files_factor = self.request.x_files_factor;
                }
                Ok(series)
            }
            Expr::Call { name, args, kwargs } => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.value_of(arg)?);
                }
                let mut named = Vec::with_capacity(kwargs.len());
                for (key, arg) in kwargs {
                    named.push((key.clone(), self.value_of(arg)?));
                }
                functions::call(self, name, args, values, named)
            }
        }
    }

    /// The series of `expr` over a window shifted or widened from the request's.
    pub fn series_over(
        &mut self,
        expr: &Arg,
        start: i64,
        end: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let saved = self.request;
        self.request.start = start;
        self.request.end = end;
        let result = match expr {
            Arg::Expr(expr) => self.series_of(expr),
            _ => Ok(Vec::new()),
        };
        self.request = saved;
        result
    }

    fn value_of(&mut self, arg: &Arg) -> Result<Value, EvalError> {
        Ok(match arg {
            Arg::Expr(expr) => Value::Series(self.series_of(expr)?),
            Arg::Int(v) => Value::Int(*v),
            Arg::Float(v) => Value::Float(*v),
            Arg::Str(v) => Value::Str(v.clone()),
            Arg::Bool(v) => Value::Bool(*v),
            Arg::None => Value::None,
        })
    }
}
