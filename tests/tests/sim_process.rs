//! `openstack-sim` as a separate process: prints its URL, writes clouds.yaml, saves its state
//! on SIGTERM and loads it again on the next start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the URL it printed (bounded wait).
fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start openstack-sim");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let proc = Proc(child);
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("openstack-sim printed nothing within 30 s");
    let url = line
        .trim()
        .strip_prefix("openstack-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (proc, url)
}

fn terminate(mut p: Proc) {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    for _ in 0..300 {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "openstack-sim exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("openstack-sim did not stop within 6 s of SIGTERM");
}

#[tokio::test]
async fn binary_serves_saves_and_reloads_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let clouds = dir.path().join("clouds.yaml");
    let state_arg = state.to_str().unwrap();
    let clouds_arg = clouds.to_str().unwrap();
    let (p, url) = spawn(&[
        "--port",
        "0",
        "--state-file",
        state_arg,
        "--write-clouds-yaml",
        clouds_arg,
        "--cloud-name",
        "mysim",
        "--quota-instances",
        "-1",
    ]);
    let yaml = std::fs::read_to_string(&clouds).unwrap();
    assert!(
        yaml.contains("mysim:") && yaml.contains(&format!("{url}/identity")),
        "{yaml}"
    );

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/admin/leaks/servers"))
        .json(&json!({"provider": "p1", "node_id": "0000000005"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let knobs: Value = http
        .get(format!("{url}/admin/knobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(knobs["quota"]["instances"], -1);
    terminate(p);
    assert!(state.exists(), "no state file written on SIGTERM");

    let (p, url) = spawn(&["--state-file", state_arg]);
    let dump: Value = http
        .get(format!("{url}/admin/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        dump["world"]["servers"][0]["metadata"]["nodepool_node_id"],
        "0000000005"
    );
    assert_eq!(dump["knobs"]["quota"]["instances"], -1);
    terminate(p);
}

#[test]
fn bad_flags_and_configs_are_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(["--error-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--error-rate"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sim.json");
    std::fs::write(&cfg, "{\"region\": \"R1\",\n \"bogus\": 1}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sim.json:2:") && err.contains("bogus"),
        "{err}"
    );
}
