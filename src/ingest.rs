//! `perfpipe ingest --local [--config FILE] FILE|-`: check results from a file (or stdin)
//! straight into the stores a config names, without a running node.
//!
//! Input, line by line: Opsview spool lines (`lastcheck||host||service||output||perfdata`),
//! Nagios/Naemon/Icinga/PNP spool lines (`DATATYPE::…`), JSON result objects (NDJSON); or a
//! whole `{"results":[…]}` body. Host perfdata is stored under the service `_HOST_` (as
//! PNP4Nagios does). Each metric with a value becomes a point of the series
//! host/service/label; unknown values (`U`) are counted and not stored.
//!
//! The points of each series are sorted by time and duplicate timestamps dropped (the first
//! one read is kept), then every backend is written in batches of many series, and the
//! catalogue records each batch in one transaction. Every bad record or metric is reported
//! with its line; the rest is stored. A summary line ends the run; the exit status is non-zero
//! when anything was refused or failed to store.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use perfpipe_backend::{Backend, SeriesBatch};
use perfpipe_sqlite::{Catalogue, SeriesUpdate};

use crate::config::Config;
use crate::enqueuer::SeriesPoints;
use crate::intake::{self, Format};

/// Series handed to the backends per write call.
const SERIES_PER_WRITE: usize = 1000;

/// How many individual problems are printed before only counting them.
const SHOWN_PROBLEMS: u64 = 50;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Write straight into the stores of the config (no running node needed).
    #[arg(long)]
    local: bool,
    /// Send to a running node's write API instead.
    #[arg(long, conflicts_with = "local")]
    url: Option<String>,
    /// The config naming the stores (default: the embedded defaults).
    #[arg(long, conflicts_with = "url")]
    config: Option<PathBuf>,
    /// The file to read, or `-` for stdin.
    input: String,
}

/// What one run did, for the summary line.
#[derive(Debug, Default)]
struct Totals {
    results: u64,
    points: u64,
    unknown_values: u64,
    duplicates: u64,
    problems: u64,
    /// Per backend, in config order: name, points written, points refused as late.
    stored: Vec<(&'static str, u64, u64)>,
}

impl Totals {
    fn problem(&mut self, message: impl std::fmt::Display) {
        self.problems += 1;
        if self.problems <= SHOWN_PROBLEMS {
            eprintln!("perfpipe ingest: {message}");
        } else if self.problems == SHOWN_PROBLEMS + 1 {
            eprintln!("perfpipe ingest: more problems; counting only");
        }
    }
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    if let Some(url) = args.url {
        return send(&url, &args.input);
    }
    anyhow::ensure!(args.local, "say where to: --local or --url URL");
    let config = Config::load(args.config.as_deref())?;
    let input = read_input(&args.input)?;
    let progress = progress_bar(input.len() as u64);
    let intake = intake::read(&input, Format::Detect);
    progress.inc(input.len() as u64);
    progress.finish_and_clear();

    let mut totals = Totals {
        results: intake.results,
        points: intake.points,
        unknown_values: intake.unknown_values,
        ..Totals::default()
    };
    for error in &intake.errors {
        totals.problem(error);
    }

    let mut backends = crate::storage::open_backends(&config)?;
    let mut catalogue = crate::storage::open_catalogue(&config)?;
    store(intake.series, &mut backends, &mut catalogue, &mut totals)?;

    let stored: String = totals
        .stored
        .iter()
        .map(|(name, written, late)| format!("; {name}: written {written}, late {late}"))
        .collect();
    println!(
        "results {}, points {}, duplicates {}, unknown values {}, errors {}{stored}",
        totals.results, totals.points, totals.duplicates, totals.unknown_values, totals.problems
    );
    anyhow::ensure!(
        totals.problems == 0,
        "{} problems (shown above); everything else was stored",
        totals.problems
    );
    Ok(())
}

/// Lines per request of `ingest --url`.
const LINES_PER_REQUEST: usize = 1000;

/// `ingest --url`: the input posted to a node's write API in requests of
/// [`LINES_PER_REQUEST`] lines (a whole `{"results":…}` body in one request), the node reading
/// it as `--local` would; 503 answers are retried after their `Retry-After`.
fn send(url: &str, input_name: &str) -> anyhow::Result<()> {
    let input = read_input(input_name)?;
    let progress = progress_bar(input.len() as u64);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let endpoint = format!("{}/api/v1/write", url.trim_end_matches('/'));
    let mut totals = Totals::default();

    let whole_body = input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde_json::Value>(&input)
            .is_ok_and(|body| body.get("results").is_some());
    let requests: Vec<(usize, &[u8], Option<&str>)> = if whole_body {
        vec![(0, &input[..], Some("application/json"))]
    } else {
        let mut requests = Vec::new();
        let mut first_line = 0;
        let mut start = 0;
        let mut lines = 0;
        for (at, _) in input.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            lines += 1;
            if lines == LINES_PER_REQUEST {
                requests.push((first_line, &input[start..=at], None));
                first_line += lines;
                start = at + 1;
                lines = 0;
            }
        }
        if start < input.len() {
            requests.push((first_line, &input[start..], None));
        }
        requests
    };

    for (first_line, body, content_type) in requests {
        let answer = loop {
            let mut request = agent.post(&endpoint);
            if let Some(content_type) = content_type {
                request = request.content_type(content_type);
            }
            let mut answer = request
                .send(body)
                .with_context(|| format!("posting to {endpoint}"))?;
            let status = answer.status().as_u16();
            let text = answer.body_mut().read_to_string().unwrap_or_default();
            if status == 503 {
                let wait = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                std::thread::sleep(std::time::Duration::from_secs(wait));
                continue;
            }
            break (status, text);
        };
        progress.inc(body.len() as u64);
        let (status, text) = answer;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{endpoint} answered {status}: {text}"))?;
        anyhow::ensure!(
            status == 200 || status == 400,
            "{endpoint} answered {status}: {}",
            json["error"].as_str().unwrap_or(&text)
        );
        totals.results += json["results"].as_u64().unwrap_or(0);
        totals.points += json["points"].as_u64().unwrap_or(0);
        for error in json["errors"].as_array().into_iter().flatten() {
            let record = error["result"].as_u64().unwrap_or(0) as usize;
            let message = error["message"].as_str().unwrap_or("");
            let place = if whole_body {
                format!("result {record}")
            } else {
                format!("line {}", first_line + record + 1)
            };
            match error["offset"].as_u64() {
                Some(offset) => {
                    totals.problem(format!("{place}, perfdata: {message} at byte {offset}"))
                }
                None => totals.problem(format!("{place}: {message}")),
            }
        }
    }
    progress.finish_and_clear();
    println!(
        "results {}, points {}, errors {}",
        totals.results, totals.points, totals.problems
    );
    anyhow::ensure!(
        totals.problems == 0,
        "{} problems (shown above); everything else was sent",
        totals.problems
    );
    Ok(())
}

fn read_input(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    if name == "-" {
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
    } else {
        input = std::fs::read(name).with_context(|| format!("reading {name}"))?;
    }
    Ok(input)
}

fn progress_bar(bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("a valid progress template"),
    );
    bar
}

/// Sorts and de-duplicates every series, writes them to every backend in batches, and records
/// them in the catalogue.
fn store(
    series: Vec<SeriesPoints>,
    backends: &mut [Box<dyn Backend>],
    catalogue: &mut Catalogue,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let mut batches: Vec<SeriesBatch> = series
        .into_iter()
        .map(|series| {
            let (batch, duplicates) = SeriesBatch::from_unordered(
                series.key,
                series.uom,
                series.points.into_vec(),
                series.levels.into_vec(),
            );
            totals.duplicates += duplicates as u64;
            batch
        })
        .collect();
    batches.sort_by(|a, b| a.key.cmp(&b.key));

    totals.stored = backends.iter().map(|b| (b.name(), 0, 0)).collect();
    for chunk in batches.chunks(SERIES_PER_WRITE) {
        for (backend, stored) in backends.iter_mut().zip(0..) {
            let report = backend
                .write(chunk)
                .with_context(|| format!("writing to {}", backend.name()))?;
            totals.stored[stored].1 += report.written;
            totals.stored[stored].2 += report.late;
            for (key, error) in report.failed {
                totals.problem(format!("{}: {key}: {error}", backend.name()));
            }
        }
        let updates: Vec<SeriesUpdate> =
            chunk.iter().filter_map(SeriesUpdate::from_batch).collect();
        catalogue.record(&updates)?;
    }
    Ok(())
}
