//! `nodepool-builder`: builds diskimages with diskimage-builder, uploads them to every
//! provider, rotates and cleans up old builds and uploads, coordinating with other
//! builders only through ZooKeeper. Always runs in the foreground (`-f`/`-d` are
//! accepted for compatibility). SIGINT/SIGTERM stop it gracefully; SIGUSR2 logs the
//! current activity.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nodepool_daemon::builder::{self, BuilderOptions};
use nodepool_shared::config::ConfigSource;
use nodepool_shared::stats::Statsd;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Parser, Debug)]
#[command(
    name = "nodepool-builder",
    version,
    about = "Build diskimages and upload them to the providers (Nodepool 11 compatible).",
    long_about = "Build diskimages and upload them to the providers (Nodepool 11 compatible).\n\n\
        Always runs in the foreground and logs to stderr; -f and -d are accepted for \
        compatibility (-d turns on debug logging). SIGINT/SIGTERM stop gracefully \
        (a running build is killed and recorded failed, locks are released); SIGUSR2 \
        logs the current builds, uploads and counters. statsd: STATSD_HOST/STATSD_PORT. \
        clouds.yaml: OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack."
)]
struct Args {
    /// Path to the config file.
    #[arg(short = 'c', default_value = "/etc/nodepool/nodepool.yaml")]
    config: PathBuf,
    /// Path to the secure config file.
    #[arg(short = 's')]
    secure: Option<PathBuf>,
    /// Number of concurrent builds.
    #[arg(long, default_value_t = 1)]
    build_workers: usize,
    /// Number of concurrent uploads.
    #[arg(long, default_value_t = 4)]
    upload_workers: usize,
    /// Run in the foreground (always the case; accepted for compatibility).
    #[arg(short = 'f')]
    foreground: bool,
    /// Foreground with debug logging.
    #[arg(short = 'd')]
    debug: bool,
    /// Write the process id to this file (removed on exit).
    #[arg(short = 'p')]
    pidfile: Option<PathBuf>,
    /// Logging config file (accepted for compatibility and ignored; use RUST_LOG).
    #[arg(short = 'l')]
    logconfig: Option<PathBuf>,
    /// Seconds between cleanup passes.
    #[arg(long, default_value = "60", value_parser = seconds)]
    cleanup_interval: Duration,
    /// Seconds to wait after a failed build or upload before retrying that image.
    #[arg(long, default_value = "10", value_parser = seconds)]
    retry_delay: Duration,
    /// Seconds between safety-net scheduler passes (ZooKeeper watches trigger the rest).
    #[arg(long, default_value = "60", value_parser = seconds)]
    scan_interval: Duration,
    /// Seconds between checks of the config files for changes.
    #[arg(long, default_value = "5", value_parser = seconds)]
    config_check_interval: Duration,
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

struct PidFile(Option<PathBuf>);

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.debug);
    if args.logconfig.is_some() {
        info!("-l is ignored; set RUST_LOG to configure logging");
    }
    let _pid = match &args.pidfile {
        Some(p) => match std::fs::write(p, format!("{}\n", std::process::id())) {
            Ok(()) => PidFile(Some(p.clone())),
            Err(e) => {
                error!("cannot write pidfile {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => PidFile(None),
    };
    let statsd = match Statsd::from_env() {
        Ok(s) => s,
        Err(e) => {
            error!("statsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut opts = BuilderOptions::new(ConfigSource::new(&args.config, args.secure.clone()));
    opts.build_workers = args.build_workers;
    opts.upload_workers = args.upload_workers;
    opts.cleanup_interval = args.cleanup_interval;
    opts.retry_delay = args.retry_delay;
    opts.scan_interval = args.scan_interval;
    opts.config_check_interval = args.config_check_interval;
    opts.statsd = statsd;
    let (mut term, mut int, mut usr2) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let handle = match builder::start(opts).await {
        Ok(h) => h,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = usr2.recv() => info!("state:\n{}", handle.state_report()),
        }
    }
    handle.stop();
    handle.wait().await;
    ExitCode::SUCCESS
}
