//! `zuul-sim`: a fake Zuul as a process. It speaks only ZooKeeper, exactly as Zuul does
//! (submit a node request, wait, lock the nodes, delete the request, use and return the
//! nodes), for the local demo and the launcher benchmark (`--json` for machine output).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nodepool_shared::model::RequestId;
use nodepool_shared::zk::{ZkClient, ZkSettings, ZkTls, DEFAULT_PORT};
use nodepool_tests::zuul::{FakeZuul, LatencySummary, Outcome, ZuulError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

const AFTER_HELP: &str = "\
Every request goes through Zuul's full cycle: submit (persistent sequential
/nodepool/requests/<priority>-), wait for `fulfilled`/`failed` via ZooKeeper watches,
lock every node (blocking up to 30 s), delete the request, mark the nodes `in-use`,
hold them for --hold seconds, mark them `used` and unlock them. A failed request is
deleted, like Zuul does. As in Zuul, every request waited for is read again after a
ZooKeeper session loss (one fulfilled meanwhile is taken up), and a request that
vanishes while waited for is submitted again (counted as `resubmitted`).

Exit status: 0 all requests fulfilled; 1 usage, connection or ZooKeeper error;
2 some request failed, vanished or timed out.

Examples:
  zuul-sim --zk 127.0.0.1:2181 --label ubuntu-jammy once
  zuul-sim --zk 127.0.0.1:2181 --label small,small burst 100 --json
  zuul-sim --zk zk1:2281 --tls-ca ca.pem --tls-cert c.pem --tls-key k.pem \\
           --label small stream --rate 5 --hold 30";

#[derive(Parser, Debug)]
#[command(
    name = "zuul-sim",
    version = nodepool_shared::version::LONG,
    about = "Fake Zuul: requests nodes from Nodepool through ZooKeeper, like Zuul does",
    after_help = AFTER_HELP
)]
struct Cli {
    /// ZooKeeper servers, `host:port[,host:port...]` (IPv6 as `[::1]:2181`; port defaults
    /// to 2281).
    #[arg(long, env = "ZUUL_SIM_ZK", value_name = "HOST:PORT[,HOST:PORT]")]
    zk: String,
    /// ZooKeeper chroot all paths are relative to (e.g. `/nodepool-demo`).
    #[arg(long, global = true)]
    chroot: Option<String>,
    /// CA certificate (PEM) for a TLS connection; needs --tls-cert and --tls-key.
    #[arg(long, global = true, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a TLS connection.
    #[arg(long, global = true, requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for a TLS connection.
    #[arg(long, global = true, requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Give up (exit 1) if ZooKeeper is not reachable within this many seconds.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Label of one node of each request; repeat or comma-separate for multi-node
    /// requests (order is kept, as in `node_types`).
    #[arg(long = "label", short = 'l', required = true, value_delimiter = ',')]
    labels: Vec<String>,
    /// Request precedence, as Zuul: 100 high, 200 normal, 300 low.
    #[arg(long, global = true, default_value_t = 200, value_parser = parse_priority)]
    priority: u16,
    /// `relative_priority` of the requests (lower is served first).
    #[arg(
        long,
        global = true,
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    relative_priority: i64,
    /// Tenant name written into the requests.
    #[arg(long, global = true, default_value = "tenant-one")]
    tenant: String,
    /// Preferred provider written into the requests (none by default).
    #[arg(long, global = true)]
    provider: Option<String>,
    /// Zuul system id: the requests' `requestor` and `zuul_system` in node user_data.
    #[arg(long, global = true, default_value = "zuul-sim")]
    system_id: String,
    /// Project name written into node user_data while in use.
    #[arg(long, global = true, default_value = "org/project")]
    project: String,
    /// Seconds to wait for each request before cancelling it (counted as timed out).
    #[arg(long, global = true, default_value_t = 600.0, value_name = "SECS")]
    timeout: f64,
    /// Print the result as one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Submit one request, wait for it and print the outcome and the nodes' JSON;
    /// returns as soon as the request is done (its nodes used for --hold seconds and
    /// returned, or the request failed, vanished or timed out), e.g. to wait in a script.
    Once {
        /// Seconds to keep the nodes in use before returning them.
        #[arg(long, default_value_t = 0.0, value_name = "SECS")]
        hold: f64,
    },
    /// Submit N requests at once, wait for all; print throughput and latency
    /// percentiles (submission to fulfilled) and failures.
    Burst {
        /// Number of requests.
        count: usize,
        /// Seconds to keep each request's nodes in use before returning them.
        #[arg(long, default_value_t = 0.0, value_name = "SECS")]
        hold: f64,
    },
    /// A steady stream: RATE requests per second, each accepted, held, returned; runs
    /// until Ctrl-C (or --count requests), then prints the summary.
    Stream {
        /// Requests submitted per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds each request's nodes stay in use.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        hold: f64,
        /// Stop after submitting this many requests (and finishing them).
        #[arg(long)]
        count: Option<u64>,
        /// Seconds between progress lines on stderr (0 = none).
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        report_every: f64,
    },
}

fn parse_priority(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p @ (100 | 200 | 300)) => Ok(p),
        _ => Err(format!("{s:?} is not 100, 200 or 300")),
    }
}

/// Parses `host:port[,host:port]` (IPv6 literals in brackets; missing port → 2281).
fn parse_hosts(s: &str) -> Result<Vec<(String, u16)>, String> {
    let mut hosts = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("{entry:?}: missing ']'"))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if tail.is_empty() => (h, None),
                None => return Err(format!("{entry:?}: expected [host]:port")),
            }
        } else {
            match entry.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("{entry:?}: write IPv6 addresses as [addr]:port"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{entry:?}: empty host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{entry:?}: bad port {p:?}"))?,
        };
        hosts.push((host.to_string(), port));
    }
    if hosts.is_empty() {
        return Err("no ZooKeeper server given".into());
    }
    Ok(hosts)
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("--{name} {v}: not a valid duration"))
}

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fate {
    Fulfilled,
    Failed,
    Gone,
    TimedOut,
    Cancelled,
    Error,
}

/// One request's run.
#[derive(Debug)]
struct Run {
    request: Option<RequestId>,
    fate: Fate,
    /// Submission to outcome (fulfilled, failed, gone).
    latency: Option<Duration>,
    /// When the outcome was seen, from the start of the whole run.
    outcome_at: Option<Duration>,
    /// Node records as read when locked: (id, label, record).
    nodes: Vec<(String, String, Map<String, Value>)>,
    error: Option<String>,
    /// How many times the request vanished and was submitted again.
    resubmitted: u32,
}

impl Run {
    fn error(request: Option<RequestId>, e: impl ToString) -> Run {
        Run {
            request,
            fate: Fate::Error,
            latency: None,
            outcome_at: None,
            nodes: Vec::new(),
            error: Some(e.to_string()),
            resubmitted: 0,
        }
    }
}

/// Request settings shared by all runs.
#[derive(Clone, Debug)]
struct Spec {
    labels: Vec<String>,
    priority: u16,
    relative_priority: i64,
    tenant: String,
    provider: Option<String>,
    project: String,
    timeout: Duration,
    hold: Duration,
}

/// Waits until `stop` turns true (never if the sender is gone without it).
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Submits a request; `Err` is the run to report.
async fn submit(zuul: &FakeZuul, spec: &Spec) -> Result<RequestId, Run> {
    zuul.submit(
        &spec.labels,
        spec.priority,
        spec.relative_priority,
        &spec.tenant,
        spec.provider.as_deref(),
    )
    .await
    .map_err(|e| Run::error(None, e))
}

/// Submits a request and waits for its outcome (`None`: stopped). A request that
/// vanishes while we wait (deleted by someone else, not by us) is submitted again, as
/// Zuul does ("Resubmitting lost node request"), within the same overall timeout.
/// Returns the last request id and how many times it was resubmitted.
async fn submit_and_wait(
    zuul: &FakeZuul,
    spec: &Spec,
    stop: &watch::Receiver<bool>,
) -> Result<(RequestId, u32, Option<Result<Outcome, ZuulError>>), Run> {
    let deadline = Instant::now() + spec.timeout;
    let mut resubmitted = 0;
    loop {
        let id = submit(zuul, spec).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = tokio::select! {
            r = zuul.wait(&id, left) => Some(r),
            _ = stopped(stop.clone()) => None,
        };
        if matches!(waited, Some(Ok(Outcome::Gone))) && !left.is_zero() {
            tracing::warn!(request = %id, "request vanished while waiting; resubmitting it");
            resubmitted += 1;
            continue;
        }
        return Ok((id, resubmitted, waited));
    }
}

/// One request through Zuul's whole cycle. `epoch` is the start of the run; `stop` ends
/// waits (cancelling the request) and holds early.
async fn lifecycle(zuul: FakeZuul, spec: Spec, epoch: Instant, stop: watch::Receiver<bool>) -> Run {
    let start = Instant::now();
    let (id, resubmitted, waited) = match submit_and_wait(&zuul, &spec, &stop).await {
        Ok(w) => w,
        Err(run) => return run,
    };
    let latency = start.elapsed();
    let outcome_at = Some(epoch.elapsed());
    let mut run = Run {
        request: Some(id.clone()),
        fate: Fate::Error,
        latency: Some(latency),
        outcome_at,
        nodes: Vec::new(),
        error: None,
        resubmitted,
    };
    let outcome = match waited {
        None => {
            let _ = zuul.cancel(&id).await;
            run.fate = Fate::Cancelled;
            run.latency = None;
            run.outcome_at = None;
            return run;
        }
        Some(Err(ZuulError::WaitTimeout { .. })) => {
            let _ = zuul.cancel(&id).await;
            run.fate = Fate::TimedOut;
            run.latency = None;
            run.outcome_at = None;
            run.error = Some(format!("not fulfilled within {:?}", spec.timeout));
            return run;
        }
        Some(Err(e)) => {
            let _ = zuul.cancel(&id).await;
            return Run::error(Some(id), e);
        }
        Some(Ok(o)) => o,
    };
    let req = match outcome {
        Outcome::Gone => {
            run.fate = Fate::Gone;
            return run;
        }
        Outcome::Failed(_) => {
            // Zuul deletes a failed request as well.
            if let Err(e) = zuul.cancel(&id).await {
                run.error = Some(e.to_string());
            }
            run.fate = Fate::Failed;
            return run;
        }
        Outcome::Fulfilled(req) => req,
    };
    let mut nodes = match zuul.accept(&req).await {
        Ok(nodes) => nodes,
        Err(e) => return Run::error(Some(id), e),
    };
    run.nodes = nodes
        .iter()
        .map(|n| {
            (
                n.id().to_string(),
                n.label().to_string(),
                n.record().clone(),
            )
        })
        .collect();
    if let Err(e) = zuul.use_nodes(&mut nodes, &spec.project).await {
        zuul.unlock(nodes).await;
        return Run::error(Some(id), e);
    }
    if !spec.hold.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(spec.hold) => {}
            _ = stopped(stop) => {}
        }
    }
    if let Err(e) = zuul.return_nodes(nodes).await {
        return Run::error(Some(id), e);
    }
    run.fate = Fate::Fulfilled;
    run
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    requested: usize,
    fulfilled: usize,
    failed: usize,
    gone: usize,
    timed_out: usize,
    cancelled: usize,
    errors: usize,
    /// Requests that vanished while waited for and were submitted again (not in
    /// `requested`).
    resubmitted: usize,
}

impl Counts {
    fn add(&mut self, fate: Fate) {
        self.requested += 1;
        match fate {
            Fate::Fulfilled => self.fulfilled += 1,
            Fate::Failed => self.failed += 1,
            Fate::Gone => self.gone += 1,
            Fate::TimedOut => self.timed_out += 1,
            Fate::Cancelled => self.cancelled += 1,
            Fate::Error => self.errors += 1,
        }
    }

    fn all_good(&self) -> bool {
        self.failed + self.gone + self.timed_out + self.errors == 0
    }
}

/// Summary of a burst or stream run.
#[derive(Debug, Serialize)]
struct Summary {
    mode: &'static str,
    labels: Vec<String>,
    #[serde(flatten)]
    counts: Counts,
    elapsed_s: f64,
    throughput_per_s: f64,
    latency: LatencySummary,
    /// The first few error messages.
    error_messages: Vec<String>,
}

impl Summary {
    fn new(mode: &'static str, labels: &[String], runs: &[Run], elapsed: Duration) -> Summary {
        let mut counts = Counts::default();
        let mut lat = Vec::new();
        let mut error_messages = Vec::new();
        for r in runs {
            counts.add(r.fate);
            counts.resubmitted += r.resubmitted as usize;
            if r.fate == Fate::Fulfilled {
                lat.extend(r.latency);
            }
            if let Some(e) = &r.error {
                if error_messages.len() < 10 {
                    let id = r.request.as_ref().map_or("-", |i| i.as_str());
                    error_messages.push(format!("{id}: {e}"));
                }
            }
        }
        let elapsed_s = elapsed.as_secs_f64();
        let throughput_per_s = if elapsed_s > 0.0 {
            counts.fulfilled as f64 / elapsed_s
        } else {
            0.0
        };
        Summary {
            mode,
            labels: labels.to_vec(),
            counts,
            elapsed_s,
            throughput_per_s,
            latency: LatencySummary::from_samples(&lat),
            error_messages,
        }
    }

    fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", json!(self));
            return;
        }
        let c = &self.counts;
        println!(
            "{}: {} requested, {} fulfilled, {} failed, {} gone, {} timed out, {} cancelled, {} errors, {} resubmitted",
            self.mode, c.requested, c.fulfilled, c.failed, c.gone, c.timed_out, c.cancelled, c.errors, c.resubmitted
        );
        println!(
            "elapsed {:.3} s, throughput {:.2} fulfilled/s",
            self.elapsed_s, self.throughput_per_s
        );
        let l = &self.latency;
        if l.count > 0 {
            println!(
                "latency submit->fulfilled (ms): min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}",
                l.min_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms
            );
        }
        for e in &self.error_messages {
            println!("error: {e}");
        }
    }
}

async fn run_once(zuul: FakeZuul, spec: Spec, as_json: bool) -> bool {
    let (_tx, rx) = watch::channel(false);
    let run = lifecycle(zuul, spec, Instant::now(), rx).await;
    let id = run.request.as_ref().map(|i| i.to_string());
    if as_json {
        let nodes: Vec<Value> = run
            .nodes
            .iter()
            .map(|(id, label, rec)| json!({"id": id, "label": label, "record": rec}))
            .collect();
        println!(
            "{}",
            json!({
                "mode": "once",
                "request": id,
                "outcome": run.fate,
                "latency_ms": run.latency.map(|d| d.as_secs_f64() * 1000.0),
                "nodes": nodes,
                "error": run.error,
                "resubmitted": run.resubmitted,
            })
        );
    } else {
        let id = id.as_deref().unwrap_or("(not submitted)");
        let fate = serde_json::to_value(run.fate)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match run.latency {
            Some(l) => println!(
                "request {id}: {fate} after {:.1} ms",
                l.as_secs_f64() * 1000.0
            ),
            None => println!("request {id}: {fate}"),
        }
        for (nid, label, rec) in &run.nodes {
            println!("node {nid} ({label}): {}", Value::Object(rec.clone()));
        }
        if let Some(e) = &run.error {
            println!("error: {e}");
        }
    }
    run.fate == Fate::Fulfilled
}

async fn run_burst(zuul: FakeZuul, spec: Spec, count: usize, as_json: bool) -> bool {
    let (_tx, rx) = watch::channel(false);
    let epoch = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..count {
        set.spawn(lifecycle(zuul.clone(), spec.clone(), epoch, rx.clone()));
    }
    let mut runs = Vec::with_capacity(count);
    while let Some(r) = set.join_next().await {
        runs.push(r.unwrap_or_else(|e| Run::error(None, format!("task failed: {e}"))));
    }
    // Throughput is measured up to the last outcome, not including the node returns.
    let elapsed = runs
        .iter()
        .filter_map(|r| r.outcome_at)
        .max()
        .unwrap_or_else(|| epoch.elapsed());
    let summary = Summary::new("burst", &spec.labels, &runs, elapsed);
    summary.print(as_json);
    summary.counts.all_good()
}

async fn run_stream(
    zuul: FakeZuul,
    spec: Spec,
    rate: f64,
    count: Option<u64>,
    report_every: Duration,
    as_json: bool,
) -> bool {
    let (tx, rx) = watch::channel(false);
    let epoch = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = (!report_every.is_zero()).then(|| {
        let mut i = tokio::time::interval_at(epoch + report_every, report_every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut set = JoinSet::new();
    let mut runs = Vec::new();
    let mut submitted: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        if count.is_some_and(|c| submitted >= c) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {
                submitted += 1;
                set.spawn(lifecycle(zuul.clone(), spec.clone(), epoch, rx.clone()));
            }
            Some(r) = set.join_next(), if !set.is_empty() => {
                runs.push(r.unwrap_or_else(|e| Run::error(None, format!("task failed: {e}"))));
            }
            _ = async { match report.as_mut() { Some(i) => { i.tick().await; } None => std::future::pending::<()>().await } } => {
                let s = Summary::new("stream", &spec.labels, &runs, epoch.elapsed());
                eprintln!(
                    "t={:.0}s submitted={} fulfilled={} failed={} errors={} in-flight={} p50={:.1}ms p99={:.1}ms",
                    s.elapsed_s, submitted, s.counts.fulfilled, s.counts.failed,
                    s.counts.errors + s.counts.gone + s.counts.timed_out, set.len(),
                    s.latency.p50_ms, s.latency.p99_ms
                );
            }
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
        }
    }
    if interrupted {
        eprintln!(
            "interrupted: cancelling {} requests in flight and returning their nodes",
            set.len()
        );
        let _ = tx.send(true);
    }
    // Let the runs in flight finish (bounded after an interrupt).
    let drain = async {
        while let Some(r) = set.join_next().await {
            runs.push(r.unwrap_or_else(|e| Run::error(None, format!("task failed: {e}"))));
        }
    };
    if interrupted {
        if tokio::time::timeout(Duration::from_secs(30), drain)
            .await
            .is_err()
        {
            eprintln!("some requests did not finish within 30 s after the interrupt");
        }
    } else {
        drain.await;
    }
    let summary = Summary::new("stream", &spec.labels, &runs, epoch.elapsed());
    summary.print(as_json);
    summary.counts.all_good()
}

async fn connect(cli: &Cli) -> Result<ZkClient, String> {
    let hosts = parse_hosts(&cli.zk).map_err(|e| format!("--zk: {e}"))?;
    let connect_timeout = secs("connect-timeout", cli.connect_timeout)?;
    let tls = match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(ZkTls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None, None) => None,
        _ => return Err("--tls-ca, --tls-cert and --tls-key go together".into()),
    };
    let mut settings = ZkSettings::new(hosts).with_chroot(cli.chroot.clone());
    settings.tls = tls;
    settings.connect_timeout = Some(connect_timeout);
    // The session handshake itself must not outlast the connect timeout by much.
    settings.session_timeout = settings
        .session_timeout
        .min(connect_timeout.max(Duration::from_secs(2)));
    let hosts = settings.connect_string();
    let limit = connect_timeout + Duration::from_secs(3);
    match tokio::time::timeout(limit, ZkClient::connect(settings)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!(
            "ZooKeeper {hosts} not reachable within {connect_timeout:?}: {e}"
        )),
        Err(_) => Err(format!(
            "ZooKeeper {hosts} not reachable within {connect_timeout:?}"
        )),
    }
}

async fn run(cli: Cli) -> Result<bool, String> {
    if cli.labels.iter().any(|l| l.trim().is_empty()) {
        return Err("--label: empty label".into());
    }
    let hold = match &cli.mode {
        Mode::Once { hold } | Mode::Burst { hold, .. } | Mode::Stream { hold, .. } => {
            secs("hold", *hold)?
        }
    };
    let spec = Spec {
        labels: cli.labels.clone(),
        priority: cli.priority,
        relative_priority: cli.relative_priority,
        tenant: cli.tenant.clone(),
        provider: cli.provider.clone(),
        project: cli.project.clone(),
        timeout: secs("timeout", cli.timeout)?,
        hold,
    };
    if let Mode::Stream {
        rate, report_every, ..
    } = &cli.mode
    {
        if !(rate.is_finite() && *rate > 0.0) {
            return Err(format!("--rate {rate}: must be a positive number"));
        }
        secs("report-every", *report_every)?;
    }
    let client = connect(&cli).await?;
    let zuul = FakeZuul::new(client.clone(), cli.system_id.clone());
    let ok = match cli.mode {
        Mode::Once { .. } => run_once(zuul, spec, cli.json).await,
        Mode::Burst { count, .. } => run_burst(zuul, spec, count, cli.json).await,
        Mode::Stream {
            rate,
            count,
            report_every,
            ..
        } => {
            let every = Duration::from_secs_f64(report_every);
            run_stream(zuul, spec, rate, count, every, cli.json).await
        }
    };
    client.close().await;
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("zuul-sim: error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn hosts_parse() {
        assert_eq!(
            parse_hosts("127.0.0.1:2181,zk2").unwrap(),
            vec![("127.0.0.1".into(), 2181), ("zk2".into(), DEFAULT_PORT)]
        );
        assert_eq!(
            parse_hosts("[::1]:2182").unwrap(),
            vec![("::1".into(), 2182)]
        );
        assert!(parse_hosts("").is_err());
        assert!(parse_hosts("h:x").is_err());
        assert!(parse_hosts("h:0").is_err());
        assert!(parse_hosts("::1:2181").is_err());
        assert!(parse_hosts("[::1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        assert!(parse_priority("200").is_ok());
        assert!(parse_priority("250").is_err());
    }
}
