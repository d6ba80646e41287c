//! The host-key scan against a real OpenSSH server: Debian's `/usr/sbin/sshd` on a free
//! 127.0.0.1 port with freshly generated ed25519, ECDSA and RSA host keys; the keys we
//! read must equal the `.pub` files. Skipped (with a message) only when sshd is missing
//! outside CI; with `CI=true` a missing sshd fails the test.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nodepool_shared::ssh::{scan_host_keys, ScanOptions};
use tokio::time::Instant;

const SSHD: &str = "/usr/sbin/sshd";

fn sshd_available() -> bool {
    if Path::new(SSHD).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{SSHD} is missing (install Debian's openssh-server; scripts/lib/deps.sh does)");
    }
    eprintln!(
        "SKIPPED: {SSHD} is missing (apt-get install openssh-server) — not CI, so not a failure"
    );
    false
}

fn keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let key = dir.join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "", "-f"])
        .arg(&key)
        .args(args)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen {args:?} failed");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    // "<type> <base64> [comment]" → "<type> <base64>"
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn keys_from_real_openssh_equal_the_pub_files() {
    if !sshd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ed = keygen(dir.path(), "ed25519", &["-t", "ed25519"]);
    let ec = keygen(dir.path(), "ecdsa", &["-t", "ecdsa", "-b", "256"]);
    let rsa = keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "2048"]);
    // sshd insists on its privilege separation directory (root only; harmless otherwise).
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let d = dir.path().display();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ed25519\nHostKey {d}/ecdsa\n\
             HostKey {d}/rsa\nPidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        ),
    )
    .unwrap();
    let mut sshd = tokio::process::Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sshd");
    // The scan itself waits for the port to answer.
    let t0 = Instant::now();
    let keys = scan_host_keys(
        "127.0.0.1",
        port,
        Instant::now() + Duration::from_secs(30),
        &ScanOptions::default(),
    )
    .await;
    let _ = sshd.start_kill();
    let _ = sshd.wait().await;
    let keys = keys.expect("scan the real sshd");
    println!(
        "real sshd: 3 host keys (3 connections) scanned in {:?} incl. waiting for sshd to start",
        t0.elapsed()
    );
    assert_eq!(keys, vec![ed, ec, rsa]);
}

#[tokio::test]
async fn only_the_types_the_server_has() {
    if !sshd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ed = keygen(dir.path(), "ed25519", &["-t", "ed25519"]);
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let d = dir.path().display();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ed25519\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\n"
        ),
    )
    .unwrap();
    let mut sshd = tokio::process::Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sshd");
    let keys = scan_host_keys(
        "127.0.0.1",
        port,
        Instant::now() + Duration::from_secs(30),
        &ScanOptions::default(),
    )
    .await;
    let _ = sshd.start_kill();
    let _ = sshd.wait().await;
    assert_eq!(keys.expect("scan the real sshd"), vec![ed]);
}
