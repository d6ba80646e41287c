//! `nodepool-builder`: builds diskimages with diskimage-builder, uploads them to every
//! provider, rotates and cleans up old builds and uploads, coordinating with other
//! builders only through ZooKeeper. Takes Python Nodepool's command line with its
//! meaning: detaches unless `-d`/`-f` (pidfile `-p`, default
//! `/var/run/nodepool/nodepool-builder.pid`), logs as `-l` says, tells systemd when it
//! is ready. SIGINT/SIGTERM stop it gracefully; SIGUSR2 logs the current activity;
//! SIGHUP reopens the log files.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nodepool_daemon::builder::{self, BuilderOptions};
use nodepool_daemon::service::args::BuilderArgs as Args;
use nodepool_daemon::service::{self, absolute, notify};
use nodepool_shared::config::ConfigSource;
use nodepool_shared::stats::{Metrics, Statsd};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

/// Nodepool's app name for the builder: its default pidfile and log file names.
const APP: &str = "nodepool-builder";

fn options(args: &Args) -> Result<BuilderOptions, String> {
    let statsd = Statsd::from_env().map_err(|e| format!("statsd: {e}"))?;
    let config = ConfigSource::new(absolute(&args.config), args.secure.as_deref().map(absolute));
    let mut opts = BuilderOptions::new(config);
    opts.build_workers = args.build_workers;
    opts.upload_workers = args.upload_workers;
    opts.cleanup_interval = args.cleanup_interval;
    opts.retry_delay = args.retry_delay;
    opts.scan_interval = args.scan_interval;
    opts.config_check_interval = args.config_check_interval;
    opts.statsd = statsd.with_prometheus(std::sync::Arc::new(Metrics::new()));
    Ok(opts)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nodepool-builder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let validate = || opts.config.load().map(|_| ()).map_err(|e| e.to_string());
    let mut svc = match service::start(APP, &args.daemon, validate) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nodepool-builder: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.repl {
        info!("--repl is not supported and ignored; SIGUSR2 logs the activity");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("cannot start the async runtime: {e}");
            svc.failed(&msg);
            eprintln!("nodepool-builder: {msg}");
            return ExitCode::FAILURE;
        }
    };
    svc.started();
    let code = runtime.block_on(async {
        let _hup = svc.spawn_sighup();
        run(opts, args.metrics_listen).await
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(svc);
    code
}

async fn run(opts: BuilderOptions, metrics_listen: Option<std::net::SocketAddr>) -> ExitCode {
    let metrics = opts.statsd.prometheus().cloned();
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
    let stop_listener = tokio_util::sync::CancellationToken::new();
    if let (Some(addr), Some(metrics)) = (metrics_listen, metrics) {
        let health: nodepool_daemon::metrics::Health = std::sync::Arc::new(handle.health());
        if let Err(e) =
            nodepool_daemon::metrics::serve_builder(addr, metrics, health, stop_listener.clone())
                .await
        {
            error!("{e}");
            handle.stop();
            return ExitCode::FAILURE;
        }
    }
    notify::ready("ready: connected to ZooKeeper, builder registered");
    // systemd's watchdog runs from READY=1 on.
    let watchdog = notify::spawn_watchdog();
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = usr2.recv() => info!("state:\n{}", handle.state_report()),
        }
    }
    notify::stopping("stopping");
    if let Some(w) = watchdog {
        w.abort();
    }
    handle.stop();
    stop_listener.cancel();
    handle.wait().await;
    ExitCode::SUCCESS
}
