//! The command lines of `nodepool-launcher` and `nodepool-builder` (Python Nodepool 11's
//! flags and ours), in the library so that the man pages and shell completions of the
//! package are generated from the same definitions (`tests/examples/gen-docs.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::DaemonArgs;

/// Launch and manage cloud nodes for Zuul (Nodepool 11 compatible).
#[derive(Parser, Debug)]
#[command(
    name = "nodepool-launcher",
    version = nodepool_shared::version::LONG,
    long_about = "Launch and manage cloud nodes for Zuul (Nodepool 11 compatible).\n\n\
        Without -d or -f it detaches (pidfile -p, default /var/run/nodepool/nodepool.pid) \
        and logs to /var/log/nodepool/nodepool.log; -f stays in the foreground logging to \
        stdout, -d also logs at DEBUG; -l reads a Python logging config (YAML dictConfig). \
        Under systemd Type=notify it sends READY=1 once connected to ZooKeeper with its \
        components registered. SIGINT, SIGTERM and SIGUSR1 stop gracefully, SIGUSR2 logs a \
        state dump, SIGHUP reopens the log files. statsd: STATSD_HOST/STATSD_PORT; \
        clouds.yaml: --clouds, OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, \
        /etc/openstack."
)]
pub struct LauncherArgs {
    /// Path to the config file.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/nodepool/nodepool.yaml"
    )]
    pub config: PathBuf,
    /// Path to the secure file.
    #[arg(short = 's', long = "secure")]
    pub secure: Option<PathBuf>,
    /// Do not start the web API.
    #[arg(long = "no-webapp")]
    pub no_webapp: bool,
    /// Accepted for compatibility: there is no REPL (SIGUSR2 logs a state dump instead).
    #[arg(long = "repl")]
    pub repl: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// clouds.yaml to use (default: the openstacksdk search path, OS_CLIENT_CONFIG_FILE first).
    #[arg(long = "clouds")]
    pub clouds: Option<PathBuf>,
    /// Test knob: CleanupWorker period in seconds (default 60); also how soon a static
    /// host that failed its check is tried again.
    #[arg(long = "cleanup-interval", value_name = "SECONDS")]
    pub cleanup_interval: Option<f64>,
    /// Test knob: DeletedNodeWorker fallback period in seconds (default 5).
    #[arg(long = "delete-interval", value_name = "SECONDS")]
    pub delete_interval: Option<f64>,
    /// Test knob: minimum seconds between stats gauge passes (default 1).
    #[arg(long = "stats-interval", value_name = "SECONDS")]
    pub stats_interval: Option<f64>,
    /// Test knob: config-file check and min-ready period in seconds (default 1).
    #[arg(long = "config-check-interval", value_name = "SECONDS")]
    pub config_check_interval: Option<f64>,
    /// Test knob: pool worker fallback tick in seconds (default 1).
    #[arg(long = "pool-tick", value_name = "SECONDS")]
    pub pool_tick: Option<f64>,
}

/// A non-negative number of seconds.
pub fn seconds(s: &str) -> Result<Duration, String> {
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
    version = nodepool_shared::version::LONG,
    about = "Build diskimages and upload them to the providers (Nodepool 11 compatible).",
    long_about = "Build diskimages and upload them to the providers (Nodepool 11 compatible).\n\n\
        Without -d or -f it detaches (pidfile -p, default \
        /var/run/nodepool/nodepool-builder.pid) and logs to \
        /var/log/nodepool/nodepool-builder.log; -f stays in the foreground logging to stdout, \
        -d also logs at DEBUG; -l reads a Python logging config (YAML dictConfig). Under \
        systemd Type=notify it sends READY=1 once registered in ZooKeeper. SIGHUP reopens \
        the log files. SIGINT/SIGTERM stop gracefully \
        (a running build is killed and recorded failed, locks are released); SIGUSR2 \
        logs the current builds, uploads and counters. statsd: STATSD_HOST/STATSD_PORT. \
        clouds.yaml: OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack."
)]
pub struct BuilderArgs {
    /// Path to the config file.
    #[arg(short = 'c', default_value = "/etc/nodepool/nodepool.yaml")]
    pub config: PathBuf,
    /// Path to the secure config file.
    #[arg(short = 's')]
    pub secure: Option<PathBuf>,
    /// Number of concurrent builds.
    #[arg(long, default_value_t = 1)]
    pub build_workers: usize,
    /// Number of concurrent uploads.
    #[arg(long, default_value_t = 4)]
    pub upload_workers: usize,
    /// Serve Prometheus `/metrics` and a `/health` check (200 while running and connected
    /// to ZooKeeper, else 503) on this address, e.g. 127.0.0.1:9105 (off by default).
    #[arg(long = "metrics-listen", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Accepted for compatibility: there is no REPL (SIGUSR2 logs the activity instead).
    #[arg(long = "repl")]
    pub repl: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Seconds between cleanup passes.
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub cleanup_interval: Duration,
    /// Seconds to wait after a failed build or upload before retrying that image.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub retry_delay: Duration,
    /// Seconds between safety-net scheduler passes (ZooKeeper watches trigger the rest).
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub scan_interval: Duration,
    /// Seconds between checks of the config files for changes.
    #[arg(long, default_value = "5", value_parser = seconds)]
    pub config_check_interval: Duration,
}
