//! `openstack-sim`: the OpenStack API simulator as a standalone process (for the OpenStack CLI,
//! benchmarks and manual runs). Prints `openstack-sim listening on <url>` once bound.
//!
//! Every run-time knob of `PATCH /admin/knobs` and every leak of `POST /admin/leaks/...` has a
//! flag here, so a fault scenario can be set up from the command line alone.

// Flag docs are clap help text in the syntax of the flags (`[,pool=POOL]`), not rustdoc.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::Parser;
use nodepool_tests::sim::{CloudsAuth, FailNext, Knobs, LeakedServer, SimConfig, Simulator};

#[derive(Parser, Debug)]
#[command(
    name = "openstack-sim",
    version = nodepool_shared::version::LONG,
    about = "In-memory OpenStack API simulator on 127.0.0.1",
    after_help = "Operation names (OP) are those counted by GET /admin/counters, e.g. \
compute.servers.create, compute.servers.detail, compute.servers.delete, image.images.upload, \
network.floatingips.list, identity.tokens.create. Knob flags set the initial value of the \
knob of the same name (see PATCH /admin/knobs; --error-boots is fail_next_boots, --hang-boots \
is hang_next_boots, --error-rate-for and --error-rate fill error_rates); leak flags add their resources once at start, \
after a --state-file is loaded."
)]
struct Args {
    /// TCP port on 127.0.0.1 (0 = pick a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// JSON file with a full simulator configuration (flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Region name in the service catalog.
    #[arg(long)]
    region: Option<String>,
    /// An availability zone Nova offers (repeatable; the first is the default; replaces
    /// the configured ones). PUT /admin/availability-zones changes them at run time.
    #[arg(long, value_name = "NAME")]
    availability_zone: Vec<String>,
    /// Give the shared `provider` network an IPv6 subnet too (IPv4-mapped addresses,
    /// ::ffff:127.30.x.y): its servers also get a public IPv6 address.
    #[arg(long)]
    ipv6: bool,
    /// Milliseconds a server stays in BUILD.
    #[arg(long)]
    boot_delay_ms: Option<u64>,
    /// Milliseconds a deleted server keeps showing before it is gone.
    #[arg(long)]
    delete_delay_ms: Option<u64>,
    /// Milliseconds added to every API call.
    #[arg(long)]
    api_latency_ms: Option<u64>,
    /// Milliseconds an image upload stays in `saving` before its data is read.
    #[arg(long)]
    image_upload_delay_ms: Option<u64>,
    /// Instance quota (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    quota_instances: Option<i64>,
    /// Cores quota (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    quota_cores: Option<i64>,
    /// RAM quota in MiB (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    quota_ram: Option<i64>,
    /// Cinder volume count quota (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    quota_volumes: Option<i64>,
    /// Cinder volume size quota in GB (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    quota_gigabytes: Option<i64>,
    /// Extra latency of one operation's calls, as OP=MS (on top of --api-latency-ms);
    /// repeatable.
    #[arg(long, value_name = "OP=MS")]
    api_latency_ms_for: Vec<String>,
    /// Probability (0-1) that any API call fails with --error-status.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Probability (0-1) that a call of one operation fails with --error-status, as OP=RATE
    /// (e.g. compute.servers.create=0.3); repeatable; overrides --error-rate for that operation.
    #[arg(long, value_name = "OP=RATE")]
    error_rate_for: Vec<String>,
    /// HTTP status for injected failures (--error-rate, --error-rate-for).
    #[arg(long)]
    error_status: Option<u16>,
    /// The first N calls of an operation fail, as OP=N or OP=N:STATUS (default status 500);
    /// repeatable.
    #[arg(long, value_name = "OP=N[:STATUS]")]
    fail_next: Vec<String>,
    /// The first N calls of an operation get `200 OK` with a body that is not JSON, as OP=N;
    /// repeatable.
    #[arg(long, value_name = "OP=N")]
    garbage_next: Vec<String>,
    /// The first N servers created go to ERROR (with a fault) after the boot delay.
    #[arg(long, value_name = "N")]
    error_boots: Option<u32>,
    /// Fault message of servers that go to ERROR (--error-boots).
    #[arg(long, value_name = "MSG")]
    boot_fault_message: Option<String>,
    /// The first N servers created (after any --error-boots) stay in BUILD forever.
    #[arg(long, value_name = "N")]
    hang_boots: Option<u32>,
    /// Every server created stays in BUILD forever.
    #[arg(long)]
    hang_all_boots: bool,
    /// Add an ACTIVE leaked server with Nodepool metadata at start, as PROVIDER or
    /// provider=P[,node_id=ID][,pool=POOL][,flavor=FLAVOR]; repeatable.
    #[arg(long, value_name = "SPEC")]
    leak_server: Vec<String>,
    /// Add N unattached floating IPs on the external network at start.
    #[arg(long, value_name = "N")]
    leak_floating_ips: Option<usize>,
    /// Add N DOWN ports owned by compute:nova whose server is gone at start.
    #[arg(long, value_name = "N")]
    leak_ports: Option<usize>,
    /// Add an image with Nodepool upload properties at start, as
    /// provider=P,build_id=B,upload_id=U; repeatable.
    #[arg(long, value_name = "SPEC")]
    leak_image: Vec<String>,
    /// User name Keystone accepts (default nodepool).
    #[arg(long)]
    username: Option<String>,
    /// Password Keystone accepts (default secret).
    #[arg(long)]
    password: Option<String>,
    /// Project name Keystone scopes tokens to (default nodepool).
    #[arg(long)]
    project_name: Option<String>,
    /// Application credential id Keystone accepts (default nodepool-appcred).
    #[arg(long)]
    app_credential_id: Option<String>,
    /// Application credential secret Keystone accepts (default appcred-secret).
    #[arg(long)]
    app_credential_secret: Option<String>,
    /// JSON snapshot: loaded at start if present, written at shutdown.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Directory to store uploaded image data (default: count and hash only).
    #[arg(long)]
    image_store_dir: Option<PathBuf>,
    /// Do not compute checksums of uploaded images (faster large uploads).
    #[arg(long)]
    no_hash_uploads: bool,
    /// Write a clouds.yaml for this simulator to this path once bound.
    #[arg(long)]
    write_clouds_yaml: Option<PathBuf>,
    /// Cloud name used in the written clouds.yaml.
    #[arg(long, default_value = "sim")]
    cloud_name: String,
    /// Use application-credential auth in the written clouds.yaml.
    #[arg(long)]
    app_credential_auth: bool,
    /// Port of the fake sshds on the simulated servers' loopback addresses (default 22,
    /// which needs root; 0 = a free port, printed at start).
    #[arg(long)]
    ssh_port: Option<u16>,
    /// Milliseconds after a server becomes reachable before its fake sshd answers.
    #[arg(long)]
    ssh_delay_ms: Option<u64>,
    /// The fake sshds never answer (their ports stay closed).
    #[arg(long)]
    ssh_never: bool,
}

fn build_config(a: &Args) -> Result<SimConfig, String> {
    let mut c = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "invalid simulator config {}:{}:{}: {e}",
                    p.display(),
                    e.line(),
                    e.column()
                )
            })?
        }
        None => SimConfig::default(),
    };
    c.port = a.port;
    if let Some(p) = a.ssh_port {
        c.ssh_port = p;
    }
    if let Some(r) = &a.region {
        c.region = r.clone();
    }
    if !a.availability_zone.is_empty() {
        let mut seen = std::collections::HashSet::new();
        for z in &a.availability_zone {
            if z.is_empty() || !seen.insert(z) {
                return Err(format!(
                    "--availability-zone `{z}`: zone names must be non-empty and distinct"
                ));
            }
        }
        c.availability_zones = a.availability_zone.clone();
    }
    if a.ipv6 {
        c.ipv6 = true;
    }
    apply_knob_flags(a, &mut c.knobs);
    apply_failure_flags(a, &mut c.knobs)?;
    let cr = &mut c.credentials;
    for (flag, field) in [
        (&a.username, &mut cr.username),
        (&a.password, &mut cr.password),
        (&a.project_name, &mut cr.project_name),
        (&a.app_credential_id, &mut cr.app_credential_id),
        (&a.app_credential_secret, &mut cr.app_credential_secret),
    ] {
        if let Some(v) = flag {
            *field = v.clone();
        }
    }
    if a.state_file.is_some() {
        c.state_file = a.state_file.clone();
    }
    if a.image_store_dir.is_some() {
        c.image_store_dir = a.image_store_dir.clone();
    }
    if a.no_hash_uploads {
        c.hash_uploads = false;
    }
    Ok(c)
}

/// The knob flags for delays, quota and boots.
fn apply_knob_flags(a: &Args, k: &mut Knobs) {
    if let Some(v) = a.boot_delay_ms {
        k.boot_delay_ms = v;
    }
    if let Some(v) = a.delete_delay_ms {
        k.delete_delay_ms = v;
    }
    if let Some(v) = a.api_latency_ms {
        k.api_latency_ms = v;
    }
    if let Some(v) = a.ssh_delay_ms {
        k.ssh_delay_ms = v;
    }
    if a.ssh_never {
        k.ssh_never = true;
    }
    if let Some(v) = a.image_upload_delay_ms {
        k.image_upload_delay_ms = v;
    }
    let q = &mut k.quota;
    for (flag, field) in [
        (a.quota_instances, &mut q.instances),
        (a.quota_cores, &mut q.cores),
        (a.quota_ram, &mut q.ram),
        (a.quota_volumes, &mut q.volumes),
        (a.quota_gigabytes, &mut q.gigabytes),
    ] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    if let Some(n) = a.error_boots {
        k.fail_next_boots = n;
    }
    if let Some(m) = &a.boot_fault_message {
        k.boot_fault_message = m.clone();
    }
    if let Some(n) = a.hang_boots {
        k.hang_next_boots = n;
    }
    if a.hang_all_boots {
        k.hang_all_boots = true;
    }
}

/// The knob flags that inject API failures, and per-operation latency.
fn apply_failure_flags(a: &Args, k: &mut Knobs) -> Result<(), String> {
    if let Some(r) = a.error_rate {
        if !(0.0..=1.0).contains(&r) {
            return Err(format!("--error-rate must be between 0 and 1, got {r}"));
        }
        k.error_rates.insert("*".into(), r);
    }
    for spec in &a.error_rate_for {
        let (op, rate) = split_op("--error-rate-for", spec)?;
        let r: f64 = rate
            .parse()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                format!("--error-rate-for {spec}: the rate must be a number between 0 and 1")
            })?;
        k.error_rates.insert(op.to_string(), r);
    }
    if let Some(s) = a.error_status {
        k.error_status = http_status("--error-status", s)?;
    }
    for spec in &a.fail_next {
        let (op, rest) = split_op("--fail-next", spec)?;
        let (count, status) = match rest.split_once(':') {
            Some((n, st)) => (n, Some(st)),
            None => (rest, None),
        };
        let count: u32 = count
            .parse()
            .map_err(|_| format!("--fail-next {spec}: N must be a non-negative integer"))?;
        let status = match status {
            Some(st) => http_status(
                "--fail-next",
                st.parse()
                    .map_err(|_| format!("--fail-next {spec}: STATUS must be an HTTP status"))?,
            )?,
            None => 500,
        };
        k.fail_next
            .insert(op.to_string(), FailNext { count, status });
    }
    for spec in &a.api_latency_ms_for {
        let (op, ms) = split_op("--api-latency-ms-for", spec)?;
        let ms: u64 = ms.parse().map_err(|_| {
            format!("--api-latency-ms-for {spec}: MS must be a non-negative integer")
        })?;
        k.api_latency_ms_for.insert(op.to_string(), ms);
    }
    for spec in &a.garbage_next {
        let (op, n) = split_op("--garbage-next", spec)?;
        let n: u32 = n
            .parse()
            .map_err(|_| format!("--garbage-next {spec}: N must be a non-negative integer"))?;
        k.garbage_next.insert(op.to_string(), n);
    }
    Ok(())
}

/// `OP=VALUE` → (`OP`, `VALUE`), both non-empty.
fn split_op<'a>(flag: &str, spec: &'a str) -> Result<(&'a str, &'a str), String> {
    match spec.split_once('=') {
        Some((op, v)) if !op.is_empty() && !v.is_empty() => Ok((op, v)),
        _ => Err(format!("{flag} {spec}: expected OP=VALUE")),
    }
}

fn http_status(flag: &str, s: u16) -> Result<u16, String> {
    if (100..=599).contains(&s) {
        Ok(s)
    } else {
        Err(format!("{flag}: {s} is not an HTTP status"))
    }
}

/// `k1=v1,k2=v2` → pairs; a bare first word is the value of `bare_key`.
fn key_values(
    flag: &str,
    spec: &str,
    bare_key: Option<&str>,
    keys: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, part) in spec.split(',').enumerate() {
        let (k, v) = match (part.split_once('='), bare_key) {
            (Some((k, v)), _) => (k, v),
            (None, Some(bare)) if i == 0 => (bare, part),
            (None, _) => return Err(format!("{flag} {spec}: expected KEY=VALUE, got {part:?}")),
        };
        if !keys.contains(&k) {
            return Err(format!(
                "{flag} {spec}: unknown key {k:?} (known: {})",
                keys.join(", ")
            ));
        }
        if v.is_empty() {
            return Err(format!("{flag} {spec}: empty value for {k}"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parses a `--leak-server` value.
fn leaked_server(spec: &str) -> Result<LeakedServer, String> {
    let mut l = LeakedServer::default();
    let keys = ["provider", "node_id", "pool", "flavor"];
    for (k, v) in key_values("--leak-server", spec, Some("provider"), &keys)? {
        match k.as_str() {
            "provider" => l.provider = v,
            "node_id" => l.node_id = Some(v),
            "pool" => l.pool = Some(v),
            _ => l.flavor = Some(v),
        }
    }
    if l.provider.is_empty() {
        return Err(format!("--leak-server {spec}: provider is required"));
    }
    Ok(l)
}

/// A `--leak-image` value: provider, build id, upload id.
struct LeakedImage {
    provider: String,
    build_id: String,
    upload_id: String,
}

fn leaked_image(spec: &str) -> Result<LeakedImage, String> {
    let keys = ["provider", "build_id", "upload_id"];
    let kv = key_values("--leak-image", spec, None, &keys)?;
    let get = |key: &str| {
        kv.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("--leak-image {spec}: {key} is required"))
    };
    Ok(LeakedImage {
        provider: get("provider")?,
        build_id: get("build_id")?,
        upload_id: get("upload_id")?,
    })
}

/// Leaks to add once the simulator runs (parsed before it starts).
struct Leaks {
    servers: Vec<LeakedServer>,
    images: Vec<LeakedImage>,
    floating_ips: usize,
    ports: usize,
}

fn build_leaks(a: &Args) -> Result<Leaks, String> {
    Ok(Leaks {
        servers: a
            .leak_server
            .iter()
            .map(|s| leaked_server(s))
            .collect::<Result<_, _>>()?,
        images: a
            .leak_image
            .iter()
            .map(|s| leaked_image(s))
            .collect::<Result<_, _>>()?,
        floating_ips: a.leak_floating_ips.unwrap_or(0),
        ports: a.leak_ports.unwrap_or(0),
    })
}

fn inject_leaks(admin: &nodepool_tests::sim::SimAdmin, leaks: &Leaks) -> Result<(), String> {
    for l in &leaks.servers {
        admin
            .leak_server(l)
            .map_err(|e| format!("--leak-server {}: {e}", l.provider))?;
    }
    for i in &leaks.images {
        admin.inject_leaked_image(&i.provider, &i.build_id, &i.upload_id);
    }
    for _ in 0..leaks.floating_ips {
        admin.inject_leaked_floating_ip();
    }
    for _ in 0..leaks.ports {
        admin.inject_down_port();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (config, leaks) = match build_config(&args).and_then(|c| Ok((c, build_leaks(&args)?))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("openstack-sim: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let handle = match Simulator::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("openstack-sim: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = inject_leaks(&handle.admin(), &leaks) {
        eprintln!("openstack-sim: {e}");
        return std::process::ExitCode::from(2);
    }
    if let Some(p) = &args.write_clouds_yaml {
        let auth = if args.app_credential_auth {
            CloudsAuth::ApplicationCredential
        } else {
            CloudsAuth::Password
        };
        if let Err(e) = std::fs::write(p, handle.clouds_yaml_with(&args.cloud_name, auth)) {
            eprintln!("openstack-sim: cannot write {}: {e}", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    // The handlers exist before the "listening" line: whoever reads it may signal at once
    // (a signal before that killed the process instead of stopping it in order).
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("openstack-sim: cannot install SIGTERM/SIGINT handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("openstack-sim listening on {}", handle.url());
    println!("openstack-sim fake sshd port {}", handle.ssh_port());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    match handle.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openstack-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
