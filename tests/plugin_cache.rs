//! The plugins' cache manager and state manager through a real plugin client: the Python
//! client in `tests/plugins/client.py` speaks exactly what Opsview's plugnpy sends (through
//! geventhttpclient, which the test command installs with pip) to nodes started here.

mod common;

use std::process::Command;

use common::tls::{TestCa, Usage};
use common::{config, temp_dir, Node};

/// Runs a scenario of the Python client against `nodes`; fails the test with its output.
fn scenario(name: &str, nodes: &[&str], args: &[&str]) -> String {
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/plugins/client.py"
        ))
        .arg(name)
        .args(nodes);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    let output = command.output().expect("python3 runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "scenario {name} failed:\n{printed}"
    );
    printed
}

fn node(name: &str, extra_config: &str) -> (Node, common::TempDir) {
    let dir = temp_dir(name);
    let config = config(
        &dir,
        &format!("[cache]\nmax_item_size = \"2MB\"\ncache_purge_time = \"60s\"\n{extra_config}"),
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    (node, dir)
}

#[test]
fn items_round_trip_with_their_limits_and_the_status_shape() {
    let (node, _dir) = node("plugins-basics", "");
    scenario("basics", &[&node.address], &["2000000"]);
    scenario("ttl", &[&node.address], &[]);
}

#[test]
fn fifty_askers_cause_one_computation_and_a_dead_holder_passes_the_lock_on() {
    let (node, _dir) = node("plugins-lock", "");
    let printed = scenario("lock", &[&node.address], &["one-node"]);
    assert!(printed.contains("1 holder"), "{printed}");
    scenario("lock_expiry", &[&node.address], &[]);
}

#[test]
fn state_items_keep_their_order_and_limits() {
    let (node, _dir) = node("plugins-state", "");
    scenario("state", &[&node.address], &[]);
}

#[test]
fn a_stored_item_survives_kill_9() {
    let (mut node, dir) = node("plugins-kill", "");
    scenario("store", &[&node.address], &["survivor", "still here ✓"]);
    node.child.kill().unwrap(); // SIGKILL: no shutdown of any kind
    node.child.wait().unwrap();
    let restarted = Node::start(&[
        "--config",
        dir.join("perfpipe.toml").to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    scenario(
        "fetch",
        &[&restarted.address],
        &["survivor", "still here ✓"],
    );
}

#[test]
fn namespace_tokens_open_only_their_namespace() {
    let key = "8f1c5a2e9b7d4c3a1f0e6d5c4b3a29188f1c5a2e9b7d4c3a1f0e6d5c4b3a2918";
    let extra =
        format!("namespace_key = \"{key}\"\n[cache.http_server]\nencrypted_namespaces = true\n");
    let (node, dir) = node("plugins-tokens", &extra);
    let minted = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["namespace-token", "a", "--config"])
        .arg(dir.join("perfpipe.toml"))
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout).unwrap();
    scenario("tokens", &[&node.address], &[token.trim(), key]);
}

/// Three nodes on loopback with one cluster config; peers notice a silent peer within a second.
fn cluster(name: &str) -> (Vec<Node>, Vec<String>) {
    let dir = temp_dir(name);
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let nodes = (0..3)
        .map(|i| {
            let node_dir = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let config = config(
                &node_dir,
                &format!(
                    "listen = \"127.0.0.1:{}\"\ndata_dir = {:?}\n[cluster]\nnodes = {urls:?}\nself = {:?}\n\
                     [cache]\npeer_secret = \"s3cret\"\npeer_connection_timeout = \"1s\"\npeer_refresh_time = \"2s\"\n",
                    ports[i],
                    node_dir.join("data"),
                    urls[i],
                ),
            );
            Node::start_with(&["--config", config.to_str().unwrap()])
        })
        .collect();
    let addresses = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    (nodes, addresses)
}

/// A key of `namespace` whose owner is node `owner` of three.
fn key_owned_by(namespace: &str, owner: usize, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|key| perfpipe::routing::owner_of_item(namespace, key, 3) == owner)
        .unwrap()
}

fn stop(node: &Node) {
    let status = Command::new("kill")
        .args(["-STOP", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn three_nodes_share_items_and_one_lock_and_outlive_a_silent_owner() {
    let (nodes, addresses) = cluster("plugins-cluster");
    let [a, b, c] = [&addresses[0], &addresses[1], &addresses[2]];
    let key = key_owned_by("shared", 2, "item");
    scenario("set", &[a], &["shared", &key, "from A", "600"]);
    scenario("get", &[b, c, a], &["shared", &key, "from A", "1"]);

    let printed = scenario("lock", &[a, b, c], &["three-nodes"]);
    assert!(printed.contains("1 holder"), "{printed}");

    // The owner stops answering (SIGSTOP: its socket still accepts, nothing answers).
    stop(&nodes[2]);
    scenario("get", &[a, b], &["shared", &key, "from A", "1"]);
    // An item of the silent owner that nobody copied: answered (empty) by the next node within
    // peer_connection_timeout (1 s) plus a margin, once; afterwards at once.
    let orphan = key_owned_by("shared", 2, "orphan");
    scenario("get", &[a], &["shared", &orphan, "", "1.8"]);
    scenario("get", &[a], &["shared", &orphan, "", "0.3"]);
    let status = nodes[0].get("/status").json();
    let peers = status["peers"].as_array().unwrap();
    let silent = peers
        .iter()
        .find(|peer| peer["url"] == format!("http://{c}"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(silent["deactivated"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(
        status["available_peer_refs"].as_array().unwrap().len(),
        1,
        "{status}"
    );
}

#[test]
fn a_state_item_outlives_its_owner() {
    let (mut nodes, addresses) = cluster("plugins-cluster-state");
    let key = key_owned_by("restart", 2, "state");
    scenario("store", &[&addresses[1]], &[&key, "kept twice"]);
    nodes[2].child.kill().unwrap();
    nodes[2].child.wait().unwrap();
    scenario(
        "fetch",
        &[&addresses[0], &addresses[1]],
        &[&key, "kept twice"],
    );
}

#[test]
fn a_peer_call_with_a_wrong_secret_is_refused() {
    let (nodes, _) = cluster("plugins-cluster-secret");
    // The extra header rides in after the content type.
    let answer = nodes[0].request(
        "POST",
        "/get_data",
        Some("application/json\r\nX-Perfpipe-Peer: guess"),
        br#"{"namespace":"n","key":"k","max_wait_time":0}"#,
    );
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("peer_secret"), "{}", answer.body);
}

#[test]
fn https_takes_clients_of_its_ca_and_refuses_others() {
    let dir = temp_dir("plugins-https");
    let ca = TestCa::new("perfpipe test CA");
    let foreign_ca = TestCa::new("another CA");
    let ca_path = ca.write(&dir, "ca");
    let [server_cert, server_key] =
        ca.issue(&dir, "server", &["localhost", "127.0.0.1"], Usage::Server);
    let [client_cert, client_key] = ca.issue(&dir, "client", &["plugin"], Usage::Client);
    let [foreign_cert, foreign_key] = foreign_ca.issue(&dir, "foreign", &["plugin"], Usage::Client);
    let https_port = common::free_port();
    let config = config(
        &dir,
        &format!(
            "[cache.https_server]\nlisten = \"127.0.0.1:{https_port}\"\ncert = {server_cert:?}\nkey = {server_key:?}\nclient_ca = {ca_path:?}\n"
        ),
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let https = format!("127.0.0.1:{https_port}");
    let printed = scenario(
        "tls",
        &[&https],
        &[
            &ca_path,
            &client_cert,
            &client_key,
            &foreign_cert,
            &foreign_key,
        ],
    );
    assert!(printed.contains("foreign certificate refused"), "{printed}");
    // The plain listener serves the same items.
    scenario("get", &[&node.address], &["tls", "k", "över TLS", "1"]);
}
