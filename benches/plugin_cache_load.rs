//! Load driver of the plugins' cache (the Cache Manager protocol, `POST /get_data` and
//! `POST /set_data`) of one `perfpipe serve` node, side by side with `redis-benchmark` against
//! a local `redis-server`, plus the node's memory per cached 1 KB item.
//!
//! It starts the node itself (the `perfpipe` binary: `--binary`, else `$PERFPIPE_BIN`, else the
//! one cargo built for this bench, else `target/release/perfpipe`) on 127.0.0.1 with an
//! ephemeral port, in a temporary directory, then for each of `--runs` runs:
//! - `get_data` hits: `--connections` keep-alive HTTP/1.1 connections, each sending requests
//!   back to back (closed loop, one in flight per connection) for `--warmup` + `--duration`,
//!   over `--items` items pre-set once at the start (`max_wait_time` 0); every answer must be a
//!   200 whose body starts `{"data":"` followed by the item's data, byte for byte;
//! - `set_data` of `--value-size` bytes (ttl 3600) over `--set-keys` keys picked at random
//!   (new keys at first, overwrites after), same connections and timing;
//! - `redis-benchmark -t set,get -d VALUE_SIZE -c CONNECTIONS -n REDIS_REQUESTS -r ITEMS --csv`
//!   against a `redis-server --save '' --appendonly no` that it starts on a free loopback port
//!   (skipped when either program is not on PATH, or with `--skip-redis`).
//!
//! The client (`--client`) is by default a minimal one, as lean as redis-benchmark's: per
//! connection a tokio `TcpStream`, the request written in one `write` from the connection's
//! prebuilt head and the body, the answer read into a reused buffer and cut at its
//! `content-length`; every answer's status is checked. `--client hyper` uses hyper 1's HTTP/1
//! client instead (about twice the driver's CPU per request).
//!
//! With `--rate R` the connections do not run back to back: each sends on a fixed schedule
//! (R / connections per second, staggered), and each latency is measured from the time the
//! request was due (no coordinated omission); how late the driver sent, and the latency from
//! the moment each request really left, are printed beside it.
//!
//! Every latency (send, or time due, to last byte of the answer) goes into an HDR histogram; it prints
//! requests/s, p50, p99, p99.9 per run and the median over the runs, and the ratio perfpipe /
//! Redis. Driver, node, redis-benchmark and redis-server share the machine's cores: the CPU
//! each used is printed beside the figures.
//!
//! Then (unless `--skip-rss`), `--rss-runs` times on a fresh node: VmRSS of the node, set
//! `--rss-items` distinct items (64-char hex keys, `--value-size` data) through the same
//! connections, VmRSS again (and `/status` `cache_items` to check that all are kept), and
//! prints (after - before) / items. The node runs with `max_cache_size = --rss-max-cache-size`
//! (default 4GiB) so that 1M items of 1 KB (1.024 GB of data, above the default 1GB bound) are
//! all kept.
//!
//! `--perf DIR` records the node with `perf record -e cpu-clock -g` during the first run's
//! get and set phases (DIR/get.perf.data, DIR/set.perf.data). All traffic stays on loopback,
//! every loop is bounded in time or count, and the node and redis-server are stopped at exit.
//!
//! Run: `cargo bench --bench plugin_cache_load -- [--runs 3 --duration 10 --connections 64
//! --driver-threads 1 --skip-rss --skip-redis --perf DIR]`, or
//! `benches/plugin-cache-vs-redis.sh` which builds everything and runs it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

mod support;
use support::{clock_ticks, cpu_seconds, signal, start_perf};

#[derive(Parser, Debug, Clone)]
#[command(about = "Load driver of perfpipe's plugin cache (get_data/set_data) against Redis")]
struct Args {
    /// The perfpipe binary (default: $PERFPIPE_BIN, else the one cargo built for this bench,
    /// else target/release/perfpipe).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The HTTP client: `raw` (default: one TCP stream per connection, each request written
    /// from prebuilt bytes in one write, the answer read up to its Content-Length; as lean as
    /// redis-benchmark's client) or `hyper` (hyper 1's HTTP/1 client).
    #[arg(long, value_enum, default_value_t = ClientKind::Raw)]
    client: ClientKind,
    /// Worker threads of the driver's runtime (1 = a current-thread runtime, like the one
    /// thread of redis-benchmark).
    #[arg(long, default_value_t = 1)]
    driver_threads: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each measured phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions of every measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Items pre-set for the get_data phase (and redis-benchmark's -r).
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Keys the set_data phase writes to, at random.
    #[arg(long, default_value_t = 100_000)]
    set_keys: usize,
    /// Bytes of data per item.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// redis-benchmark's -n for each of SET and GET.
    #[arg(long, default_value_t = 1_000_000)]
    redis_requests: usize,
    /// Offered load in requests/s over all connections, instead of the closed loop: each
    /// connection sends on a fixed schedule (rate / connections per second, the connections'
    /// schedules staggered) and every latency is measured from the request's scheduled time,
    /// so a driver or node that falls behind is counted, not hidden (no coordinated omission).
    /// The schedules are kept by one task ticking every 100 µs on a Linux `timerfd`: tokio's
    /// timer rounds every deadline up to a whole millisecond, most of the 1.28 ms between two
    /// requests of one connection at 50,000 req/s over 64.
    #[arg(long)]
    rate: Option<f64>,
    /// Do not run redis-benchmark.
    #[arg(long)]
    skip_redis: bool,
    /// Do not run the memory measurement.
    #[arg(long)]
    skip_rss: bool,
    /// Skip the throughput phases (only the memory measurement).
    #[arg(long)]
    skip_load: bool,
    /// Distinct items of the memory measurement.
    #[arg(long, default_value_t = 1_000_000)]
    rss_items: usize,
    /// Repetitions of the memory measurement, each on a fresh node (default: --runs).
    #[arg(long)]
    rss_runs: Option<usize>,
    /// cache.max_cache_size of the node in the memory measurement.
    #[arg(long, default_value = "4GiB")]
    rss_max_cache_size: String,
    /// cache.max_cache_size of the node in the throughput phases (default: the node's default,
    /// 1GB); a small bound makes every set of a new key evict.
    #[arg(long)]
    load_max_cache_size: Option<String>,
    /// Record the node with `perf record -e cpu-clock -g` during the first run's phases,
    /// into this directory.
    #[arg(long)]
    perf: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Raw,
    Hyper,
}

const NAMESPACE: &str = "bench";
const TTL_SECONDS: u64 = 3600;

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    ensure!(
        args.connections > 0 && args.runs > 0,
        "--connections and --runs must be positive"
    );
    let runtime = if args.driver_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.driver_threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = perfpipe_binary(&args)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "plugin cache load: {} connections, {} driver thread(s), {} s (+{} s warm-up) per phase, \
         {} runs, {}-byte items; {cores} cores shared by driver, node, redis-benchmark and \
         redis-server",
        args.connections,
        args.driver_threads,
        args.duration,
        args.warmup,
        args.runs,
        args.value_size
    );
    println!("perfpipe binary: {}", binary.display());

    if !args.skip_load {
        load_phases(&args, &binary).await?;
    }
    if !args.skip_rss {
        rss_phase(&args, &binary).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Throughput and latency.

async fn load_phases(args: &Args, binary: &Path) -> anyhow::Result<()> {
    let node = Node::start(binary, args.load_max_cache_size.as_deref())?;
    println!("node: pid {}, http://{}", node.pid(), node.address);
    let keys = Arc::new(Keys::new(args.items.max(args.set_keys)));
    let value = Arc::new(value_of(args.value_size));

    // Pre-set the get phase's items.
    let preset = {
        let keys = keys.clone();
        let value = value.clone();
        let next = AtomicUsize::new(0);
        let items = args.items;
        Source::new("/set_data", Check::Status, move |_| {
            let index = next.fetch_add(1, Ordering::Relaxed);
            (index < items).then(|| set_body(keys.get(index), &value))
        })
    };
    let result = drive(
        node.address,
        args.client,
        args.connections,
        Arc::new(preset),
        Timing::Exhaust,
    )
    .await?;
    println!(
        "  pre-set {} items in {:.2} s ({:.0}/s)",
        result.requests,
        result.elapsed.as_secs_f64(),
        result.requests_per_second()
    );

    let get_bodies: Arc<Vec<Bytes>> =
        Arc::new((0..args.items).map(|i| get_body(keys.get(i))).collect());
    let redis = if args.skip_redis {
        None
    } else {
        Redis::start()?
    };
    if redis.is_none() && !args.skip_redis {
        println!("  redis-server or redis-benchmark not on PATH: no comparison");
    }

    let timing = Timing::Timed {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        rate: args.rate,
    };
    let mut gets = Vec::new();
    let mut sets = Vec::new();
    let mut redis_gets = Vec::new();
    let mut redis_sets = Vec::new();
    for run in 1..=args.runs {
        println!(
            "run {run}/{}: load average {}",
            args.runs,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        let perf_file = |name: &str| {
            args.perf
                .as_ref()
                .filter(|_| run == 1)
                .map(|dir| dir.join(format!("{name}.perf.data")))
        };

        let source = {
            let bodies = get_bodies.clone();
            Source::new("/get_data", Check::Hit(value.clone()), move |rng| {
                Some(bodies[rng.below(bodies.len())].clone())
            })
        };
        let figures = measured(&node, args, Arc::new(source), timing, perf_file("get")).await?;
        println!("  perfpipe get_data hit  {}", figures.line());
        gets.push(figures);

        let source = {
            let keys = keys.clone();
            let value = value.clone();
            let set_keys = args.set_keys;
            Source::new("/set_data", Check::Status, move |rng| {
                Some(set_body(keys.get(rng.below(set_keys)), &value))
            })
        };
        let figures = measured(&node, args, Arc::new(source), timing, perf_file("set")).await?;
        println!("  perfpipe set_data 1KB  {}", figures.line());
        sets.push(figures);

        if let Some(redis) = &redis {
            let (set, get) = redis.benchmark(args)?;
            println!("  redis SET              {}", set.line());
            println!("  redis GET              {}", get.line());
            redis_sets.push(set);
            redis_gets.push(get);
        }
    }

    println!(
        "medians over {} runs ({} connections; driver, server and redis-benchmark share {} cores):",
        args.runs,
        args.connections,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let get = Figures::median(&gets);
    let set = Figures::median(&sets);
    println!("  perfpipe get_data hit  {}", get.line());
    println!("  perfpipe set_data 1KB  {}", set.line());
    if !redis_gets.is_empty() {
        let redis_get = Figures::median(&redis_gets);
        let redis_set = Figures::median(&redis_sets);
        println!("  redis GET              {}", redis_get.line());
        println!("  redis SET              {}", redis_set.line());
        for (name, ours, theirs) in [("get", &get, &redis_get), ("set", &set, &redis_set)] {
            println!(
                "  ratio {name}: redis/perfpipe throughput {:.2}x, perfpipe/redis p99 {:.2}x",
                theirs.rps / ours.rps,
                ours.p99_ms / theirs.p99_ms
            );
        }
    }
    if let Some(mut redis) = redis {
        redis.stop();
    }
    node.stop()?;
    Ok(())
}

/// A timed phase with CPU accounting (and `perf record` when asked).
async fn measured(
    node: &Node,
    args: &Args,
    source: Arc<Source>,
    timing: Timing,
    perf: Option<PathBuf>,
) -> anyhow::Result<Figures> {
    let mut recorder = match &perf {
        Some(file) => {
            std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))?;
            Some(start_perf(node.pid(), file)?)
        }
        None => None,
    };
    let node_cpu = cpu_seconds(&node.pid().to_string())?;
    let driver_cpu = cpu_seconds("self")?;
    let busy = machine_busy_seconds()?;
    let result = drive(node.address, args.client, args.connections, source, timing).await;
    let node_cpu = cpu_seconds(&node.pid().to_string())? - node_cpu;
    let driver_cpu = cpu_seconds("self")? - driver_cpu;
    let others = (machine_busy_seconds()? - busy - node_cpu - driver_cpu).max(0.0);
    if let Some(perf) = recorder.as_mut() {
        signal(perf.id(), "INT")?;
        perf.wait()?;
    }
    let result = result?;
    ensure!(
        result.failures == 0,
        "{} of {} answers were not what was expected; first: {}",
        result.failures,
        result.requests,
        result.first_failure.as_deref().unwrap_or("?")
    );
    // CPU over the whole phase (warm-up included), in cores.
    let wall = result.wall.as_secs_f64().max(1e-9);
    let mut note = format!(
        "node {:.2} cores, driver {:.2}, other processes {:.2}",
        node_cpu / wall,
        driver_cpu / wall,
        others / wall
    );
    for (what, histogram) in [
        ("sent after schedule", &result.send_lag),
        ("from the send", &result.from_send),
    ] {
        if let Some(histogram) = histogram {
            let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
            note.push_str(&format!(
                "; {what} p50 {:.3} ms, p99 {:.3} ms",
                ms(0.5),
                ms(0.99)
            ));
        }
    }
    Ok(Figures::from_histogram(
        result.requests_per_second(),
        &result.histogram,
        note,
    ))
}

// ---------------------------------------------------------------------------------------------
// Memory per item.

async fn rss_phase(args: &Args, binary: &Path) -> anyhow::Result<()> {
    let runs = args.rss_runs.unwrap_or(args.runs);
    println!(
        "memory: {} distinct items of {} bytes, 64-char hex keys, max_cache_size {}, {} fresh \
         node(s)",
        args.rss_items, args.value_size, args.rss_max_cache_size, runs
    );
    let keys = Arc::new(Keys::new(args.rss_items));
    let value = Arc::new(value_of(args.value_size));
    let mut per_item = Vec::new();
    for run in 1..=runs {
        let node = Node::start(binary, Some(&args.rss_max_cache_size))?;
        // The connections and the runtime's buffers first, so that they are in "before".
        let warm = Source::new("/get_data", Check::Status, {
            let next = AtomicUsize::new(0);
            let count = args.connections * 20;
            move |_| {
                (next.fetch_add(1, Ordering::Relaxed) < count).then(|| get_body("warm-up-miss"))
            }
        });
        drive(
            node.address,
            args.client,
            args.connections,
            Arc::new(warm),
            Timing::Exhaust,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = vm_kb(node.pid(), "VmRSS")?;
        let fill = {
            let keys = keys.clone();
            let value = value.clone();
            let next = AtomicUsize::new(0);
            let items = args.rss_items;
            Source::new("/set_data", Check::Status, move |_| {
                let index = next.fetch_add(1, Ordering::Relaxed);
                (index < items).then(|| set_body(keys.get(index), &value))
            })
        };
        let result = drive(
            node.address,
            args.client,
            args.connections,
            Arc::new(fill),
            Timing::Exhaust,
        )
        .await?;
        ensure!(
            result.failures == 0,
            "set failures: {:?}",
            result.first_failure
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = vm_kb(node.pid(), "VmRSS")?;
        let hwm = vm_kb(node.pid(), "VmHWM")?;
        let items = cache_items(node.address)?;
        ensure!(
            items == args.rss_items as u64,
            "/status says {items} cache_items after setting {} distinct items",
            args.rss_items
        );
        let bytes_per_item = (after.saturating_sub(before)) as f64 * 1024.0 / items as f64;
        println!(
            "  run {run}/{runs}: VmRSS {:.1} MB before, {:.1} MB after {} items (VmHWM {:.1} MB), \
             set in {:.1} s ({:.0}/s, p99 {:.2} ms): {:.0} bytes = {:.3} KB per item",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            items,
            hwm as f64 / 1024.0,
            result.elapsed.as_secs_f64(),
            result.requests_per_second(),
            result.histogram.value_at_quantile(0.99) as f64 / 1e6,
            bytes_per_item,
            bytes_per_item / 1024.0
        );
        per_item.push(bytes_per_item);
        node.stop()?;
    }
    println!(
        "  median: {:.0} bytes = {:.3} KB of RSS per cached {}-byte item (data itself: {} bytes)",
        median(&per_item),
        median(&per_item) / 1024.0,
        args.value_size,
        args.value_size
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The HTTP load itself.

#[derive(Clone, Copy)]
enum Timing {
    /// Until the source is exhausted; everything is measured.
    Exhaust,
    /// `warmup` unmeasured, then `duration` measured; closed loop, or paced at `rate`
    /// requests/s over all connections.
    Timed {
        warmup: Duration,
        duration: Duration,
        rate: Option<f64>,
    },
}

#[derive(Clone)]
enum Check {
    /// A 200.
    Status,
    /// A 200 whose body starts `{"data":"<this data>`.
    Hit(Arc<String>),
}

type NextBody = dyn Fn(&mut Rng) -> Option<Bytes> + Send + Sync;

struct Source {
    path: &'static str,
    check: Check,
    next: Box<NextBody>,
}

impl Source {
    fn new(
        path: &'static str,
        check: Check,
        next: impl Fn(&mut Rng) -> Option<Bytes> + Send + Sync + 'static,
    ) -> Source {
        Source {
            path,
            check,
            next: Box::new(next),
        }
    }
}

struct Outcome {
    requests: u64,
    failures: u64,
    first_failure: Option<String>,
    histogram: Histogram<u64>,
    /// With a rate: how late each measured request was sent after its scheduled time.
    send_lag: Option<Histogram<u64>>,
    /// With a rate: each measured request's latency from the moment it was really sent.
    from_send: Option<Histogram<u64>>,
    /// The measured window.
    elapsed: Duration,
    /// Warm-up and measured window.
    wall: Duration,
}

impl Outcome {
    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens `connections` keep-alive connections and sends requests back to back on each.
async fn drive(
    address: SocketAddr,
    client: ClientKind,
    connections: usize,
    source: Arc<Source>,
    timing: Timing,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(Client::connect(client, address, source.path).await?);
    }
    let started = Instant::now();
    let (measure_from, end, rate) = match timing {
        Timing::Exhaust => (started, None, None),
        Timing::Timed {
            warmup,
            duration,
            rate,
        } => (started + warmup, Some(started + warmup + duration), rate),
    };
    // Connection `index` of n sends at started + (index / n + k) × interval, k = 0, 1, …
    let pace = rate.map(|_| Arc::new(Pace::new(connections, started)));
    let ticker = pace
        .clone()
        .map(|pace| tokio::spawn(pace.tick_every(PACE_TICK)));
    let schedule = |index: usize| {
        rate.map(|rate| {
            let interval = Duration::from_secs_f64(connections as f64 / rate);
            Schedule {
                next: started + interval.mul_f64(index as f64 / connections as f64),
                interval,
                slot: index,
            }
        })
    };
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for (index, sender) in senders.into_iter().enumerate() {
        let source = source.clone();
        let failures = failures.clone();
        tasks.push(tokio::spawn(connection_loop(
            sender,
            source,
            measure_from,
            end,
            schedule(index).zip(pace.clone()),
            index as u64,
            failures,
        )));
    }
    let mut histogram = new_histogram();
    let mut send_lag = new_histogram();
    let mut from_send = new_histogram();
    let mut requests = 0;
    let mut first_failure = None;
    let mut last_done = started;
    for task in tasks {
        let done = task.await.context("connection task")??;
        histogram.add(&done.histogram)?;
        send_lag.add(&done.send_lag)?;
        from_send.add(&done.from_send)?;
        requests += done.requests;
        last_done = last_done.max(done.finished);
        if first_failure.is_none() {
            first_failure = done.first_failure;
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let elapsed = match end {
        Some(end) => end.saturating_duration_since(measure_from),
        None => last_done.saturating_duration_since(started),
    };
    Ok(Outcome {
        requests,
        failures: failures.load(Ordering::Relaxed),
        first_failure,
        histogram,
        send_lag: rate.map(|_| send_lag),
        from_send: rate.map(|_| from_send),
        elapsed,
        wall: last_done.saturating_duration_since(started),
    })
}

struct ConnectionDone {
    requests: u64,
    histogram: Histogram<u64>,
    send_lag: Histogram<u64>,
    from_send: Histogram<u64>,
    first_failure: Option<String>,
    finished: Instant,
}

async fn connection_loop(
    mut client: Client,
    source: Arc<Source>,
    measure_from: Instant,
    end: Option<Instant>,
    mut schedule: Option<(Schedule, Arc<Pace>)>,
    seed: u64,
    failures: Arc<AtomicU64>,
) -> anyhow::Result<ConnectionDone> {
    let mut rng = Rng::new(seed);
    let mut histogram = new_histogram();
    let mut send_lag = new_histogram();
    let mut from_send = new_histogram();
    let mut requests = 0;
    let mut first_failure = None;
    loop {
        // Closed loop: measured from the send. Paced: from the scheduled time.
        let before = match &mut schedule {
            Some((schedule, pace)) => {
                let due = schedule.next;
                schedule.next += schedule.interval;
                if end.is_some_and(|end| due >= end) {
                    break;
                }
                pace.wait_until(schedule.slot, due).await;
                if due >= measure_from {
                    let lag = Instant::now().saturating_duration_since(due);
                    send_lag.saturating_record(lag.as_nanos().max(1) as u64);
                }
                due
            }
            _ => Instant::now(),
        };
        if end.is_some_and(|end| before >= end) {
            break;
        }
        let Some(body) = (source.next)(&mut rng) else {
            break;
        };
        let sent = Instant::now();
        let (status, answer) = client.exchange(body).await?;
        let after = Instant::now();
        let good = status == StatusCode::OK
            && match &source.check {
                Check::Status => true,
                // The data itself, byte for byte, after `{"data":"`.
                Check::Hit(data) => answer
                    .strip_prefix(b"{\"data\":\"")
                    .is_some_and(|rest| rest.starts_with(data.as_bytes())),
            };
        if !good {
            failures.fetch_add(1, Ordering::Relaxed);
            if first_failure.is_none() {
                first_failure = Some(format!(
                    "{status} {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(200)])
                ));
            }
        }
        if before >= measure_from {
            let nanos = u64::try_from(after.duration_since(before).as_nanos()).unwrap_or(u64::MAX);
            histogram.saturating_record(nanos.max(1));
            if schedule.is_some() {
                let nanos =
                    u64::try_from(after.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                from_send.saturating_record(nanos.max(1));
            }
            requests += 1;
        }
    }
    Ok(ConnectionDone {
        requests,
        histogram,
        send_lag,
        from_send,
        first_failure,
        finished: Instant::now(),
    })
}

/// A connection's fixed-rate schedule: the next request's time, the time between two, and
/// the connection's slot in the [`Pace`].
struct Schedule {
    next: Instant,
    interval: Duration,
    slot: usize,
}

/// How often the [`Pace`] looks for connections due: the resolution of the schedule.
const PACE_TICK: Duration = Duration::from_micros(100);

/// Wakes each paced connection at its scheduled time. One task ticks on a `timerfd` (the
/// kernel's nanosecond timers, awaited through tokio's reactor) and releases the connections
/// whose time has come; a connection ahead of its schedule parks on its slot. One timer for
/// all connections keeps the driver's cost per request near the closed loop's: a timer per
/// connection, re-armed per request, took a whole core at 50,000 req/s.
struct Pace {
    origin: Instant,
    slots: Vec<PaceSlot>,
}

struct PaceSlot {
    /// Nanoseconds after `origin` the parked connection waits for; u64::MAX when none waits.
    due: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Pace {
    fn new(connections: usize, origin: Instant) -> Pace {
        Pace {
            origin,
            slots: (0..connections)
                .map(|_| PaceSlot {
                    due: AtomicU64::new(u64::MAX),
                    wake: tokio::sync::Notify::new(),
                })
                .collect(),
        }
    }

    fn nanos_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Returns at `due` (within a tick), at once when it has passed.
    async fn wait_until(&self, slot: usize, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        let slot = &self.slots[slot];
        slot.due
            .store(self.nanos_since_origin(due), Ordering::Release);
        // A release before this await leaves a permit: no wake is lost.
        slot.wake.notified().await;
    }

    /// Releases the connections due, every `period`, until aborted.
    async fn tick_every(self: Arc<Pace>, period: Duration) -> anyhow::Result<()> {
        let timer = PeriodicTimer::new(period).context("timerfd")?;
        loop {
            timer.tick().await.context("timerfd")?;
            let now = self.nanos_since_origin(Instant::now());
            for slot in &self.slots {
                let due = slot.due.load(Ordering::Acquire);
                if due <= now
                    && slot
                        .due
                        .compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    slot.wake.notify_one();
                }
            }
        }
    }
}

/// A periodic Linux `timerfd` on CLOCK_MONOTONIC, awaited through tokio's reactor.
struct PeriodicTimer {
    timer: AsyncFd<OwnedFd>,
}

impl PeriodicTimer {
    fn new(period: Duration) -> std::io::Result<PeriodicTimer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let every = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for (null).
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd, moved into the AsyncFd, keeps the descriptor open and the same
        // for the AsyncFd's whole life.
        let timer = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(PeriodicTimer { timer })
    }

    /// Returns once the timer has expired since the last call (once for several expirations).
    async fn tick(&self) -> std::io::Result<()> {
        loop {
            let mut guard = self.timer.readable().await?;
            let read = guard.try_io(|timer| {
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let read = unsafe {
                    libc::read(
                        timer.get_ref().as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        8,
                    )
                };
                if read < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// One keep-alive connection to the node, one request in flight.
enum Client {
    Raw(RawConnection),
    Hyper {
        sender: SendRequest<Full<Bytes>>,
        path: &'static str,
        host: String,
        /// The last answer's body.
        answer: Bytes,
    },
}

impl Client {
    async fn connect(
        kind: ClientKind,
        address: SocketAddr,
        path: &'static str,
    ) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(match kind {
            ClientKind::Raw => Client::Raw(RawConnection::new(stream, address, path)),
            ClientKind::Hyper => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .context("HTTP handshake")?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Client::Hyper {
                    sender,
                    path,
                    host: address.to_string(),
                    answer: Bytes::new(),
                }
            }
        })
    }

    /// Sends `body` as a JSON POST and reads the whole answer: its status and body.
    async fn exchange(&mut self, body: Bytes) -> anyhow::Result<(StatusCode, &[u8])> {
        match self {
            Client::Raw(connection) => connection.exchange(&body).await,
            Client::Hyper {
                sender,
                path,
                host,
                answer,
            } => {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(*path)
                    .header(header::HOST, host.as_str())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))?;
                sender.ready().await.context("connection closed")?;
                let response = sender.send_request(request).await.context("request")?;
                let status = response.status();
                *answer = response
                    .into_body()
                    .collect()
                    .await
                    .context("reading the answer")?
                    .to_bytes();
                Ok((status, &answer[..]))
            }
        }
    }
}
/// An HTTP/1.1 client reduced to what this load needs: the request is the connection's fixed
/// head (method, path, host, content type), the body's length and the body, written in one
/// `write`; the answer is read into a reused buffer up to the end of its head, then up to
/// `content-length` bytes of body. An answer without `content-length`, chunked, or followed by
/// more bytes than it announced, is an error rather than a guess.
struct RawConnection {
    stream: TcpStream,
    /// `POST <path> HTTP/1.1`, host and content type, up to `content-length: `.
    head: Vec<u8>,
    request: Vec<u8>,
    answer: Vec<u8>,
    /// Where the last answer's body is in `answer`.
    body: std::ops::Range<usize>,
}

impl RawConnection {
    fn new(stream: TcpStream, address: SocketAddr, path: &str) -> RawConnection {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             content-length: "
        )
        .into_bytes();
        RawConnection {
            stream,
            head,
            request: Vec::with_capacity(4096),
            answer: Vec::with_capacity(4096),
            body: 0..0,
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> anyhow::Result<(StatusCode, &[u8])> {
        self.request.clear();
        self.request.extend_from_slice(&self.head);
        self.request
            .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        self.request.extend_from_slice(b"\r\n\r\n");
        self.request.extend_from_slice(body);
        self.stream
            .write_all(&self.request)
            .await
            .context("sending the request")?;

        self.answer.clear();
        let mut scanned = 0;
        let head_end = loop {
            self.read_more().await?;
            // The head's end may straddle two reads: look again from 3 bytes back.
            if let Some(at) = memchr::memmem::find(&self.answer[scanned..], b"\r\n\r\n") {
                break scanned + at + 4;
            }
            scanned = self.answer.len().saturating_sub(3);
            ensure!(self.answer.len() < 64 * 1024, "answer head over 64 KiB");
        };
        let (status, length) = parse_head(&self.answer[..head_end])?;
        let end = head_end + length;
        while self.answer.len() < end {
            self.read_more().await?;
        }
        ensure!(
            self.answer.len() == end,
            "{} bytes after the answer's announced end (one request is in flight)",
            self.answer.len() - end
        );
        self.body = head_end..end;
        Ok((status, &self.answer[self.body.clone()]))
    }

    /// Reads what the socket has (at least one byte) onto the end of `answer`.
    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.answer.capacity() - self.answer.len() < 2048 {
            self.answer.reserve(8192);
        }
        let read = self
            .stream
            .read_buf(&mut self.answer)
            .await
            .context("reading the answer")?;
        ensure!(read > 0, "the node closed the connection");
        Ok(())
    }
}

/// The status and `content-length` of an HTTP/1.1 answer's head (ending with its blank line).
fn parse_head(head: &[u8]) -> anyhow::Result<(StatusCode, usize)> {
    let text = std::str::from_utf8(head).context("answer head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("answer status line {status_line:?}"))?;
    let status = StatusCode::from_u16(code)?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().context("content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("answer with transfer-encoding {value:?}: only content-length is read");
        }
    }
    Ok((status, length.context("answer without content-length")?))
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Requests/s and latency quantiles (ms) of one measurement.
#[derive(Clone, Debug)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    note: String,
}

impl Figures {
    fn from_histogram(rps: f64, histogram: &Histogram<u64>, note: String) -> Figures {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
        Figures {
            rps,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            note,
        }
    }

    /// Each figure's median over the runs, separately.
    fn median(runs: &[Figures]) -> Figures {
        let of = |f: fn(&Figures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Figures {
            rps: of(|f| f.rps),
            p50_ms: of(|f| f.p50_ms),
            p99_ms: of(|f| f.p99_ms),
            p999_ms: of(|f| f.p999_ms),
            note: String::new(),
        }
    }

    fn line(&self) -> String {
        let p999 = if self.p999_ms.is_nan() {
            "  -  ".to_string()
        } else {
            format!("{:.3}", self.p999_ms)
        };
        let mut line = format!(
            "{:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {p999} ms",
            self.rps, self.p50_ms, self.p99_ms
        );
        if !self.note.is_empty() {
            line.push_str(&format!("  ({})", self.note));
        }
        line
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Workload.

/// Keys like `CacheManagerUtils`' (SHA-256 hex digests): 64 hex characters, all distinct.
struct Keys(Vec<String>);

impl Keys {
    fn new(count: usize) -> Keys {
        Keys(
            (0..count as u64)
                .map(|index| {
                    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
                    let mut key = String::with_capacity(64);
                    // The first word is the index itself (mixed), so keys never collide.
                    key.push_str(&format!("{:016x}", index ^ 0xA5A5_0000_0000_0000));
                    for _ in 0..3 {
                        key.push_str(&format!("{:016x}", splitmix(&mut state)));
                    }
                    key
                })
                .collect(),
        )
    }

    fn get(&self, index: usize) -> &str {
        &self.0[index]
    }
}

/// `size` bytes of JSON-safe text.
fn value_of(size: usize) -> String {
    (0..size)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect()
}

fn get_body(key: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"namespace\":\"{NAMESPACE}\",\"key\":\"{key}\",\"max_wait_time\":0}}"
    ))
}

fn set_body(key: &str, value: &str) -> Bytes {
    let mut body = Vec::with_capacity(value.len() + key.len() + 80);
    body.extend_from_slice(b"{\"namespace\":\"");
    body.extend_from_slice(NAMESPACE.as_bytes());
    body.extend_from_slice(b"\",\"key\":\"");
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(b"\",\"data\":\"");
    body.extend_from_slice(value.as_bytes());
    body.extend_from_slice(format!("\",\"ttl\":{TTL_SECONDS}}}").as_bytes());
    Bytes::from(body)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut state = seed ^ 0xD1B5_4A32_D192_ED03;
        Rng(splitmix(&mut state) | 1)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// The node.

struct Node {
    child: Option<Child>,
    address: SocketAddr,
    dir: PathBuf,
}

impl Node {
    /// Starts `perfpipe serve` in a fresh temporary directory; `max_cache_size` overrides the
    /// cache's bound (default config otherwise).
    fn start(binary: &Path, max_cache_size: Option<&str>) -> anyhow::Result<Node> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "perfpipe-plugin-cache-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            dir.join("data").display().to_string()
        );
        if let Some(size) = max_cache_size {
            config.push_str(&format!("[cache]\nmax_cache_size = {size:?}\n"));
        }
        let config_path = dir.join("perfpipe.toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut address = None;
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.split("address=").nth(1) {
                address = rest.split_whitespace().next().map(str::to_string);
                break;
            }
            seen.push(line);
        }
        let mut node = Node {
            child: Some(child),
            address: "127.0.0.1:0".parse()?,
            dir,
        };
        let Some(address) = address else {
            bail!(
                "the node did not log its address; it said:\n{}",
                seen.join("\n")
            );
        };
        node.address = address
            .parse()
            .with_context(|| format!("address {address}"))?;
        ensure!(node.address.ip().is_loopback(), "node listens on {address}");
        // Drain its log, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("node: {line}");
                }
            }
        });
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, and the node must exit 0 within a minute.
    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(child.id(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "the node exited with {status}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the node did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `/status`'s `cache_items`, over a plain blocking connection.
fn cache_items(address: SocketAddr) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut stream = StdStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let rest = answer
        .split("\"cache_items\":")
        .nth(1)
        .with_context(|| format!("no cache_items in /status: {answer}"))?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse()?)
}

fn perfpipe_binary(args: &Args) -> anyhow::Result<PathBuf> {
    let binary = args
        .binary
        .clone()
        .or_else(|| std::env::var_os("PERFPIPE_BIN").map(PathBuf::from))
        .or_else(|| option_env!("CARGO_BIN_EXE_perfpipe").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/release/perfpipe"));
    ensure!(
        binary.is_file(),
        "no perfpipe binary at {} (build it, or give --binary or PERFPIPE_BIN)",
        binary.display()
    );
    Ok(binary)
}

// ---------------------------------------------------------------------------------------------
// Redis.

struct Redis {
    server: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// A `redis-server --save '' --appendonly no` on a free loopback port; None when
    /// redis-server or redis-benchmark is not on PATH.
    fn start() -> anyhow::Result<Option<Redis>> {
        if !on_path("redis-server") || !on_path("redis-benchmark") {
            return Ok(None);
        }
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let dir =
            std::env::temp_dir().join(format!("perfpipe-redis-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let redis = Redis {
            server: Some(server),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while StdStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = redis.server.as_ref().map_or(0, Child::id);
        let version = Command::new("redis-server").arg("--version").output()?;
        println!(
            "  redis: pid {pid}, 127.0.0.1:{port}, {}",
            String::from_utf8_lossy(&version.stdout).trim()
        );
        Ok(Some(redis))
    }

    /// One `redis-benchmark -t set,get` run: (SET, GET).
    fn benchmark(&self, args: &Args) -> anyhow::Result<(Figures, Figures)> {
        let server_pid = self.server.as_ref().map_or(0, Child::id).to_string();
        let server_cpu = cpu_seconds(&server_pid)?;
        let children_cpu = children_cpu_seconds()?;
        let busy = machine_busy_seconds()?;
        let started = Instant::now();
        let output = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", "set,get"])
            .args(["-d", &args.value_size.to_string()])
            .args(["-c", &args.connections.to_string()])
            .args(["-n", &args.redis_requests.to_string()])
            .args(["-r", &args.items.to_string()])
            .args(["--precision", "3", "--csv"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-benchmark")?;
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        let server_cpu = cpu_seconds(&server_pid)? - server_cpu;
        let benchmark_cpu = children_cpu_seconds()? - children_cpu;
        let others = (machine_busy_seconds()? - busy - server_cpu - benchmark_cpu).max(0.0);
        ensure!(
            output.status.success(),
            "redis-benchmark failed: {:?}",
            output
        );
        let text = String::from_utf8_lossy(&output.stdout);
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
        // "p99_latency_ms","max_latency_ms"
        let row = |test: &str| -> anyhow::Result<Figures> {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("\"{test}\"")))
                .with_context(|| format!("no {test} row in redis-benchmark's output:\n{text}"))?;
            let fields: Vec<f64> = line
                .split(',')
                .skip(1)
                .map(|field| field.trim_matches('"').parse::<f64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("redis-benchmark row {line}"))?;
            ensure!(fields.len() >= 7, "redis-benchmark row {line}");
            Ok(Figures {
                rps: fields[0],
                p50_ms: fields[3],
                p99_ms: fields[5],
                // redis-benchmark prints no p99.9; its max stands in (marked in the line).
                p999_ms: f64::NAN,
                note: format!(
                    "max {:.3} ms; over both tests: redis-server {:.2} cores, \
                     redis-benchmark {:.2}, other processes {:.2}",
                    fields[6],
                    server_cpu / wall,
                    benchmark_cpu / wall,
                    others / wall
                ),
            })
        };
        Ok((row("SET")?, row("GET")?))
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// cutime + cstime of this process (its children waited for), in seconds.
fn children_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[13].parse::<u64>()? + fields[14].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

/// CPU seconds the whole machine spent busy (all cores, from `/proc/stat`), so that a phase
/// can tell how much of the machine processes other than those measured took.
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 =
        ticks.iter().take(8).sum::<u64>() - ticks.get(3).unwrap_or(&0) - ticks.get(4).unwrap_or(&0);
    Ok(busy as f64 / clock_ticks())
}

/// A `Vm...:` line of `/proc/PID/status`, in kB.
fn vm_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} value"))?
        .parse()?)
}
