//! What the ZooKeeper server did over one phase of a benchmark: its request and byte
//! counters (the `mntr` four-letter word on the plain port, so the probe itself costs
//! no TLS session) and, with `--jfr DIR`, a Java Flight Recorder recording of the
//! phase (`jcmd <pid> JFR.start` / `JFR.stop`), to be read with `jfr print` or
//! `scripts/jfr-summary`.
//!
//! The counters are the server's own: `packets_received` counts every request of
//! every session (a multi-read is one, a ping is one), `reads`/`writes` the requests
//! that went through the read and write paths, `watch events` the node events sent to
//! watchers (a persistent recursive watch counts once per event).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use nodepool_shared::testing::four_letter_word;

/// The `mntr` counters the probe reports (name in `mntr`, label).
const COUNTERS: &[(&str, &str)] = &[
    ("zk_packets_received", "requests"),
    ("zk_cnt_readlatency", "reads"),
    ("zk_cnt_updatelatency", "writes"),
    ("zk_bytes_received_count", "bytes in"),
    ("zk_response_bytes", "bytes out"),
    ("zk_cnt_node_changed_watch_count", "data watch events"),
    ("zk_cnt_node_created_watch_count", "create watch events"),
    ("zk_cnt_node_deleted_watch_count", "delete watch events"),
    ("zk_cnt_node_children_watch_count", "child watch events"),
    ("zk_cnt_jvm_pause_time_ms", "JVM pauses"),
    ("zk_sum_jvm_pause_time_ms", "JVM pause ms"),
    ("zk_cnt_snapshottime", "snapshots"),
];

/// Probes one ZooKeeper server (its plain port and, for JFR, its process).
pub struct ZkProbe {
    plain_port: u16,
    jfr_dir: Option<PathBuf>,
    jfc: String,
}

/// A phase being measured: the counters and CPU at its start.
pub struct Phase {
    name: String,
    counters: HashMap<String, f64>,
    threads: HashMap<String, f64>,
    cpu: f64,
    started: Instant,
    jfr: bool,
}

fn mntr(port: u16) -> HashMap<String, f64> {
    let text = four_letter_word(port, "mntr").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// CPU seconds (utime + stime) of the process's threads, summed by thread name without
/// its trailing digits (`C2 CompilerThre`, `GC Thread#`, `nioEventLoopGro`, `SyncThread:`).
fn thread_cpu(pid: u32) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the command: state is field 3, utime 14 and stime 15 (1-based).
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / hz;
    }
    out
}

fn jcmd(pid: u32, args: &[&str]) -> bool {
    match Command::new("jcmd")
        .arg(pid.to_string())
        .args(args)
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            println!(
                "jcmd {pid} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout).trim()
            );
            false
        }
        Err(e) => {
            println!("jcmd: {e}");
            false
        }
    }
}

impl ZkProbe {
    /// `jfr_dir`: where the per-phase recordings go (none: counters only). `jfc`: the
    /// JFR settings (`profile` or a `.jfc` file).
    pub fn new(plain_port: u16, jfr_dir: Option<PathBuf>, jfc: String) -> ZkProbe {
        if let Some(d) = &jfr_dir {
            std::fs::create_dir_all(d).expect("create the JFR directory");
        }
        ZkProbe {
            plain_port,
            jfr_dir,
            jfc,
        }
    }

    /// The JVM options that record from the server's start (for a phase that begins
    /// with a server start: `jcmd` cannot attach before the JVM runs).
    pub fn start_options(&self, phase: &str) -> Option<String> {
        let dir = self.jfr_dir.as_ref()?;
        Some(format!(
            "-XX:StartFlightRecording=name={phase},settings={},filename={}",
            self.jfc,
            dir.join(format!("{phase}.jfr")).display()
        ))
    }

    /// Starts measuring a phase (a JFR recording of it too when `--jfr` is given and
    /// `zk_pid` runs).
    pub fn begin(&self, name: &str, zk_pid: u32, cpu: f64) -> Phase {
        let jfr = match &self.jfr_dir {
            Some(_) => jcmd(
                zk_pid,
                &[
                    "JFR.start",
                    &format!("name={name}"),
                    &format!("settings={}", self.jfc),
                ],
            ),
            None => false,
        };
        Phase {
            name: name.to_string(),
            counters: mntr(self.plain_port),
            threads: thread_cpu(zk_pid),
            cpu,
            started: Instant::now(),
            jfr,
        }
    }

    /// A phase whose recording was started with the JVM ([`Self::start_options`]).
    pub fn begin_started(&self, name: &str, cpu: f64) -> Phase {
        Phase {
            name: name.to_string(),
            counters: HashMap::new(),
            threads: HashMap::new(),
            cpu,
            started: Instant::now(),
            jfr: self.jfr_dir.is_some(),
        }
    }

    /// Ends a phase: prints the server's counters and CPU over it (per `per` units when
    /// given, e.g. per idle request) and writes its recording.
    pub fn end(&self, phase: Phase, zk_pid: u32, cpu: f64, per: Option<(usize, &str)>) {
        let took = phase.started.elapsed().as_secs_f64();
        if phase.jfr {
            if let Some(dir) = &self.jfr_dir {
                let file = dir.join(format!("{}.jfr", phase.name));
                jcmd(
                    zk_pid,
                    &[
                        "JFR.stop",
                        &format!("name={}", phase.name),
                        &format!("filename={}", file.display()),
                    ],
                );
            }
        }
        let now = mntr(self.plain_port);
        let diff = |k: &str| {
            now.get(k).copied().unwrap_or(0.0) - phase.counters.get(k).copied().unwrap_or(0.0)
        };
        let mut parts = vec![format!("CPU {:.2} s", cpu - phase.cpu)];
        parts.extend(
            COUNTERS
                .iter()
                .map(|(k, label)| format!("{label} {:.0}", diff(k))),
        );
        println!(
            "ZooKeeper over {} ({took:.1} s): {}",
            phase.name,
            parts.join(", ")
        );
        let threads = thread_cpu(zk_pid);
        let mut by_thread: Vec<(String, f64)> = threads
            .iter()
            .map(|(k, v)| (k.clone(), v - phase.threads.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v >= 0.01)
            .collect();
        by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!(
            "ZooKeeper threads' CPU over {}: {}",
            phase.name,
            by_thread
                .iter()
                .take(8)
                .map(|(k, v)| format!("{k} {v:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some((n, unit)) = per {
            let n = n.max(1) as f64;
            println!(
                "ZooKeeper per {unit} over {}: CPU {:.1} ms, requests {:.1}, reads {:.1}, writes {:.1}, bytes out {:.0}",
                phase.name,
                (cpu - phase.cpu) * 1000.0 / n,
                diff("zk_packets_received") / n,
                diff("zk_cnt_readlatency") / n,
                diff("zk_cnt_updatelatency") / n,
                diff("zk_response_bytes") / n,
            );
        }
    }
}
