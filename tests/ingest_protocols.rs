//! The other ingest protocols against a real node and real files: collectd-style Graphite
//! plaintext lines over TCP and UDP (templates, percent-decoded nodes, bad lines counted and
//! their neighbours kept, a name in perfpipe's own encoding landing in the same file), and
//! Telegraf- and nagflux-shaped InfluxDB line protocol on `/write` and `/api/v2/write`
//! (precisions, gzip, partial writes answered 400 naming the lines, tokens), and in a cluster of
//! two each point landing on its host's owner whichever node took it. Every point is
//! read back through `/api/v1/query` and from the Whisper files with `whisper-fetch`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, free_port, now, temp_dir, Node};
use serde_json::Value;

/// The value of `hsm` at `time` through `/api/v1/query`.
fn queried(node: &Node, hsm: &str, time: i64) -> Option<f64> {
    let answer = node.get(&format!(
        "/api/v1/query?hsm={}&start={}&end={}",
        hsm.replace('%', "%25")
            .replace(',', "%2C")
            .replace('=', "%3D")
            .replace(' ', "%20")
            .replace('/', "%2F"),
        time - 60,
        time + 60
    ));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let series = &answer.json()["series"][0];
    let (start, step) = (series["start"].as_i64()?, series["step"].as_i64()?);
    series["values"][((time - start) / step) as usize].as_f64()
}

/// The value at `time` of a Whisper file, as graphite's `whisper-fetch` reads it.
fn whisper_at(file: &Path, time: i64) -> Option<f64> {
    let slots = common::whisper_fetch(file, time - 60, time + 60);
    let step = slots.get(1).map_or(60, |slot| slot.0 - slots[0].0);
    slots
        .iter()
        .find(|(at, _)| *at <= time && time < at + step)
        .and_then(|(_, value)| *value)
}

fn node_status(node: &Node) -> Value {
    node.get("/status").json()
}

/// Waits until the node has logged `points` points of `protocol` (see `/status`).
fn wait_taken(node: &Node, protocol: &str, points: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = node_status(node);
        if status["protocols"][protocol]["points"].as_u64() >= Some(points) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{protocol}: not taken in time: {}",
            status["protocols"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `perfpipe serve --config CONFIG` with its log written to `log` (read by the test).
fn start_logging_to(config: &Path, log: &Path) -> Node {
    let child = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("perfpipe starts");
    // Owned at once, so a start that fails kills and reaps the process (Node's drop).
    let mut node = Node {
        child,
        address: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split(" address=").nth(1) {
            node.address = rest.split_whitespace().next().unwrap().to_string();
            return node;
        }
        assert!(Instant::now() < deadline, "the node did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn graphite_lines_over_tcp_and_udp() {
    let dir = temp_dir("ingest-graphite");
    let data = dir.join("data");
    let port = free_port();
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n[graphite]\nlisten = \"127.0.0.1:{port}\"\ntemplates = [\"collectd.* .host.service.metric*\", \"host.service.metric*\"]\n",
            data.display().to_string()
        ),
    );
    let log = dir.join("node.log");
    let mut node = start_logging_to(&config, &log);
    let t = (now() - 3600) / 60 * 60;

    // TCP: collectd's write_graphite lines, two bad ones among them, the last one without its
    // newline; sent in two writes, the first ending mid-line.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let lines = format!(
        "collectd.web01.cpu-0.cpu-idle 98.5 {t}\n\
         collectd.web01.cpu-0.cpu-idle 97.25 {}\n\
         collectd.web01.interface-eth0.if_octets.rx 1000 {t}\n\
         bad line here\n\
         collectd.web01.load.load.shortterm abc {t}\n\
         web%2D02.HTTP.time 0.5 {t}\r\n\
         collectd.web01.memory.memory-used 1234 {t}",
        t + 60
    );
    let (first, second) = lines.split_at(30);
    tcp.write_all(first.as_bytes()).unwrap();
    tcp.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    tcp.write_all(second.as_bytes()).unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    wait_taken(&node, "graphite_tcp", 5);

    // UDP: one datagram, a good line and a bad one.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        format!("collectd.db01.load.load.shortterm 0.75 {t}\nnot.enough 1\n").as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    wait_taken(&node, "graphite_udp", 1);
    node.wait_written(6);

    for (hsm, time, value) in [
        ("web01::cpu-0::cpu-idle", t, 98.5),
        ("web01::cpu-0::cpu-idle", t + 60, 97.25),
        ("web01::interface-eth0::if_octets.rx", t, 1000.0),
        ("web-02::HTTP::time", t, 0.5),
        ("web01::memory::memory-used", t, 1234.0),
        ("db01::load::load.shortterm", t, 0.75),
    ] {
        assert_eq!(queried(&node, hsm, time), Some(value), "{hsm} at {time}");
    }
    let whisper = data.join("whisper");
    assert_eq!(
        whisper_at(&whisper.join("web01/cpu%2D0/cpu%2Didle.wsp"), t + 60),
        Some(97.25)
    );
    assert_eq!(
        whisper_at(
            &whisper.join("web01/interface%2Deth0/if_octets%2Erx.wsp"),
            t
        ),
        Some(1000.0)
    );
    assert_eq!(
        whisper_at(&whisper.join("web%2D02/HTTP/time.wsp"), t),
        Some(0.5)
    );
    assert_eq!(
        whisper_at(&whisper.join("db01/load/load%2Eshortterm.wsp"), t),
        Some(0.75)
    );
    assert!(
        !whisper.join("web01/load").exists(),
        "the bad value wrote nothing"
    );

    let protocols = &node_status(&node)["protocols"];
    assert_eq!(
        protocols["graphite_tcp"],
        serde_json::json!({"lines": 7, "points": 5, "bad_lines": 2, "dropped": 0}),
        "{protocols}"
    );
    assert_eq!(
        protocols["graphite_udp"],
        serde_json::json!({"lines": 2, "points": 1, "bad_lines": 1, "dropped": 0}),
        "{protocols}"
    );
    assert_eq!(protocols["graphite_connections"], 1);
    // Each bad line is logged with its sender, its line number and why.
    let log = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("graphite: line not taken"))
        .collect();
    assert_eq!(logged.len(), 3, "{log}");
    assert!(
        logged[0].contains("line=4") && logged[0].contains(r#"value \"line\" is not a number"#),
        "{}",
        logged[0]
    );
    assert!(
        logged[1].contains("line=5") && logged[1].contains(r#"value \"abc\" is not a number"#),
        "{}",
        logged[1]
    );
    assert!(
        logged[2].contains("line=2") && logged[2].contains("2 fields, expected 3"),
        "{}",
        logged[2]
    );
    let metrics = node.get("/metrics").body;
    assert!(
        metrics.contains("perfpipe_ingest_bad_lines_total{protocol=\"graphite_tcp\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perfpipe_ingest_points_total{protocol=\"graphite_udp\"} 1"),
        "{metrics}"
    );

    // A series written as check results, then under its on-disk name (each node %XX-encoded,
    // as perfpipe's Graphite names are): one file, both points.
    let answer = node.post(
        "/api/v1/write",
        "text/plain",
        &format!("{t}||web-03||TCP/IP - LAN||OK||rta=1.5ms\n"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(format!("web%2D03.TCP%2FIP%20%2D%20LAN.rta 2.5 {}\n", t + 60).as_bytes())
        .unwrap();
    drop(tcp);
    wait_taken(&node, "graphite_tcp", 6);
    node.wait_written(8);
    let file = whisper.join("web%2D03/TCP%2FIP%20%2D%20LAN/rta.wsp");
    assert_eq!(whisper_at(&file, t), Some(1.5));
    assert_eq!(whisper_at(&file, t + 60), Some(2.5));

    // SIGTERM with a connection still open: the node stops cleanly.
    let mut open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.write_all(format!("web01.cpu.late 1 {}\n", t + 120).as_bytes())
        .unwrap();
    wait_taken(&node, "graphite_tcp", 7);
    assert_eq!(node.terminate(), Some(0));
    drop(open);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request with extra headers (the common helper sends none).
fn request(node: &Node, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(&node.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn line_protocol_on_write_and_v2_write() {
    let dir = temp_dir("ingest-line-protocol");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
            data.display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = (now() - 3600) / 60 * 60;
    let post = |path: &str, body: &str| request(&node, path, &[], body.as_bytes());

    // Telegraf's shape, nanoseconds (the default precision).
    let (status, body) = post(
        "/write?db=telegraf",
        &format!(
            "cpu,cpu=cpu0,host=web01 usage_idle=98.2,usage_user=1.1 {t}000000000\n\
             cpu,host=web01,cpu=cpu1 usage_idle=50i,usage_user=3u {t}000000000\n\
             system,host=web01 uptime=12345i,healthy=true,uptime_format=\"3 days\" {t}999999999\n"
        ),
    );
    assert_eq!((status, body.as_str()), (204, ""));
    // Every precision of 1.x.
    for (precision, timestamp, value) in [
        ("s", t.to_string(), 1.0),
        ("ms", format!("{}", (t + 60) * 1000 + 999), 2.0),
        ("u", format!("{}", (t + 120) * 1_000_000), 3.0),
        ("m", format!("{}", (t + 180) / 60), 4.0),
        ("h", format!("{}", t / 3600 + 1), 5.0),
    ] {
        let (status, body) = post(
            &format!("/write?db=telegraf&precision={precision}"),
            &format!("precise_{precision},host=web01 v={value} {timestamp}\n"),
        );
        assert_eq!(status, 204, "{precision}: {body}");
    }
    // 2.x, milliseconds, with a tag holding a slash and an escaped space.
    let (status, body) = request(
        &node,
        "/api/v2/write?org=o&bucket=b&precision=ms",
        &[("Authorization", "Token anything")],
        format!(
            "disk,host=db01,path=/var\\ lib used_percent=42.5 {}\n",
            t * 1000
        )
        .as_bytes(),
    );
    assert_eq!((status, body.as_str()), (204, ""));
    // nagflux's schema.
    let (status, body) = post(
        "/write?db=nagflux&precision=s",
        &format!(
            "metrics,host=web02,service=PING,performanceLabel=rta,unit=ms value=0.5,warn=100,crit=500 {t}\n"
        ),
    );
    assert_eq!((status, body.as_str()), (204, ""));
    // gzip, as Telegraf sends with content_encoding = "gzip".
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(format!("zipped,host=web01 v=7 {t}\n").as_bytes())
        .unwrap();
    let (status, body) = request(
        &node,
        "/write?db=telegraf&precision=s",
        &[("Content-Encoding", "gzip")],
        &gzip.finish().unwrap(),
    );
    assert_eq!((status, body.as_str()), (204, ""));

    // Bad lines: 400 naming each, the good lines beside them taken.
    let (status, body) = post(
        "/write?db=telegraf&precision=s",
        &format!(
            "mixed,host=web01 good=1 {t}\n\
             mixed,host=web01 bad= {t}\n\
             mixed good=2 {t}\n\
             mixed,host=web01 also_good=3 {t}\n"
        ),
    );
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let error = error["error"].as_str().unwrap();
    assert!(
        error.starts_with("partial write: unable to parse 'mixed,host=web01 bad= "),
        "{error}"
    );
    assert!(
        error.contains("(line 2)") && error.contains("(line 3)"),
        "{error}"
    );
    assert!(error.contains("no host tag \"host\""), "{error}");
    assert!(
        error.contains("2 points of the other lines taken"),
        "{error}"
    );
    // Nothing good at all: 400 without "partial".
    let (status, body) = post("/write?db=telegraf", "just garbage\n");
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("partial"), "{body}");
    // Parameters InfluxDB requires or refuses.
    for (path, named) in [
        ("/write?precision=s", "database is required"),
        ("/write?db=x&precision=days", "precision \\\"days\\\""),
        ("/api/v2/write?org=o", "bucket is required"),
        ("/api/v2/write?bucket=b", "organization is required"),
        (
            "/api/v2/write?org=o&bucket=b&precision=m",
            "precision \\\"m\\\"",
        ),
    ] {
        let (status, body) = post(path, &format!("x,host=h v=1 {t}\n"));
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(named), "{path}: {body}");
    }

    // 6 Telegraf points (the string field not among them), 5 precisions, v2, nagflux, gzip,
    // and the 2 good lines of the partial write.
    let points = 6 + 5 + 1 + 1 + 1 + 2;
    wait_taken(&node, "line_protocol", points);
    node.wait_written(points);
    for (hsm, time, value) in [
        ("web01::cpu,cpu=cpu0::usage_idle", t, 98.2),
        ("web01::cpu,cpu=cpu0::usage_user", t, 1.1),
        ("web01::cpu,cpu=cpu1::usage_idle", t, 50.0),
        ("web01::cpu,cpu=cpu1::usage_user", t, 3.0),
        ("web01::system::uptime", t, 12345.0),
        ("web01::system::healthy", t, 1.0),
        ("web01::precise_s::v", t, 1.0),
        ("web01::precise_ms::v", t + 60, 2.0),
        ("web01::precise_u::v", t + 120, 3.0),
        ("web01::precise_m::v", t + 180, 4.0),
        ("web01::precise_h::v", (t / 3600 + 1) * 3600, 5.0),
        ("db01::disk,path=/var lib::used_percent", t, 42.5),
        ("web02::PING::rta", t, 0.5),
        ("web01::zipped::v", t, 7.0),
        ("web01::mixed::good", t, 1.0),
        ("web01::mixed::also_good", t, 3.0),
    ] {
        assert_eq!(queried(&node, hsm, time), Some(value), "{hsm} at {time}");
    }
    // The unit of nagflux's lines reaches the catalogue.
    let metrics = node.get("/api/v1/hosts/web02/metrics").json();
    assert_eq!(metrics["metrics"][0]["uom"], "ms", "{metrics}");
    // String fields are not stored.
    assert!(!data.join("whisper/web01/system/uptime_format.wsp").exists());
    let whisper = data.join("whisper");
    assert_eq!(
        whisper_at(&whisper.join("web01/cpu%2Ccpu%3Dcpu0/usage_idle.wsp"), t),
        Some(98.2)
    );
    assert_eq!(
        whisper_at(
            &whisper.join("db01/disk%2Cpath%3D%2Fvar%20lib/used_percent.wsp"),
            t
        ),
        Some(42.5)
    );
    assert_eq!(
        whisper_at(&whisper.join("web02/PING/rta.wsp"), t),
        Some(0.5)
    );
    let protocols = &node_status(&node)["protocols"];
    assert_eq!(protocols["line_protocol"]["bad_lines"], 3, "{protocols}");
    assert_eq!(protocols["line_protocol_ignored_fields"], 1, "{protocols}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn line_protocol_takes_the_write_token_as_influxdb_clients_send_it() {
    let dir = temp_dir("ingest-line-protocol-auth");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[auth]\nwrite_tokens = [\"w-secret\"]\nquery_tokens = [\"q-secret\"]\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let line = format!("cpu,host=h v=1 {}\n", now());
    use base64::Engine as _;
    let basic = |user_password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    };
    let good_basic = basic("telegraf:w-secret");
    let bad_basic = basic("telegraf:nope");
    for (path, header, expected) in [
        ("/write?db=x", None, 401),
        ("/write?db=x&u=telegraf&p=w-secret", None, 204),
        ("/write?db=x&u=telegraf&p=nope", None, 401),
        ("/write?db=x", Some(good_basic.as_str()), 204),
        ("/write?db=x", Some(bad_basic.as_str()), 401),
        ("/write?db=x", Some("Token w-secret"), 204),
        ("/write?db=x", Some("Token q-secret"), 403),
        ("/api/v2/write?org=o&bucket=b", Some("Token w-secret"), 204),
        ("/api/v2/write?org=o&bucket=b", Some("Bearer w-secret"), 204),
        ("/api/v2/write?org=o&bucket=b", None, 401),
    ] {
        let headers: Vec<(&str, &str)> = header
            .map(|value| vec![("Authorization", value)])
            .unwrap_or_default();
        let (status, body) = request(&node, path, &headers, line.as_bytes());
        assert_eq!(status, expected, "{path} {header:?}: {body}");
    }
    // /ping is open, as InfluxDB's is.
    assert_eq!(node.get("/ping").status, 204);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_routes_graphite_and_line_protocol_points_to_their_owners() {
    let dir = temp_dir("ingest-cluster");
    let graphite_port = free_port();
    // Node 0 listens for Graphite plaintext.
    let (nodes, _urls) = common::start_cluster_with(&dir, 2, |i| {
        if i == 0 {
            format!("[graphite]\nlisten = \"127.0.0.1:{graphite_port}\"\n")
        } else {
            String::new()
        }
    });
    let hosts: Vec<String> = (0..12).map(|h| format!("host-{h:02}")).collect();
    let owners: Vec<usize> = hosts
        .iter()
        .map(|h| perfpipe::routing::owner_of_host(h, 2))
        .collect();
    assert!(owners.contains(&0) && owners.contains(&1), "{owners:?}");
    let t = (now() - 600) / 60 * 60;

    // Graphite lines to node 0, line protocol to node 1, for every host.
    let mut tcp = TcpStream::connect(("127.0.0.1", graphite_port)).unwrap();
    let lines: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{h}.load.load1 {i} {t}\n"))
        .collect();
    tcp.write_all(lines.as_bytes()).unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    let body: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("mem,host={h} used={}i {t}\n", i * 10))
        .collect();
    let (status, answer) = request(&nodes[1], "/write?db=x&precision=s", &[], body.as_bytes());
    assert_eq!((status, answer.as_str()), (204, ""));

    for (n, node) in nodes.iter().enumerate() {
        node.wait_written(2 * owners.iter().filter(|&&o| o == n).count() as u64);
    }
    for (i, host) in hosts.iter().enumerate() {
        let owner = owners[i];
        let file = |n: usize, service: &str, metric: &str| {
            dir.join(format!(
                "node{n}/whisper/host%2D{i:02}/{service}/{metric}.wsp"
            ))
        };
        assert_eq!(
            whisper_at(&file(owner, "load", "load1"), t),
            Some(i as f64),
            "{host}"
        );
        assert_eq!(
            whisper_at(&file(owner, "mem", "used"), t),
            Some(i as f64 * 10.0),
            "{host}"
        );
        assert!(!file(1 - owner, "load", "load1").exists(), "{host}");
        assert!(!file(1 - owner, "mem", "used").exists(), "{host}");
        // Either node answers for either owner.
        for node in &nodes {
            assert_eq!(
                queried(node, &format!("{host}::mem::used"), t),
                Some(i as f64 * 10.0)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What collectd and Telegraf send is graphed through the Graphite API: plaintext lines in
/// collectd's shape and Telegraf's line protocol, then `/render` and `/api/v1/query`.
#[test]
fn collectd_and_telegraf_points_render_through_the_graphite_api() {
    let dir = temp_dir("ingest-render");
    let port = free_port();
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n[graphite]\nlisten = \"127.0.0.1:{port}\"\ntemplates = [\"collectd.* .host.service.metric*\"]\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = start_logging_to(&config, &dir.join("node.log"));
    let t = (now() - 600) / 60 * 60;

    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let lines: String = (0..5)
        .map(|i| format!("collectd.web01.cpu-0.cpu-idle {} {}\n", 90 + i, t + i * 60))
        .collect();
    tcp.write_all(lines.as_bytes()).unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    wait_taken(&node, "graphite_tcp", 5);

    let telegraf: String = (0..5)
        .map(|i| {
            format!(
                "cpu,cpu=cpu0,host=web01 usage_idle={},usage_user={} {}\n",
                95.5 - i as f64,
                1.5 + i as f64,
                (t + i * 60) * 1_000_000_000
            )
        })
        .collect();
    let (status, body) = request(&node, "/write?db=telegraf", &[], telegraf.as_bytes());
    assert_eq!(status, 204, "{body}");
    node.wait_written(15);

    let render = |target: &str| -> Value {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("target", target);
        query.append_pair("from", &(t - 60).to_string());
        query.append_pair("until", &(t + 4 * 60).to_string());
        let answer = node.get(&format!("/render?{}", query.finish()));
        assert_eq!(answer.status, 200, "{target}: {}", answer.body);
        answer.json()
    };
    let values = |series: &Value| -> Vec<Option<f64>> {
        series["datapoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_f64())
            .collect()
    };
    // collectd: host web01, service cpu-0, metric cpu-idle, in the Graphite API's encoding.
    let collectd = render("web01.cpu%2D0.cpu%2Didle");
    assert_eq!(collectd[0]["target"], "web01.cpu%2D0.cpu%2Didle");
    assert_eq!(
        values(&collectd[0]),
        [90.0, 91.0, 92.0, 93.0, 94.0].map(Some).to_vec()
    );
    // Telegraf: service `cpu,cpu=cpu0`, one series per field, found with a wildcard.
    let telegraf = render("web01.cpu%2C*.usage_*");
    let names: Vec<&str> = telegraf
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "web01.cpu%2Ccpu%3Dcpu0.usage_idle",
            "web01.cpu%2Ccpu%3Dcpu0.usage_user"
        ]
    );
    assert_eq!(
        values(&telegraf[0]),
        [95.5, 94.5, 93.5, 92.5, 91.5].map(Some).to_vec()
    );
    let summed = render("sumSeries(web01.cpu%2Ccpu%3Dcpu0.usage_*)");
    assert_eq!(values(&summed[0]), [Some(97.0); 5].to_vec());
    assert_eq!(
        queried(&node, "web01::cpu,cpu=cpu0::usage_user", t + 120),
        Some(3.5)
    );
}
