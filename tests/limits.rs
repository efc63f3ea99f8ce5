//! Limits on what a client controls, on a real node with small limits: each is answered with
//! a clear 4xx naming the limit, and the good data beside a refused part is kept.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{config, now, temp_dir, Node};

fn start(dir: &std::path::Path) -> Node {
    let config = config(
        dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n\
             [limits]\nmax_results_per_request = 3\nmax_metrics_per_result = 2\n\
             max_name_length = 12\nmax_query_span = \"2h\"\nmax_query_points = 100\n\
             max_requests_in_flight = 2\n",
            dir.join("data").display().to_string()
        ),
    );
    Node::start(&["--config", config.to_str().unwrap()])
}

#[test]
fn write_limits_refuse_what_passes_them_and_keep_the_rest() {
    let dir = temp_dir("limits-write");
    let node = start(&dir);
    let t = now() - 120;

    let four: String = (0..4).map(|h| format!("{t}||h{h}||S||OK||m=1\n")).collect();
    let answer = node.post("/api/v1/write", "text/plain", &four);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body.contains("max_results_per_request"),
        "{}",
        answer.body
    );

    let body = format!(
        "{t}||web||S||OK||a=1 b=2 c=3\n\
         {t}||a-host-name-too-long||S||OK||a=1\n\
         {t}||web||S||OK||a-label-too-long=1 d=4\n"
    );
    let answer = node.post("/api/v1/write", "text/plain", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    let errors: Vec<String> = json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| format!("{} {}", error["result"], error["message"]))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("0 ") && errors[0].contains("more than 2 metrics"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("1 ") && errors[1].contains("field host"),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("2 ") && errors[2].contains("label of 16 bytes"),
        "{errors:?}"
    );
    // Kept: a and b of the first result, d of the third.
    assert_eq!(json["points"], 3, "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn query_limits_answer_400_naming_them() {
    let dir = temp_dir("limits-query");
    let node = start(&dir);
    let answer = node.get("/api/v1/query?hsm=h::s::m&start=-3h&end=now");
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("max_query_span"), "{}", answer.body);
    let answer = node.get("/api/v1/query?hsm=h::s::m&hsm=h::s::n&start=-1h&end=now&step=60");
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("max_query_points"), "{}", answer.body);
    let answer = node.get("/api/v1/query?hsm=h::s::m&start=-1h&end=now&step=60");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requests_past_the_in_flight_limit_get_429() {
    let dir = temp_dir("limits-in-flight");
    let node = start(&dir);
    // Two writes whose bodies never finish arriving stay in progress...
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&node.address).unwrap();
            stream
                .write_all(
                    b"POST /api/v1/write HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
                      Content-Length: 1000\r\n\r\npartial",
                )
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...so a third request is refused, and /health is still answered.
    let answer = node.get("/api/v1/hosts");
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert!(
        answer.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        answer.head
    );
    assert!(
        answer.body.contains("max_requests_in_flight"),
        "{}",
        answer.body
    );
    assert_eq!(node.get("/health").status, 200);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.get("/api/v1/hosts").status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Names from the outside that mean something to a file system (`..`, `/`, NUL, a leading
/// dot, 10 KB, bytes that are not UTF-8) are stored under encoded names inside the data
/// directory, or refused with an error; nothing is created outside it.
#[test]
fn hostile_names_never_leave_the_data_dir() {
    let dir = temp_dir("hostile-names");
    let data = dir.join("data");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[enqueuer]\nmax_batch_age = \"100ms\"\n",
            data.display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let t = now() - 120;
    let long = "x".repeat(10_000);
    let names = [
        "..",
        "../..",
        "/etc/passwd",
        "a/../../b",
        ".hidden",
        "nul\u{0}byte",
        &long,
    ];
    let results: Vec<serde_json::Value> = names
        .iter()
        .flat_map(|name| {
            [
                serde_json::json!({"host": name, "service": "s", "timestamp": t, "perfdata": "m=1"}),
                serde_json::json!({"host": "h", "service": name, "timestamp": t, "perfdata": "m=1"}),
                serde_json::json!({"host": "h", "service": "s", "timestamp": t,
                                   "perfdata": format!("'{name}'=1")}),
            ]
        })
        .collect();
    let body = serde_json::json!({ "results": results }).to_string();
    let answer = node.post("/api/v1/write", "application/json", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    // The 10 KB name is over max_name_length in each of its three places; the rest is taken.
    assert_eq!(json["errors"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["points"], 18, "{json}");
    // Not UTF-8: that line refused with an error naming it, the good line beside it taken.
    let mut body = format!("{t}||h||s||OK||m=1\n{t}||").into_bytes();
    body.extend_from_slice(b"\xff\xfe||s||OK||m=1\n");
    let answer = node.request("POST", "/api/v1/write", Some("text/plain"), &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["points"], 1, "{}", answer.body);
    assert!(answer.body.contains("not valid UTF-8"), "{}", answer.body);
    node.wait_written(19);

    // Everything the node made is under the data directory, and the temp dir holds nothing
    // else but the config.
    let mut outside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    outside.sort();
    assert_eq!(outside, ["data", "perfpipe.toml"]);
    let whisper = data.join("whisper");
    let mut stack = vec![whisper.clone()];
    let mut files = 0;
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let canonical = path.canonicalize().unwrap();
            assert!(
                canonical.starts_with(whisper.canonicalize().unwrap()),
                "{path:?}"
            );
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_%.".contains(&b)),
                "encoded: {name}"
            );
            assert!(
                name != ".." && name != "." && !name.starts_with('.'),
                "{name}"
            );
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
            }
        }
    }
    assert_eq!(files, 19, "one file per series taken");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `limits.max_connections`: with three connections open (idle keep-alive ones count), a
/// fourth is answered 429 with `Retry-After` and the limit named, then closed; once one of the
/// three closes, new connections are served again, and the open ones never stopped working.
#[test]
fn connections_past_the_limit_get_429_until_one_closes() {
    use std::io::Read;
    let dir = temp_dir("limits-connections");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[limits]\nmax_connections = 3\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let ask = |stream: &mut TcpStream| -> String {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    let connect = || {
        let stream = TcpStream::connect(&node.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect()).collect();
    for stream in &mut open {
        assert!(ask(stream).starts_with("HTTP/1.1 200"));
    }
    let mut fourth = connect();
    let refused = ask(&mut fourth);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("limits.max_connections (3)"), "{refused}");
    let mut rest = Vec::new();
    assert_eq!(fourth.read_to_end(&mut rest).unwrap(), 0, "then closed");
    // The three keep working.
    assert!(ask(&mut open[0]).starts_with("HTTP/1.1 200"));

    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask(&mut connect());
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no room after a close: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `whisper.max_open_files`: a shard keeps at most that many Whisper files open between
/// writes (counted in the node's `/proc/PID/fd`), and with room for every series keeps them
/// all open.
#[test]
fn whisper_keeps_at_most_max_open_files_open_per_shard() {
    let open_wsp = |node: &Node| {
        std::fs::read_dir(format!("/proc/{}/fd", node.child.id()))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.extension().is_some_and(|e| e == "wsp"))
            .count()
    };
    let lines: String = (0..60)
        .map(|i| format!("{}||host{i}||svc||OK||m=1\n", common::now() - 60))
        .collect();
    for (max_open_files, most, least) in [(5, 10, 1), (100, 60, 60)] {
        let dir = temp_dir("limits-open-files");
        let config = config(
            &dir,
            &format!(
                "data_dir = {:?}\n[whisper]\nmax_open_files = {max_open_files}\n\
                 [enqueuer]\nshards = 2\nmax_batch_age = \"100ms\"\n",
                dir.join("data").display().to_string()
            ),
        );
        let node = Node::start(&["--config", config.to_str().unwrap()]);
        assert_eq!(node.post("/api/v1/write", "text/plain", &lines).status, 200);
        node.wait_written(60);
        let open = open_wsp(&node);
        assert!(
            (least..=most).contains(&open),
            "max_open_files {max_open_files}: {open} .wsp files open"
        );
    }
}
