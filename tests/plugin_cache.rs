//! The plugins' cache manager and state manager through a real plugin client: the Python
//! client in `tests/plugins/client.py` speaks exactly what Opsview's plugnpy sends (through
//! geventhttpclient, which the test command installs with pip) to nodes started here.

mod common;

use std::process::Command;

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

fn node(name: &str, extra_config: &str) -> (Node, std::path::PathBuf) {
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
