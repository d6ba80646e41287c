//! The `nodepool` operator CLI (docs/cli.md): the same subcommands, columns and messages
//! as Python Nodepool 11's, plus JSON output, shell completions and bounded ZooKeeper
//! waits. The binary only calls [`main`].
//!
//! Exit status: 0 success; 1 failure, with one clear line on stderr (every problem, one
//! per line, for an invalid config; the full report with `--debug`); 2 usage errors
//! (clap). No subcommand prints the help and exits 1, as Nodepool does.
//!
//! * [`args`]: the command line.
//! * [`context`]: config loading, connecting, printing.
//! * [`read`], [`bulk`]: pipelined and batched reads for the listings.
//! * [`nodes`], [`images`], [`provider`], [`image_data`]: the subcommands.
//! * [`doctor`], [`console_log`]: problems found in the cached state; a server's console.
//! * [`terminal`]: control characters of records shown as `?` on a terminal.

pub mod args;
pub mod bulk;
pub mod console_log;
pub mod context;
pub mod doctor;
pub mod image_data;
pub mod images;
pub mod nodes;
pub mod provider;
pub mod read;
pub mod terminal;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use color_eyre::eyre::Result;
use nodepool_shared::listing::request_list;

use args::{Cli, Command};
use context::{print_out, Globals, Session};
use provider::Confirm;

/// The line of `--version` (the same story as every other binary's; see
/// `nodepool_shared::version`).
pub fn version_line() -> String {
    nodepool_shared::version::version_line("nodepool")
}

/// Whether stderr may be coloured: a terminal and `NO_COLOR` unset (or empty).
fn color_allowed() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(debug: bool, color: bool) {
    let filter = if debug {
        "debug,zookeeper_client=info,hyper=info,reqwest=info,rustls=info".to_string()
    } else {
        // Connection retries are summed up in the final error; everything else that
        // warns (e.g. a corrupt record skipped) is worth showing.
        "warn,nodepool_shared::zk::client=error".to_string()
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(debug)
        .try_init();
}

/// Installs color-eyre's report and panic hooks, without colours when stderr is not a
/// terminal or `NO_COLOR` is set.
fn install_report_hooks(color: bool) {
    let builder = if color {
        color_eyre::config::HookBuilder::default()
    } else {
        color_eyre::config::HookBuilder::blank()
    };
    let _ = builder.display_env_section(false).install();
}

/// Parses the command line, runs the subcommand and returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = color_allowed();
    install_report_hooks(color);
    init_logging(cli.debug, color);
    if cli.version {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return ExitCode::from(1);
    };
    if cli.logconfig.is_some() {
        tracing::debug!("-l LOGCONFIG is accepted for compatibility and ignored");
    }
    let globals = Globals {
        config: cli.config,
        secure: cli.secure,
        zk_timeout: Duration::from_secs_f64(cli.zk_timeout),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nodepool: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(&globals, command));
    // Do not wait for lingering background tasks (e.g. a session supervisor).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(doctor::ExitWith(code)) = e.downcast_ref() {
                return ExitCode::from(*code);
            }
            if cli.debug {
                eprintln!("{}", terminal::for_stderr(&format!("Error: {e:?}")));
            } else {
                eprintln!("{}", terminal::for_stderr(&one_line(&e)));
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, `outer: cause: cause`, leaving out a cause whose
/// text the line already holds (many error types print their source in their own
/// message; the line must not say it twice).
pub fn one_line(e: &color_eyre::eyre::Report) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Runs one subcommand.
pub async fn run(g: &Globals, command: Command) -> Result<()> {
    match command {
        Command::ConfigValidate => {
            g.load_config()?;
            print_out("Configuration validation complete")
        }
        Command::Doctor { format } => doctor::doctor(g, format.into()).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nodepool", &mut out);
            print_out(String::from_utf8_lossy(&out).trim_end_matches('\n'))
        }
        other => {
            let start = std::time::Instant::now();
            let session = g.connect().await?;
            tracing::debug!(elapsed = ?start.elapsed(), "connected");
            let r = run_zk(&session, other).await;
            session.close().await;
            r
        }
    }
}

async fn run_zk(s: &Session, command: Command) -> Result<()> {
    match command {
        Command::List { detail, format } => nodes::list(s, detail, format.format.into()).await,
        Command::Delete { ids, now, yes } => {
            let confirm = if yes { Confirm::Given } else { Confirm::Ask };
            nodes::delete_many(s, &ids, now, confirm).await
        }
        Command::Hold { id, reason } => nodes::hold(s, &id, reason.as_deref()).await,
        Command::DibImageList { format } => images::dib_list(s, format.format.into()).await,
        Command::ImageList { format } => images::upload_list(s, format.format.into()).await,
        Command::ImageStatus { format } => images::status(s, format.format.into()).await,
        Command::ImageBuild { image } => images::build(s, &image).await,
        Command::DibImageDelete { id } => images::dib_delete(s, &id).await,
        Command::ImageDelete {
            provider,
            image,
            build_id,
            upload_id,
        } => images::upload_delete(s, &provider, &image, &build_id, &upload_id).await,
        Command::ImagePause { image } => images::pause(s, &image).await,
        Command::ImageUnpause { image } => images::unpause(s, &image).await,
        Command::Info { provider, format } => {
            provider::info(s, &provider, format.format.into()).await
        }
        Command::Erase {
            provider,
            force,
            yes,
        } => {
            let confirm = if force || yes {
                Confirm::Given
            } else {
                Confirm::Ask
            };
            provider::erase(s, &provider, confirm).await
        }
        Command::AlienImageList { provider, format } => {
            images::alien_list(s, provider.as_deref(), format.format.into()).await
        }
        Command::RequestList { format } => {
            let requests = s.store.requests().await?;
            let table = request_list(requests.iter().map(|(r, _)| r));
            print_out(&table.render(format.format.into(), None))
        }
        Command::ConsoleLog { id, lines } => console_log::console_log(s, &id, lines).await,
        Command::ExportImageData { path } => image_data::export(s, &path).await,
        Command::ImportImageData { path } => image_data::import(s, &path).await,
        Command::ConfigValidate | Command::Completions { .. } | Command::Doctor { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use color_eyre::eyre::{eyre, WrapErr};

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn one_line_does_not_repeat_a_cause() {
        let io = std::io::Error::other("relative path is not allowed");
        let e: color_eyre::eyre::Report = Repeats(io).into();
        assert_eq!(one_line(&e), "outer: relative path is not allowed");
        let e = Err::<(), _>(eyre!("inner"))
            .wrap_err("context")
            .unwrap_err();
        assert_eq!(one_line(&e), "context: inner");
    }
}
