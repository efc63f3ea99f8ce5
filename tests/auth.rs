//! Bearer tokens on a real node: each scope is enforced on its endpoints, 401 without a
//! token, 403 with a token of another scope; `/health` and the plugins' API stay open; and
//! `serve` refuses a non-loopback address without tokens unless `--insecure` is given.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{config, now, temp_dir, Node};

/// `method path` with an optional bearer token: the status and the head.
fn call(node: &Node, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(&node.address).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn each_scope_is_enforced() {
    let dir = temp_dir("auth");
    let config = config(
        &dir,
        &format!(
            "data_dir = {:?}\n[auth]\nwrite_tokens = [\"w-secret\"]\nquery_tokens = [\"q-secret\"]\nadmin_tokens = [\"a-secret\"]\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let line = format!("{}||web||PING||OK||rta=1ms\n", now() - 60);

    let (status, head) = call(&node, "POST", "/api/v1/write", None, &line);
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert_eq!(
        call(&node, "POST", "/api/v1/write", Some("nope"), &line).0,
        401
    );
    assert_eq!(
        call(&node, "POST", "/api/v1/write", Some("q-secret"), &line).0,
        403
    );
    assert_eq!(
        call(&node, "POST", "/api/v1/write", Some("a-secret"), &line).0,
        403
    );
    assert_eq!(
        call(&node, "POST", "/api/v1/write", Some("w-secret"), &line).0,
        200
    );

    for path in [
        "/api/v1/hosts",
        "/status",
        "/metrics",
        "/api/v1/query?hsm=web::PING::rta",
    ] {
        assert_eq!(call(&node, "GET", path, None, "").0, 401, "{path}");
        assert_eq!(
            call(&node, "GET", path, Some("w-secret"), "").0,
            403,
            "{path}"
        );
        assert_eq!(
            call(&node, "GET", path, Some("q-secret"), "").0,
            200,
            "{path}"
        );
    }

    assert_eq!(call(&node, "DELETE", "/api/v1/hosts/web", None, "").0, 401);
    assert_eq!(
        call(&node, "DELETE", "/api/v1/hosts/web", Some("q-secret"), "").0,
        403
    );
    assert_eq!(
        call(&node, "POST", "/api/v1/rename", Some("w-secret"), "{}").0,
        403
    );
    // Past the token check, the admin's delete is answered by the handler (200, or 404 while
    // the series is still only queued).
    let (status, head) = call(&node, "DELETE", "/api/v1/hosts/web", Some("a-secret"), "");
    assert!(status == 200 || status == 404, "{head}");

    // Never behind tokens: the load balancer's check and the plugins' cache.
    assert_eq!(call(&node, "GET", "/health", None, "").0, 200);
    let (status, head) = call(
        &node,
        "POST",
        "/get_data",
        None,
        "{\"namespace\":\"n\",\"key\":\"k\",\"max_wait_time\":0}",
    );
    assert_ne!(status, 401, "{head}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_an_open_address_without_tokens() {
    let dir = temp_dir("insecure");
    let data = dir.join("data");
    let refused = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("--insecure"), "{message}");

    let mut node = Node::start_with(&[
        "--listen",
        "0.0.0.0:0",
        "--insecure",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(node.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
