//! `nodepool-launcher`: fulfils Zuul's node requests from OpenStack clouds (see
//! `docs/launcher.md`). Always runs in the foreground; `-d`/`-f` are accepted for
//! compatibility with Python Nodepool's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use nodepool_daemon::launcher::daemon::{run, LauncherOptions};
use nodepool_daemon::launcher::runtime::Intervals;
use tokio_util::sync::CancellationToken;

/// Launch and manage cloud nodes for Zuul (Nodepool 11 compatible).
#[derive(Parser, Debug)]
#[command(name = "nodepool-launcher", version)]
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
    /// Write the process id to this file.
    #[arg(short = 'p', long = "pidfile")]
    pidfile: Option<PathBuf>,
    /// Accepted for compatibility; the launcher always runs in the foreground.
    #[arg(short = 'd', long = "nodaemon")]
    nodaemon: bool,
    /// Accepted for compatibility; the launcher always runs in the foreground.
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Accepted for compatibility (Python logging config file); logging is configured
    /// with RUST_LOG and goes to stderr.
    #[arg(short = 'l', long = "logconfig")]
    logconfig: Option<PathBuf>,
    /// clouds.yaml to use (default: the openstacksdk search path, OS_CLIENT_CONFIG_FILE first).
    #[arg(long = "clouds")]
    clouds: Option<PathBuf>,
    /// Test knob: CleanupWorker period in seconds (default 60); also how soon a static
    /// host that failed its check is tried again.
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

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.logconfig.is_some() {
        tracing::info!("-l is ignored: logging is configured with RUST_LOG");
    }
    let _ = (args.nodaemon, args.foreground);
    if let Some(p) = &args.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!(
                "nodepool-launcher: cannot write pidfile {}: {e}",
                p.display()
            );
            return std::process::ExitCode::FAILURE;
        }
    }
    let d = Intervals::default();
    let intervals = Intervals {
        cleanup: secs(args.cleanup_interval, d.cleanup),
        delete: secs(args.delete_interval, d.delete),
        stats: secs(args.stats_interval, d.stats),
        config_check: secs(args.config_check_interval, d.config_check),
        pool_tick: secs(args.pool_tick, d.pool_tick),
        ..d
    };
    let mut opts = LauncherOptions::new(args.config.clone());
    opts.secure = args.secure.clone();
    opts.webapp = !args.no_webapp;
    opts.intervals = intervals;
    opts.clouds_file = args.clouds.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nodepool-launcher: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut usr1)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::user_defined1()),
            ) else {
                return;
            };
            // SIGINT and SIGUSR1 stop in order as in Nodepool; SIGTERM, an immediate
            // exit there, stops in order here too (locks released, components removed).
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = usr1.recv() => tracing::info!("SIGUSR1: stopping"),
            }
            c.cancel();
        });
        match run(opts, cancel).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("nodepool-launcher: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    });
    if let Some(p) = &args.pidfile {
        let _ = std::fs::remove_file(p);
    }
    // Do not wait for stray blocking tasks.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}
