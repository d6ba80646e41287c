//! The standard OpenStack CLI (python-openstackclient) against `openstack-sim`, via
//! `tests/scripts/openstack-cli-check.sh`. Skipped (with a printed reason) only when the
//! `openstack` command is not installed.

use std::process::{Command, Stdio};
use std::time::Duration;

fn openstack_installed() -> bool {
    Command::new("openstack")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn openstack_cli_works_against_the_simulator() {
    if !openstack_installed() {
        eprintln!("SKIPPED: the `openstack` command (python-openstackclient) is not installed");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/openstack-cli-check.sh"
    );
    let child = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_openstack-sim"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openstack-cli-check.sh");
    // Bounded wait (the script normally takes 15 - 30 s: four `openstack` processes); output
    // is drained by the waiting thread.
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(out) => out.expect("collect script output"),
        Err(_) => {
            // SAFETY: plain kill(2) on the pid of the child we spawned; SIGTERM lets its trap stop the simulator.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            panic!("openstack-cli-check.sh did not finish within 600 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "openstack CLI check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
