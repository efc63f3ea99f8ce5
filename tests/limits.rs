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
