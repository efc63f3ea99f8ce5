//! Three nodes on loopback with one cluster config: writes for 100 hosts spread over all three
//! entry points end with every host's file on exactly its owner node, and a query naming
//! series of all three owners, sent to any node, returns every series.

mod common;

use common::{now, start_cluster, temp_dir};
use perfpipe::routing::owner_of_host;

const HOSTS: usize = 100;

/// `count` nodes on free loopback ports in one cluster, each with its data under
/// `dir/node<i>`: the nodes and their URLs.

#[test]
fn three_nodes_route_by_owner_and_answer_for_each_other() {
    let dir = temp_dir("cluster");
    let (nodes, urls) = start_cluster(&dir, 3);

    let t = (now() - 3600) / 60 * 60;
    let host = |h: usize| format!("host-{h:03}");
    // Ten requests of ten hosts each, to the three entry points in turn.
    for request in 0..10 {
        let lines: String = (0..10)
            .map(|i| {
                let h = request * 10 + i;
                format!("{t}||{}||Load||OK||load1={h}\n", host(h))
            })
            .collect();
        let answer = nodes[request % 3].post("/api/v1/write", "text/plain", &lines);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["points"], 10);
    }

    let owned: Vec<usize> = (0..3)
        .map(|n| {
            (0..HOSTS)
                .filter(|&h| owner_of_host(&host(h), 3) == n)
                .count()
        })
        .collect();
    assert!(
        owned.iter().all(|&count| count > 10),
        "hosts spread: {owned:?}"
    );
    for (node, &count) in nodes.iter().zip(&owned) {
        node.wait_written(count as u64);
    }
    for h in 0..HOSTS {
        let holders: Vec<usize> = (0..3)
            .filter(|n| {
                dir.join(format!("node{n}/whisper/host%2D{:03}/Load/load1.wsp", h))
                    .is_file()
            })
            .collect();
        assert_eq!(holders, [owner_of_host(&host(h), 3)], "{}", host(h));
    }

    // The host list of the whole cluster, and a host's metrics, from any node.
    for node in &nodes {
        let hosts = node.get("/api/v1/hosts").json();
        assert_eq!(hosts["hosts"].as_array().unwrap().len(), HOSTS, "{hosts}");
        assert!(hosts.get("partial").is_none());
    }
    let local = nodes[0].get("/api/v1/hosts?local=true").json();
    assert_eq!(local["hosts"].as_array().unwrap().len(), owned[0]);
    let elsewhere = (0..HOSTS)
        .find(|&h| owner_of_host(&host(h), 3) == 1)
        .unwrap();
    let metrics = nodes[0].get(&format!("/api/v1/hosts/{}/metrics", host(elsewhere)));
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert_eq!(
        metrics.json()["metrics"][0]["hsm"],
        format!("{}::Load::load1", host(elsewhere))
    );
    assert_eq!(
        nodes[0].get("/api/v1/hosts/nobody-here/metrics").status,
        404
    );

    // One host of each owner, asked of every node.
    let sample: Vec<usize> = (0..3)
        .map(|n| {
            (0..HOSTS)
                .find(|&h| owner_of_host(&host(h), 3) == n)
                .unwrap()
        })
        .collect();
    let query: String = sample
        .iter()
        .map(|&h| format!("hsm={}::Load::load1&", host(h)))
        .collect();
    for node in &nodes {
        let answer = node.get(&format!(
            "/api/v1/query?{query}start={}&end={}",
            t - 60,
            t + 60
        ));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json = answer.json();
        assert!(json.get("partial").is_none(), "{json}");
        let series = json["series"].as_array().unwrap();
        for (answer, &h) in series.iter().zip(&sample) {
            assert_eq!(answer["hsm"], format!("{}::Load::load1", host(h)));
            let values: Vec<f64> = answer["values"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_f64())
                .collect();
            assert_eq!(values, [h as f64], "{answer}");
        }
    }

    // A node that is down: the others still answer, saying what is missing. (sample[n] is
    // owned by node n.)
    let mut nodes = nodes;
    assert_eq!(nodes[2].terminate(), Some(0));
    let answer = nodes[0].get(&format!(
        "/api/v1/query?{query}start={}&end={}",
        t - 60,
        t + 60
    ));
    let json = answer.json();
    assert_eq!(json["partial"], true, "{json}");
    assert!(
        json["series"][2]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{json}"
    );
    let hosts = nodes[0].get("/api/v1/hosts").json();
    assert_eq!(hosts["partial"], true, "{hosts}");
    assert_eq!(hosts["missing"], serde_json::json!([urls[2]]));
    assert_eq!(
        hosts["hosts"].as_array().unwrap().len(),
        owned[0] + owned[1]
    );
    for (reachable, &h) in sample.iter().enumerate().take(2) {
        let values = json["series"][reachable]["values"].as_array().unwrap();
        assert!(values.contains(&serde_json::json!(h as f64)), "{json}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A peer that is frozen (SIGSTOP: it takes connections and never answers) does not hang a
/// query sent to another node: the answer comes within the read timeout, partial, naming the
/// series it could not get.
#[test]
fn a_frozen_peer_makes_a_query_partial_not_hung() {
    let dir = temp_dir("cluster-frozen");
    let (mut nodes, _) = start_cluster(&dir, 2);
    let frozen_host = (0..)
        .map(|h| format!("host-{h}"))
        .find(|host| owner_of_host(host, 2) == 1)
        .unwrap();
    let pid = nodes[1].child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    let answer = nodes[0].get(&format!(
        "/api/v1/query?hsm={frozen_host}::Load::load1&start=-1h&end=now"
    ));
    let waited = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["partial"], true, "{json}");
    assert!(
        json["series"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{json}"
    );
    assert!(
        waited < std::time::Duration::from_secs(15),
        "answered after {waited:?}"
    );
    assert_eq!(nodes[1].terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
