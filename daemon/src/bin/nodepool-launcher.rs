//! `nodepool-launcher`: fulfils Zuul's node requests from OpenStack clouds (see
//! `docs/launcher.md`). Takes Python Nodepool's command line with its meaning: detaches
//! unless `-d`/`-f` (pidfile `-p`, default `/var/run/nodepool/nodepool.pid`), logs as
//! `-l`'s Python logging config says, and tells systemd when it is ready.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nodepool_daemon::launcher::daemon::{run, LauncherOptions};
use nodepool_daemon::launcher::runtime::Intervals;
use nodepool_daemon::service::args::LauncherArgs as Args;
use nodepool_daemon::service::{self, absolute, notify};
use nodepool_shared::config::ConfigSource;
use tokio_util::sync::CancellationToken;

/// Nodepool's app name for the launcher: its default pidfile and log file names.
const APP: &str = "nodepool";

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
        ..d
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
    service::memory::limit_arenas();
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
        let trimmer = tokio::spawn(service::memory::trim_freed_memory(cancel.child_token()));
        let code = match run(opts, cancel.clone()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("nodepool-launcher: {e}");
                ExitCode::FAILURE
            }
        };
        cancel.cancel();
        let _ = trimmer.await;
        watchdog.abort();
        code
    });
    // Do not wait for stray blocking tasks.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(svc);
    code
}
