//! The direct path of `get_data`/`set_data` (src/fastpath.rs) seen from a raw TCP client:
//! pipelined requests answered in order on one connection, requests arriving a byte at a
//! time, a connection that goes on with other requests (handed to hyper mid-way), refusals
//! with their statuses, `Connection: close`, and a node stopping with requests in progress.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{config, temp_dir, Node};

/// A plugin call as the wire carries it.
fn call(path: &str, body: &str, extra_headers: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nReferer: test\r\nContent-Type: application/json\r\n\
         {extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One answer read from a keep-alive connection: status, head, body (up to Content-Length).
fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String, String) {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(pending[..end].to_vec()).unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            let start = end + 4;
            while pending.len() < start + length {
                let mut chunk = [0u8; 65536];
                let read = stream.read(&mut chunk).unwrap();
                assert!(read > 0, "connection closed inside an answer");
                pending.extend_from_slice(&chunk[..read]);
            }
            let body = String::from_utf8(pending[start..start + length].to_vec()).unwrap();
            pending.drain(..start + length);
            let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            return (status, head, body);
        }
        let mut chunk = [0u8; 65536];
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before an answer");
        pending.extend_from_slice(&chunk[..read]);
    }
}

fn connect(node: &Node) -> TcpStream {
    let stream = TcpStream::connect(&node.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn pipelined_and_trickled_calls_are_answered_in_order_then_hyper_takes_over() {
    let dir = temp_dir("fastpath-pipeline");
    let node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
    let mut stream = connect(&node);
    let mut pending = Vec::new();

    // Twenty sets and twenty gets in one write: forty answers, in order.
    let mut burst = String::new();
    for n in 0..20 {
        let data = format!("value \"{n}\" é");
        let body =
            serde_json::json!({"namespace": "ns", "key": format!("k{n}"), "data": data, "ttl": 60});
        burst.push_str(&call("/set_data", &body.to_string(), ""));
    }
    for n in 0..20 {
        let body = serde_json::json!({"namespace": "ns", "key": format!("k{n}")});
        burst.push_str(&call("/get_data", &body.to_string(), ""));
    }
    stream.write_all(burst.as_bytes()).unwrap();
    for _ in 0..20 {
        let (status, head, body) = read_answer(&mut stream, &mut pending);
        assert_eq!(status, 200, "{head}\n{body}");
        assert_eq!(json(&body), serde_json::json!({"success": true}));
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
    }
    for n in 0..20 {
        let (status, _, body) = read_answer(&mut stream, &mut pending);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            json(&body),
            serde_json::json!({"data": format!("value \"{n}\" é"), "lock": false})
        );
    }

    // A call arriving a byte at a time is answered once whole, and only then.
    let body = serde_json::json!({"namespace": "ns", "key": "k7"}).to_string();
    let request = call("/get_data", &body, "");
    stream.set_nodelay(true).unwrap();
    for byte in request.as_bytes() {
        stream.write_all(&[*byte]).unwrap();
    }
    let (status, _, answer) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 200);
    assert_eq!(json(&answer)["data"], "value \"7\" é");

    // Refusals keep the connection: a bad body is a 400 naming the field, an item over
    // max_item_size a 413.
    let bad = r#"{"namespace": "ns", "key": "k", "ttl": "soon", "data": "x"}"#;
    stream
        .write_all(call("/set_data", bad, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 400, "{answer}");
    assert!(
        json(&answer)["error"].as_str().unwrap().contains("ttl"),
        "{answer}"
    );
    let bar = r#"{"namespace": "n|s", "key": "k"}"#;
    stream
        .write_all(call("/get_data", bar, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 400, "{answer}");

    // Then another request on the same connection: hyper answers it, and the plugin calls
    // after it too.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 200);
    stream
        .write_all(call("/get_data", &body, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 200);
    assert_eq!(json(&answer)["data"], "value \"7\" é");

    // Connection: close is answered, then the node closes.
    let mut closing = connect(&node);
    closing
        .write_all(call("/get_data", &body, "Connection: close\r\n").as_bytes())
        .unwrap();
    let mut everything = Vec::new();
    closing.read_to_end(&mut everything).unwrap();
    let text = String::from_utf8(everything).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn calls_past_the_in_flight_limit_and_the_body_limit_are_refused() {
    let dir = temp_dir("fastpath-limits");
    let config = config(
        &dir,
        "max_body_size = \"64KiB\"\n[limits]\nmax_requests_in_flight = 1\n\
         [cache]\nworker_timeout = \"10s\"\n",
    );
    let node = Node::start(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    // The first asker of a missing key gets the lock; a second one waits for the data and
    // holds the node's only request slot meanwhile.
    let missing = r#"{"namespace": "ns", "key": "slow", "max_wait_time": 3}"#;
    let mut first = connect(&node);
    let mut pending = Vec::new();
    first
        .write_all(call("/get_data", missing, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut first, &mut pending);
    assert_eq!((status, json(&answer)["lock"].clone()), (200, true.into()));
    let mut waiting = connect(&node);
    waiting
        .write_all(call("/get_data", missing, "").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&node);
    let mut third_pending = Vec::new();
    let other = r#"{"namespace": "ns", "key": "other"}"#;
    third
        .write_all(call("/get_data", other, "").as_bytes())
        .unwrap();
    let (status, head, answer) = read_answer(&mut third, &mut third_pending);
    assert_eq!(status, 429, "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(answer.contains("max_requests_in_flight"), "{answer}");
    // The waiter gets the lock when the holder's max_wait_time ends; then the slot is free.
    let mut waiting_pending = Vec::new();
    let (status, _, answer) = read_answer(&mut waiting, &mut waiting_pending);
    assert_eq!((status, json(&answer)["lock"].clone()), (200, true.into()));
    third
        .write_all(call("/get_data", other, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut third, &mut third_pending);
    assert_eq!(status, 200, "{answer}");
    assert!(json(&answer)["data"].is_null(), "{answer}");

    // A body over max_body_size goes to axum, which answers 413.
    let huge = format!(
        r#"{{"namespace": "ns", "key": "big", "data": "{}", "ttl": 60}}"#,
        "x".repeat(100 * 1024)
    );
    let mut big = connect(&node);
    let _ = big.write_all(call("/set_data", &huge, "").as_bytes());
    let (status, _, answer) = read_answer(&mut big, &mut Vec::new());
    assert_eq!(status, 413, "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stopping_node_answers_the_call_in_progress_and_closes_idle_connections() {
    let dir = temp_dir("fastpath-stop");
    let mut node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
    let missing = r#"{"namespace": "ns", "key": "k", "max_wait_time": 2}"#;
    let mut holder = connect(&node);
    let mut pending = Vec::new();
    holder
        .write_all(call("/get_data", missing, "").as_bytes())
        .unwrap();
    let (status, _, answer) = read_answer(&mut holder, &mut pending);
    assert_eq!((status, json(&answer)["lock"].clone()), (200, true.into()));
    // `holder` is now idle; `waiter` waits for the data, which never comes.
    let mut waiter = connect(&node);
    waiter
        .write_all(call("/get_data", missing, "").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let pid = node.child.id();
    let killer = std::thread::spawn(move || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
    });
    // The waiting call is answered when its wait ends (the lock passes to it)...
    let (status, _, answer) = read_answer(&mut waiter, &mut Vec::new());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["lock"], true, "{answer}");
    // ...the idle connection is closed, and the node exits 0 soon after.
    let mut rest = Vec::new();
    assert_eq!(holder.read_to_end(&mut rest).unwrap(), 0);
    assert!(killer.join().unwrap().success());
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `limits.request_timeout` (1 s here): a request that trickles, a byte every 300 ms, so that
/// no single read waits a second but the whole takes longer, is answered 408 naming the limit
/// and its connection closed, on the direct path (head, then body) and on hyper's (head, then
/// body); a request whole within the limit is served; an idle keep-alive connection of the
/// direct path is not closed by it.
#[test]
fn requests_that_trickle_past_the_request_timeout_get_408_and_are_closed() {
    let dir = temp_dir("fastpath-request-timeout");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[limits]\nrequest_timeout = \"1s\"\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);

    /// Writes `whole` at once, then `trickled` a byte every 300 ms until the node closes or
    /// answers; answers what the node sent and how long after the start.
    fn trickle(node: &Node, whole: &str, trickled: &str) -> (String, Duration) {
        let mut stream = connect(node);
        let started = Instant::now();
        stream.write_all(whole.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut answer = Vec::new();
        let mut bytes = trickled.bytes();
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => answer.extend_from_slice(&chunk[..read]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    assert!(started.elapsed() < Duration::from_secs(10), "never closed");
                    if let Some(byte) = bytes.next() {
                        // The node may have closed already: a failed write ends it too.
                        if stream.write_all(&[byte]).is_err() {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{e}"),
            }
        }
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    }
    let body = serde_json::json!({"namespace": "ns", "key": "k"}).to_string();
    let get = call("/get_data", &body, "");
    let head_end = get.find("\r\n\r\n").unwrap() + 4;
    let write = "POST /api/v1/write HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
                 Content-Length: 64\r\n\r\n";
    let long_text = "x".repeat(64);
    for (what, whole, trickled) in [
        ("direct path, head", "", get.as_str()),
        ("direct path, body", &get[..head_end], &get[head_end..]),
        ("hyper, head", "", write),
        ("hyper, body", write, &long_text[..]),
    ] {
        let (answer, took) = trickle(&node, whole, trickled);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{what}: {answer:?} after {took:?}"
        );
        assert!(
            answer.contains("limits.request_timeout (1s)"),
            "{what}: {answer}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }

    // Whole in time: served; idle for longer than the limit between two calls: still served.
    let mut stream = connect(&node);
    let mut pending = Vec::new();
    stream.write_all(get.as_bytes()).unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    stream.write_all(get.as_bytes()).unwrap();
    let (status, _, _) = read_answer(&mut stream, &mut pending);
    assert_eq!(status, 200);
}
