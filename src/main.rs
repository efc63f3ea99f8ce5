//! `perfpipe`: the command-line edge of the pipeline. Parses arguments, sets up logging, and
//! hands each subcommand to its module; errors from below become one `anyhow` report here.
//!
//! Subcommands (the fixed interface of ARCHITECTURE.md that exists so far):
//! - `perfpipe serve [--config FILE] [--data-dir DIR] [--listen ADDR]`: runs a node;
//! - `perfpipe ingest --local [--config FILE] FILE|-`: stores spool or JSON check results
//!   straight into the configured stores;
//! - `perfpipe check-config [FILE]`: checks a config file, naming a bad key and why;
//! - `perfpipe parse [--summary]`: reads perfdata strings from stdin, one a line, and prints one
//!   JSON object a line in READING.md's schema, or with `--summary` only counts and speed.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use perfpipe::{ingest, parse, server};

/// mimalloc instead of glibc's malloc: on the write path points are allocated on the HTTP
/// workers and freed on the shard threads, which glibc's arenas handle poorly (malloc and free
/// were a third of the node's CPU). Measured side by side (docs/performance.md): 39% less node
/// CPU per point written, 18% more plugin-cache gets per second. Cached plugin items keep
/// glibc's tighter size classes through `ItemData` (see `cachemanager::item_data`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "perfpipe",
    version,
    about = "A performance-data pipeline for monitoring"
)]
struct Cli {
    /// Log at debug level (otherwise `RUST_LOG`, default info).
    #[arg(short, long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the HTTP API on `listen`.
    Serve(server::ServeArgs),
    /// Read spool or JSON check results and store their points.
    Ingest(ingest::IngestArgs),
    /// Check a config file: every key known, every value usable.
    CheckConfig {
        /// The file (default: check the built-in defaults).
        file: Option<std::path::PathBuf>,
    },
    /// Read perfdata strings from stdin (one a line) and print what they hold as JSON lines.
    Parse {
        /// Print only the counts of lines, metrics and errors and the MB/s read.
        #[arg(long)]
        summary: bool,
    },
    /// Evaluate an expression over a node's last values and print the answer as JSON.
    Eval(perfpipe::check::EvalArgs),
    /// A Nagios plugin: an expression's value against thresholds that are expressions too
    /// (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Check(perfpipe::check::CheckArgs),
    /// Rename a host (or one service of it) on a running node, merging with data already
    /// stored under the new name.
    Rename(perfpipe::rename::RenameArgs),
    /// Record an existing Opsview RRD or Graphite Whisper tree in the catalogue, without
    /// rewriting its files.
    Adopt(perfpipe::adopt::AdoptArgs),
    /// Copy every series from the first configured backend into another (resumable).
    Export(perfpipe::adopt::ExportArgs),
    /// Print a token for namespace NAME, sealed with `cache.namespace_key`, for plugins to
    /// send as their namespace when the cache's namespaces are encrypted.
    NamespaceToken {
        /// The namespace the token names.
        name: String,
        /// The config file holding `cache.namespace_key`.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    let outcome = match cli.command {
        Command::Serve(args) => server::serve(args),
        Command::Ingest(args) => ingest::run(args),
        Command::CheckConfig { file } => check_config(file.as_deref()),
        Command::Parse { summary } => parse::run(summary),
        Command::NamespaceToken { name, config } => namespace_token(&name, config.as_deref()),
        Command::Eval(args) => perfpipe::check::eval(args),
        Command::Rename(args) => perfpipe::rename::run(args),
        Command::Adopt(args) => perfpipe::adopt::run_adopt(args),
        Command::Export(args) => perfpipe::adopt::run_export(args),
        Command::Check(args) => return ExitCode::from(perfpipe::check::check(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not eprintln!: it panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "perfpipe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn namespace_token(name: &str, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = perfpipe::config::Config::load(config)?;
    anyhow::ensure!(
        !config.cache.namespace_key.is_empty(),
        "cache.namespace_key is not set: there is no key to seal a token with"
    );
    let key = perfpipe::cachemanager::token::NamespaceKey::from_hex(&config.cache.namespace_key)?;
    println!("{}", key.seal(name, perfpipe::cachemanager::now_seconds()));
    Ok(())
}

fn check_config(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    perfpipe::config::Config::load(file)?;
    match file {
        Some(file) => println!("{}: ok", file.display()),
        None => println!("built-in defaults: ok"),
    }
    Ok(())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`), so stdout stays data. A closed
/// stderr must not bring the node down: the subscriber's own report of a failed write would go
/// through `eprintln!`, which panics then, so that report is off.
fn init_logging(debug: bool) {
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}
