//! End-to-end load driver: how fast one `perfpipe serve` node takes check results over HTTP
//! and gets their points into Whisper files. It starts the node itself (this package's
//! `perfpipe` binary, built by `cargo bench` in the bench profile) on 127.0.0.1 with an
//! ephemeral port, in a temporary directory with a config it writes (Whisper only; enqueuer and
//! retentions from the flags), generates `hosts × services` results of `metrics` metrics each
//! for `rounds` timestamps (`round-step` seconds apart, 60 by default, ending now), posts them as JSON bodies of `batch`
//! results from `clients` threads (keep-alive connections, 503 answers honoured by waiting
//! `Retry-After` and retrying), and polls `/status` until every point is written (every posted
//! point counted by the backend and none left queued, so that aggregate points, which the
//! backend counts too, do not end the wait early). Round 0
//! creates the files and is measured on its own (phase `create`); the remaining rounds update
//! existing files (phase `update`). It reports results/s and points/s accepted, points/s
//! written (first post until `/status` shows all written), the steady write rate (`/status`
//! read every 100 ms: points written per second from the phase's first flush to its last
//! post's answer, with the queue then, which shows whether the writers kept up), 503 retries,
//! the node's peak RSS
//! (VmHWM) and CPU time against the driver's own, then stops the node with SIGTERM (it must
//! exit 0) and removes the directory. All traffic stays on loopback. With `--rollups` the
//! config also rolls up every series (`[[rollups]] match = "*"`, avg, max and min, UTC), so the
//! shards compute hour/day/week/month aggregates of each flush and write them as extra series;
//! the points/s figures count posted points only, and the aggregate points written are
//! reported apart. Aggregates of a period are written once a later period's point arrives, so
//! for rollups to cost anything the rounds must cross hours: `--round-step 600 --rounds 20`
//! spans 3 h 10 min (the driver prints how many UTC hours the rounds touch). With
//! `--create-through-first-hour` the `create` phase runs on through the first round of the
//! second hour, so that it also creates the hour aggregates' files and the `update` phase
//! measures the steady state, where closing an hour writes to files that exist (the same
//! split with or without `--rollups`, so the two compare).
//!
//! By default a phase's rounds are posted at once, so each series' points are queued together
//! and written in one file update (a backfill's cost per point). `--round-by-round` posts a
//! round and waits until it is written before the next, so each round is its own flush, as
//! checks arriving in real time are (pair it with a short `--max-batch-age`; compare node CPU
//! per point, since the waits are in the wall time). `--rate POINTS` offers that many points a
//! second instead of posting as fast as the node answers. `--max-open-files` sets
//! `whisper.max_open_files`.
//!
//! Run: `cargo bench --bench load_driver -- [--hosts 10000 --services 10 --metrics 3
//! --rounds 4 --round-step 60 --batch 1000 --clients 4 --shards 2 --max-batch-points 1000
//! --max-batch-age 5s --retentions 60s:1d,1h:7d --wal 10ms|off --rollups --round-by-round
//! --rate 0 --max-open-files 65536 --perf FILE]`; `--perf FILE` records
//! the node with `perf record -e cpu-clock -g` (one recording, from the first post of the
//! phases `--perf-phase` names until their points are written). Files take disk space: the
//! default workload (300,000 series) writes about 6 GB under the temp dir.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use clap::Parser;

mod support;
use support::{agent, cpu_seconds, get_json, signal, start_node, start_perf, vm_hwm_kb};

#[derive(Parser, Debug, Clone)]
#[command(about = "End-to-end load driver for perfpipe serve")]
struct Args {
    /// Hosts in the workload.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// Services per host.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Metrics per service (perfdata `m0=… m1=…`).
    #[arg(long, default_value_t = 3)]
    metrics: usize,
    /// Timestamps per series (`--round-step` apart, ending now); round 0 creates the files.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds between the timestamps of consecutive rounds.
    #[arg(long, default_value_t = 60)]
    round_step: u32,
    /// Results per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent client threads (one keep-alive connection each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// enqueuer.shards of the node.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// enqueuer.max_batch_points of the node.
    #[arg(long, default_value_t = 1000)]
    max_batch_points: usize,
    /// enqueuer.max_batch_age of the node (a duration with unit).
    #[arg(long, default_value = "5s")]
    max_batch_age: String,
    /// enqueuer.max_queued_points of the node.
    #[arg(long, default_value_t = 10_000_000)]
    max_queued_points: usize,
    /// whisper.retentions of the node (the project default, 60s:1d,5m:30d,1h:3y, takes
    /// 436 KB a file).
    #[arg(long, default_value = "60s:1d,1h:7d")]
    retentions: String,
    /// whisper.max_open_files of the node (per shard, within its open-file limit).
    #[arg(long, default_value_t = 65_536)]
    max_open_files: usize,
    /// Roll up every series: appends `[[rollups]] match = "*"`, methods avg, max and min,
    /// timezone UTC, to the node's config.
    #[arg(long)]
    rollups: bool,
    /// The `create` phase takes the rounds up to and including the first round of the
    /// second UTC hour (see the module), not round 0 alone.
    #[arg(long)]
    create_through_first_hour: bool,
    /// The last round's timestamp (epoch seconds, taken down to the minute; default now): runs
    /// given the same end post the same workload, whenever they start. Not in the future, and
    /// the first round no more than 23 hours back (the finest archive keeps a day).
    #[arg(long)]
    end: Option<i64>,
    /// Post a round, wait until it is written, then the next: each round is its own flush, as
    /// in real time (one point per series per check interval), rather than every round of a
    /// phase queued at once and a series' points written together. Pair with a short
    /// `--max-batch-age` (each round waits that long); compare node CPU, not points/s.
    #[arg(long)]
    round_by_round: bool,
    /// Offer this many points a second (0: post as fast as the node answers). Body `i` of a
    /// phase (or round) is posted no sooner than `i × points per body / rate` after its
    /// start; a client that falls behind posts at once. The node's CPU per point at a fixed
    /// offered load compares two configurations without the feedback of a saturated node
    /// (whose queue, and so its memory, grows the more the slower it writes).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// wal.sync_interval of the node (a duration with unit), or `off` for `wal.enabled =
    /// false`: the write-ahead log's cost is this run against one with `off`.
    #[arg(long, default_value = "10ms")]
    wal: String,
    /// Give up (and fail) after this many seconds in all.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Record the node with `perf record -e cpu-clock -g -p PID -o FILE` during the phases
    /// `--perf-phase` names.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Phases recorded by `--perf`: all, create or update.
    #[arg(long, default_value = "all", value_parser = ["all", "create", "update"])]
    perf_phase: String,
    /// The perfpipe binary (default: the one cargo built for this bench).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the data directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.hosts > 0 && args.services > 0 && args.metrics > 0 && args.rounds > 0,
        "hosts, services, metrics and rounds must be at least 1"
    );
    ensure!(
        args.batch > 0 && args.clients > 0 && args.shards > 0 && args.round_step > 0,
        "batch, clients, shards and round-step must be at least 1"
    );
    let archives = perfpipe_whisper::parse_retentions(&args.retentions)
        .map_err(|e| anyhow::anyhow!("--retentions {:?}: {e}", args.retentions))?;
    let file_bytes = 16
        + 12 * archives.len() as u64
        + archives.iter().map(|a| 12 * a.points as u64).sum::<u64>();
    let series = (args.hosts * args.services * args.metrics) as u64;
    let results_per_round = (args.hosts * args.services) as u64;
    let points_per_round = series;

    let dir = std::env::temp_dir().join(format!("perfpipe-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut guard = Guard {
        node: None,
        perf: None,
        dir: dir.clone(),
        keep: args.keep,
    };

    println!("perfpipe load driver");
    println!(
        "  parameters: --hosts {} --services {} --metrics {} --rounds {} --round-step {} \
         --batch {} --clients {} --shards {} --max-batch-points {} --max-batch-age {} \
         --max-queued-points {} --retentions {} --wal {} --rate {}{}",
        args.hosts,
        args.services,
        args.metrics,
        args.rounds,
        args.round_step,
        args.batch,
        args.clients,
        args.shards,
        args.max_batch_points,
        args.max_batch_age,
        args.max_queued_points,
        args.retentions,
        args.wal,
        args.rate,
        if args.rollups { " --rollups" } else { "" }
    );
    println!(
        "  workload: {series} series, {} results and {} points in all, whisper files of {} \
         bytes (~{:.1} GB on disk)",
        results_per_round * args.rounds as u64,
        points_per_round * args.rounds as u64,
        file_bytes,
        (series * file_bytes) as f64 / 1e9
    );

    // The workload, generated before the node starts so that posting costs the driver only HTTP.
    let driver_cpu_start = cpu_seconds("self")?;
    let generate_start = Instant::now();
    let end = args.end.unwrap_or_else(now) / 60 * 60;
    let first = end - i64::from(args.round_step) * (args.rounds as i64 - 1);
    ensure!(
        end <= now() && first >= now() - 23 * 3600,
        "--end {end}: the rounds ({first} to {end}) must lie between 23 hours ago and now"
    );
    let timestamps: Vec<i64> = (0..args.rounds)
        .map(|round| end - i64::from(args.round_step) * (args.rounds - 1 - round) as i64)
        .collect();
    let rounds: Vec<Vec<Vec<u8>>> = timestamps
        .iter()
        .enumerate()
        .map(|(round, &timestamp)| generate_round(&args, round, timestamp))
        .collect();
    let mut hours: Vec<i64> = timestamps.iter().map(|t| t.div_euclid(3600)).collect();
    hours.dedup();
    println!(
        "  timestamps: {} to {}, {} s apart, touching {} UTC hours ({} hour periods closed by \
         later rounds)",
        timestamps[0],
        end,
        args.round_step,
        hours.len(),
        hours.len() - 1
    );
    let body_bytes: usize = rounds.iter().flatten().map(Vec::len).sum();
    println!(
        "  generated {} bodies, {:.1} MB, in {:.2} s",
        rounds.iter().map(Vec::len).sum::<usize>(),
        body_bytes as f64 / 1e6,
        generate_start.elapsed().as_secs_f64()
    );
    let driver_cpu_generated = cpu_seconds("self")?;

    // The node.
    let mut config = format!(
        "listen = \"127.0.0.1:0\"\n\
         data_dir = {data:?}\n\
         backends = [\"whisper\"]\n\
         max_body_size = \"64MB\"\n\
         [whisper]\n\
         retentions = {retentions:?}\n\
         max_open_files = {open_files}\n\
         [enqueuer]\n\
         shards = {shards}\n\
         max_batch_points = {mbp}\n\
         max_batch_age = {age:?}\n\
         max_queued_points = {mqp}\n",
        data = dir.join("data").display().to_string(),
        retentions = args.retentions,
        open_files = args.max_open_files,
        shards = args.shards,
        mbp = args.max_batch_points,
        age = args.max_batch_age,
        mqp = args.max_queued_points,
    );
    config.push_str(&match args.wal.as_str() {
        "off" => "[wal]\nenabled = false\n".to_owned(),
        interval => format!("[wal]\nsync_interval = {interval:?}\n"),
    });
    if args.rollups {
        config.push_str(
            "[[rollups]]\n\
             match = \"*\"\n\
             methods = [\"avg\", \"max\", \"min\"]\n\
             timezone = \"UTC\"\n",
        );
    }
    let config_path = dir.join("perfpipe.toml");
    std::fs::write(&config_path, config)?;
    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_perfpipe")));
    let (child, address, log) = start_node(&binary, &config_path)?;
    let pid = child.id();
    guard.node = Some(child);
    println!(
        "  node: pid {pid}, http://{address}, binary {}",
        binary.display()
    );
    let base = format!("http://{address}");
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);

    // Phase `create`: round 0, then phase `update`: the others.
    let retries = AtomicU64::new(0);
    let node_cpu_0 = cpu_seconds(&pid.to_string())?;
    let driver_cpu_0 = cpu_seconds("self")?;
    let mut phases = Vec::new();
    let mut written_before = 0u64;
    let mut first_post = None;
    let split = if args.create_through_first_hour {
        let first_hour = timestamps[0].div_euclid(3600);
        timestamps
            .iter()
            .position(|t| t.div_euclid(3600) > first_hour)
            .map_or(rounds.len(), |second_hour| second_hour + 1)
    } else {
        1
    };
    println!(
        "  phases: create = rounds 0..{split}, update = the other {}",
        rounds.len() - split
    );
    for (name, bodies) in [("create", &rounds[..split]), ("update", &rounds[split..])] {
        if bodies.is_empty() {
            continue;
        }
        let batches: Vec<Vec<&[u8]>> = if args.round_by_round {
            bodies
                .iter()
                .map(|round| round.iter().map(Vec::as_slice).collect())
                .collect()
        } else {
            vec![bodies.iter().flatten().map(Vec::as_slice).collect()]
        };
        let record = args
            .perf
            .as_ref()
            .filter(|_| [name, "all"].contains(&&*args.perf_phase));
        // One recording: with `all` it runs on through both phases (a second `perf record -o`
        // of the same file would move the first one's data to FILE.old).
        if let (Some(file), None) = (record, &guard.perf) {
            guard.perf = Some(start_perf(pid, file)?);
        }
        let node_cpu = cpu_seconds(&pid.to_string())?;
        let driver_cpu = cpu_seconds("self")?;
        let retries_before = retries.load(Ordering::Relaxed);
        let start = Instant::now();
        first_post.get_or_insert(start);
        let mut posted = Posted {
            results: 0,
            points: 0,
            errors: 0,
        };
        let mut accepted_at = Duration::ZERO;
        let sampling = AtomicBool::new(true);
        let samples = std::thread::scope(|scope| -> anyhow::Result<Vec<Sample>> {
            // Posted round by round, the phase waits between rounds: no steady rate to tell.
            let sampler = scope.spawn(|| {
                if args.round_by_round {
                    Vec::new()
                } else {
                    sample_status(&agent, &base, start, &sampling)
                }
            });
            let posting = (|| -> anyhow::Result<()> {
                for bodies in &batches {
                    let round = post_all(&args, &agent, &base, bodies, &retries, deadline)?;
                    accepted_at = start.elapsed();
                    posted.results += round.results;
                    posted.points += round.points;
                    posted.errors += round.errors;
                    wait_written(&agent, &base, written_before + posted.points, deadline)?;
                }
                Ok(())
            })();
            sampling.store(false, Ordering::Relaxed);
            let samples = sampler.join().expect("the sampler does not panic");
            posting?;
            Ok(samples)
        })?;
        let written_at = start.elapsed();
        let steady = SteadyWrite::of(&samples, accepted_at);
        written_before += posted.points;
        if args.perf_phase != "all" {
            stop_perf(&mut guard)?;
        }
        phases.push(Phase {
            name,
            results: posted.results,
            points: posted.points,
            errors: posted.errors,
            accepted: accepted_at,
            written: written_at,
            retries: retries.load(Ordering::Relaxed) - retries_before,
            node_cpu: cpu_seconds(&pid.to_string())? - node_cpu,
            driver_cpu: cpu_seconds("self")? - driver_cpu,
            steady,
        });
    }
    stop_perf(&mut guard)?;
    let total_elapsed = first_post.map_or(Duration::ZERO, |t| t.elapsed());
    let node_cpu = cpu_seconds(&pid.to_string())? - node_cpu_0;
    let driver_cpu = cpu_seconds("self")? - driver_cpu_0;
    let hwm_kb = vm_hwm_kb(pid)?;
    let status = get_json(&agent, &format!("{base}/status"))?;

    println!();
    println!(
        "  {:<7} {:>9} {:>10} {:>8} {:>8} {:>11} {:>12} {:>11} {:>8} {:>9} {:>9}",
        "phase",
        "results",
        "points",
        "accept s",
        "write s",
        "results/s",
        "accepted p/s",
        "written p/s",
        "503s",
        "node cpu",
        "drv cpu"
    );
    let total = Phase {
        name: "total",
        results: phases.iter().map(|p| p.results).sum(),
        points: phases.iter().map(|p| p.points).sum(),
        errors: phases.iter().map(|p| p.errors).sum(),
        // Posting time of the phases (the wait for `create` to be written is left out).
        accepted: phases.iter().map(|p| p.accepted).sum(),
        written: total_elapsed,
        retries: retries.load(Ordering::Relaxed),
        node_cpu,
        driver_cpu,
        steady: None,
    };
    for phase in phases.iter().chain([&total]) {
        let accept_s = phase.accepted.as_secs_f64();
        let write_s = phase.written.as_secs_f64();
        let per = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { f64::NAN };
        println!(
            "  {:<7} {:>9} {:>10} {:>8.2} {:>8.2} {:>11.0} {:>12.0} {:>11.0} {:>8} {:>8.2}s {:>8.2}s",
            phase.name,
            phase.results,
            phase.points,
            accept_s,
            write_s,
            per(phase.results, accept_s),
            per(phase.points, accept_s),
            per(phase.points, write_s),
            phase.retries,
            phase.node_cpu,
            phase.driver_cpu
        );
    }
    println!(
        "  (accept s: first post until the last 200; write s: first post until /status shows \
         every point written; cpu: user+system seconds in the phase)"
    );
    for phase in &phases {
        let Some(steady) = &phase.steady else {
            continue;
        };
        println!(
            "  {} steady: {:.0} points/s written from {:.2} s (first flush) to {:.2} s (last \
             post answered); queued then {} points ({:.2} s of the phase's accept rate), at \
             most {}",
            phase.name,
            steady.written_per_second,
            steady.from.as_secs_f64(),
            steady.until.as_secs_f64(),
            steady.queued_at_end,
            steady.queued_at_end as f64 * phase.accepted.as_secs_f64() / phase.points as f64,
            steady.queued_max
        );
    }
    println!(
        "  node: peak RSS (VmHWM) {:.1} MB, cpu {:.2} s over {:.2} s = {:.2} cores; driver cpu \
         {:.2} s posting, {:.2} s generating",
        hwm_kb as f64 / 1024.0,
        node_cpu,
        total_elapsed.as_secs_f64(),
        node_cpu / total_elapsed.as_secs_f64().max(1e-9),
        driver_cpu,
        driver_cpu_generated - driver_cpu_start
    );
    println!(
        "  503 retries {}, intake errors {}, status: points {} flushes {} backends {}",
        total.retries, total.errors, status["points"], status["flushes"], status["backends"]
    );
    if args.rollups {
        let stored: u64 = status["backends"]
            .as_array()
            .map_or(0, |b| b.iter().filter_map(|b| b["written"].as_u64()).sum());
        println!(
            "  rollups: {} aggregate points written besides the {} posted (backend written \
             minus posted; the points/s above count posted points only)",
            stored.saturating_sub(total.points),
            total.points
        );
    }

    // Stop: SIGTERM, exit 0.
    let mut child = guard.node.take().expect("node running");
    let stop = Instant::now();
    if let Err(error) = signal(pid, "TERM") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    let exit = child.wait()?;
    println!(
        "  SIGTERM: exited with {:?} after {:.2} s; {} warning/error log lines{}",
        exit.code(),
        stop.elapsed().as_secs_f64(),
        log.count.load(Ordering::Relaxed),
        log.first
            .lock()
            .unwrap()
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    );
    if args.keep {
        println!("  kept {}", dir.display());
    }
    drop(guard);
    ensure!(exit.code() == Some(0), "the node exited with {exit}");
    if let Some(file) = &args.perf {
        println!("  perf data: {} (perf report -i FILE)", file.display());
    }
    Ok(())
}

/// One round's bodies: results host-major, `batch` a body.
fn generate_round(args: &Args, round: usize, timestamp: i64) -> Vec<Vec<u8>> {
    use std::fmt::Write as _;
    let total = args.hosts * args.services;
    let mut bodies = Vec::with_capacity(total.div_ceil(args.batch));
    let mut body = String::new();
    let mut perfdata = String::new();
    for i in 0..total {
        let (host, service) = (i / args.services, i % args.services);
        if body.is_empty() {
            body.push_str("{\"results\":[");
        } else {
            body.push(',');
        }
        perfdata.clear();
        for metric in 0..args.metrics {
            let value = ((host * 31 + service * 7 + metric * 3 + round * 11) % 1000) as f64 / 10.0;
            if metric > 0 {
                perfdata.push(' ');
            }
            let _ = write!(perfdata, "m{metric}={value}ms;10;20;0;100");
        }
        let _ = write!(
            body,
            "{{\"host\":\"host{host:05}\",\"service\":\"service{service:02}\",\
             \"timestamp\":{timestamp},\"perfdata\":\"{perfdata}\"}}"
        );
        if (i + 1) % args.batch == 0 || i + 1 == total {
            body.push_str("]}");
            bodies.push(std::mem::take(&mut body).into_bytes());
        }
    }
    bodies
}

struct Phase {
    name: &'static str,
    results: u64,
    points: u64,
    errors: u64,
    accepted: Duration,
    written: Duration,
    retries: u64,
    node_cpu: f64,
    driver_cpu: f64,
    /// The write rate while posting went on, when the phase was long enough to tell.
    steady: Option<SteadyWrite>,
}

/// One reading of `/status` during a phase.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Since the phase's first post.
    at: Duration,
    /// Points the backend counted written (the least of the backends, late ones included).
    written: u64,
    queued: u64,
}

/// Reads `/status` every 100 ms until `sampling` turns false.
fn sample_status(
    agent: &ureq::Agent,
    base: &str,
    start: Instant,
    sampling: &AtomicBool,
) -> Vec<Sample> {
    let url = format!("{base}/status");
    let mut samples = Vec::new();
    while sampling.load(Ordering::Relaxed) {
        let at = start.elapsed();
        // A failed reading is skipped: the posting threads report the node's failures.
        if let Some((written, queued)) = get_json(agent, &url)
            .ok()
            .and_then(|status| written_and_queued(&status).ok())
        {
            samples.push(Sample {
                at,
                written,
                queued,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    samples
}

/// How fast the node wrote while points still came in: the slope of the backend's written
/// count from the first flush of the phase (the first reading above the phase's start) to the
/// last post's answer. The end-to-end "written p/s" also holds the wait of the last queues
/// for `max_batch_age` after the posting stopped, which a node under a sustained load never
/// sees; this is the rate it keeps up, as long as the queue at the end stays at about
/// `max_batch_age` of intake (printed beside it).
#[derive(Debug, Clone, Copy)]
struct SteadyWrite {
    from: Duration,
    until: Duration,
    written_per_second: f64,
    queued_at_end: u64,
    queued_max: u64,
}

impl SteadyWrite {
    /// `None` when less than 2 s passed between the first flush and the last post. With
    /// `--rollups` the count holds the aggregate points too (the backend counts them).
    fn of(samples: &[Sample], accepted_at: Duration) -> Option<SteadyWrite> {
        let base = samples.first()?.written;
        let first = samples.iter().find(|s| s.written > base)?;
        let last = samples.iter().rev().find(|s| s.at <= accepted_at)?;
        let span = last.at.checked_sub(first.at)?;
        if span < Duration::from_secs(2) {
            return None;
        }
        Some(SteadyWrite {
            from: first.at,
            until: last.at,
            written_per_second: (last.written - first.written) as f64 / span.as_secs_f64(),
            queued_at_end: last.queued,
            queued_max: samples
                .iter()
                .filter(|s| s.at <= accepted_at)
                .map(|s| s.queued)
                .max()
                .unwrap_or(0),
        })
    }
}

#[derive(Default)]
struct Posted {
    results: u64,
    points: u64,
    errors: u64,
}

/// Posts every body from `args.clients` threads; a 503 waits `Retry-After` and tries again.
fn post_all(
    args: &Args,
    agent: &ureq::Agent,
    base: &str,
    bodies: &[&[u8]],
    retries: &AtomicU64,
    deadline: Instant,
) -> anyhow::Result<Posted> {
    let next = AtomicUsize::new(0);
    let url = format!("{base}/api/v1/write");
    // Bodies hold `batch` results of `metrics` points each (the last of a round may hold
    // fewer, and is then offered a little early).
    let body_interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64((args.batch * args.metrics) as f64 / args.rate as f64));
    let start = Instant::now();
    let totals = Mutex::new(Posted::default());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.clients)
            .map(|_| {
                let agent = agent.clone();
                let (next, url, totals) = (&next, &url, &totals);
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut mine = Posted::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { break };
                        if let Some(interval) = body_interval {
                            let due = start + interval.mul_f64(i as f64);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        }
                        let mut attempts = 0;
                        loop {
                            ensure!(Instant::now() < deadline, "timed out posting");
                            attempts += 1;
                            let mut answer = agent
                                .post(url)
                                .header("Content-Type", "application/json")
                                .send(*body)
                                .with_context(|| format!("posting body {i}"))?;
                            let status = answer.status().as_u16();
                            if status == 503 {
                                ensure!(attempts <= 300, "body {i}: 503 {attempts} times");
                                retries.fetch_add(1, Ordering::Relaxed);
                                let wait = answer
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.trim().parse::<u64>().ok())
                                    .unwrap_or(1);
                                let _ = answer.body_mut().read_to_vec();
                                std::thread::sleep(Duration::from_secs(wait.clamp(1, 30)));
                                continue;
                            }
                            let text = answer.body_mut().read_to_string()?;
                            ensure!(status == 200, "body {i}: {status} {text}");
                            let json: serde_json::Value = serde_json::from_str(&text)?;
                            mine.results += json["results"].as_u64().unwrap_or(0);
                            mine.points += json["points"].as_u64().unwrap_or(0);
                            mine.errors += json["errors"].as_array().map_or(0, |e| e.len() as u64);
                            break;
                        }
                    }
                    let mut totals = totals.lock().unwrap();
                    totals.results += mine.results;
                    totals.points += mine.points;
                    totals.errors += mine.errors;
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client thread panicked")?;
        }
        anyhow::Ok(())
    })?;
    Ok(totals.into_inner().unwrap())
}

/// Polls `/status` until every backend has written (or refused as late) `points` and no point
/// is queued any more. Backends count aggregate points (rollups) as written too, so the count
/// alone could be reached while posted points are still queued; a shard decrements the queued
/// count only after the flush holding them has been written.
/// From a `/status` answer: the points written (by the backend that wrote fewest, late ones
/// counted) and the points still queued.
fn written_and_queued(status: &serde_json::Value) -> anyhow::Result<(u64, u64)> {
    let backends = status["backends"].as_array().context("status.backends")?;
    let written = backends
        .iter()
        .map(|b| b["written"].as_u64().unwrap_or(0) + b["late"].as_u64().unwrap_or(0))
        .min()
        .unwrap_or(0);
    let queued = status["queued_points"]
        .as_u64()
        .context("status.queued_points")?;
    Ok((written, queued))
}

fn wait_written(
    agent: &ureq::Agent,
    base: &str,
    points: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    let url = format!("{base}/status");
    loop {
        let status = get_json(agent, &url)?;
        let backends = status["backends"].as_array().context("status.backends")?;
        let failed: u64 = backends.iter().filter_map(|b| b["failed"].as_u64()).sum();
        ensure!(failed == 0, "points failed: {status}");
        let (done, queued) = written_and_queued(&status)?;
        if done >= points && queued == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out waiting for {points} points written: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends the `perf record` running, if one is, and waits for it to write its file.
fn stop_perf(guard: &mut Guard) -> anyhow::Result<()> {
    if let Some(mut perf) = guard.perf.take() {
        signal(perf.id(), "INT")?;
        let _ = perf.wait();
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Kills what is still running and removes the directory, however `main` ends.
struct Guard {
    node: Option<Child>,
    perf: Option<Child>,
    dir: PathBuf,
    keep: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut perf) = self.perf.take() {
            let _ = signal(perf.id(), "INT");
            let _ = perf.wait();
        }
        if let Some(mut node) = self.node.take() {
            let _ = node.kill();
            let _ = node.wait();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
