//! Benchmark helper (not a test): how long `nodepool-launcher` / `nodepool-builder` take
//! from exec to systemd's `READY=1` (ZooKeeper connected, config loaded, components
//! registered), over `--runs` starts with a fresh `NOTIFY_SOCKET`; each daemon is
//! stopped with SIGTERM after its READY. See docs/benchmarks.md.
//!
//! `cargo run --release -p nodepool-tests --example start_to_ready -- \
//!     --bin target/release/nodepool-launcher --config /tmp/bench.yaml --runs 20`

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The daemon binary.
    #[arg(long)]
    bin: PathBuf,
    /// nodepool.yaml to start it with.
    #[arg(long)]
    config: PathBuf,
    /// Starts to time.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Extra arguments for the daemon (e.g. `--no-webapp`).
    #[arg(last = true)]
    extra: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut times = Vec::new();
    for run in 0..args.runs {
        let sock_path = dir.path().join(format!("notify-{run}"));
        let sock = UnixDatagram::bind(&sock_path)?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))?;
        let start = Instant::now();
        let mut child = Command::new(&args.bin)
            .arg("-f")
            .arg("-c")
            .arg(&args.config)
            .args(&args.extra)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut buf = [0u8; 4096];
        let ready = loop {
            let n = sock.recv(&mut buf)?;
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break start.elapsed();
            }
        };
        // SAFETY: plain kill(2) of our child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait()?;
        times.push(ready);
        println!("run {run}: {:.1} ms", ready.as_secs_f64() * 1000.0);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "start to READY=1 over {} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
