//! `perfpipe eval` and `perfpipe check`: expressions evaluated by a running node
//! (`GET /api/v1/eval`), the second as a Nagios plugin for dynamic thresholds.
//!
//! `check` prints one status line with perfdata and exits as plugins do: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN (node unreachable, an expression without a value, a bad answer). The
//! value is compared with each threshold's value: above it alerts, or below it with `--below`.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// Where the node listens by default.
const DEFAULT_URL: &str = "http://127.0.0.1:8480";

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The expression, e.g. `avg(web-http-time[0:9])`.
    expr: String,
    /// The node to ask.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The measured value: an expression.
    #[arg(long)]
    expr: String,
    /// The warning threshold: an expression, e.g. `baseline(web-http-time, 4W) * 1.2`.
    #[arg(long)]
    warning: Option<String>,
    /// The critical threshold: an expression.
    #[arg(long)]
    critical: Option<String>,
    /// Alert when the value is below the thresholds instead of above.
    #[arg(long)]
    below: bool,
    /// The node to ask.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Seconds to wait for the node.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Asks `url` for `expr`; the answer's JSON, or why there is none.
fn evaluate(url: &str, expr: &str, timeout: Duration) -> anyhow::Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut answer = agent
        .get(format!("{}/api/v1/eval", url.trim_end_matches('/')))
        .query("expr", expr)
        .call()
        .with_context(|| format!("asking {url}"))?;
    let status = answer.status().as_u16();
    let text = answer.body_mut().read_to_string()?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{url} answered {status} with {text:?}"))?;
    anyhow::ensure!(
        status == 200,
        "{url} refused {expr:?}: {}",
        json["error"].as_str().unwrap_or(&text)
    );
    Ok(json)
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let answer = evaluate(&args.url, &args.expr, Duration::from_secs(10))?;
    println!("{answer}");
    Ok(())
}

/// A number from an answer, or the reason there is none.
fn number(answer: &Value, what: &str) -> Result<f64, String> {
    answer["value"].as_f64().ok_or_else(|| {
        format!(
            "{what} has no value: {}",
            answer["reason"].as_str().unwrap_or("not a single value")
        )
    })
}

/// Runs the check; returns the plugin's exit code after printing its line.
pub fn check(args: CheckArgs) -> u8 {
    let timeout = Duration::from_secs(args.timeout);
    let ask = |text: &str, what: &str| -> Result<f64, String> {
        let answer = evaluate(&args.url, text, timeout).map_err(|error| format!("{error:#}"))?;
        number(&answer, what)
    };
    let outcome = (|| {
        let value = ask(&args.expr, "the value")?;
        let warning = args
            .warning
            .as_deref()
            .map(|text| ask(text, "the warning threshold"))
            .transpose()?;
        let critical = args
            .critical
            .as_deref()
            .map(|text| ask(text, "the critical threshold"))
            .transpose()?;
        Ok::<_, String>((value, warning, critical))
    })();
    let (value, warning, critical) = match outcome {
        Ok(found) => found,
        Err(reason) => {
            println!("PERFPIPE UNKNOWN - {reason}");
            return 3;
        }
    };
    let beyond = |threshold: Option<f64>| {
        threshold.is_some_and(|limit| {
            if args.below {
                value < limit
            } else {
                value > limit
            }
        })
    };
    let (code, label) = if beyond(critical) {
        (2, "CRITICAL")
    } else if beyond(warning) {
        (1, "WARNING")
    } else {
        (0, "OK")
    };
    let shown = |threshold: Option<f64>| threshold.map_or(String::new(), |t| format!("{t}"));
    let mut limits = Vec::new();
    if let Some(warning) = warning {
        limits.push(format!("warning {warning}"));
    }
    if let Some(critical) = critical {
        limits.push(format!("critical {critical}"));
    }
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!(" ({})", limits.join(", "))
    };
    println!(
        "PERFPIPE {label} - value {value}{limits} | value={value};{};{}",
        shown(warning),
        shown(critical)
    );
    code
}
