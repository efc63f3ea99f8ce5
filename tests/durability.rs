//! kill -9 under load: clients write numbered points as fast as the node answers and record
//! what it acknowledged; the node is killed with SIGKILL at a random moment and started again,
//! round after round. Afterwards every acknowledged point is in the Whisper files, read back
//! with graphite's own `whisper` module, and no slot holds a value that was never sent there.
//!
//! 20 rounds here; `PERFPIPE_KILL_ROUNDS=200` for the soak (`scripts/soak`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{config, now, temp_dir, Node, Poster};

/// Client threads, each with its own hosts and its own numbering.
const CLIENTS: usize = 4;
/// Hosts per client: one point each per request.
const HOSTS_PER_CLIENT: usize = 10;
/// Requests per client at most: one minute apart, they fit the 14 days the files keep (the
/// 200-round soak writes about 12,000 per client).
const MAX_REQUESTS: usize = 19_000;

fn rounds() -> usize {
    std::env::var("PERFPIPE_KILL_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(20)
}

/// The kill moment of `round`, 100–800 ms after the start, from `seed`: the moments vary per
/// run, and the seed is printed so a failing run can be repeated (`PERFPIPE_KILL_SEED`).
/// (`DefaultHasher::new` hashes the same everywhere: a deterministic spread of the pair.)
fn kill_after(seed: u64, round: usize) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (seed, round).hash(&mut hasher);
    Duration::from_millis(100 + hasher.finish() % 700)
}

fn host(client: usize, h: usize) -> String {
    format!("c{client}-h{h}")
}

/// Runs one client until `stop`, from request `next`; returns the requests acknowledged and
/// where to go on from (a request not answered is never reused: its points may be stored).
fn client(
    address: String,
    client: usize,
    first: i64,
    mut next: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<usize>, usize) {
    let poster = Poster::new(address);
    let mut acknowledged = Vec::new();
    while next < MAX_REQUESTS && !stop.load(Ordering::Relaxed) {
        let i = next;
        next += 1;
        let lines: String = (0..HOSTS_PER_CLIENT)
            .map(|h| {
                format!(
                    "{}||{}||Seq||OK||n={i}\n",
                    first + i as i64 * 60,
                    host(client, h)
                )
            })
            .collect();
        match poster.try_post("/api/v1/write", "text/plain", &lines) {
            Some(200) => acknowledged.push(i),
            Some(_) => {}
            None => break, // killed
        }
    }
    (acknowledged, next)
}

/// A series as graphite's own `whisper.fetch` reads it from a file.
struct WhisperSeries {
    start: i64,
    step: i64,
    values: Vec<Option<f64>>,
}

impl WhisperSeries {
    /// The value of the slot holding time `t`.
    fn at(&self, t: i64) -> Option<f64> {
        let slot = usize::try_from((t - self.start).div_euclid(self.step)).ok()?;
        self.values.get(slot).copied().flatten()
    }
}

/// Reads `files` (paths under `root`) with graphite's `whisper.fetch` over `from..until`, one
/// Python process (Debian's `python3-whisper`) for them all; a missing file reads as empty.
fn whisper_fetch(root: &Path, files: &[String], from: i64, until: i64) -> Vec<WhisperSeries> {
    let script = r#"
import json, os, sys, whisper
root, first, until = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for name in sys.argv[4:]:
    path = os.path.join(root, name)
    if not os.path.exists(path):
        out.append([first, 60, []])
        continue
    (start, end, step), values = whisper.fetch(path, first, until)
    out.append([start, step, values])
print(json.dumps(out))
"#;
    let output = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .arg(from.to_string())
        .arg(until.to_string())
        .args(files)
        .output()
        .expect("python3 with graphite's whisper (python3-whisper) runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fetched: Vec<(i64, i64, Vec<Option<f64>>)> =
        serde_json::from_slice(&output.stdout).unwrap();
    fetched
        .into_iter()
        .map(|(start, step, values)| WhisperSeries {
            start,
            step,
            values,
        })
        .collect()
}

/// The file of host `host`'s `service`/`metric` under a Whisper root (the layout encodes `-`
/// as `%2D`).
fn whisper_file(host: &str, service: &str, metric: &str) -> String {
    format!("{}/{service}/{metric}.wsp", host.replace('-', "%2D"))
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_point() {
    let dir = temp_dir("kill9");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n\
             [whisper]\nretentions = \"60s:14d\"\n\
             [enqueuer]\nmax_batch_age = \"300ms\"\n\
             [wal]\nsegment_age = \"200ms\"\n",
            data.display().to_string()
        ),
    );
    let seed = std::env::var("PERFPIPE_KILL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| now() as u64 | 1);
    eprintln!("kill moments from seed {seed} (PERFPIPE_KILL_SEED)");
    let first = (now() - 13 * 86_400 - 20 * 3600) / 60 * 60;
    let mut next = [0usize; CLIENTS];
    let mut acknowledged: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); CLIENTS];

    let rounds = rounds();
    for round in 0..rounds {
        let node = Node::start(&["--config", config.to_str().unwrap()]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (address, stop, from) = (node.address.clone(), stop.clone(), next[c]);
                std::thread::spawn(move || client(address, c, first, from, stop))
            })
            .collect();
        std::thread::sleep(kill_after(seed, round));
        let mut node = node;
        node.child.kill().expect("SIGKILL");
        node.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let mut acked_this_round = 0;
        for (c, client) in clients.into_iter().enumerate() {
            let (acked, went_to) = client.join().unwrap();
            acked_this_round += acked.len();
            acknowledged[c].extend(acked);
            next[c] = went_to;
        }
        eprintln!("round {round}: {acked_this_round} requests acknowledged before SIGKILL");
    }
    let total: usize = acknowledged.iter().map(BTreeSet::len).sum();
    assert!(
        total > rounds * CLIENTS,
        "the node took writes between kills ({total} requests acknowledged)"
    );

    // A last start replays what is left, and deletes each replayed segment once its points
    // are written, while running; SIGTERM writes everything out.
    let mut node = Node::start(&["--config", config.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = node.get("/status").json();
        if status["wal"]["segments"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replayed segments not deleted: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.terminate(), Some(0));

    let mut files = Vec::new();
    for c in 0..CLIENTS {
        for h in 0..HOSTS_PER_CLIENT {
            files.push(whisper_file(&host(c, h), "Seq", "n"));
        }
    }
    let fetched = whisper_fetch(&data.join("whisper"), &files, first - 60, now());
    let mut checked = 0;
    for (c, acknowledged) in acknowledged.iter().enumerate() {
        for h in 0..HOSTS_PER_CLIENT {
            let series = &fetched[c * HOSTS_PER_CLIENT + h];
            for &i in acknowledged {
                assert_eq!(
                    series.at(first + i as i64 * 60),
                    Some(i as f64),
                    "{}, request {i}: acknowledged, not stored",
                    host(c, h)
                );
                checked += 1;
            }
            // Nothing stored that was not sent to that minute.
            for (slot, value) in series.values.iter().enumerate() {
                if let Some(value) = value {
                    let i = (series.start + slot as i64 * series.step - first) / 60;
                    assert_eq!(*value, i as f64, "{}: slot {slot}", host(c, h));
                }
            }
        }
    }
    eprintln!("{checked} acknowledged points found, over {rounds} kills");
    // Every segment was deleted once written.
    let left = std::fs::read_dir(data.join("wal"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "the log is empty after a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three nodes; one is stopped while a client keeps writing through the other two for 30 s,
/// then started again. Every write is acknowledged (the down owner's points are handed off),
/// every point of its hosts reaches it, and its RRD files saw them in order and once each:
/// RRD refuses a timestamp at or before its last update, so a point delivered twice or out of
/// order would be counted late.
#[cfg(feature = "rrd")]
#[test]
fn a_down_peer_gets_its_points_in_order_once_it_is_back() {
    use common::free_port;
    use perfpipe::routing::owner_of_host;

    const HOSTS: usize = 30;
    let dir = temp_dir("peer-down");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let config_of = |i: usize| {
        let path = dir.join(format!("node{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:{}\"\ndata_dir = {:?}\nbackends = [\"whisper\", \"rrd\"]\n\
                 [whisper]\nretentions = \"60s:2d\"\n[rrd]\nstep = 60\nheartbeat = 120\n\
                 rras = [\"RRA:AVERAGE:0.5:1:3000\"]\n\
                 [cluster]\nnodes = {:?}\nself = {:?}\n\
                 [enqueuer]\nmax_batch_age = \"100ms\"\nhandoff_hold = \"10s\"\n",
                ports[i],
                dir.join(format!("node{i}")).display().to_string(),
                urls,
                urls[i]
            ),
        )
        .unwrap();
        path
    };
    let configs: Vec<_> = (0..3).map(config_of).collect();
    let start = |i: usize| Node::start_with(&["--config", configs[i].to_str().unwrap()]);
    let mut nodes: Vec<Node> = (0..3).map(start).collect();
    let host = |h: usize| format!("host-{h:02}");
    let down_hosts: Vec<usize> = (0..HOSTS)
        .filter(|&h| owner_of_host(&host(h), 3) == 2)
        .collect();
    assert!(down_hosts.len() >= 3, "node 2 owns some hosts");

    // The client writes request i (one point per host at first + i minutes, value i) through
    // nodes 0 and 1 in turn, never node 2, until told to stop, as a load balancer would: every
    // host's points take both paths, so node 2's points wait in two hint logs that are
    // delivered independently. Node 2 holds delivered points (`handoff_hold`) so that both
    // backlogs are written together, in time order (RRD would count older ones late).
    let first = (now() - 46 * 3600) / 60 * 60;
    let stop = Arc::new(AtomicBool::new(false));
    let entry = [nodes[0].address.clone(), nodes[1].address.clone()];
    let client_stop = stop.clone();
    let client = std::thread::spawn(move || {
        let posters = [Poster::new(entry[0].clone()), Poster::new(entry[1].clone())];
        let mut sent = 0usize;
        while !client_stop.load(Ordering::Relaxed) && sent < 2500 {
            let path = sent % 2;
            let lines: String = (0..HOSTS)
                .map(|h| {
                    format!(
                        "{}||{}||Seq||OK||n={sent}\n",
                        first + sent as i64 * 60,
                        host(h)
                    )
                })
                .collect();
            let status = posters[path].try_post("/api/v1/write", "text/plain", &lines);
            assert_eq!(status, Some(200), "request {sent} to node {path}");
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    });

    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(nodes[2].terminate(), Some(0));
    std::thread::sleep(Duration::from_secs(30));
    let backlog_for_2 = |node: &Node| {
        let status = node.get("/status").json();
        status["handoff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|peer| peer["peer"] == urls[2].as_str())
            .unwrap()
            .clone()
    };
    for node in &nodes[..2] {
        let backlog = backlog_for_2(node);
        assert!(
            backlog["bytes"].as_u64().unwrap() > 0,
            "points for node 2 kept: {backlog}"
        );
    }
    nodes[2] = start(2);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let sent = client.join().unwrap();
    eprintln!("{sent} requests acknowledged, with node 2 down for 30 s of them");

    // Every hint delivered, then everything written out.
    for node in &nodes[..2] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = node.get("/status").json();
            let waiting: u64 = status["handoff"]
                .as_array()
                .unwrap()
                .iter()
                .map(|peer| peer["segments"].as_u64().unwrap())
                .sum();
            if waiting == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hints not delivered: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let delivered: u64 = nodes[..2]
        .iter()
        .map(|node| backlog_for_2(node)["delivered"].as_u64().unwrap())
        .sum();
    assert!(delivered > 0, "points went through the hint logs");
    nodes[2].wait_written((down_hosts.len() * sent) as u64 / 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = nodes[2].get("/status").json();
        if status["queued_points"] == 0 || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["points"]["duplicates"], 0, "{status}");
    let rrd = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|backend| backend["name"] == "rrd")
        .unwrap()
        .clone();
    assert_eq!(rrd["late"], 0, "in order and once each: {status}");
    for node in &mut nodes {
        assert_eq!(node.terminate(), Some(0));
    }

    // Every point of node 2's hosts, in its files (graphite's whisper reads them).
    let files: Vec<String> = down_hosts
        .iter()
        .map(|&h| whisper_file(&host(h), "Seq", "n"))
        .collect();
    let fetched = whisper_fetch(&dir.join("node2/whisper"), &files, first - 60, now());
    for (file, series) in files.iter().zip(&fetched) {
        for i in 0..sent {
            assert_eq!(
                series.at(first + i as i64 * 60),
                Some(i as f64),
                "{file}, request {i}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a tmpfs of `size` at `dir` (root, or passwordless sudo, is needed; the test command
/// runs as root on CI machines). Unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut mount = if root {
            Command::new("mount")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "mount"]);
            sudo
        };
        let status = mount
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root or sudo -n");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let _ = if root {
            Command::new("umount").arg(&self.0).status()
        } else {
            Command::new("sudo")
                .args(["-n", "umount"])
                .arg(&self.0)
                .status()
        };
    }
}

/// The Whisper tree on a file system of its own (a mount inside the data dir, as operators put
/// big trees on disks of their own): deleting a host moves its directory to the trash, which
/// lies on the data dir's file system, so the move cannot be a rename.
#[test]
fn a_host_on_another_file_system_is_deleted_into_the_trash() {
    let dir = temp_dir("delete-cross-fs");
    let data = dir.join("data");
    let _mount = SmallDisk::mount(&data.join("whisper"), "16m");
    let host_dir = data.join("whisper/web%2D01");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"50ms\"\n",
            data.display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 3600) / 60 * 60;
    let lines = format!("{t}||web-01||PING||OK||rta=1ms pl=0%\n");
    assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
    node.wait_written(2);
    let rta = host_dir.join("PING/rta.wsp");
    assert!(rta.is_file());
    let written = std::fs::read(&rta).unwrap();

    let answer = node.request("DELETE", "/api/v1/hosts/web-01", None, b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!rta.exists(), "the host's files left its file system");
    let trashed: Vec<std::path::PathBuf> = std::fs::read_dir(data.join("trash"))
        .unwrap()
        .map(|folder| folder.unwrap().path().join("whisper/web%2D01/PING/rta.wsp"))
        .filter(|path| path.is_file())
        .collect();
    assert_eq!(trashed.len(), 1, "in the trash once");
    assert_eq!(
        std::fs::read(&trashed[0]).unwrap(),
        written,
        "byte for byte"
    );
    drop(node);
    drop(_mount);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The data dir on a small tmpfs, filled up while a client writes: the node answers 503 (its
/// log has no room) instead of acknowledging, the Whisper writes pause, and once space is freed
/// both resume; every acknowledged point ends up in the files.
#[test]
fn a_full_disk_pauses_writes_and_loses_no_acknowledged_point() {
    let dir = temp_dir("disk-full");
    let data = dir.join("data");
    let disk = SmallDisk::mount(&data, "64m");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n\
             [whisper]\nretentions = \"60s:2d\"\n\
             [enqueuer]\nmax_batch_age = \"100ms\"\n\
             [wal]\nsegment_size = \"256KB\"\nsegment_age = \"200ms\"\n",
            data.display().to_string()
        ),
    );
    let mut node = Node::start(&["--config", config.to_str().unwrap()]);
    // All but about 600 KB taken by a file the test will delete: room for a dozen new
    // series (a file of two days of minutes is 34 KB) and a little log. Once it is deleted
    // there is room for hundreds more, so the node also has room to stop cleanly (its
    // last-values file, the flush).
    let filler = data.join("filler");
    let free = {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&data)
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    std::fs::write(&filler, vec![1u8; (free - 600 * 1024) as usize]).unwrap();

    // Request i: a point for each of 4 new hosts, value i.
    let t = (now() - 3600) / 60 * 60;
    let host = |i: usize, k: usize| format!("r{i}-h{k}");
    let request = |i: usize| -> String {
        (0..4)
            .map(|k| format!("{t}||{}||Disk||OK||n={i}\n", host(i, k)))
            .collect()
    };
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut i = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while refused < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled up ({} acknowledged)",
            acknowledged.len()
        );
        let answer = node.post("/api/v1/write", "text/plain", &request(i));
        match answer.status {
            200 => acknowledged.push(i),
            503 => {
                refused += 1;
                assert!(
                    !answer.body.contains(data.to_str().unwrap()),
                    "the answer names no path: {}",
                    answer.body
                );
                assert!(
                    answer.head.to_ascii_lowercase().contains("retry-after"),
                    "{}",
                    answer.head
                );
            }
            other => panic!("request {i}: {other} {}", answer.body),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "disk full after {} acknowledged requests; {refused} answered 503",
        acknowledged.len()
    );

    // Space returns: writes are taken again.
    std::fs::remove_file(&filler).unwrap();
    let resumed = (0..200).find_map(|_| {
        let answer = node.post("/api/v1/write", "text/plain", &request(i));
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
        (answer.status == 200).then_some(i - 1)
    });
    let resumed = resumed.expect("writes taken again once space returned");
    acknowledged.push(resumed);
    for _ in 0..10 {
        let answer = node.post("/api/v1/write", "text/plain", &request(i));
        assert_eq!(answer.status, 200, "{}", answer.body);
        acknowledged.push(i);
        i += 1;
    }
    assert_eq!(node.terminate(), Some(0));

    let files: Vec<String> = acknowledged
        .iter()
        .flat_map(|&i| (0..4).map(move |k| whisper_file(&host(i, k), "Disk", "n")))
        .collect();
    let fetched = whisper_fetch(&data.join("whisper"), &files, t - 60, t + 60);
    for (n, series) in fetched.iter().enumerate() {
        let i = acknowledged[n / 4];
        assert_eq!(
            series.at(t),
            Some(i as f64),
            "{}: acknowledged, not stored",
            files[n]
        );
    }
    eprintln!("{} acknowledged requests all stored", acknowledged.len());
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `influxd` (Debian's `influxdb`) with its files in `dir` on a fixed port, so that it can
/// be stopped and started again over the same data.
struct Influxd {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
    port: u16,
}

impl Influxd {
    fn new(dir: &Path) -> Influxd {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let port = common::free_port();
        let rpc_port = common::free_port();
        let root = dir.display();
        std::fs::write(
            dir.join("influxdb.conf"),
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc_port}\"\n\
                 [meta]\n  dir = \"{root}/meta\"\n\
                 [data]\n  dir = \"{root}/data\"\n  wal-dir = \"{root}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n"
            ),
        )
        .unwrap();
        let mut server = Influxd {
            child: None,
            dir,
            port,
        };
        server.start();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("influxd.log")).unwrap();
        let child = Command::new("influxd")
            .args(["run", "-config"])
            .arg(self.dir.join("influxdb.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("influxd runs (Debian package influxdb)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(answer) = ureq::get(&format!("{}/ping", self.url())).call() {
                if answer.status() == 204 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("influxd did not answer /ping");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn query(&self, statement: &str) -> serde_json::Value {
        let mut answer = ureq::post(&format!("{}/query", self.url()))
            .query("db", "perfpipe")
            .query("epoch", "s")
            .send_form([("q", statement)])
            .unwrap();
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// InfluxDB stopped for 20 s while a client writes to a node storing in Whisper and InfluxDB:
/// the node keeps acknowledging (the points wait in its log and queues, retried with backoff),
/// Whisper goes on being written meanwhile. Then the node is killed (SIGKILL) before InfluxDB
/// is back, so what InfluxDB still owed lives only in the log (whose segments, sealed every
/// second, must not have been deleted while InfluxDB owed them); InfluxDB and the node are
/// started again, and every acknowledged point is in InfluxDB.
#[test]
fn influxdb_down_for_20_s_loses_no_acknowledged_point() {
    const HOSTS: usize = 10;
    let dir = temp_dir("influx-down");
    let mut influx = Influxd::new(&dir.join("influxd"));
    influx.query("CREATE DATABASE perfpipe");
    let port = common::free_port();
    let config = config(
        &dir,
        &format!(
            "listen = \"127.0.0.1:{port}\"\n\
             data_dir = {:?}\nbackends = [\"influxdb\", \"whisper\"]\n\
             [influxdb]\nurl = {:?}\ndb = \"perfpipe\"\nretries = 1\nretry_backoff = \"100ms\"\n\
             [enqueuer]\nmax_batch_age = \"100ms\"\n[wal]\nsegment_age = \"1s\"\n",
            dir.join("data").display().to_string(),
            influx.url()
        ),
    );
    let mut node = Node::start_with(&["--config", config.to_str().unwrap()]);

    let first = (now() - 20 * 3600) / 60 * 60;
    let stop = Arc::new(AtomicBool::new(false));
    let (address, client_stop) = (node.address.clone(), stop.clone());
    let client = std::thread::spawn(move || {
        let poster = Poster::new(address);
        let mut acknowledged = Vec::new();
        let mut i = 0usize;
        while !client_stop.load(Ordering::Relaxed) {
            let lines: String = (0..HOSTS)
                .map(|h| format!("{}||h{h}||Seq||OK||n={i}\n", first + i as i64 * 60))
                .collect();
            if poster.try_post("/api/v1/write", "text/plain", &lines) == Some(200) {
                acknowledged.push(i);
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        acknowledged
    });

    std::thread::sleep(Duration::from_secs(2));
    influx.stop();
    std::thread::sleep(Duration::from_secs(5));
    let whisper_written =
        |status: &serde_json::Value| status["backends"][1]["written"].as_u64().unwrap();
    let early = node.get("/status").json();
    std::thread::sleep(Duration::from_secs(15));
    let status = node.get("/status").json();
    assert!(
        status["backends"][0]["retries"].as_u64().unwrap() > 0,
        "the node retried InfluxDB while it was down: {status}"
    );
    assert!(
        whisper_written(&status) > whisper_written(&early) + 1000,
        "Whisper went on while InfluxDB was down: {early} then {status}"
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    influx.start();
    node = Node::start_with(&["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let acknowledged = client.join().unwrap();
    eprintln!(
        "{} requests acknowledged, InfluxDB down for 20 s of them",
        acknowledged.len()
    );
    assert!(acknowledged.len() > 500, "the node kept acknowledging");
    assert_eq!(node.terminate(), Some(0));

    let answer = influx.query("SELECT \"value\" FROM \"metrics\" GROUP BY \"host\"");
    let mut stored = std::collections::HashSet::new();
    for series in answer["results"][0]["series"].as_array().unwrap() {
        let host = series["tags"]["host"].as_str().unwrap().to_owned();
        for row in series["values"].as_array().unwrap() {
            // Values are whole numbers here: compared as bits.
            stored.insert((
                host.clone(),
                row[0].as_i64().unwrap(),
                row[1].as_f64().unwrap().to_bits(),
            ));
        }
    }
    for &i in &acknowledged {
        for h in 0..HOSTS {
            let point = (format!("h{h}"), first + i as i64 * 60, (i as f64).to_bits());
            assert!(
                stored.contains(&point),
                "acknowledged, not in InfluxDB: {point:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host deleted while InfluxDB is down: the flushes InfluxDB still owes lose that host's
/// series, so once InfluxDB is back it gets the other hosts' points and none of the deleted
/// one's (which would otherwise bring the host back in the one store that missed the delete).
#[test]
fn a_host_deleted_while_a_store_is_down_does_not_come_back() {
    let dir = temp_dir("delete-stalled");
    let mut influx = Influxd::new(&dir.join("influxd"));
    influx.query("CREATE DATABASE perfpipe");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\nbackends = [\"whisper\", \"influxdb\"]\n\
             [influxdb]\nurl = {:?}\ndb = \"perfpipe\"\nretries = 1\nretry_backoff = \"100ms\"\n\
             [enqueuer]\nmax_batch_age = \"100ms\"\n",
            dir.join("data").display().to_string(),
            influx.url()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    influx.stop();
    let t = (now() - 3600) / 60 * 60;
    let lines: String = (0..20)
        .flat_map(|i| {
            ["keep", "gone"].map(|host| format!("{}||{host}||Load||OK||load1={i}\n", t + i * 60))
        })
        .collect();
    let answer = node.post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Whisper has them; InfluxDB owes them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.get("/status").json()["backends"][0]["written"].as_u64() < Some(40) {
        assert!(
            std::time::Instant::now() < deadline,
            "not written to Whisper"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deleted = node.request("DELETE", "/api/v1/hosts/gone", None, b"");
    assert_eq!(deleted.status, 200, "{}", deleted.body);

    influx.start();
    let count = |host: &str| -> usize {
        let answer = influx.query(&format!(
            "SELECT \"value\" FROM \"metrics\" WHERE \"host\" = '{host}'"
        ));
        answer["results"][0]["series"][0]["values"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count("keep") < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "InfluxDB never got the kept host's points"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The kept host's flushes carried the deleted host's points too; none of them arrived.
    assert_eq!(count("gone"), 0, "the deleted host came back in InfluxDB");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host deleted, then the node killed (SIGKILL) while the deleted points' log segment is
/// still there: the restarted node replays the log without them, so the host stays deleted,
/// and the other host's points are all there.
/// A node over `dir/data` whose write-ahead log keeps its segments for an hour (so a kill finds
/// what was written still logged) and whose queues are written after 100 ms; its config file.
fn start_keeping_the_log(dir: &Path) -> (std::path::PathBuf, Node) {
    let config = config(
        dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n[wal]\nsegment_age = \"1h\"\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    (config, node)
}

#[test]
fn a_rename_survives_kill_9_before_the_log_is_trimmed() {
    // A host and one service of another host renamed, then the node killed while the points
    // logged under the old names are still in the log: after the restart the old names must
    // not come back (the points are in the renamed files already).
    let dir = temp_dir("rename-kill");
    let (config, mut node) = start_keeping_the_log(&dir);
    let t = (now() - 3600) / 60 * 60;
    let lines: String = (0..20)
        .flat_map(|i| {
            [("old", "Load"), ("both", "Disk"), ("both", "Stays")]
                .map(|(host, service)| format!("{}||{host}||{service}||OK||m={i}\n", t + i * 60))
        })
        .collect();
    let answer = node.post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    node.wait_written(60);
    for query in [
        "host=old&to_host=new",
        "host=both&to_host=both&service=Disk&to_service=Storage",
    ] {
        let renamed = node.request("POST", &format!("/api/v1/rename?{query}"), None, b"");
        assert_eq!(renamed.status, 200, "{query}: {}", renamed.body);
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let node = Node::start(&["--config", config.to_str().unwrap()]);
    node.wait_written(20);
    std::thread::sleep(Duration::from_millis(500));
    let whisper = dir.join("data/whisper");
    // (The rename leaves the old names' directories, empty.)
    for old in ["old/Load/m.wsp", "both/Disk/m.wsp"] {
        assert!(!whisper.join(old).exists(), "{old} came back");
    }
    for kept in ["new/Load/m.wsp", "both/Storage/m.wsp", "both/Stays/m.wsp"] {
        assert!(whisper.join(kept).exists(), "{kept} missing");
    }
    let status = node.get("/status").json();
    let written = status["backends"][0]["written"].as_u64().unwrap();
    assert_eq!(
        written, 20,
        "replayed: only the points of the series never renamed: {status}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deletion_survives_kill_9_before_the_log_is_trimmed() {
    let dir = temp_dir("delete-kill");
    let (config, mut node) = start_keeping_the_log(&dir);
    let t = (now() - 3600) / 60 * 60;
    let lines: String = (0..20)
        .flat_map(|i| {
            ["keep", "gone"].map(|host| format!("{}||{host}||Load||OK||load1={i}\n", t + i * 60))
        })
        .collect();
    let answer = node.post("/api/v1/write", "text/plain", &lines);
    assert_eq!(answer.status, 200, "{}", answer.body);
    node.wait_written(40);
    let deleted = node.request("DELETE", "/api/v1/hosts/gone", None, b"");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let node = Node::start(&["--config", config.to_str().unwrap()]);
    node.wait_written(20);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.host_names(), ["keep"]);
    assert!(
        !dir.join("data/whisper/gone").exists(),
        "the deleted host's files came back"
    );
    let status = node.get("/status").json();
    let written = status["backends"][0]["written"].as_u64().unwrap();
    assert_eq!(
        written, 20,
        "replayed: only the kept host's points: {status}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
