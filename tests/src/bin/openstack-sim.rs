//! `openstack-sim`: the OpenStack API simulator as a standalone process (for the OpenStack CLI,
//! benchmarks and manual runs). Prints `openstack-sim listening on <url>` once bound.

use std::path::PathBuf;

use clap::Parser;
use nodepool_tests::sim::{CloudsAuth, SimConfig, Simulator};

#[derive(Parser, Debug)]
#[command(
    name = "openstack-sim",
    about = "In-memory OpenStack API simulator on 127.0.0.1"
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
    /// Milliseconds a server stays in BUILD.
    #[arg(long)]
    boot_delay_ms: Option<u64>,
    /// Milliseconds a deleted server keeps showing before it is gone.
    #[arg(long)]
    delete_delay_ms: Option<u64>,
    /// Milliseconds added to every API call.
    #[arg(long)]
    api_latency_ms: Option<u64>,
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
    /// Probability (0-1) that any API call fails with --error-status.
    #[arg(long)]
    error_rate: Option<f64>,
    /// HTTP status for injected failures.
    #[arg(long)]
    error_status: Option<u16>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    project_name: Option<String>,
    #[arg(long)]
    app_credential_id: Option<String>,
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
    let k = &mut c.knobs;
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
    if let Some(r) = a.error_rate {
        if !(0.0..=1.0).contains(&r) {
            return Err(format!("--error-rate must be between 0 and 1, got {r}"));
        }
        k.error_rates.insert("*".into(), r);
    }
    if let Some(s) = a.error_status {
        k.error_status = s;
    }
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match build_config(&args) {
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
    println!("openstack-sim listening on {}", handle.url());
    println!("openstack-sim fake sshd port {}", handle.ssh_port());
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("openstack-sim: cannot install SIGTERM handler: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
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
