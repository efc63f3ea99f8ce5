//! Soak: one node written at a steady rate, with queries running, for a long time; its
//! resident memory (VmRSS) is sampled throughout, and the run passes when the RSS at the end
//! is within 10% of the RSS after the first five minutes (issue 8).
//!
//! It starts the node itself (this package's `perfpipe`, or `--binary`) on 127.0.0.1 in a
//! temporary directory (Whisper, retentions `60s:1d,1h:7d`, the write-ahead log on), writes
//! `--rate` points per second as JSON results (`--hosts` × `--services` results of `--metrics`
//! metrics each, cycled, stamped with the current second), and from another thread asks
//! `/api/v1/query` for ten random series over the last hour once a second. Every minute it
//! prints the minute's points written, 503 answers, query latency median and the RSS; at the
//! end the RSS figures and the verdict, then SIGTERM (exit 0 expected).
//!
//! Run: `cargo bench --bench soak -- --minutes 60 --rate 120000` (the rate: half of the
//! ~240,000 points/s this driver sustained against the node on this machine with
//! `--minutes 6 --rate 400000`, no 503 and a flat queue; docs/performance.md).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use clap::Parser;

mod support;
use support::{agent, get_json, signal, start_node};

#[derive(Parser, Debug)]
#[command(about = "Soak test of one perfpipe node: steady writes and queries, RSS over time")]
struct Args {
    /// Minutes to run.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Points per second written.
    #[arg(long, default_value_t = 120_000)]
    rate: u64,
    /// Hosts in the workload.
    #[arg(long, default_value_t = 1_000)]
    hosts: usize,
    /// Services per host.
    #[arg(long, default_value_t = 5)]
    services: usize,
    /// Metrics per service.
    #[arg(long, default_value_t = 3)]
    metrics: usize,
    /// The perfpipe binary (default: the one cargo built for this bench).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn vm_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .context("VmRSS")?
        .parse()
        .context("VmRSS value")
}

/// What the writer and the querier count, per minute.
#[derive(Default)]
struct Tally {
    points: AtomicU64,
    refused: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.minutes >= 6,
        "run at least 6 minutes (the baseline is taken at 5)"
    );
    let dir = std::env::temp_dir().join(format!("perfpipe-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("perfpipe.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[whisper]\nretentions = \"60s:1d,1h:7d\"\n",
            dir.join("data").display().to_string()
        ),
    )?;
    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_perfpipe")));
    let (mut child, address, log) = start_node(&binary, &config)?;
    let pid = child.id();
    let base = format!("http://{address}");
    println!(
        "perfpipe soak: {} min at {} points/s, {} series, queries of 10 series over 1 h every second; node pid {pid}",
        args.minutes,
        args.rate,
        args.hosts * args.services * args.metrics
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let results_per_second = (args.rate as usize).div_ceil(args.metrics);
    let perfdata: String = (0..args.metrics)
        .map(|m| format!("m{m}=1.5ms;10;20;0;100"))
        .collect::<Vec<_>>()
        .join(" ");
    let writer = {
        let (stop, tally, base) = (stop.clone(), tally.clone(), base.clone());
        let (hosts, services) = (args.hosts, args.services);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let agent = agent();
            let mut next = 0usize;
            let mut second = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = now();
                let mut left = results_per_second;
                while left > 0 {
                    let batch = left.min(1_000);
                    left -= batch;
                    let results: Vec<serde_json::Value> = (0..batch)
                        .map(|_| {
                            let i = next % (hosts * services);
                            next += 1;
                            serde_json::json!({
                                "host": format!("host-{:05}", i / services),
                                "service": format!("svc-{}", i % services),
                                "timestamp": t,
                                "perfdata": perfdata,
                            })
                        })
                        .collect();
                    let body = serde_json::to_vec(&serde_json::json!({ "results": results }))?;
                    loop {
                        let answer = agent
                            .post(&format!("{base}/api/v1/write"))
                            .content_type("application/json")
                            .send(&body[..])?;
                        match answer.status().as_u16() {
                            200 => break,
                            503 => {
                                tally.refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            other => anyhow::bail!("write answered {other}"),
                        }
                    }
                    tally.points.fetch_add(
                        (batch * perfdata.split(' ').count()) as u64,
                        Ordering::Relaxed,
                    );
                }
                second += Duration::from_secs(1);
                if let Some(rest) = second.checked_duration_since(Instant::now()) {
                    std::thread::sleep(rest);
                } else {
                    second = Instant::now();
                }
            }
            Ok(())
        })
    };
    let querier = {
        let (stop, tally, base) = (stop.clone(), tally.clone(), base.clone());
        let (hosts, services, metrics) = (args.hosts, args.services, args.metrics);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let agent = agent();
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
            while !stop.load(Ordering::Relaxed) {
                let mut query = String::from("/api/v1/query?start=-1h&end=now");
                for _ in 0..10 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed % (hosts * services * metrics) as u64) as usize;
                    let (result, metric) = (i / metrics, i % metrics);
                    query.push_str(&format!(
                        "&hsm=host-{:05}::svc-{}::m{metric}",
                        result / services,
                        result % services
                    ));
                }
                let started = Instant::now();
                get_json(&agent, &format!("{base}{query}"))?;
                tally
                    .latencies_ms
                    .lock()
                    .unwrap()
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            }
            Ok(())
        })
    };

    let started = Instant::now();
    let mut baseline_kb = None;
    let mut samples = Vec::new();
    for minute in 1..=args.minutes {
        let until = started + Duration::from_secs(60 * minute);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(1));
            ensure!(!writer.is_finished(), "the writer stopped");
            ensure!(!querier.is_finished(), "the querier stopped");
        }
        let rss = vm_rss_kb(pid)?;
        samples.push(rss);
        if minute == 5 {
            baseline_kb = Some(rss);
        }
        let mut latencies = std::mem::take(&mut *tally.latencies_ms.lock().unwrap());
        latencies.sort_by(f64::total_cmp);
        let median = latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or(f64::NAN);
        let status = get_json(&agent(), &format!("{base}/status"))?;
        println!(
            "  minute {minute:>3}: {:>9} points posted, {:>3} 503s, query median {median:>7.1} ms, RSS {:>7.1} MB, queued {}, log segments {}",
            tally.points.swap(0, Ordering::Relaxed),
            tally.refused.swap(0, Ordering::Relaxed),
            rss as f64 / 1024.0,
            status["queued_points"],
            status["wal"]["segments"],
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer")?;
    querier.join().expect("querier")?;
    let end_kb = *samples.last().context("no sample")?;
    let baseline_kb = baseline_kb.context("no baseline")?;
    let ratio = end_kb as f64 / baseline_kb as f64;
    println!(
        "  RSS after 5 min {:.1} MB, at the end {:.1} MB: ratio {ratio:.3} (target within 10%: {}); peak {:.1} MB; node warnings/errors logged: {}",
        baseline_kb as f64 / 1024.0,
        end_kb as f64 / 1024.0,
        if (0.9..=1.1).contains(&ratio) { "met" } else { "NOT met" },
        *samples.iter().max().unwrap() as f64 / 1024.0,
        log.count.load(Ordering::Relaxed)
    );
    signal(pid, "TERM")?;
    let status = child.wait()?;
    println!("  node exit: {status}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
