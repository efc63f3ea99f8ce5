//! TLS on the main listener (`[tls]`): two nodes serve HTTPS only, require client
//! certificates of their CA (mutual TLS), and call each other with their own certificates;
//! a write through one node for a host of the other is forwarded and read back through TLS,
//! while a client without a certificate, or speaking plain HTTP, gets nothing.

mod common;

use std::time::{Duration, Instant};

use common::tls::{TestCa, Usage};
use common::{free_port, now, temp_dir, Node};
use perfpipe::routing::owner_of_host;

fn client(ca: &str, identity: Option<[&str; 2]>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if let Some([cert, key]) = identity {
        let cert = Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let key = PrivateKey::from_pem(&std::fs::read(key).unwrap()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Two nodes serving HTTPS only as one cluster: each with a certificate of `ca` for both
/// serving and calling, requiring client certificates of `ca` and checking its peer's against
/// it; `extra` is appended to both configs. Answers the nodes and their URLs.
fn start_mutual_tls_pair(
    dir: &std::path::Path,
    ca: &TestCa,
    ca_path: &str,
    extra: &str,
) -> (Vec<Node>, Vec<String>) {
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{p}"))
        .collect();
    let nodes = (0..2)
        .map(|i| {
            let [cert, key] = ca.issue(dir, &format!("node{i}"), &["127.0.0.1"], Usage::Both);
            let config = dir.join(format!("node{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{}\"\ndata_dir = {:?}\n\
                     [tls]\ncert = {cert:?}\nkey = {key:?}\nclient_ca = {ca_path:?}\npeer_ca = {ca_path:?}\n\
                     [cluster]\nnodes = {urls:?}\nself = {:?}\n{extra}",
                    ports[i],
                    dir.join(format!("node{i}")).display().to_string(),
                    urls[i]
                ),
            )
            .unwrap();
            Node::start_with(&["--config", config.to_str().unwrap()])
        })
        .collect();
    (nodes, urls)
}

#[test]
fn nodes_serve_and_call_each_other_over_mutual_tls() {
    let dir = temp_dir("tls");
    let ca = TestCa::new("perfpipe test CA");
    let ca_path = ca.write(&dir, "ca");
    let (nodes, urls) = start_mutual_tls_pair(
        &dir,
        &ca,
        &ca_path,
        "[enqueuer]\nmax_batch_age = \"100ms\"\n",
    );
    let [cert, key] = ca.issue(&dir, "client", &["client"], Usage::Client);
    let agent = client(&ca_path, Some([&cert, &key]));

    // A host of each node, written through node 0.
    let host_of = |node: usize| {
        (0..)
            .map(|h| format!("host-{h}"))
            .find(|host| owner_of_host(host, 2) == node)
            .unwrap()
    };
    let t = (now() - 600) / 60 * 60;
    let body: String = (0..2)
        .map(|n| format!("{t}||{}||Load||OK||load1={}\n", host_of(n), n + 7))
        .collect();
    let mut answer = agent
        .post(&format!("{}/api/v1/write", urls[0]))
        .content_type("text/plain")
        .send(&body)
        .unwrap();
    let text = answer.body_mut().read_to_string().unwrap();
    assert_eq!(answer.status(), 200, "{text}");

    // Both read back through node 0 (node 1's over its TLS, with node 0's certificate).
    let query = format!(
        "{}/api/v1/query?hsm={}::Load::load1&hsm={}::Load::load1&start={}&end={}",
        urls[0],
        host_of(0),
        host_of(1),
        t - 60,
        t + 60
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut answer = agent.get(&query).call().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
        let values: Vec<Vec<f64>> = (0..2)
            .map(|n| {
                json["series"][n]["values"]
                    .as_array()
                    .map(|values| values.iter().filter_map(|v| v.as_f64()).collect())
                    .unwrap_or_default()
            })
            .collect();
        if values == [vec![7.0], vec![8.0]] {
            break;
        }
        assert!(Instant::now() < deadline, "not read back: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // No client certificate: the handshake fails. Plain HTTP: no answer.
    let anonymous = client(&ca_path, None);
    assert!(anonymous
        .get(&format!("{}/health", urls[0]))
        .call()
        .is_err());
    let plain = nodes[0].get("/health");
    assert_eq!(plain.status, 0, "plain HTTP answered: {}", plain.head);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A body that gives its first half, then waits for `go` before giving the rest: a request
/// still in progress when the node is told to stop.
struct SlowBody {
    first: Vec<u8>,
    rest: Vec<u8>,
    go: std::sync::mpsc::Receiver<()>,
    sent_first: bool,
}

impl std::io::Read for SlowBody {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let part = if !self.sent_first {
            self.sent_first = true;
            std::mem::take(&mut self.first)
        } else {
            if !self.rest.is_empty() {
                let _ = self.go.recv();
            }
            std::mem::take(&mut self.rest)
        };
        buffer[..part.len()].copy_from_slice(&part);
        Ok(part.len())
    }
}

/// SIGTERM while an HTTPS write is half sent: the node stops accepting, finishes that request
/// (200, its points stored and flushed) and only then exits, as the plain listener does.
#[test]
fn https_requests_in_progress_finish_at_sigterm() {
    let dir = temp_dir("tls-drain");
    let ca = TestCa::new("perfpipe drain CA");
    let ca_path = ca.write(&dir, "ca");
    let [cert, key] = ca.issue(&dir, "node", &["127.0.0.1"], Usage::Server);
    let port = free_port();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut node = Node::start_with(&["--config", config.to_str().unwrap()]);
    let agent = client(&ca_path, None);
    let t = (now() - 600) / 60 * 60;
    let body: String = (0..200)
        .map(|i| {
            format!(
                "{}||drain-host||Load||OK||load1={i}\n",
                t - 200 * 60 + i * 60
            )
        })
        .collect();
    let (first, rest) = body.split_at(body.len() / 2);
    let (go, wait) = std::sync::mpsc::channel();
    let slow = SlowBody {
        first: first.as_bytes().to_vec(),
        rest: rest.as_bytes().to_vec(),
        go: wait,
        sent_first: false,
    };
    let url = format!("https://127.0.0.1:{port}/api/v1/write");
    let writer = std::thread::spawn(move || {
        let mut reader = slow;
        let mut answer = agent
            .post(&url)
            .content_type("text/plain")
            .send(ureq::SendBody::from_reader(&mut reader))
            .expect("an answer, not a dropped connection");
        let text = answer.body_mut().read_to_string().unwrap();
        (answer.status().as_u16(), text)
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = node.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    go.send(()).unwrap();
    let (status, text) = writer.join().unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"points\":200"), "{text}");
    let exit = node.child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}");

    // Restarted, the node has every point of that request in its files.
    let node = Node::start_with(&["--config", config.to_str().unwrap()]);
    let agent = client(&ca_path, None);
    let mut answer = agent
        .get(&format!(
            "https://127.0.0.1:{port}/api/v1/query?hsm=drain-host::Load::load1&start={}&end={}",
            t - 201 * 60,
            t
        ))
        .call()
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    let stored = json["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.is_number())
        .count();
    assert_eq!(stored, 200, "{json}");
    drop(node);
}

/// The plugins' cache across nodes that serve HTTPS only: an item set through node 0 whose
/// owner is node 1 is passed to node 1 over mutual TLS (node 0's certificate, node 1's checked
/// against `peer_ca`), and read back through node 1.
#[test]
fn cache_peers_call_each_other_over_mutual_tls() {
    let dir = temp_dir("tls-cache");
    let ca = TestCa::new("perfpipe cache CA");
    let ca_path = ca.write(&dir, "ca");
    let (_nodes, urls) = start_mutual_tls_pair(
        &dir,
        &ca,
        &ca_path,
        "[cache]\npeer_connection_timeout = \"2s\"\n",
    );
    let [cert, key] = ca.issue(&dir, "client", &["client"], Usage::Client);
    let agent = client(&ca_path, Some([&cert, &key]));
    let key_of_node1 = (0..)
        .map(|k| format!("check-{k}"))
        .find(|k| perfpipe::routing::owner_of_item("plugins", k, 2) == 1)
        .unwrap();
    let post = |node: usize, path: &str, body: serde_json::Value| -> (u16, String) {
        let mut answer = agent
            .post(&format!("{}{path}", urls[node]))
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        let text = answer.body_mut().read_to_string().unwrap();
        (answer.status().as_u16(), text)
    };
    let (status, text) = post(
        0,
        "/set_data",
        serde_json::json!({"namespace": "plugins", "key": key_of_node1, "data": "over TLS", "ttl": 60}),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = post(
        1,
        "/get_data",
        serde_json::json!({"namespace": "plugins", "key": key_of_node1, "max_wait_time": 1}),
    );
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["data"], "over TLS", "{answer}");
}
