//! `perfpipe ingest --url` into a running node, and `perfpipe check-config`, as a user runs
//! them: the spool file's points end in the node's files; bad lines are named with their line
//! in the file, not in the request they travelled in.

mod common;

use std::process::Command;

use common::{config, now, temp_dir, Node};

#[test]
fn a_spool_file_posted_to_a_node_in_batches() {
    let dir = temp_dir("ingest-url");
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
    // 2,500 lines: three requests of up to 1,000; two bad lines in the second and third.
    let mut spool = String::new();
    for i in 0..2500 {
        match i {
            1499 => spool.push_str("this is not a spool line\n"),
            2400 => spool.push_str(&format!("{t}||host-0||Load||OK||load1=oops\n")),
            _ => spool.push_str(&format!(
                "{}||host-{}||Load||OK||load1={i}\n",
                t - (i as i64 % 10) * 60,
                i / 10
            )),
        }
    }
    let input = dir.join("perfdata.log");
    std::fs::write(&input, spool).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["ingest", "--url", &format!("http://{}", node.address)])
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "two bad lines: exit status 1");
    assert!(
        stdout.contains("results 2499, points 2498, errors 2"),
        "{stdout} {stderr}"
    );
    assert!(stderr.contains("line 1500: neither an Opsview"), "{stderr}");
    assert!(
        stderr.contains("line 2401, perfdata: value is not a number at byte 0"),
        "{stderr}"
    );

    node.wait_written(2498);
    let file = data.join("whisper/host%2D100/Load/load1.wsp");
    assert!(file.is_file(), "{}", file.display());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = temp_dir("check-config");
    let bad = config(&dir, "[enqueuer]\nshards = 2\nmax_batch_agee = \"5s\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("unknown field `max_batch_agee`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `max_batch_age`?"), "{stderr}");

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/perfpipe.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_perfpipe"))
        .args(["check-config", shipped])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
