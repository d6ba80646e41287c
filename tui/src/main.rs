//! `nodepool-tui`: parses the command line, sets up the log file, runs the console in
//! the terminal and restores the terminal before any fatal error is printed.

use std::fs::OpenOptions;

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};
use nodepool_shared::model::now_epoch;
use nodepool_tui::app::{App, AppOptions};
use nodepool_tui::args::Args;
use nodepool_tui::runtime;

fn init_logging(args: &Args) -> Result<()> {
    let Some(path) = &args.log_file else {
        return Ok(());
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .wrap_err_with(|| format!("cannot open the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let args = Args::parse();
    init_logging(&args)?;
    let (settings, config) = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    let app = App::new(AppOptions {
        hosts: settings.connect_string(),
        read_only: args.read_only,
        config,
        now: now_epoch(),
    });
    tracing::info!(hosts = %settings.connect_string(), "nodepool-tui starting");
    // `init` installs a panic hook that restores the terminal before color-eyre reports.
    let mut terminal = ratatui::init();
    let result = runtime.block_on(runtime::run(&mut terminal, app, settings));
    ratatui::restore();
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.wrap_err("terminal error")
}
