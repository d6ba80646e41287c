//! `nodepool-launcher`: fulfils Zuul's node requests from OpenStack clouds (see
//! `docs/launcher.md`). Takes Python Nodepool's command line with its meaning: detaches
//! unless `-d`/`-f` (pidfile `-p`, default `/var/run/nodepool/nodepool.pid`), logs as
//! `-l`'s Python logging config says, and tells systemd when it is ready.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nodepool_daemon::launcher::daemon::{run, LauncherOptions};
use nodepool_daemon::launcher::runtime::Intervals;
use nodepool_daemon::service::{self, absolute, notify, DaemonArgs};
use nodepool_shared::config::ConfigSource;
use tokio_util::sync::CancellationToken;

/// Nodepool's app name for the launcher: its default pidfile and log file names.
const APP: &str = "nodepool";

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
struct Args {
    /// Path to the config file.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/nodepool/nodepool.yaml"
    )]
    config: PathBuf,
    /// Path to the secure file.
    #[arg(short = 's', long = "secure")]
    secure: Option<PathBuf>,
    /// Do not start the web API.
    #[arg(long = "no-webapp")]
    no_webapp: bool,
    /// Accepted for compatibility: there is no REPL (SIGUSR2 logs a state dump instead).
    #[arg(long = "repl")]
    repl: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
    /// clouds.yaml to use (default: the openstacksdk search path, OS_CLIENT_CONFIG_FILE first).
    #[arg(long = "clouds")]
    clouds: Option<PathBuf>,
    /// Test knob: CleanupWorker period in seconds (default 60).
    #[arg(long = "cleanup-interval", value_name = "SECONDS")]
    cleanup_interval: Option<f64>,
    /// Test knob: DeletedNodeWorker fallback period in seconds (default 5).
    #[arg(long = "delete-interval", value_name = "SECONDS")]
    delete_interval: Option<f64>,
    /// Test knob: minimum seconds between stats gauge passes (default 1).
    #[arg(long = "stats-interval", value_name = "SECONDS")]
    stats_interval: Option<f64>,
    /// Test knob: config-file check and min-ready period in seconds (default 1).
    #[arg(long = "config-check-interval", value_name = "SECONDS")]
    config_check_interval: Option<f64>,
    /// Test knob: pool worker fallback tick in seconds (default 1).
    #[arg(long = "pool-tick", value_name = "SECONDS")]
    pool_tick: Option<f64>,
}

fn secs(v: Option<f64>, default: Duration) -> Duration {
    v.filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

fn options(args: &Args) -> LauncherOptions {
    let d = Intervals::default();
    let intervals = Intervals {
        cleanup: secs(args.cleanup_interval, d.cleanup),
        delete: secs(args.delete_interval, d.delete),
        stats: secs(args.stats_interval, d.stats),
        config_check: secs(args.config_check_interval, d.config_check),
        pool_tick: secs(args.pool_tick, d.pool_tick),
        request_lock_age: d.request_lock_age,
    };
    let mut opts = LauncherOptions::new(absolute(&args.config));
    opts.secure = args.secure.as_deref().map(absolute);
    opts.webapp = !args.no_webapp;
    opts.intervals = intervals;
    opts.clouds_file = args.clouds.as_deref().map(absolute);
    opts
}

/// SIGINT and SIGUSR1 stop in order as in Nodepool; SIGTERM, an immediate exit there,
/// stops in order here too (locks released, components removed).
async fn wait_for_stop(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut usr1)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = usr1.recv() => tracing::info!("SIGUSR1: stopping"),
    }
    notify::stopping("stopping");
    cancel.cancel();
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = options(&args);
    let source = ConfigSource::new(opts.config.clone(), opts.secure.clone());
    let validate = || source.load().map(|_| ()).map_err(|e| e.to_string());
    let mut svc = match service::start(APP, &args.daemon, validate) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nodepool-launcher: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.repl {
        tracing::warn!("--repl is not supported and ignored; SIGUSR2 logs a state dump");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("cannot start the async runtime: {e}");
            svc.failed(&msg);
            eprintln!("nodepool-launcher: {msg}");
            return ExitCode::FAILURE;
        }
    };
    svc.started();
    let code = runtime.block_on(async {
        let _hup = svc.spawn_sighup();
        let ready = Arc::new(tokio::sync::Notify::new());
        opts.on_ready = Some(ready.clone());
        // systemd's watchdog runs from READY=1 on.
        let watchdog = tokio::spawn(async move {
            ready.notified().await;
            notify::ready("ready: connected to ZooKeeper, components registered");
            if let Some(w) = notify::spawn_watchdog() {
                let _ = w.await;
            }
        });
        let cancel = CancellationToken::new();
        tokio::spawn(wait_for_stop(cancel.clone()));
        let code = match run(opts, cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("nodepool-launcher: {e}");
                ExitCode::FAILURE
            }
        };
        watchdog.abort();
        code
    });
    // Do not wait for stray blocking tasks.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(svc);
    code
}
